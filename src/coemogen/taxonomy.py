"""Two-level emotion taxonomy: groups (polarities) containing emotions.

Everything else in the package asks the taxonomy for sizes and indices; nothing hard-codes
the 8 Mikels emotions or the 2 polarities.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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


# The Mikels emotions' default valence/arousal anchors: Warriner, Kuperman & Brysbaert (2013), "Norms of
# valence, arousal, and dominance for 13,915 English lemmas", the eight words' mean ratings (1-9),
# mapped to [-3, 3] by (x - 5) * 3/4. The norms are CC BY-NC-ND 3.0; these sixteen means are quoted
# from them with the source named, not the database (docs/guide/va.md).
WARRINER_2013 = {
    "amusement": (7.00, 4.82),
    "awe": (6.85, 3.83),
    "contentment": (6.62, 4.60),
    "excitement": (7.62, 6.21),
    "anger": (2.50, 5.93),
    "disgust": (3.32, 5.00),
    "fear": (2.93, 6.14),
    "sadness": (2.40, 2.81),
}
WARRINER_SOURCE = (
    "Warriner, Kuperman & Brysbaert (2013), Behavior Research Methods 45:1191-1207: the words' mean valence and "
    "arousal (1-9) mapped to [-3, 3] by (x - 5) * 3/4; the norms are CC BY-NC-ND 3.0"
)
MIKELS_ANCHORS = {e: (round((v - 5) * 0.75, 4), round((a - 5) * 0.75, 4), 1.0) for e, (v, a) in WARRINER_2013.items()}
VA_RANGE = 3.0  # valence and arousal live in [-3, 3] (EmotiCrafter's scale)


@dataclass(frozen=True)
class Taxonomy:
    """Ordered groups of emotions (Mikels: positive and negative; ArtEmis adds a neutral one): every
    size, index and polarity comes from here, and emotion order is the one-hot order. Built from a
    builtin name or a JSON/YAML file (`Taxonomy.load`); `weights` turns emotion specs into the weight
    matrix the model reads."""

    groups: tuple[tuple[str, tuple[str, ...]], ...]
    # (emotion, valence, arousal, spread) of the emotions placed in valence/arousal space, and where
    # the numbers come from; not part of a taxonomy's identity (runs compare their groups only)
    anchors: tuple[tuple[str, float, float, float], ...] = field(default=(), compare=False)
    anchor_source: str | None = field(default=None, compare=False)

    @classmethod
    def from_dict(cls, data: dict) -> Taxonomy:
        """`{"groups": {...}, "anchors": {emotion: {"valence", "arousal", "spread"?}}, "anchor_source"?}`;
        a taxonomy without anchors whose groups are a built-in's gets that built-in's anchors."""
        taxonomy = cls.from_groups(data["groups"])
        if data.get("anchors") is None:
            return taxonomy.with_default_anchors()
        return taxonomy.with_anchors(data["anchors"], data.get("anchor_source"))

    def with_default_anchors(self) -> Taxonomy:
        """This taxonomy with the Mikels defaults for its emotions, when they are all Mikels emotions
        (mikels, emoart); any other keeps what it has."""
        if self.anchors or not set(self.emotions) <= set(MIKELS_ANCHORS):
            return self
        return self.with_anchors(
            {e: dict(zip(("valence", "arousal", "spread"), MIKELS_ANCHORS[e])) for e in self.emotions}, WARRINER_SOURCE
        )

    def with_anchors(self, anchors: Mapping[str, Mapping[str, float]], source: str | None = None) -> Taxonomy:
        """A copy with valence/arousal anchors: {emotion: {"valence": v, "arousal": a, "spread": s}}, each
        coordinate in [-3, 3], spread (the anchor's width in the kernel, default 1) positive."""
        rows = []
        for emotion, anchor in anchors.items():
            name = self.emotions[self.index(emotion)]
            try:
                v, a, spread = float(anchor["valence"]), float(anchor["arousal"]), float(anchor.get("spread", 1.0))
            except (KeyError, TypeError, ValueError):
                raise CoEmoGenError(
                    f"anchor of '{emotion}' must be a mapping with numbers 'valence', 'arousal' (and 'spread')"
                ) from None
            if not (abs(v) <= VA_RANGE and abs(a) <= VA_RANGE) or not 0 < spread < float("inf"):
                raise CoEmoGenError(
                    f"anchor of '{emotion}': valence and arousal must lie in [-3, 3] and spread be positive, "
                    f"got ({v}, {a}, {spread})"
                )
            rows.append((name, v, a, spread))
        order = {e: i for i, e in enumerate(self.emotions)}
        return Taxonomy(self.groups, tuple(sorted(rows, key=lambda r: order[r[0]])), source)

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
        return cls.from_groups(MIKELS_GROUPS).with_default_anchors()

    @classmethod
    def load(cls, spec: str | Path | None) -> Taxonomy:
        """A built-in name (mikels, artemis, emoart), a JSON/YAML file, or None for the default."""
        if spec is None:
            return cls.default()
        if str(spec) in BUILTIN:
            return cls.from_groups(BUILTIN[str(spec)]).with_default_anchors()
        return cls.from_file(spec)

    @classmethod
    def from_file(cls, path: str | Path) -> Taxonomy:
        """Read `{"groups": {"positive": [...], ...}}` (and optionally `"anchors"`, see `from_dict`)
        from JSON or YAML."""
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
            return cls.from_dict(data)
        except CoEmoGenError as err:
            raise CoEmoGenError(f"{path}: {err}") from None

    def to_dict(self) -> dict:
        data: dict = {"groups": {g: list(es) for g, es in self.groups}}
        if self.anchors:
            data["anchors"] = {e: {"valence": v, "arousal": a, "spread": s} for e, v, a, s in self.anchors}
            data["anchor_source"] = self.anchor_source
        return data

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
            for emotion, w in self.mix(spec).items():
                weights[row, self.index(emotion)] = w
        return weights

    def mix(self, spec: str | Mapping[str, float]) -> dict[str, float]:
        """One emotion spec (a name, a mix string or a mapping) as normalised {emotion: weight}, in
        the order given."""
        return self.parse_mix(spec) if isinstance(spec, str) else self._normalised(dict(spec), str(spec))

    def va_mixes(self, points: Sequence[tuple[float, float]], temperature: float = 1.0) -> list[tuple[dict, float]]:
        """Valence/arousal points in [-3, 3]^2 -> (an emotion mix, an intensity in [0, 1]) each.

        The mix weighs every anchored emotion by inverse-distance: w_e proportional to
        (|p - anchor_e| / spread_e) ** (-2 / temperature), normalised. It is continuous in p, equals
        the emotion's own weights on its anchor, and a lower temperature sharpens it toward the
        nearest anchor. The intensity is the point's distance from neutral (0, 0) over the anchors'
        mean distance, capped at 1: the pipeline scales the condition's departure from the clusters'
        centre and the adapters' gates by it (0 at neutral, 1 at and beyond the anchors' typical
        distance).

        Examples:
            >>> mix, intensity = Taxonomy.default().va_mixes([(3.0, 2.0)])[0]
            >>> max(mix, key=mix.get), round(intensity, 2)
            ('excitement', 1.0)
        """
        if not self.anchors:
            raise CoEmoGenError(
                "this taxonomy places no emotion in valence/arousal space: give it anchors (a taxonomy file's "
                "'anchors', or `coemogen va fit`) to use --valence/--arousal"
            )
        if not temperature > 0:
            raise CoEmoGenError(f"the valence/arousal temperature must be positive, got {temperature}")
        names = [r[0] for r in self.anchors]
        centres = [(r[1], r[2]) for r in self.anchors]
        spreads = [r[3] for r in self.anchors]
        reach = sum(math.hypot(v, a) for v, a in centres) / len(centres)
        out = []
        for point in points:
            v, a = check_va(*point)
            distances = [math.hypot(v - cv, a - ca) / s for (cv, ca), s in zip(centres, spreads)]
            if min(distances) == 0:  # on an anchor: that emotion alone
                hit = distances.index(0.0)
                mix = {names[hit]: 1.0}
            else:
                raw = [d ** (-2.0 / temperature) for d in distances]
                total = sum(raw)
                mix = {n: w / total for n, w in zip(names, raw) if w / total > 0}
            out.append((mix, min(1.0, math.hypot(v, a) / reach) if reach > 0 else 1.0))
        return out

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


def check_va(valence: float, arousal: float) -> tuple[float, float]:
    """(valence, arousal) as floats, each in [-3, 3], or a clear error."""
    try:
        v, a = float(valence), float(arousal)
    except (TypeError, ValueError):
        raise CoEmoGenError(f"valence and arousal must be numbers, got {valence!r}, {arousal!r}") from None
    for name, x in (("valence", v), ("arousal", a)):
        if not -VA_RANGE <= x <= VA_RANGE:  # also refuses NaN
            raise CoEmoGenError(f"{name} must lie in [-3, 3] (EmotiCrafter's scale), got {x}")
    return v, a
