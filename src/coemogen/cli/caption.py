"""`coemogen caption` and `caption-merge`: sentence captions from an MLLM told the emotion (resumable)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import CoEmoGenError


def add_to(sub: argparse._SubParsersAction) -> None:
    """Add the command's parser (and its sub-commands) to `sub`."""
    p = sub.add_parser("caption", help="caption a dataset with an MLLM (resumable JSONL)")
    p.add_argument("--dataset", required=True, help="EmoSet folder, folder per emotion, ArtEmis CSV or manifest")
    p.add_argument("--captioner", required=True, help="attributes | oracle[:rate] | hf:<model> | openai:<base url>")
    p.add_argument("--out", required=True)
    p.add_argument("--taxonomy", help="mikels (default), artemis, emoart, or a JSON/YAML file")
    p.add_argument("--image-dir", help="WikiArt image folder for an ArtEmis CSV")
    p.add_argument("--split", nargs="+", help="only these EmoSet splits (e.g. train)")
    p.add_argument("--skip-unknown-emotions", action="store_true")
    p.add_argument("--prompt-template", help="text file; {emotion} is replaced by the label")
    p.add_argument("--no-emotion-prior", action="store_true", help="do not tell the captioner the emotion")
    p.add_argument("--shard", help="k/n: caption only shard k of n")
    p.add_argument("--model", help="model name sent to an openai: server")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    p.add_argument("--max-retries", type=int, default=5)
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    p.add_argument("--device")
    p.add_argument(
        "--dtype", default="auto", help="hf: captioner dtype (auto: the checkpoint's on a GPU, float32 on a CPU)"
    )
    p.add_argument("--batch-size", type=int)
    p.add_argument("--max-new-tokens", type=int, help="hf: captioners only (default 96)")
    p.add_argument("--hallucination-rate", type=float, default=0.2, help="oracle captioner only")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_caption)
    p = sub.add_parser("caption-merge", help="merge caption shards")
    p.add_argument("parts", nargs="+")
    p.add_argument("--out", required=True)
    p.set_defaults(func=run_caption_merge)


def run_caption(a: argparse.Namespace) -> None:
    import json

    from ..captioning.captioners import make_captioner
    from ..captioning.runner import run_captioning, unfinished_message
    from ..data.manifest import SkipCounter
    from ..data.readers import read_dataset
    from ..tables import format_table
    from ..taxonomy import Taxonomy

    skips = SkipCounter()
    items = read_dataset(a.dataset, Taxonomy.load(a.taxonomy), skips, a.skip_unknown_emotions, a.image_dir)
    if a.split:
        items = [it for it in items if it.split in a.split]
    template = Path(a.prompt_template).read_text(encoding="utf-8") if a.prompt_template else None
    with make_captioner(
        a.captioner,
        template,
        not a.no_emotion_prior,
        model=a.model,
        concurrency=a.concurrency,
        timeout=a.timeout,
        max_retries=a.max_retries,
        api_key_env=a.api_key_env,
        device=a.device,
        dtype=a.dtype,
        batch_size=a.batch_size,
        max_new_tokens=a.max_new_tokens,
        hallucination_rate=a.hallucination_rate,
        seed=a.seed,
    ) as captioner:
        summary = run_captioning(items, captioner, a.out, a.shard, skips)
    rows = [{"emotion": e, "written": n} for e, n in sorted(summary["per_emotion"].items())]
    print(format_table(rows, ["emotion", "written"]))
    print(json.dumps({k: v for k, v in summary.items() if k != "per_emotion"}, indent=1))
    if unfinished_message(summary):
        raise CoEmoGenError(unfinished_message(summary))
    if summary["written"] + summary["already_done"] == 0:
        raise CoEmoGenError("no caption could be produced")


def run_caption_merge(a: argparse.Namespace) -> None:
    from ..captioning.runner import merge_shards

    print(f"merged {merge_shards(a.parts, a.out)} records into {a.out}")
