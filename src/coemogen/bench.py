"""`coemogen bench paper-table`: every method and ablation of the paper, trained and evaluated in the
synthetic world with fixed seeds, in the paper's table layout (paper numbers alongside).

Each row is a named configuration of the same caption / filter / train / generate commands,
not a fork of the code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .captioners import AttributeCaptioner, OracleCaptioner
from .captioning import run_captioning
from .data.readers import read_dataset
from .evaluation import MetricNetworks, evaluate
from .filtering import filter_captions
from .loaders import POCKET_CLIP, POCKET_SD
from .pipeline import CoEmoGenOutput, CoEmoGenPipeline, save_images
from .tables import format_table
from .taxonomy import Taxonomy
from .trainer import TrainArgs, train
from .world.dataset import build_world

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
    train: dict = field(default_factory=dict)


ROWS = [
    Row("Stable Diffusion", captions="none"),
    Row(
        "Textual Inversion", train=dict(perception_encoder=False, emotion_lora=False, group_lora=False, lambda_sem=0.0)
    ),
    Row("Shared LoRA", train=dict(shared_lora=True)),
    Row("EmoGen", captions="attributes"),
    Row("CoEmoGen"),
    Row("w/o L_SEM", train=dict(lambda_sem=0.0)),
    Row("w/o emotion-specific LoRAs", train=dict(emotion_lora=False)),
    Row("w/o polarity-shared LoRAs", train=dict(group_lora=False)),
    Row("w/o CLIP filtering", drop=0.0),
    Row("w/o emotion prior", captions="oracle-no-prior"),
]


@dataclass
class BenchSize:
    images_per_emotion: int
    train_steps: int
    generated_per_emotion: int
    inference_steps: int


SIZES = {"default": BenchSize(300, 600, 32, 20), "quick": BenchSize(6, 6, 2, 3)}


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


def paper_table(out: str | Path, quick: bool = False, seed: int = 0, rows: list[str] | None = None) -> dict:
    size = SIZES["quick" if quick else "default"]
    out = Path(out)
    tax = Taxonomy.default()
    world = build_world(out / "world", size.images_per_emotion, seed)
    items = [it for it in read_dataset(world, tax) if it.split == "train"]
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
        print(f"\n== {row.name} ==", flush=True)
        if row.captions == "none":
            for emotion in tax.emotions:
                save_images(
                    _base_model_images(emotion, size.generated_per_emotion, size.inference_steps, seed),
                    work / "generated" / emotion,
                )
        else:
            captions = out / f"captions_{row.captions}.jsonl"
            run_captioning(items, captioners[row.captions], captions)
            manifest = work / "manifest.jsonl"
            filter_captions(captions, manifest, str(POCKET_CLIP), drop=row.drop, seed=seed)
            run = train(
                TrainArgs(
                    manifest=str(manifest),
                    out=str(work / "run"),
                    max_train_steps=size.train_steps,
                    seed=seed,
                    checkpointing_steps=0,
                    report_to="none",
                    method=slug,
                    **row.train,
                )
            )
            pipe = CoEmoGenPipeline.from_pretrained(run)
            for emotion in tax.emotions:
                save_images(
                    pipe(
                        emotion,
                        num_images=size.generated_per_emotion,
                        seed=seed,
                        num_inference_steps=size.inference_steps,
                    ),
                    work / "generated" / emotion,
                )
        report = evaluate(work / "generated", world, work / "report", tax, num_pairs=500, seed=seed, networks=networks)
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
    (out / "paper_table.md").write_text(table + "\n")
    (out / "paper_table.json").write_text(json.dumps(results, indent=1))
    return table
