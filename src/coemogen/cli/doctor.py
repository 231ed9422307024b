"""`coemogen doctor`: the environment checked."""

from __future__ import annotations

import argparse

from .. import registry


def add_to(sub: argparse._SubParsersAction) -> None:
    """Add the command's parser (and its sub-commands) to `sub`."""
    p = sub.add_parser("doctor", help="check the environment: torch and device, versions, hub, base models, disk")
    p.add_argument("--out", default=".", help="output folder to check for free space and write access")
    p.add_argument("--model", help="run directory whose base models to look for (default: the shipped world run)")
    p.add_argument("--preset", choices=list(registry.presets()), help="look for this preset's base models instead")
    p.set_defaults(func=run_doctor)


def run_doctor(a: argparse.Namespace) -> None:
    from ..doctor import doctor

    doctor(a.out, a.model, a.preset)
