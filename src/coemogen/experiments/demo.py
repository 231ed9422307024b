"""`coemogen demo`: the whole method on the synthetic world, end to end, on a CPU.

world build -> oracle captions (with hallucinations) -> CLIP filter -> train -> clusters ->
generate every emotion -> evaluate -> metrics table and one grid per emotion.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..captioning.filtering import filter_captions
from ..captioning.runner import run_captioning
from ..evaluation.evaluate import evaluate
from ..evaluation.report import markdown_table
from ..io import write_text
from ..models.coemogen import CoEmoGenConfig
from ..pipelines.pipeline_coemogen import CoEmoGenPipeline
from ..taxonomy import Taxonomy
from ..training.config import TrainingArguments
from ..training.loop import train
from ..world.oracle import OracleCaptioner
from ..world.paths import POCKET_CLIP, SHIPPED_RUN
from .stages import Scale, StageRunner, generate_per_emotion, world_train_items

DEFAULT = Scale(images_per_emotion=300, train_steps=2000, generated_per_emotion=50, inference_steps=25)
QUICK = Scale(images_per_emotion=6, train_steps=20, generated_per_emotion=3, inference_steps=4)


def run_demo(
    out: str | Path,
    quick: bool = False,
    seed: int = 0,
    hallucination_rate: float = 0.2,
    cluster_temperature: float | None = None,
) -> dict:
    """`cluster_temperature`: the demo run's sampling temperature; default: the shipped world run's."""
    scale = QUICK if quick else DEFAULT
    out = Path(out)
    taxonomy = Taxonomy.default()
    stages = StageRunner()
    with stages.stage("world build"):
        world, items = world_train_items(out / "world", scale.images_per_emotion, seed, taxonomy)
    with stages.stage("caption (oracle)"):
        run_captioning(items, OracleCaptioner(hallucination_rate, seed=seed), out / "captions.jsonl")
    with stages.stage("filter (pocket CLIP)"):
        summary = filter_captions(out / "captions.jsonl", out / "manifest.jsonl", str(POCKET_CLIP), seed=seed)
    with stages.stage("train"):
        args = TrainingArguments(
            manifest=str(out / "manifest.jsonl"),
            out=str(out / "run"),
            max_train_steps=scale.train_steps,
            train_batch_size=8,
            seed=seed,
            checkpointing_steps=max(1, scale.train_steps // 2),
            checkpoints_total_limit=1,
        )
        if cluster_temperature is None:
            cluster_temperature = CoEmoGenConfig.load(SHIPPED_RUN).cluster_temperature
        run = train(args, cluster_temperature=cluster_temperature)
    with stages.stage("generate"):
        pipe = CoEmoGenPipeline.from_pretrained(run)
        generate_per_emotion(
            lambda e: pipe(
                e, num_images=scale.generated_per_emotion, seed=seed, num_inference_steps=scale.inference_steps
            ),
            taxonomy,
            out / "generated",
        )
        for emotion in taxonomy.emotions:
            (out / "generated" / emotion / "grid.png").rename(out / f"grid_{emotion}.png")
    with stages.stage("evaluate"):
        report = evaluate(out / "generated", world, out / "report", taxonomy, num_pairs=200, seed=seed)
    write_text(out / "timings.json", json.dumps(stages.seconds, indent=1))
    print("\n" + markdown_table(report))
    if "hallucination" in summary:
        h = summary["hallucination"]
        print(
            f"\nCLIP filter removed {h['clip_share']:.0%} of hallucinated captions "
            f"(a random cut removes {h['random_cut_share']:.0%})."
        )
    print(f"\nstage seconds: {stages.seconds}")
    print(f"report: {out / 'report' / 'report.html'}; grids: {out}/grid_<emotion>.png")
    return {"report": report, "filter": summary, "timings": stages.seconds}
