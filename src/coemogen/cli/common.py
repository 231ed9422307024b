"""What several commands' parsers share: the base-model flags, and the one naming rule."""

from __future__ import annotations

import argparse

from .. import registry


def add_model_sources(p: argparse.ArgumentParser) -> None:
    """--pretrained_model_name_or_path, --clip_model_name_or_path, --preset, --pretrained_vae_model_name_or_path."""
    p.add_argument(
        "--pretrained_model_name_or_path",
        help="Stable Diffusion (1.x/2.x or SDXL) hub id or local diffusers directory (default: the pocket SD)",
    )
    p.add_argument("--clip_model_name_or_path", help="CLIP hub id or local directory (default: the pocket CLIP)")
    p.add_argument("--preset", choices=list(registry.presets()), help=registry.preset_help())
    p.add_argument(
        "--pretrained_vae_model_name_or_path",
        help="a VAE replacing the base model's (e.g. an fp16-safe SDXL VAE; SDXL's own stays in fp32)",
    )


def accept_both_spellings(parser: argparse.ArgumentParser) -> None:
    """The naming rule of every command: a multi-word flag answers to both spellings, diffusers'
    underscores (`--num_inference_steps`) and dashes (`--num-inference-steps`), so no name breaks
    when the spelling of a flag changed. Applied to the parser and all its sub-commands."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                accept_both_spellings(subparser)
            continue
        for option in list(action.option_strings):
            if not option.startswith("--"):
                continue
            name = option[2:]
            for alternative in ("--" + name.replace("_", "-"), "--" + name.replace("-", "_")):
                if alternative not in parser._option_string_actions:
                    parser._option_string_actions[alternative] = action
                    action.option_strings.append(alternative)


def add_va_flags(p: argparse.ArgumentParser, what: str = "images") -> None:
    """--valence/--arousal (a point of the circumplex instead of --emotion), --va_temperature, --va_anchors."""
    p.add_argument(
        "--valence", type=float, help=f"valence of the {what} in [-3, 3] (with --arousal, instead of --emotion)"
    )
    p.add_argument("--arousal", type=float, help=f"arousal of the {what} in [-3, 3] (with --valence)")
    p.add_argument(
        "--va_temperature",
        type=float,
        default=1.0,
        help="how the point mixes emotions: lower sharpens toward the nearest anchor (docs/guide/va.md)",
    )
    p.add_argument(
        "--va_anchors",
        help="a taxonomy file whose valence/arousal anchors to use (e.g. from `coemogen va fit`; "
        "default: the run's taxonomy's, for Mikels emotions Warriner et al. 2013)",
    )


def va_point(a: argparse.Namespace, emotion: str | None) -> tuple[float, float] | None:
    """The --valence/--arousal point (checked), None without one; refuses both an emotion and a point,
    and one coordinate alone."""
    from ..errors import CoEmoGenError
    from ..taxonomy import check_va

    if a.valence is None and a.arousal is None:
        if emotion is None:
            raise CoEmoGenError("give --emotion, or --valence and --arousal")
        return None
    if a.valence is None or a.arousal is None:
        raise CoEmoGenError("a valence/arousal point needs both --valence and --arousal")
    if emotion is not None:
        raise CoEmoGenError("give --emotion or --valence/--arousal, not both")
    return check_va(a.valence, a.arousal)


def va_anchors(a: argparse.Namespace):
    """The taxonomy of --va_anchors, or None."""
    from ..taxonomy import Taxonomy

    return Taxonomy.load(a.va_anchors) if a.va_anchors else None
