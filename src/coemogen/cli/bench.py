"""`coemogen bench`: the paper table, its claims and the EmoArt study."""

from __future__ import annotations

import argparse

from ..errors import CoEmoGenError


def add_to(sub: argparse._SubParsersAction) -> None:
    """Add the command's parser (and its sub-commands) to `sub`."""
    bench = sub.add_parser("bench", help="reproductions").add_subparsers(dest="bench_command", required=True)
    p = bench.add_parser("paper-table", help="every method and ablation in the synthetic world, with seeds and CIs")
    p.add_argument("--out", default="paper-table", help="resumable: finished (row, seed) pairs there are kept")
    p.add_argument(
        "--scale",
        choices=["default", "short", "resolved", "long", "quick"],
        default="default",
        help="default: 600 steps, 32 images per emotion; short: 200 steps, 12 images (the committed table); "
        "resolved: short with 40 images per emotion (both worlds' resolved tables); "
        "long: 3000 steps at batch 2 on a 100-per-emotion world (the filter study); quick: a smoke test",
    )
    p.add_argument("--quick", action="store_true", help="same as --scale quick")
    p.add_argument("--seeds", type=int, default=1, help="training seeds per row (seed, seed+1, ...)")
    p.add_argument("--seed", type=int, default=0, help="first training seed; also the world's and captions' seed")
    p.add_argument("--rows", nargs="+", help="only these rows (names as in the table)")
    p.add_argument(
        "--content",
        choices=["objects", "narrative"],
        default="objects",
        help="the synthetic world (its pocket models and judges): objects, or narrative (docs/world-narrative.md)",
    )
    p.add_argument("--num-resamples", type=int, default=1000, help="bootstrap replicates of each interval")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite the table from the finished (row, seed) pairs; train nothing",
    )
    p.set_defaults(func=run_bench_paper_table)
    p = bench.add_parser(
        "edit-table", help="editing toward an emotion compared on a world: CoEmoGen SDEdit/inversion, base, EmoGen"
    )
    p.add_argument("--out", required=True, help="resumable: finished edits and (row, seed) reports there are kept")
    p.add_argument("--content", choices=["objects", "narrative"], default="objects")
    p.add_argument("--scale", choices=["resolved", "short", "quick"], default="resolved", help="the runs' scale")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sources-per-emotion", type=int, default=5, help="held-out test images per emotion")
    p.add_argument("--strength", type=float, default=0.6)
    p.add_argument("--sweep-sources", type=int, default=1, help="sources per emotion in the strength sweep")
    p.set_defaults(func=run_bench_edit_table)
    p = bench.add_parser(
        "tune-table", help="emotion reward tuning compared on a world: guards on and off, both judges, over steps"
    )
    p.add_argument("--out", required=True, help="resumable: finished (row, seed) reports and tuning stages are kept")
    p.add_argument("--content", choices=["objects", "narrative"], default="objects")
    p.add_argument("--scale", choices=["resolved", "short", "quick"], default="resolved", help="the runs' scale")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=100, help="tuning steps (the registered recipe: 100)")
    p.add_argument("--stages", type=int, nargs="+", default=[25, 50, 75, 100], help="judged steps of the first seed")
    p.add_argument("--train-batch-size", type=int, default=8)
    p.add_argument("--learning-rate", type=float, default=5e-4)
    p.add_argument("--num-resamples", type=int, default=1000, help="bootstrap replicates of each interval")
    p.add_argument("--rows", nargs="+", help="only these rows (default: all)")
    p.add_argument("--curve-rows", nargs="*", help="the rows tuned in stages on the first seed (default: the three)")
    p.add_argument("--tune-seeds", type=int, nargs="+", help="measure only these seeds (one process per share)")
    p.set_defaults(func=run_bench_tune_table)
    p = bench.add_parser(
        "va-grid",
        help="valence/arousal control on a world: the 5x5 grid, shipped vs fitted anchors vs nearest category",
    )
    p.add_argument("--out", required=True, help="resumable: finished (row, seed) results are kept")
    p.add_argument("--content", choices=["objects", "narrative"], default="objects")
    p.add_argument("--scale", choices=["resolved", "short", "quick"], default="resolved", help="the runs' scale")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-point", type=int, default=8, help="images per grid point and seed")
    p.add_argument("--num-resamples", type=int, default=1000, help="bootstrap replicates of each interval")
    p.set_defaults(func=run_bench_va_grid)
    p = bench.add_parser("claims", help="the paper's claims marked holds / within noise / fails from paper tables")
    p.add_argument(
        "--table",
        action="append",
        required=True,
        metavar="WORLD=DIR",
        help="a finished paper table and its world, e.g. objects=docs/paper-table/objects-resolved (repeatable)",
    )
    p.add_argument(
        "--tune-table",
        action="append",
        default=[],
        help="WORLD=DIR of a `bench tune-table` comparison: adds the reward-tuning claims (repeat per world)",
    )
    p.add_argument("--out", required=True, help="the claims table (Markdown; its JSON beside it)")
    p.set_defaults(func=run_bench_claims)
    p = bench.add_parser("emoart", help="the EmoArt scalability study: paintings selected by a photo classifier")
    p.add_argument("--out", default="emoart", help="resumable: finished stages there are kept")
    p.add_argument("--quick", action="store_true", help="a smoke version (tests)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_bench_emoart)


def run_bench_paper_table(a: argparse.Namespace) -> None:
    from ..experiments.paper_table import paper_table

    paper_table(
        a.out,
        "quick" if a.quick else a.scale,
        a.seeds,
        a.seed,
        a.rows,
        a.num_resamples,
        measure=not a.report_only,
        content=a.content,
    )


def run_bench_claims(a: argparse.Namespace) -> None:
    from ..experiments.claims import claims_table

    def folders(specs: list[str], flag: str) -> dict[str, str]:
        found = {}
        for spec in specs:
            world, sep, folder = spec.partition("=")
            if not sep or not world or not folder:
                raise CoEmoGenError(f"{flag} takes WORLD=DIR (e.g. narrative=docs/paper-table/narrative), got '{spec}'")
            found[world] = folder
        return found

    print(claims_table(folders(a.table, "--table"), a.out, folders(a.tune_table, "--tune-table")))


def run_bench_emoart(a: argparse.Namespace) -> None:
    from ..experiments.emoart import run_emoart

    run_emoart(a.out, a.quick, a.seed)


def run_bench_tune_table(a: argparse.Namespace) -> None:
    from ..errors import CoEmoGenError
    from ..experiments.tune_table import TuneSettings, tune_table

    if a.steps not in a.stages or any(not 0 < s <= a.steps for s in a.stages):
        raise CoEmoGenError(f"--stages must lie in 1..--steps and include --steps ({a.steps}), got {a.stages}")
    settings = TuneSettings(a.steps, tuple(sorted(a.stages)), a.train_batch_size, a.learning_rate)
    print(
        tune_table(
            a.out, a.content, a.scale, a.seeds, a.seed, settings, a.num_resamples, a.rows, a.curve_rows, a.tune_seeds
        )
    )


def run_bench_va_grid(a: argparse.Namespace) -> None:
    from ..experiments.va_table import va_table

    print(va_table(a.out, a.content, a.scale, a.seeds, a.seed, a.per_point, a.num_resamples))


def run_bench_edit_table(a: argparse.Namespace) -> None:
    from ..experiments.edit_table import edit_table

    print(edit_table(a.out, a.content, a.scale, a.seeds, a.seed, a.sources_per_emotion, a.strength, a.sweep_sources))
