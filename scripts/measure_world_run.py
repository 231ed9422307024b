"""Measure the shipped world run against the pocket base model prompted "an image of {emotion}".

Generates N images per emotion with each, evaluates both with the world's independent judges and
writes docs/world-run/ (metrics of both, per-emotion table, grids). `--temperatures` adds the
fidelity/diversity trade-off of the cluster sampling temperature (temperature.md). Usage:
    python scripts/measure_world_run.py [--run RUN] [--images-per-emotion 100] [--reference WORLD]
        [--temperatures 1 0.7 0.5]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

from coemogen.data.manifest import SkipCounter
from coemogen.data.readers import read_dataset
from coemogen.evaluation.evaluate import evaluate
from coemogen.evaluation.report import markdown_table
from coemogen.pipelines.folders import save_images
from coemogen.pipelines.pipeline_coemogen import CoEmoGenOutput, CoEmoGenPipeline
from coemogen.tables import format_table
from coemogen.taxonomy import Taxonomy
from coemogen.world.paths import POCKET_SD


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run")
    parser.add_argument("--images-per-emotion", type=int, default=100)
    parser.add_argument("--reference", required=True, help="a built world (its test split is the reference)")
    parser.add_argument("--work", default="/tmp/coemogen-measure")
    parser.add_argument("--out", default="docs/world-run")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--temperatures", type=float, nargs="*", default=[])
    args = parser.parse_args()
    tax, work, out = Taxonomy.default(), Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pipe = CoEmoGenPipeline.from_pretrained(args.run)
    base = StableDiffusionPipeline.from_pretrained(POCKET_SD, safety_checker=None, requires_safety_checker=False)
    base.scheduler = DPMSolverMultistepScheduler.from_config(base.scheduler.config)
    base.set_progress_bar_config(disable=True)

    def generate(folder: Path, temperature: float | None = None) -> None:
        """N CoEmoGen images per emotion (seeds 0..N-1) at a cluster temperature (default: the run's)."""
        for emotion in tax.emotions:
            res = pipe(
                emotion,
                num_images=args.images_per_emotion,
                seed=0,
                num_inference_steps=args.steps,
                cluster_temperature=temperature,
            )
            save_images(res, folder / emotion)

    generate(work / "coemogen")
    for emotion in tax.emotions:
        images = []
        for start in range(0, args.images_per_emotion, 25):
            n = min(25, args.images_per_emotion - start)
            images += base(
                [f"an image of {emotion}"] * n,
                num_inference_steps=args.steps,
                guidance_scale=5.0,
                generator=torch.Generator().manual_seed(start),
            ).images
        meta = [{"index": i, "emotion": emotion, "seed": i} for i in range(len(images))]
        save_images(CoEmoGenOutput(images, meta), work / "base" / emotion)
    summary = {}
    for name in ("coemogen", "base"):
        report = evaluate(work / name, args.reference, out / name, tax, num_pairs=1000, seed=0)
        summary[name] = report
        print(f"\n{name}\n" + markdown_table(report))
        for emotion in tax.emotions:
            (work / name / emotion / "grid.png").replace(out / name / f"grid_{emotion}.png")
    (out / "summary.json").write_text(json.dumps({k: v["overall"] for k, v in summary.items()}, indent=1))

    rows = []
    if args.temperatures:  # the diversity of real images, for scale
        skips = SkipCounter()
        for item in [it for it in read_dataset(args.reference, tax, skips) if it.split == "test"]:
            (work / "real" / item.emotion).mkdir(parents=True, exist_ok=True)
            shutil.copy(item.path, work / "real" / item.emotion / Path(item.path).name)
        report = evaluate(work / "real", args.reference, work / "report-real", tax)
        rows.append({"cluster temperature": "real test images", **report["overall"]})
    for temperature in args.temperatures:
        generate(work / f"temperature-{temperature}", temperature)
        report = evaluate(work / f"temperature-{temperature}", args.reference, work / f"report-{temperature}", tax)
        rows.append({"cluster temperature": temperature, **report["overall"]})
    if rows:
        columns = ["cluster temperature", "emo_a", "polarity_acc", "fid", "lpips", "sem_c", "sem_d", "sem_d_cosine"]
        table = format_table(rows, columns)
        default = pipe.model.config.cluster_temperature
        (out / "temperature.md").write_text(
            f"# Cluster sampling temperature: fidelity vs diversity\n\nThe run's default: {default}. "
            f"{args.images_per_emotion} images per emotion, world judges.\n\n{table}\n"
        )
        print(f"\n{table}")


if __name__ == "__main__":
    main()
