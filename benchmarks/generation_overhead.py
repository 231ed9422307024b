"""Generation time per image: CoEmoGenPipeline vs a plain diffusers StableDiffusionPipeline with the
same base models, scheduler, steps, guidance and batch. Prints the ratio (target <= 1.05).

Usage: python benchmarks/generation_overhead.py [--run RUN_DIR] [--images 16] [--steps 25] [--repeats 3]
       python benchmarks/generation_overhead.py --shape sd15 [--models DIR]   # random weights, SD1.5 shapes, 512 px
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

from coemogen.models.base import model_path
from coemogen.pipelines.pipeline_coemogen import CoEmoGenPipeline
from coemogen.testing import build_sd15_shaped_models, build_untrained_run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", help="CoEmoGen run (default: the shipped world run)")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shape", choices=["sd15"], help="an untrained run on random SD1.5-shaped models instead")
    parser.add_argument("--models", help="folder for the random-weight SD1.5-shaped models (built once)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = parser.parse_args()
    run = args.run
    if args.shape == "sd15":
        root = Path(args.models or Path(tempfile.gettempdir()) / "coemogen-sd15-random")
        run = build_untrained_run(*build_sd15_shaped_models(root), root / "untrained-run")
    dtype = getattr(torch, args.dtype)
    ours = CoEmoGenPipeline.from_pretrained(run, torch_dtype=dtype)
    plain = StableDiffusionPipeline.from_pretrained(
        model_path(ours.base.pretrained_model_name_or_path),
        safety_checker=None,
        requires_safety_checker=False,
        torch_dtype=dtype,
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
    print(f"device={ours.device} images={args.images} steps={args.steps} repeats={args.repeats} dtype={args.dtype}")
    print(f"CoEmoGenPipeline:         {med['coemogen'] * 1000:.1f} ms/image ({1 / med['coemogen']:.2f} images/s)")
    print(f"StableDiffusionPipeline:  {med['plain_sd'] * 1000:.1f} ms/image ({1 / med['plain_sd']:.2f} images/s)")
    print(f"ratio = {med['coemogen'] / med['plain_sd']:.3f}  (target <= 1.05)")


if __name__ == "__main__":
    main()
