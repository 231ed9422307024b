"""`coemogen cache`: the frozen networks' outputs per training record, computed once."""

from __future__ import annotations

import argparse

from .common import add_model_sources


def add_to(sub: argparse._SubParsersAction) -> None:
    """Add the command's parser (and its sub-commands) to `sub`."""
    p = sub.add_parser("cache", help="precompute VAE latents, caption embeddings and CLIP image tokens for training")
    p.add_argument("--manifest", required=True, help="training manifest (the one `coemogen train` will read)")
    p.add_argument("--out", required=True, help="cache directory (resumable: re-run to finish it)")
    add_model_sources(p)
    p.add_argument("--taxonomy", help="mikels (default), artemis, emoart, or a JSON/YAML taxonomy file")
    p.add_argument("--resolution", type=int, help="training resolution (default: the U-Net's)")
    p.add_argument("--random_flip", action="store_true", help="also cache each image's mirror image")
    p.add_argument(
        "--cache_image_tokens", action="store_true", help="also cache the CLIP image tokens v_i (half precision)"
    )
    p.add_argument("--image_token_layer", type=int, default=-1, help="CLIP hidden layer of the tokens (default: last)")
    p.add_argument("--shard_size", type=int, default=256, help="records per shard file")
    p.add_argument("--batch_size", type=int, default=16)
    p.set_defaults(func=run_cache)


def run_cache(a: argparse.Namespace) -> None:
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    from ..training.cache import run_cache_command

    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))  # as Accelerator reads it
    run_cache_command(a, state.process_index, state.num_processes, state.device)
    state.wait_for_everyone()
