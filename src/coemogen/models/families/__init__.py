"""Base-model families behind one interface (`ModelFamily`): Stable Diffusion 1.x/2.x and SDXL.

A new family is one file here with a `ModelFamily` subclass plus its `register_family` line below;
`family_for` picks the family from a base model's `model_index.json`.
"""

from __future__ import annotations

import inspect

from ...errors import CoEmoGenError
from .base import ModelFamily, TextEncoderSpec

FAMILIES: dict[str, type[ModelFamily]] = {}


def register_family(family: type[ModelFamily]) -> type[ModelFamily]:
    """Add a family; one that leaves out a required attribute or method is refused by name."""
    missing = [attr for attr in ModelFamily.required if not hasattr(family, attr)]
    missing += sorted(getattr(family, "__abstractmethods__", ()))
    if missing or inspect.isabstract(family):
        raise CoEmoGenError(f"model family {family.__name__} does not define {', '.join(missing)}")
    taken = {n: f for f in FAMILIES.values() for n in f.pipeline_class_names}
    clash = [n for n in family.pipeline_class_names if n in taken and taken[n] is not family]
    if family.name in FAMILIES and FAMILIES[family.name] is not family or clash:
        raise CoEmoGenError(f"model family {family.__name__} clashes with a registered one ({family.name}, {clash})")
    FAMILIES[family.name] = family
    return family


def family_for(model_index: dict, source: str = "the base model") -> ModelFamily:
    """The family of a base model from its model_index.json contents (its `_class_name`)."""
    class_name = model_index.get("_class_name")
    for family in FAMILIES.values():
        if class_name in family.pipeline_class_names:
            return family(model_index)
    known = ", ".join(f"{f.name} ({', '.join(f.pipeline_class_names)})" for f in FAMILIES.values())
    raise CoEmoGenError(f"{source} is a {class_name or 'pipeline of unknown class'}; CoEmoGen builds on {known}")


from .stable_diffusion import StableDiffusion  # noqa: E402  (registration after the registry exists)
from .stable_diffusion_xl import StableDiffusionXL  # noqa: E402

register_family(StableDiffusion)
register_family(StableDiffusionXL)

__all__ = [
    "FAMILIES",
    "ModelFamily",
    "StableDiffusion",
    "StableDiffusionXL",
    "TextEncoderSpec",
    "family_for",
    "register_family",
]
