"""`coemogen bench paper-table`: every method and ablation of the paper, trained and evaluated in the
synthetic world with fixed seeds, in the paper's table layout (paper numbers alongside).

Each row is a named configuration of the same caption / filter / train / generate commands,
not a fork of the code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch

from ..captioning.captioners import AttributeCaptioner
from ..captioning.filtering import filter_captions
from ..captioning.runner import run_captioning
from ..evaluation.evaluate import MetricNetworks, evaluate
from ..io import write_text
from ..models.base import POCKET_CLIP, POCKET_SD
from ..pipelines.pipeline_coemogen import CoEmoGenOutput, CoEmoGenPipeline
from ..tables import format_table
from ..taxonomy import Taxonomy
from ..training.config import TrainingArguments
from ..training.loop import train
from ..world.oracle import OracleCaptioner
from .stages import Scale, StageRunner, generate_per_emotion, world_train_items

# The paper's Table 1 and ablation table: FID, LPIPS, Emo-A, Sem-C, Sem-D.
PAPER = {
    "Stable Diffusion": (44.05, 0.687, 0.7077, 0.608, 0.0199),
    "Textual Inversion": (50.51, 0.702, 0.7487, 0.605, 0.0282),
    "EmoGen": (41.60, 0.717, 0.7625, 0.633, 0.0335),
    "CoEmoGen": (40.66, 0.732, 0.8015, 0.641, 0.0349),
    "w/o L_SEM": (50.32, 0.698, 0.6590, 0.562, 0.0255),
    "w/o emotion-specific LoRAs": (45.30, 0.713, 0.7537, 0.625, 0.0308),
    "w/o polarity-shared LoRAs": (41.47, 0.724, 0.7883, 0.638, 0.0336),
}


@dataclass
class Row:
    name: str
    captions: str = "oracle"  # oracle | oracle-no-prior | attributes | none (base model prompt)
    drop: float = 0.2
    lambda_sem: float = 1.0
    model: dict = field(default_factory=dict)  # CoEmoGenConfig hyper-parameters


ROWS = [
    Row("Stable Diffusion", captions="none"),
    Row(
        "Textual Inversion",
        lambda_sem=0.0,
        model=dict(perception_encoder=False, emotion_lora=False, group_lora=False),
    ),
    Row("Shared LoRA", model=dict(shared_lora=True)),
    Row("EmoGen", captions="attributes"),
    Row("CoEmoGen"),
    Row("w/o L_SEM", lambda_sem=0.0),
    Row("w/o emotion-specific LoRAs", model=dict(emotion_lora=False)),
    Row("w/o polarity-shared LoRAs", model=dict(group_lora=False)),
    Row("w/o CLIP filtering", drop=0.0),
    Row("w/o emotion prior", captions="oracle-no-prior"),
]


SCALES = {"default": Scale(300, 600, 32, 20), "quick": Scale(6, 6, 2, 3)}


def _base_model_images(emotion: str, n: int, steps: int, seed: int) -> CoEmoGenOutput:
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(POCKET_SD, safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    images = pipe(
        [f"an image of {emotion}"] * n,
        num_inference_steps=steps,
        guidance_scale=5.0,
        generator=torch.Generator().manual_seed(seed),
    ).images
    return CoEmoGenOutput(images, [{"index": i, "emotion": emotion, "seed": seed} for i in range(n)])


def _row_images(pipe: CoEmoGenPipeline | None, scale: Scale, seed: int, emotion: str) -> CoEmoGenOutput:
    """A trained row's images of `emotion`, or (no pipeline) the base model prompted with it."""
    if pipe is None:
        return _base_model_images(emotion, scale.generated_per_emotion, scale.inference_steps, seed)
    return pipe(emotion, num_images=scale.generated_per_emotion, seed=seed, num_inference_steps=scale.inference_steps)


def paper_table(out: str | Path, quick: bool = False, seed: int = 0, rows: list[str] | None = None) -> dict:
    scale = SCALES["quick" if quick else "default"]
    out = Path(out)
    tax = Taxonomy.default()
    stages = StageRunner()
    world, items = world_train_items(out / "world", scale.images_per_emotion, seed, tax)
    captioners = {
        "oracle": OracleCaptioner(0.2, seed=seed),
        "oracle-no-prior": OracleCaptioner(0.2, seed=seed, emotion_prior=False),
        "attributes": AttributeCaptioner(emotion_prior=False),
    }
    networks = MetricNetworks.world()
    results = {}
    for row in ROWS:
        if rows and row.name not in rows:
            continue
        slug = row.name.lower().replace(" ", "_").replace("/", "")
        work = out / slug
        with stages.stage(row.name):
            pipe = None
            if row.captions != "none":
                captions = out / f"captions_{row.captions}.jsonl"
                run_captioning(items, captioners[row.captions], captions)
                manifest = work / "manifest.jsonl"
                filter_captions(captions, manifest, str(POCKET_CLIP), drop=row.drop, seed=seed)
                args = TrainingArguments(
                    manifest=str(manifest),
                    out=str(work / "run"),
                    max_train_steps=scale.train_steps,
                    seed=seed,
                    checkpointing_steps=0,
                    report_to="none",
                    lambda_sem=row.lambda_sem,
                )
                pipe = CoEmoGenPipeline.from_pretrained(train(args, method=slug, **row.model))
            generate_per_emotion(partial(_row_images, pipe, scale, seed), tax, work / "generated")
            report = evaluate(
                work / "generated", world, work / "report", tax, num_pairs=500, seed=seed, networks=networks
            )
        results[row.name] = report["overall"]
        write_table(results, out)  # after every row, so an interrupted run keeps what it measured
    table = write_table(results, out)
    print("\n" + table)
    return results


def write_table(results: dict, out: Path) -> str:
    rows = []
    for name, m in results.items():
        paper = PAPER.get(name)
        rows.append(
            {
                "method": name,
                "FID": m["fid"],
                "LPIPS": m["lpips"],
                "Emo-A": m["emo_a"],
                "Sem-C": m["sem_c"],
                "Sem-D": m["sem_d"],
                "polarity": m["polarity_acc"],
                "paper (FID/LPIPS/Emo-A/Sem-C/Sem-D)": "/".join(f"{v:g}" for v in paper) if paper else "-",
            }
        )
    table = format_table(rows, list(rows[0]))
    write_text(out / "paper_table.md", table + "\n")
    write_text(out / "paper_table.json", json.dumps(results, indent=1))
    return table
