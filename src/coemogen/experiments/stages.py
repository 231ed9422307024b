"""The stage runner the demo and the studies share: the same world, caption, filter, train,
generate and evaluate calls users make, at a chosen scale, timed stage by stage."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.readers import read_dataset
from ..pipelines.folders import save_images
from ..pipelines.pipeline_coemogen import CoEmoGenOutput, base_pipeline
from ..taxonomy import Taxonomy
from ..training.config import TrainingArguments
from ..world.dataset import build_world
from ..world.narrative import build_narrative_world
from ..world.paths import NARRATIVE_POCKET_CLIP, NARRATIVE_POCKET_SD, POCKET_CLIP, POCKET_SD


@dataclass(frozen=True)
class Scale:
    """How big an experiment is."""

    images_per_emotion: int  # world images rendered per emotion
    train_steps: int
    generated_per_emotion: int
    inference_steps: int
    train_batch_size: int = 8


class StageRunner:
    """Runs named stages in order, printing a header for each and recording its seconds."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        print(f"\n== {name} ==", flush=True)
        start = time.time()
        yield
        self.seconds[name] = round(time.time() - start, 1)


@dataclass(frozen=True)
class WorldContent:
    """A kind of synthetic world (`coemogen world build --content`): how it is built and the pocket
    models trained on its neutral descriptions. Its judges follow from the built world
    (`MetricNetworks.for_world`), its default training models too (`resolve_sources`)."""

    build: Callable[[Path, int, int], Path]  # (out, images_per_emotion, seed) -> the world
    pocket_sd: Path
    pocket_clip: Path


WORLDS = {
    "objects": WorldContent(build_world, POCKET_SD, POCKET_CLIP),
    "narrative": WorldContent(build_narrative_world, NARRATIVE_POCKET_SD, NARRATIVE_POCKET_CLIP),
}


def world_train_items(
    out: Path, images_per_emotion: int, seed: int, taxonomy: Taxonomy, content: str = "objects"
) -> tuple[Path, list]:
    """Render the synthetic world of `content` into `out`; return it and its train-split items."""
    world = WORLDS[content].build(out, images_per_emotion, seed)
    return world, [it for it in read_dataset(world, taxonomy) if it.split == "train"]


def generate_per_emotion(make_images: Callable[[str], CoEmoGenOutput], taxonomy: Taxonomy, out: Path) -> None:
    """`make_images(emotion) -> CoEmoGenOutput`, saved under `out/<emotion>/`."""
    for emotion in taxonomy.emotions:
        save_images(make_images(emotion), out / emotion)


def study_training_arguments(
    manifest: Path, run: Path, train_steps: int, train_batch_size: int, seed: int, **overrides
) -> TrainingArguments:
    """A study's training run: no checkpoints, validation images or logs (a study redoes a killed
    (row, seed) or stage whole)."""
    return TrainingArguments(
        manifest=str(manifest),
        out=str(run),
        max_train_steps=train_steps,
        train_batch_size=train_batch_size,
        seed=seed,
        checkpointing_steps=0,
        validation_steps=0,
        report_to="none",
        **overrides,
    )


def base_model_images(emotion: str, n: int, steps: int, seed: int, base: str | Path = POCKET_SD) -> CoEmoGenOutput:
    """The pocket base model prompted with the emotion's name: the "Stable Diffusion" baseline."""
    images = base_pipeline(base)(
        [f"an image of {emotion}"] * n,
        num_inference_steps=steps,
        guidance_scale=5.0,
        generator=torch.Generator().manual_seed(seed),
    ).images
    return CoEmoGenOutput(images, [{"index": i, "emotion": emotion, "seed": seed} for i in range(n)])
