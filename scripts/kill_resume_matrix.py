"""The kill-and-resume matrix for every long command (the default test suite runs a small part).

Each command runs once uninterrupted, then again in a second folder where it is killed with SIGKILL
after random delays (several kills, each start resuming the last) and finally run to the end; the
two folders are compared file by file (coemogen/kill_resume.py). Prints a Markdown table.

    python scripts/kill_resume_matrix.py --work /tmp/krm --kills 3 [--only "world build" train]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from coemogen.captioning.runner import run_captioning
from coemogen.data.readers import read_dataset
from coemogen.kill_resume import Job, check_job
from coemogen.tables import format_table
from coemogen.taxonomy import Taxonomy
from coemogen.testing import ChatCompletionsServer, build_tiny_captioner
from coemogen.world.dataset import build_world
from coemogen.world.oracle import OracleCaptioner


def inputs(work: Path) -> dict[str, Path]:
    """Shared inputs: a world, its oracle captions and manifest, a generated set, a tiny LLaVA."""
    from coemogen.cli import main

    world = build_world(work / "inputs" / "world", images_per_emotion=12, seed=5, size=32)
    captions = work / "inputs" / "captions.jsonl"
    if not captions.exists():
        run_captioning(read_dataset(world, Taxonomy.default()), OracleCaptioner(0.2, seed=0), captions)
    manifest = work / "inputs" / "manifest.jsonl"
    if not manifest.exists():
        main(["filter", "--captions", str(captions), "--out", str(manifest)])
    generated = work / "inputs" / "generated"
    if not (generated / "sadness" / "grid.png").exists():
        main(["generate", "--emotion", "all", "--num-images", "4", "--steps", "4", "--out", str(generated)])
    llava = work / "inputs" / "llava"
    if not (llava / "config.json").exists():
        build_tiny_captioner(llava)
    return {"world": world, "captions": captions, "manifest": manifest, "generated": generated, "llava": llava}


def jobs(paths: dict[str, Path], server_url: str) -> list[Job]:
    world, manifest = str(paths["world"]), str(paths["manifest"])
    captions_file = dict(unordered=("*.jsonl",), volatile_keys=("seconds",))
    return [
        Job("world build", ["world", "build", "--images-per-emotion", "40", "--size", "32", "--out", "{out}"]),
        Job(
            "caption (openai:)",
            ["caption", "--dataset", world, "--captioner", f"openai:{server_url}", "--concurrency", "2"]
            + ["--out", "{out}/captions.jsonl"],
            **captions_file,
        ),
        Job(
            "caption (hf:)",
            ["caption", "--dataset", world, "--captioner", f"hf:{paths['llava']}", "--batch-size", "4"]
            + ["--max-new-tokens", "8", "--device", "cpu", "--out", "{out}/captions.jsonl"],
            **captions_file,
        ),
        Job("filter", ["filter", "--captions", str(paths["captions"]), "--out", "{out}/manifest.jsonl"]),
        Job("cache", ["cache", "--manifest", manifest, "--out", "{out}", "--shard_size", "8", "--cache_image_tokens"]),
        Job(
            "train",
            ["train", "--manifest", manifest, "--out", "{out}", "--max_train_steps", "40", "--train_batch_size", "4"]
            + ["--checkpointing_steps", "5", "--resume_from_checkpoint", "latest", "--report_to", "none"]
            + ["--validation_steps", "0"],
        ),
        Job("generate", ["generate", "--emotion", "all", "--num-images", "12", "--steps", "4", "--out", "{out}"]),
        Job(
            "evaluate",
            ["evaluate", "--images", str(paths["generated"]), "--reference", world, "--out", "{out}"]
            + ["--num-pairs", "50"],
        ),
        Job(
            "demo",
            ["demo", "--quick", "--out", "{out}"],
            ignore=("timings.json", "run/logs/*"),
            **captions_file,
        ),
        Job(
            "bench paper-table",
            ["bench", "paper-table", "--quick", "--out", "{out}", "--rows", "CoEmoGen", "w/o L_SEM"],
            ignore=("*/run/logs/*",),
            **captions_file,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", default="kill-resume-work")
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", help="job names")
    parser.add_argument("--results", help="also write the rows as JSON here")
    args = parser.parse_args()
    work = Path(args.work)
    paths = inputs(work)
    rows = []
    with ChatCompletionsServer(latency=0.05) as server:
        for job in jobs(paths, server.url):
            if args.only and job.name not in args.only:
                continue
            shutil.rmtree(work / job.name, ignore_errors=True)
            result = check_job(job, work, args.kills, args.seed)
            rows.append(
                {
                    "command": f"`{job.name}`",
                    "kills injected": result.kills,
                    "runs": result.runs,
                    "outputs equal to the uninterrupted run": "yes" if result.equal else "NO",
                    "uninterrupted s": round(result.reference_seconds, 1),
                }
            )
            print(format_table(rows[-1:], list(rows[-1])), flush=True)
            if not result.equal:
                print("\n".join(result.differences[:20]), flush=True)
    print(format_table(rows, list(rows[0])))
    if args.results:
        Path(args.results).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
