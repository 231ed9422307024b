"""The `coemogen` argument parser: one module per sub-command (`cli/<command>.py`: `add_to` builds
its flags, `run_*` does the work and imports what it needs only then, so `--help` loads no torch);
the `train` flags come from the configuration dataclasses (coemogen/training/config.py)."""

from __future__ import annotations

import argparse

from . import (
    analyze,
    bench,
    cache,
    caption,
    demo,
    doctor,
    edit,
    evaluate,
    export,
    filter,
    generate,
    study,
    train,
    tune,
    va,
    web,
    world,
)
from .common import accept_both_spellings

# In the order `coemogen --help` lists them: the pipeline's stages first.
COMMANDS = (
    world,
    caption,
    filter,
    cache,
    train,
    tune,
    va,
    generate,
    edit,
    evaluate,
    bench,
    analyze,
    export,
    web,
    doctor,
    study,
    demo,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coemogen", description="CoEmoGen: images that evoke a chosen emotion.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_to(sub)
    accept_both_spellings(parser)
    return parser
