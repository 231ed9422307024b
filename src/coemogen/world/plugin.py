"""The synthetic world registers itself with the method (`coemogen.registry`): its pocket models
(stable names and `--preset pocket` / `narrative-pocket`), the defaults for its data, the `oracle`
captioner, its judges as the metric networks of a world reference, the shipped run as the
default run, and each world's emotion reward for `coemogen tune`. Called through the
`coemogen.plugins` entry point; imports nothing heavy."""

from __future__ import annotations

from pathlib import Path

from .. import registry
from .paths import (
    NARRATIVE_EVALUATORS,
    NARRATIVE_POCKET_CLIP,
    NARRATIVE_REWARD_HEAD,
    POCKET_CLIP,
    POCKET_IDS,
    REWARD_HEAD,
    SHIPPED_RUN,
    is_narrative,
    world_root,
)

SMALL_CNN = "small-cnn"  # EmoGen's emotion encoder for world data (models/emogen.py)


def data_defaults(path: Path) -> dict | None:
    """A world's data trains on its own pocket models, and EmoGen's encoder is the small CNN
    (random init: nothing is downloaded)."""
    root = world_root(path)
    if root is None:
        return None
    preset = "narrative-pocket" if is_narrative(root) else "pocket"
    return {"preset": preset, "emotion_encoder": SMALL_CNN, "emotion_encoder_weights": None}


def oracle(arg: str, common: dict, options: dict):
    """`--captioner oracle[:rate]`: captions from each image's true scene, a share hallucinated."""
    from .oracle import OracleCaptioner

    rate = float(arg) if arg else options.get("hallucination_rate", 0.2)
    return OracleCaptioner(rate, seed=options.get("seed", 0), **common)


def reference_networks(source: Path, clip_model_name_or_path: str | None, evaluators: str | Path | None):
    """The world's judges for a world reference, or for a run on the pocket models (its name); the
    narrative world's for narrative data. `evaluators` replaces the judges' folder, and
    `clip_model_name_or_path` the CLIP of Sem-D."""
    from .judges import world_networks

    name = str(source)
    if name in ("coemogen:pocket-sd", "coemogen:narrative-pocket-sd"):
        narrative = name == "coemogen:narrative-pocket-sd"
    else:
        root = world_root(source)
        if root is None:
            return None
        narrative = is_narrative(root)
    kwargs = {}
    if narrative:
        kwargs = {"evaluators_dir": NARRATIVE_EVALUATORS, "clip_model_name_or_path": NARRATIVE_POCKET_CLIP}
    if evaluators:
        kwargs = {"evaluators_dir": evaluators, "clip_model_name_or_path": POCKET_CLIP}
    if clip_model_name_or_path:
        kwargs["clip_model_name_or_path"] = clip_model_name_or_path
    return world_networks(**kwargs)


def register() -> None:
    for name, folder in POCKET_IDS.items():
        registry.register_model_alias(name, folder)
    registry.register_preset(
        "pocket", "coemogen:pocket-sd", "coemogen:pocket-clip", "the objects world's pocket SD and CLIP"
    )
    registry.register_preset(
        "narrative-pocket",
        "coemogen:narrative-pocket-sd",
        "coemogen:narrative-pocket-clip",
        "the narrative world's (`world build --content narrative`), trained on its relational descriptions",
    )
    registry.register_data_defaults(data_defaults)
    registry.register_captioner("oracle", oracle)
    registry.register_reference_networks(reference_networks)
    registry.register_default_run(SHIPPED_RUN)
    # each world's emotion reward for `coemogen tune`: a head on its pocket CLIP, not its judges
    registry.register_reward_model("coemogen:pocket-sd", REWARD_HEAD)
    registry.register_reward_model("coemogen:narrative-pocket-sd", NARRATIVE_REWARD_HEAD)
