"""Two-level emotion taxonomy: groups (polarities) containing emotions.

Everything else in the package asks the taxonomy for sizes and indices; nothing hard-codes
the 8 Mikels emotions or the 2 polarities.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import CoEmoGenError

if TYPE_CHECKING:
    import torch

MIKELS_GROUPS: dict[str, list[str]] = {
    "positive": ["amusement", "awe", "contentment", "excitement"],
    "negative": ["anger", "disgust", "fear", "sadness"],
}
BUILTIN: dict[str, dict[str, list[str]]] = {
    "mikels": MIKELS_GROUPS,
    # ArtEmis: the 8 Mikels labels plus "something else" in a third, neutral group.
    "artemis": {**MIKELS_GROUPS, "neutral": ["something else"]},
    # The paper's EmoArt study: excitement and disgust dropped.
    "emoart": {"positive": ["amusement", "awe", "contentment"], "negative": ["anger", "fear", "sadness"]},
}


@dataclass(frozen=True)
class Taxonomy:
    """Ordered groups of emotions; emotion order is the one-hot order."""

    groups: tuple[tuple[str, tuple[str, ...]], ...]

    @classmethod
    def from_groups(cls, groups: dict[str, list[str]]) -> Taxonomy:
        seen: set[str] = set()
        for group, emotions in groups.items():
            if not emotions:
                raise CoEmoGenError(f"taxonomy group '{group}' has no emotions")
            for emotion in emotions:
                if emotion in seen:
                    raise CoEmoGenError(f"emotion '{emotion}' appears in more than one group")
                seen.add(emotion)
        return cls(tuple((g, tuple(e)) for g, e in groups.items()))

    @classmethod
    def default(cls) -> Taxonomy:
        return cls.from_groups(MIKELS_GROUPS)

    @classmethod
    def load(cls, spec: str | Path | None) -> Taxonomy:
        """A built-in name (mikels, artemis, emoart), a JSON/YAML file, or None for the default."""
        if spec is None:
            return cls.default()
        if str(spec) in BUILTIN:
            return cls.from_groups(BUILTIN[str(spec)])
        return cls.from_file(spec)

    @classmethod
    def from_file(cls, path: str | Path) -> Taxonomy:
        """Read `{"groups": {"positive": [...], ...}}` from JSON or YAML."""
        path = Path(path)
        if not path.is_file():
            raise CoEmoGenError(f"taxonomy file not found: {path} (built-in taxonomies: {', '.join(BUILTIN)})")
        text = path.read_text(encoding="utf-8")
        if path.suffix in {".yaml", ".yml"}:
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("groups"), dict):
            raise CoEmoGenError(f"{path}: expected a mapping with a 'groups' mapping of group -> emotions")
        return cls.from_groups({str(g): [str(e) for e in es] for g, es in data["groups"].items()})

    def to_dict(self) -> dict:
        return {"groups": {g: list(es) for g, es in self.groups}}

    @property
    def emotions(self) -> tuple[str, ...]:
        return tuple(e for _, es in self.groups for e in es)

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(g for g, _ in self.groups)

    @property
    def num_emotions(self) -> int:
        return len(self.emotions)

    @property
    def num_groups(self) -> int:
        return len(self.groups)

    def index(self, emotion: str) -> int:
        try:
            return self.emotions.index(emotion.strip().lower())
        except ValueError:
            raise CoEmoGenError(f"unknown emotion '{emotion}'; known emotions: {', '.join(self.emotions)}") from None

    def group_of(self, emotion: str) -> str:
        name = self.emotions[self.index(emotion)]
        return next(g for g, es in self.groups if name in es)

    def group_index_of(self, emotion: str) -> int:
        return self.group_names.index(self.group_of(emotion))

    def group_indices(self) -> list[int]:
        """Each emotion's group index, in one-hot order (polarity of each class)."""
        return [self.group_index_of(e) for e in self.emotions]

    def membership(self) -> torch.Tensor:
        """(emotions, groups) 0/1 matrix: row e marks emotion e's group."""
        import torch

        m = torch.zeros(self.num_emotions, self.num_groups)
        m[range(self.num_emotions), self.group_indices()] = 1.0
        return m

    def parse_mix(self, spec: str) -> dict[str, float]:
        """Parse "awe" or "amusement:0.5,awe:0.5" into normalised weights."""
        weights: dict[str, float] = {}
        for part in spec.split(","):
            part = part.strip()
            if not part:
                raise CoEmoGenError(f"malformed emotion mix '{spec}': empty entry")
            name, sep, value = part.partition(":")
            if sep:
                try:
                    weight = float(value)
                except ValueError:
                    raise CoEmoGenError(
                        f"malformed emotion mix '{spec}': weight '{value}' of '{name}' is not a number"
                    ) from None
            else:
                weight = 1.0
            if weight < 0 or weight != weight:
                raise CoEmoGenError(f"malformed emotion mix '{spec}': weight of '{name}' must be >= 0")
            emotion = self.emotions[self.index(name)]
            if emotion in weights:
                raise CoEmoGenError(f"malformed emotion mix '{spec}': '{emotion}' given twice")
            weights[emotion] = weight
        total = sum(weights.values())
        if total <= 0:
            raise CoEmoGenError(f"malformed emotion mix '{spec}': weights sum to zero")
        return {e: w / total for e, w in weights.items()}
