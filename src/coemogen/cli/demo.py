"""`coemogen demo`: the whole pipeline on the synthetic world."""

from __future__ import annotations

import argparse


def add_to(sub: argparse._SubParsersAction) -> None:
    """Add the command's parser (and its sub-commands) to `sub`."""
    p = sub.add_parser("demo", help="the whole pipeline on the synthetic world")
    p.add_argument("--out", default="coemogen-demo")
    p.add_argument("--quick", action="store_true", help="a 2-minute smoke version")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--cluster-temperature", "--cluster_temperature", type=float, help="default: the shipped world run's"
    )
    p.set_defaults(func=run_demo)


def run_demo(a: argparse.Namespace) -> None:
    from ..experiments.demo import run_demo

    run_demo(a.out, a.quick, a.seed, cluster_temperature=a.cluster_temperature)
