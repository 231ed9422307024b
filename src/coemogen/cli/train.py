"""`coemogen train` (every method, on the training engine) and `coemogen clusters` (refit a run's clusters)."""

from __future__ import annotations

import argparse

from ..training.config import add_training_flags


def add_to(sub: argparse._SubParsersAction) -> None:
    """Add the command's parser (and its sub-commands) to `sub`."""
    p = sub.add_parser("train", help="train CoEmoGen on a manifest (JSONL: image, emotion, caption)")
    add_training_flags(p)
    p.set_defaults(func=run_train)

    p = sub.add_parser("clusters", help="refit a trained run's emotion clusters")
    p.add_argument("--model", required=True, help="run directory")
    p.add_argument("--manifest", required=True, help="the training manifest")
    p.add_argument("--components", type=int, default=1, help="Gaussian mixture components per emotion")
    p.add_argument("--temperature", type=float, help="the run's default sampling temperature (1 = fitted spread)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_clusters)


def run_train(a: argparse.Namespace) -> None:
    from ..training.config import split_training_flags
    from ..training.loop import train

    args, hyperparameters = split_training_flags(a)
    run = train(args, **hyperparameters)
    print(f"saved run to {run}")


def run_clusters(a: argparse.Namespace) -> None:
    from ..training.coemogen import refit_clusters

    clusters = refit_clusters(a.model, a.manifest, a.components, a.seed, a.temperature)
    print(f"refitted {clusters.weights.shape[1]}-component clusters in {a.model}")
