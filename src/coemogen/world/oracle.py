"""The synthetic world's MLLM stand-in: a captioner that writes from each image's true scene."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

from ..captioning.captioners import Captioner, CaptionResult
from ..data.readers import DatasetItem
from .dataset import read_truth
from .scenes import OBJECTS, SCENES, visible_words


class OracleCaptioner(Captioner):
    """The synthetic world's MLLM stand-in: writes a sentence from the true scene of each image.

    With probability `hallucination_rate` it swaps in a wrong scene and wrong objects, and marks
    the record (`hallucinated`), so the CLIP filter's effect can be measured.
    """

    batch_size = 256

    def __init__(self, hallucination_rate: float = 0.2, seed: int = 0, **kw) -> None:
        super().__init__(**kw)
        self.hallucination_rate, self.seed = hallucination_rate, seed
        self.id = f"oracle:{hallucination_rate}"
        self._truth: dict[Path, dict] = {}

    def _spec(self, item: DatasetItem):
        root = next((p for p in item.path.parents if (p / "truth.jsonl").is_file()), None)
        if root is None:
            return None
        if root not in self._truth:
            self._truth[root] = read_truth(root)
        return self._truth[root].get(str(item.path.relative_to(root)))

    def caption(self, items: list[DatasetItem]) -> list[CaptionResult]:
        results = []
        for item in items:
            spec = self._spec(item)
            if spec is None:
                results.append(CaptionResult(None, "not a synthetic-world image (no truth.jsonl)"))
                continue
            rng = random.Random(f"{self.seed}:{item.id}")  # per item: independent of order and sharding
            hallucinated = rng.random() < self.hallucination_rate
            if hallucinated:
                spec = replace(
                    spec,
                    scene=rng.choice([s for s in SCENES if s != spec.scene]),
                    objects=rng.sample([o for o in OBJECTS if o not in spec.objects], len(spec.objects)),
                )
            results.append(CaptionResult(self._sentence(spec, item.emotion), extra={"hallucinated": hallucinated}))
        return results

    def _sentence(self, spec, emotion: str) -> str:
        light, color, objects = visible_words(spec)
        text = f"a {light} {color} {spec.scene.replace('_', ' ')} with {objects}"
        if spec.expression:
            text += f" where a person with a {spec.expression} face is {spec.action.replace('_', ' ')}"
        return f"{text}, evoking {emotion}" if self.emotion_prior else text
