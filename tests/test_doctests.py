"""The examples in the public API's docstrings run and give what they show."""

import doctest
import importlib

import pytest

MODULES = [
    "coemogen.pipelines.pipeline_coemogen",
    "coemogen.pipelines.pipeline_edit",
    "coemogen.training.loop",
    "coemogen.training.tune",
    "coemogen.training.rewards",
    "coemogen.evaluation.evaluate",
    "coemogen.evaluation.metrics",
    "coemogen.taxonomy",
]


@pytest.mark.usefixtures("single_torch_thread")
@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0, f"{name} has no example"
    assert result.failed == 0
