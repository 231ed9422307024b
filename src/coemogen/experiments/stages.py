"""The stage runner the demo and the paper table share: the same world, caption, filter, train,
generate and evaluate calls users make, at a chosen scale, timed stage by stage."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..data.readers import read_dataset
from ..pipelines.pipeline_coemogen import CoEmoGenOutput, save_images
from ..taxonomy import Taxonomy
from ..world.dataset import build_world


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


def world_train_items(out: Path, images_per_emotion: int, seed: int, taxonomy: Taxonomy) -> tuple[Path, list]:
    """Render the synthetic world into `out`; return it and its train-split items."""
    world = build_world(out, images_per_emotion, seed)
    return world, [it for it in read_dataset(world, taxonomy) if it.split == "train"]


def generate_per_emotion(make_images: Callable[[str], CoEmoGenOutput], taxonomy: Taxonomy, out: Path) -> None:
    """`make_images(emotion) -> CoEmoGenOutput`, saved under `out/<emotion>/`."""
    for emotion in taxonomy.emotions:
        save_images(make_images(emotion), out / emotion)
