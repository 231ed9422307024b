"""Where the synthetic world's shipped things are, and how to recognise a world's data.

Import-light (no torch): the world's registration (`plugin.py`) reads it when the command line
builds its flags.
"""

from __future__ import annotations

import json
from pathlib import Path

ASSETS = Path(__file__).parent / "assets"
POCKET_SD = ASSETS / "pocket-sd"
POCKET_CLIP = ASSETS / "pocket-clip"
NARRATIVE_POCKET_SD = ASSETS / "narrative-pocket-sd"
NARRATIVE_POCKET_CLIP = ASSETS / "narrative-pocket-clip"
SHIPPED_RUN = ASSETS / "world-run"
EVALUATORS = ASSETS / "evaluators"
NARRATIVE_EVALUATORS = ASSETS / "narrative-evaluators"
# `coemogen tune`'s default rewards: linear heads on each world's pocket CLIP (not the judges)
REWARD_HEAD = ASSETS / "reward-head"
NARRATIVE_REWARD_HEAD = ASSETS / "narrative-reward-head"
# Stable names for the shipped pocket models, so a run directory records where its base models
# are without an install-specific absolute path.
POCKET_IDS = {
    "coemogen:pocket-sd": POCKET_SD,
    "coemogen:pocket-clip": POCKET_CLIP,
    "coemogen:narrative-pocket-sd": NARRATIVE_POCKET_SD,
    "coemogen:narrative-pocket-clip": NARRATIVE_POCKET_CLIP,
}


def world_root(path: str | Path) -> Path | None:
    """The synthetic world an image, a dataset folder or a manifest belongs to: the nearest folder
    at or above it whose EmoSet-layout `info.json` carries the `world` entry `coemogen world build`
    writes (EmoSet's own has none); None for any other data. This is the one test of "is this a
    world": the world's defaults (its pocket models, EmoGen's small CNN, its judges) apply only
    where it finds one."""
    path = Path(path).resolve()
    for folder in [path, *path.parents] if path.is_dir() else path.parents:
        info = folder / "info.json"
        if info.is_file():
            try:
                if "world" in json.loads(info.read_text(encoding="utf-8")):
                    return folder
            except (json.JSONDecodeError, UnicodeDecodeError, TypeError):
                return None
    return None


def is_narrative(root: str | Path) -> bool:
    """Whether the world at `root` is a narrative world (its info.json says so)."""
    info = Path(root) / "info.json"
    return info.is_file() and json.loads(info.read_text()).get("world", {}).get("content") == "narrative"
