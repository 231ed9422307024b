"""Does the shipped world run keep its quality with fewer denoising steps? (the main command's default)

Generates N images per emotion with the run's DPM-Solver++ sampler at several step counts (seeds
0..N-1), plus the default step count again with other seeds (the seed-to-seed noise of each metric),
judges every set with the world's independent networks and writes a table. Resumable: images
already generated are kept. Usage:
    python scripts/sampler_steps.py --reference WORLD [--images-per-emotion 50] [--steps 25 15 10]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from coemogen.evaluation.evaluate import evaluate
from coemogen.pipelines.folders import generate_to_folders
from coemogen.pipelines.pipeline_coemogen import CoEmoGenPipeline
from coemogen.tables import format_table
from coemogen.taxonomy import Taxonomy

METRICS = ["emo_a", "polarity_acc", "fid", "lpips", "sem_c", "sem_d"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reference", required=True, help="a built world (its test split is the reference)")
    parser.add_argument("--images-per-emotion", type=int, default=50)
    parser.add_argument("--steps", type=int, nargs="+", default=[25, 15, 10])
    parser.add_argument("--work", default="/tmp/coemogen-steps")
    parser.add_argument("--out", default="docs/world-run/steps.md")
    args = parser.parse_args()
    taxonomy, work = Taxonomy.default(), Path(args.work)
    pipe = CoEmoGenPipeline.from_pretrained()
    settings = [(f"{s} steps", s, 0) for s in args.steps]
    settings.insert(1, (f"{args.steps[0]} steps, other seeds", args.steps[0], 10_000))
    rows = []
    for name, steps, seed in settings:
        folder = work / name.replace(" ", "_").replace(",", "")
        jobs = [(e, folder / e) for e in taxonomy.emotions]
        generate_to_folders(pipe, jobs, args.images_per_emotion, seed=seed, num_inference_steps=steps)
        report = evaluate(folder, args.reference, work / "reports" / folder.name, taxonomy, num_pairs=1000, seed=0)
        rows.append({"setting": name, **{m: report["overall"][m] for m in METRICS}})
        print(json.dumps(rows[-1]), flush=True)
    table = format_table(rows, ["setting", *METRICS])
    Path(args.out).write_text(
        "# Denoising steps of the main command (DPM-Solver++, guidance 5)\n\n"
        f"The shipped world run, {args.images_per_emotion} images per emotion, judged by the world's networks "
        f"against the test split of `{args.reference}`. The second row repeats the first with other seeds: "
        "the seed-to-seed noise of each metric. Reproduce: `python scripts/sampler_steps.py --reference WORLD`.\n\n"
        + table
        + "\n"
    )
    print(table)


if __name__ == "__main__":
    main()
