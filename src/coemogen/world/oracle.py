"""The synthetic world's MLLM stand-in: a captioner that writes from each image's true scene."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

from ..captioning.captioners import Captioner, CaptionResult
from ..data.readers import DatasetItem
from . import narrative
from .dataset import read_truth
from .paths import is_narrative
from .scenes import OBJECTS, SCENES, visible_words

# Narrative worlds only: the share of captions that state a plausible wrong relation between the right
# objects (the paper's stated limitation: CLIP filtering may not catch errors of emotional reasoning).
REASONING_ERROR_RATE = 0.15


class OracleCaptioner(Captioner):
    """The synthetic world's MLLM stand-in: writes a sentence from the true scene of each image.

    With probability `hallucination_rate` it swaps in a wrong scene and wrong objects, and marks
    the record (`hallucinated`), so the CLIP filter's effect can be measured.

    On a narrative world (`narrative.py`) the sentence states the relation ("the dog chases the
    person"); a hallucination names a wrong scene, entity and props, and with probability
    `reasoning_error_rate` (drawn independently) the sentence states a plausible wrong relation
    between the right objects (`reasoning_error`; `relation` records the relation written).
    """

    batch_size = 256

    def __init__(
        self, hallucination_rate: float = 0.2, seed: int = 0, reasoning_error_rate: float = REASONING_ERROR_RATE, **kw
    ) -> None:
        super().__init__(**kw)
        self.hallucination_rate, self.seed = hallucination_rate, seed
        self.reasoning_error_rate = reasoning_error_rate
        self.id = f"oracle:{hallucination_rate}"
        self._truth: dict[Path, dict] = {}

    def _spec(self, item: DatasetItem):
        root = next((p for p in item.path.parents if (p / "truth.jsonl").is_file()), None)
        if root is None:
            return None
        if root not in self._truth:
            reader = narrative.read_narrative_truth if is_narrative(root) else read_truth
            self._truth[root] = reader(root)
        return self._truth[root].get(str(item.path.relative_to(root)))

    def caption(self, items: list[DatasetItem]) -> list[CaptionResult]:
        results = []
        for item in items:
            spec = self._spec(item)
            if spec is None:
                results.append(CaptionResult(None, "not a synthetic-world image (no truth.jsonl)"))
                continue
            if isinstance(spec, narrative.NarrativeSpec):
                results.append(self._narrative_caption(spec, item))
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

    def _narrative_caption(self, spec: narrative.NarrativeSpec, item: DatasetItem) -> CaptionResult:
        rng = random.Random(f"{self.seed}:{item.id}")  # per item: independent of order and sharding
        hallucinated = rng.random() < self.hallucination_rate
        reasoning_error = rng.random() < self.reasoning_error_rate
        relation = narrative.RELATION[spec.relation]
        scene, entity, props = spec.scene, spec.entity, spec.props
        if hallucinated:
            scene = rng.choice([s for s in narrative.SCENES if s != scene])
            entity = rng.choice([e for e in narrative.ENTITIES if e != entity])
            props = rng.sample([p for p in narrative.PROPS if p not in props], len(props))
        if reasoning_error:
            relation = plausible_wrong_relation(relation, rng)
        light, color = narrative.light_words(spec)
        text = f"a {light} {color} {scene}"
        if props:
            text += " with " + " and ".join(props)
        text += f" where {relation.sentence(entity)}"
        if spec.expression:
            text += f", the person with a {spec.expression} face"
        if self.emotion_prior:
            text += f", evoking {item.emotion}"
        extra = {"hallucinated": hallucinated, "reasoning_error": reasoning_error, "relation": relation.name}
        return CaptionResult(text, extra=extra)


def plausible_wrong_relation(true: narrative.Relation, rng: random.Random) -> narrative.Relation:
    """A wrong reading of the same picture: a relation of another emotion between the same entity and
    the person in the same pose when there is one ("the person chases the dog" for "the dog chases
    the person"), else another emotion's relation with the same entity."""
    same_words = [r for r in narrative.RELATIONS if (r.entity, r.action) == (true.entity, true.action)]
    candidates = [r for r in same_words if r.emotion != true.emotion]
    if not candidates:
        candidates = [r for r in narrative.RELATIONS if r.entity == true.entity and r.emotion != true.emotion]
    return rng.choice(candidates)
