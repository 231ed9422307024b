"""Generation time per image: CoEmoGenPipeline vs a plain diffusers StableDiffusionPipeline with the
same base models, scheduler, steps, guidance and batch. Prints the ratio (target <= 1.05).

Usage: python benchmarks/generation_overhead.py [--run RUN_DIR] [--images 16] [--steps 25] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

from coemogen.models.base import model_path
from coemogen.pipelines.pipeline_coemogen import CoEmoGenPipeline


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", help="CoEmoGen run (default: the shipped world run)")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    ours = CoEmoGenPipeline.from_pretrained(args.run)
    plain = StableDiffusionPipeline.from_pretrained(
        model_path(ours.base.pretrained_model_name_or_path), safety_checker=None, requires_safety_checker=False
    )
    plain.scheduler = DPMSolverMultistepScheduler.from_config(plain.scheduler.config)
    plain.to(ours.device)
    plain.set_progress_bar_config(disable=True)

    def run_ours():
        ours(
            "awe",
            num_images=args.images,
            seed=0,
            num_inference_steps=args.steps,
            guidance_scale=5.0,
            batch_size=args.images,
        )

    def run_plain():
        plain(
            ["an image of awe"] * args.images,
            num_inference_steps=args.steps,
            guidance_scale=5.0,
            generator=torch.Generator().manual_seed(0),
        )

    fns = {"coemogen": run_ours, "plain_sd": run_plain}
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(args.repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) / args.images)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"device={ours.device} images={args.images} steps={args.steps} repeats={args.repeats}")
    print(f"CoEmoGenPipeline:         {med['coemogen'] * 1000:.1f} ms/image")
    print(f"StableDiffusionPipeline:  {med['plain_sd'] * 1000:.1f} ms/image")
    print(f"ratio = {med['coemogen'] / med['plain_sd']:.3f}  (target <= 1.05)")


if __name__ == "__main__":
    main()
