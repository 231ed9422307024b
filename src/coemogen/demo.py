"""`coemogen demo`: the whole method on the synthetic world, end to end, on a CPU.

world build -> oracle captions (with hallucinations) -> CLIP filter -> train -> clusters ->
generate every emotion -> evaluate -> metrics table and one grid per emotion.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from .captioners import OracleCaptioner
from .captioning import run_captioning
from .data.readers import read_dataset
from .evaluation import evaluate, markdown_table
from .filtering import filter_captions
from .loaders import POCKET_CLIP, SHIPPED_RUN
from .modeling import CoEmoGenConfig
from .pipeline import CoEmoGenPipeline, save_images
from .taxonomy import Taxonomy
from .trainer import TrainArgs, train
from .world.dataset import build_world


@dataclass
class DemoSize:
    images_per_emotion: int
    train_steps: int
    images_per_emotion_out: int
    inference_steps: int


DEFAULT = DemoSize(images_per_emotion=300, train_steps=2000, images_per_emotion_out=50, inference_steps=25)
QUICK = DemoSize(images_per_emotion=6, train_steps=20, images_per_emotion_out=3, inference_steps=4)


def run_demo(
    out: str | Path,
    quick: bool = False,
    seed: int = 0,
    hallucination_rate: float = 0.2,
    cluster_temperature: float | None = None,
) -> dict:
    """`cluster_temperature`: the demo run's sampling temperature; default: the shipped world run's."""
    size = QUICK if quick else DEFAULT
    out = Path(out)
    timings = {}
    taxonomy = Taxonomy.default()

    def stage(name: str):
        timings[name] = time.time()
        print(f"\n== {name} ==", flush=True)

    stage("world build")
    world = build_world(out / "world", size.images_per_emotion, seed)
    stage("caption (oracle)")
    items = [it for it in read_dataset(world, taxonomy) if it.split == "train"]
    run_captioning(items, OracleCaptioner(hallucination_rate, seed=seed), out / "captions.jsonl")
    stage("filter (pocket CLIP)")
    summary = filter_captions(out / "captions.jsonl", out / "manifest.jsonl", str(POCKET_CLIP), seed=seed)
    stage("train")
    run = train(
        TrainArgs(
            manifest=str(out / "manifest.jsonl"),
            out=str(out / "run"),
            max_train_steps=size.train_steps,
            train_batch_size=8,
            seed=seed,
            checkpointing_steps=max(1, size.train_steps // 2),
            checkpoints_total_limit=1,
        )
    )
    config = CoEmoGenConfig.load(run)
    config.cluster_temperature = (
        CoEmoGenConfig.load(SHIPPED_RUN).cluster_temperature if cluster_temperature is None else cluster_temperature
    )
    config.save(run)
    stage("generate")
    pipe = CoEmoGenPipeline.from_pretrained(run)
    for emotion in taxonomy.emotions:
        output = pipe(
            emotion, num_images=size.images_per_emotion_out, seed=seed, num_inference_steps=size.inference_steps
        )
        save_images(output, out / "generated" / emotion)
        (out / "generated" / emotion / "grid.png").rename(out / f"grid_{emotion}.png")
    stage("evaluate")
    report = evaluate(out / "generated", world, out / "report", taxonomy, num_pairs=200, seed=seed)
    timings["end"] = time.time()
    names = list(timings)
    durations = {n: round(timings[b] - timings[n], 1) for n, b in zip(names, names[1:])}
    (out / "timings.json").write_text(json.dumps(durations, indent=1))
    print("\n" + markdown_table(report))
    if "hallucination" in summary:
        h = summary["hallucination"]
        print(
            f"\nCLIP filter removed {h['clip_share']:.0%} of hallucinated captions "
            f"(a random cut removes {h['random_cut_share']:.0%})."
        )
    print(f"\nstage seconds: {durations}\nreport: {out / 'report' / 'report.html'}; grids: {out}/grid_<emotion>.png")
    return {"report": report, "filter": summary, "timings": durations}
