"""Two-level emotion taxonomy: groups (polarities) containing emotions.

Everything else in the package asks the taxonomy for sizes and indices; nothing hard-codes
the 8 Mikels emotions or the 2 polarities.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
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
    """Ordered groups of emotions (Mikels: positive and negative; ArtEmis adds a neutral one): every
    size, index and polarity comes from here, and emotion order is the one-hot order. Built from a
    builtin name or a JSON/YAML file (`Taxonomy.load`); `weights` turns emotion specs into the weight
    matrix the model reads."""

    groups: tuple[tuple[str, tuple[str, ...]], ...]

    @classmethod
    def from_groups(cls, groups: dict[str, list[str]]) -> Taxonomy:
        """Emotion names are matched lower-case and stripped (as `index` looks them up); they may not
        hold the separators of emotion mixes (',' ':' ';')."""
        if not groups:
            raise CoEmoGenError("a taxonomy needs at least one group of emotions")
        seen: set[str] = set()
        normalised = []
        for group, emotions in groups.items():
            if not isinstance(emotions, (list, tuple)) or not emotions:
                raise CoEmoGenError(f"taxonomy group '{group}' must be a non-empty list of emotion names")
            names = []
            for emotion in emotions:
                name = emotion.strip().lower() if isinstance(emotion, str) else ""
                if not name or any(sep in name for sep in ",:;"):
                    raise CoEmoGenError(
                        f"taxonomy group '{group}': {emotion!r} is not a usable emotion name "
                        "(a non-empty string without ',', ':' or ';')"
                    )
                if name in seen:
                    raise CoEmoGenError(f"emotion '{name}' appears in more than one group")
                seen.add(name)
                names.append(name)
            normalised.append((str(group), tuple(names)))
        return cls(tuple(normalised))

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
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as err:
            raise CoEmoGenError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
        if path.suffix in {".yaml", ".yml"}:
            import yaml

            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as err:
                raise CoEmoGenError(f"{path} is not valid YAML: {str(err).splitlines()[0]}") from None
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as err:
                raise CoEmoGenError(f"{path} is not valid JSON: {err}") from None
        if not isinstance(data, dict) or not isinstance(data.get("groups"), dict):
            raise CoEmoGenError(f"{path}: expected a mapping with a 'groups' mapping of group -> emotions")
        try:
            return cls.from_groups(data["groups"])
        except CoEmoGenError as err:
            raise CoEmoGenError(f"{path}: {err}") from None

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

    def weights(self, specs: Sequence[str | Mapping[str, float]]) -> torch.Tensor:
        """Emotion specs -> (len(specs), num_emotions) weights, each row summing to 1: the one value an
        emotion is, from the command line to the adapters (the model turns it into a placeholder
        embedding and HiLoRA gates). A spec is a name ("awe"), a mix ("fear:0.7,sadness:0.3") or a
        {emotion: weight} mapping.

        Examples:
            >>> Taxonomy.default().weights(["awe", {"fear": 3, "sadness": 1}])[:, [1, 6, 7]].tolist()
            [[1.0, 0.0, 0.0], [0.0, 0.75, 0.25]]
        """
        import torch

        weights = torch.zeros(len(specs), self.num_emotions)
        for row, spec in enumerate(specs):
            mix = self.parse_mix(spec) if isinstance(spec, str) else self._normalised(dict(spec), str(spec))
            for emotion, w in mix.items():
                weights[row, self.index(emotion)] = w
        return weights

    def _normalised(self, weights: dict[str, float], spec: str) -> dict[str, float]:
        total = sum(weights.values())
        if any(not 0 <= w < float("inf") for w in weights.values()) or not 0 < total < float("inf"):
            raise CoEmoGenError(f"malformed emotion mix '{spec}': weights must be finite, >= 0, with a positive sum")
        return {self.emotions[self.index(e)]: w / total for e, w in weights.items()}

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
            if not 0 <= weight < float("inf"):  # also refuses NaN
                raise CoEmoGenError(f"malformed emotion mix '{spec}': weight of '{name}' must be a finite number >= 0")
            emotion = self.emotions[self.index(name)]
            if emotion in weights:
                raise CoEmoGenError(f"malformed emotion mix '{spec}': '{emotion}' given twice")
            weights[emotion] = weight
        total = sum(weights.values())
        if not 0 < total < float("inf"):
            raise CoEmoGenError(f"malformed emotion mix '{spec}': weights sum to {total}")
        return {e: w / total for e, w in weights.items()}
