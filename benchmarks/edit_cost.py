"""One edit with `CoEmoGenEditPipeline` against diffusers' `StableDiffusionImg2ImgPipeline` doing the
same job: the same base model (the shipped pocket SD), sampler (DPM-Solver++), steps, strength and
guidance, the emotion's LoRA fused and its embedding loaded from `coemogen export`'s files. Both are
timed per edit in one process, alternating (A B A B ...), so drift of the machine's speed hits both
alike; prints the medians and their ratio (the issue's target: at most 1.05).

    python benchmarks/edit_cost.py --runs 15 --out benchmarks/results/edit_cost_cpu.md
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from coemogen.export import export_run
from coemogen.io import write_text
from coemogen.pipelines.pipeline_edit import CoEmoGenEditPipeline
from coemogen.world.paths import POCKET_SD


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--strength", type=float, default=0.6)
    parser.add_argument("--emotion", default="fear")
    parser.add_argument("--out", help="also write the result here (Markdown)")
    a = parser.parse_args()
    torch.set_num_threads(1)
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionImg2ImgPipeline

    ours = CoEmoGenEditPipeline.from_pretrained(device="cpu")
    source = Image.new("RGB", (64, 64), (90, 140, 200))
    with tempfile.TemporaryDirectory() as tmp:
        item = export_run(tmp, emotions=[a.emotion], num_embeddings=1, pipeline=ours)[0]
        theirs = StableDiffusionImg2ImgPipeline.from_pretrained(
            str(POCKET_SD), safety_checker=None, requires_safety_checker=False
        )
        theirs.scheduler = DPMSolverMultistepScheduler.from_config(theirs.scheduler.config)
        theirs.set_progress_bar_config(disable=True)
        theirs.load_lora_weights(str(item.directory), weight_name=f"{item.name}.safetensors")
        theirs.fuse_lora()
        token = f"{item.name}_seed0"
        theirs.load_textual_inversion(str(item.directory / "learned_embeds" / f"{token}.safetensors"))
        prompt = ours.model.config.template.replace("{}", token)

        def run_ours() -> None:
            ours(source, a.emotion, strength=a.strength, num_inference_steps=a.steps, seed=0)

        def run_theirs() -> None:
            theirs(prompt, image=source, strength=a.strength, num_inference_steps=a.steps, guidance_scale=5.0,
                   generator=torch.Generator().manual_seed(0))  # fmt: skip

        run_ours(), run_theirs()  # warm-up
        times: dict[str, list[float]] = {"coemogen": [], "diffusers": []}
        for _ in range(a.runs):
            for name, run in (("coemogen", run_ours), ("diffusers", run_theirs)):
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    text = (
        f"edit cost, one 64 px edit of the shipped run ({a.steps} steps, strength {a.strength}, guidance 5, one "
        f"torch thread, medians of {a.runs} alternating runs; torch {torch.__version__}):\n\n"
        f"| pipeline | s per edit |\n|---|---|\n| CoEmoGenEditPipeline | {med['coemogen']:.4f} |\n"
        f"| diffusers StableDiffusionImg2ImgPipeline (LoRA fused, embedding loaded) | {med['diffusers']:.4f} |\n\n"
        f"ratio CoEmoGen / diffusers: {med['coemogen'] / med['diffusers']:.3f}\n"
    )
    print(text)
    if a.out:
        write_text(Path(a.out), text)


if __name__ == "__main__":
    main()
