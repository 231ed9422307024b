"""`coemogen generate`: images for an emotion, a mix, or every emotion (resumable folders)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..models.configs import DEFAULT_INFERENCE_STEPS
from .common import add_va_flags, va_anchors, va_point


def add_to(sub: argparse._SubParsersAction) -> None:
    """Add the command's parser (and its sub-commands) to `sub`."""
    p = sub.add_parser("generate", help="generate images for an emotion or a mix")
    p.add_argument("--model", help="run directory (default: the shipped synthetic-world run)")
    p.add_argument(
        "--emotion",
        help="name, mix 'amusement:0.5,awe:0.5', several separated by ';' (cycled over images), "
        "or 'all': --num-images of every emotion, one folder each (the paper's evaluation set)",
    )
    p.add_argument(
        "--num-images",
        "--num_images",
        type=int,
        default=8,
        help="images (per emotion with 'all'); images already in --out are kept, so a re-run completes the set",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--template", help="prompt template, e.g. 'a photo of {} bag' (emotion transfer)")
    p.add_argument("--scheduler", default="dpm", choices=["dpm", "ddim", "euler", "pndm", "ddpm"])
    p.add_argument("--num_inference_steps", "--steps", type=int, default=DEFAULT_INFERENCE_STEPS)
    p.add_argument("--guidance_scale", type=float, default=5.0)
    p.add_argument(
        "--cluster-temperature",
        "--cluster_temperature",
        type=float,
        help="scale of the cluster spread: 0 = emotion mean (fidelity), 1 = fitted spread (diversity); "
        "default: the run's own (see its config.json)",
    )
    p.add_argument("--batch-size", "--batch_size", type=int, default=16)
    p.add_argument("--height", type=int, help="image height in pixels (default: the model's resolution)")
    p.add_argument("--width", type=int, help="image width in pixels (default: the model's resolution)")
    p.add_argument("--device")
    p.add_argument("--taxonomy", help="expected taxonomy file; a run from another taxonomy is refused")
    p.add_argument("--pretrained_model_name_or_path", help="override the run's base Stable Diffusion")
    p.add_argument("--clip_model_name_or_path", help="override the run's CLIP")
    add_va_flags(p)
    p.set_defaults(func=run_generate)


def run_generate(a: argparse.Namespace) -> None:
    import os

    from ..pipelines.folders import generate_to_folders, write_grids
    from ..pipelines.pipeline_coemogen import CoEmoGenPipeline
    from ..taxonomy import Taxonomy

    state = None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under `accelerate launch`: each process makes its share
        from accelerate import PartialState
        from accelerate.utils import parse_flag_from_env

        state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))  # as Accelerator reads it
    taxonomy = Taxonomy.load(a.taxonomy) if a.taxonomy else None
    device = a.device or (str(state.device) if state is not None else None)
    pipe = CoEmoGenPipeline.from_pretrained(
        a.model, a.pretrained_model_name_or_path, a.clip_model_name_or_path, device, taxonomy
    )
    out = Path(a.out)
    point = va_point(a, a.emotion)
    va = {} if point is None else {"va": point, "va_temperature": a.va_temperature, "va_anchors": va_anchors(a)}
    if point is not None:  # one point of the circumplex: a mix and an intensity
        jobs = [(None, out)]
    elif a.emotion == "all":  # the paper's evaluation set: num_images of every emotion, one folder each
        jobs = [(e, out / e) for e in pipe.taxonomy.emotions]
    else:
        emotions = [e for e in a.emotion.split(";") if e.strip()] or [a.emotion]
        pipe.taxonomy.weights(emotions)  # fail on a bad name or weight before any work
        jobs = [(emotions, out)]
    made = generate_to_folders(
        pipe,
        jobs,
        a.num_images,
        seed=a.seed,
        batch_size=a.batch_size,
        process_index=state.process_index if state is not None else 0,
        num_processes=state.num_processes if state is not None else 1,
        barrier=state.wait_for_everyone if state is not None else None,
        template=a.template,
        num_inference_steps=a.num_inference_steps,
        guidance_scale=a.guidance_scale,
        scheduler=a.scheduler,
        cluster_temperature=a.cluster_temperature,
        height=a.height,
        width=a.width,
        **va,
    )
    if state is None:
        kept = a.num_images * len(jobs) - made
        print(f"wrote {made} images ({kept} already there), metadata and grid.png to {out}")
        return
    state.wait_for_everyone()  # every share written: the main process draws the grids
    if state.is_main_process:
        write_grids([folder for _, folder in jobs])
    print(f"process {state.process_index} of {state.num_processes}: wrote {made} images to {out}")
