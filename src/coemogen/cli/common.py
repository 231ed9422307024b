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
