"""`coemogen tune`: emotion reward tuning of a trained run (DRaFT-K on the training engine)."""

from __future__ import annotations

import argparse


def add_to(sub: argparse._SubParsersAction) -> None:
    """Add the command's parser to `sub`."""
    from ..training.config import add_tune_flags

    p = sub.add_parser(
        "tune",
        help="tune a trained run toward an emotion reward (truncated reward backpropagation, with guards)",
        description="Backpropagate an emotion judge into a trained run: DDIM without gradients to the last "
        "--truncation_steps steps, then through them, the VAE decoder and the reward. The anchor "
        "(--anchor_weight) and the drift penalty (--kl_weight) guard against reward hacking. The result is "
        "an ordinary run.",
    )
    p.add_argument("--model", help="the trained run to start from (default: the shipped synthetic-world run)")
    p.add_argument(
        "--manifest", required=True, help="the anchor's data (JSONL: image, emotion, caption); its emotions are sampled"
    )
    p.add_argument("--out", required=True, help="the tuned run's directory")
    add_tune_flags(p)
    p.set_defaults(func=run_tune)


def run_tune(a: argparse.Namespace) -> None:
    from ..training.config import split_tune_flags
    from ..training.loop import train

    args, settings = split_tune_flags(a)
    run = train(args, **settings)
    print(f"saved tuned run to {run}")
