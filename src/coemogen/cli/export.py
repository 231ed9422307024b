"""`coemogen export`: a run's emotions as LoRA and embedding files (A1111, ComfyUI, diffusers)."""

from __future__ import annotations

import argparse

from .common import add_va_flags, va_anchors, va_point


def add_to(sub: argparse._SubParsersAction) -> None:
    """Add the command's parser (and its sub-commands) to `sub`."""
    p = sub.add_parser("export", help="a run's emotions as LoRA + embedding files for diffusers, A1111, ComfyUI")
    p.add_argument("--model", help="run directory (default: the shipped synthetic-world run)")
    p.add_argument("--out", required=True, help="export folder: one sub-folder per emotion and a root model card")
    p.add_argument(
        "--emotions", nargs="+", help="names or mixes 'fear:0.7,sadness:0.3' (default: every emotion of the run)"
    )
    p.add_argument(
        "--num-embeddings",
        "--num_embeddings",
        type=int,
        default=4,
        help="cluster samples exported besides the mean; sample k is the one `generate --seed SEED+k` draws",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the first sampled embedding")
    p.add_argument("--license", help="model-card license (default: creativeml-openrail-m; pocket SD: apache-2.0)")
    p.add_argument("--metrics", help="a `coemogen evaluate` metrics.json (or its folder) to quote in the model cards")
    p.add_argument("--push_to_hub", "--push-to-hub", metavar="REPO_ID", help="then upload the folder to this Hub repo")
    p.add_argument("--hub_token", "--hub-token", help="Hub token (default: the logged-in one)")
    p.add_argument("--private", action="store_true", help="create the Hub repository private")
    add_va_flags(p, "exported emotion (a mix folder, with or without --emotions)")
    p.set_defaults(func=run_export)


def run_export(a: argparse.Namespace) -> None:
    from ..export import export_run, push_to_hub
    from ..tables import format_table

    point = None
    if a.valence is not None or a.arousal is not None:
        point = va_point(a, None)
    items = export_run(
        a.out, a.model, a.emotions, a.num_embeddings, a.seed, a.license, a.metrics,
        va=None if point is None else [point], va_temperature=a.va_temperature, va_anchors=va_anchors(a),
    )  # fmt: skip
    rows = [{"emotion": i.spec, "folder": str(i.directory), "LoRA rank": i.rank, "prompt": i.prompt} for i in items]
    print(format_table(rows, ["emotion", "folder", "LoRA rank", "prompt"]))
    if a.push_to_hub:
        print(f"uploaded to {push_to_hub(a.out, a.push_to_hub, a.hub_token, a.private)}")
