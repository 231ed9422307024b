"""`coemogen filter`: CLIP image-text scores, the bottom share per emotion dropped."""

from __future__ import annotations

import argparse

from .. import registry


def add_to(sub: argparse._SubParsersAction) -> None:
    """Add the command's parser (and its sub-commands) to `sub`."""
    p = sub.add_parser("filter", help="CLIP-score captions and drop the bottom share per emotion")
    p.add_argument("--captions", required=True)
    p.add_argument("--out", required=True, help="training manifest (JSONL)")
    p.add_argument("--drop", type=float, default=0.2)
    p.add_argument("--clip_model_name_or_path", "--clip-model-name-or-path")
    p.add_argument("--preset", choices=list(registry.presets()), help=registry.preset_help())
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_filter)


def run_filter(a: argparse.Namespace) -> None:
    from ..captioning.filtering import filter_captions
    from ..data.manifest import first_image
    from ..models.base import resolve_sources

    clip = a.clip_model_name_or_path
    if clip is None or a.preset is not None:  # the SD source is not used: only CLIP must be chosen
        clip = resolve_sources("unused", a.clip_model_name_or_path, a.preset, first_image(a.captions))[1]
    filter_captions(a.captions, a.out, clip, a.drop, a.batch_size, a.device, a.seed)
