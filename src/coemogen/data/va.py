"""Valence/arousal-rated image sets: each image's two ratings on its set's native scale, mapped to
the circumplex scale of this package, [-3, 3] on both axes (EmotiCrafter's).

A set is a CSV or JSONL with an image column (`image`, `path`, `image_path` or `file`, relative to
the file's folder), a valence and an arousal column (`valence`/`arousal`, or `v`/`a`, `V`/`A`), and
optionally `emotion` and `split`; or an EmoSet-layout folder whose annotations carry `valence` and
`arousal` (the synthetic worlds', already on the circumplex scale). The native scale is named
(`VA_SCALES`) or given as "V0:V1,A0:A1"; a rating outside it is a counted skip.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import CoEmoGenError
from ..taxonomy import VA_RANGE, Taxonomy
from .manifest import SkipCounter
from .readers import read_dataset, read_table_rows

# native (valence range, arousal range) of the sets people use
VA_SCALES = {
    "circumplex": ((-3.0, 3.0), (-3.0, 3.0)),  # this package's, and EmotiCrafter's
    "findingemo": ((-3.0, 3.0), (0.0, 6.0)),  # FindingEmo: valence -3..3, arousal 0..6
    "oasis": ((1.0, 7.0), (1.0, 7.0)),  # OASIS: both 1..7
    "sam9": ((1.0, 9.0), (1.0, 9.0)),  # the 9-point Self-Assessment Manikin (IAPS, Warriner's words)
}
IMAGE_COLUMNS = ("image", "path", "image_path", "file")
VALENCE_COLUMNS = ("valence", "v", "V")
AROUSAL_COLUMNS = ("arousal", "a", "A")


@dataclass(frozen=True)
class VARecord:
    """One rated image: its ratings on the circumplex scale, its emotion and split when the set has them."""

    id: str
    path: Path
    valence: float
    arousal: float
    emotion: str | None = None
    split: str | None = None


def parse_scale(scale: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """A named native scale (`VA_SCALES`) or "V0:V1,A0:A1" -> ((v0, v1), (a0, a1))."""
    if scale in VA_SCALES:
        return VA_SCALES[scale]
    try:
        v, a = scale.split(",")
        ranges = tuple(tuple(float(x) for x in part.split(":")) for part in (v, a))
    except ValueError:
        raise CoEmoGenError(
            f"unknown valence/arousal scale '{scale}': name one of {', '.join(VA_SCALES)} or give 'V0:V1,A0:A1'"
        ) from None
    if any(len(r) != 2 or not r[0] < r[1] for r in ranges):
        raise CoEmoGenError(f"scale '{scale}': each range must be low:high with low < high")
    return ranges  # type: ignore[return-value]


def to_circumplex(value: float, low: float, high: float) -> float:
    """A rating on [low, high] mapped linearly onto [-3, 3].

    Examples:
        >>> to_circumplex(0.0, 0.0, 6.0), to_circumplex(4.0, 1.0, 7.0), to_circumplex(9.0, 1.0, 9.0)
        (-3.0, 0.0, 3.0)
    """
    return -VA_RANGE + 2 * VA_RANGE * (value - low) / (high - low)


def _number(row: dict, names: tuple[str, ...]) -> float | None:
    for name in names:
        if name in row and row[name] not in (None, ""):
            try:
                return float(row[name])
            except (TypeError, ValueError):
                return None
    return None


def read_va(
    source: str | Path, scale: str = "circumplex", taxonomy: Taxonomy | None = None, skips: SkipCounter | None = None
) -> list[VARecord]:
    """The rated images of `source` with their ratings mapped from `scale` to [-3, 3]; a row without
    an image or a numeric rating, or with a rating outside the scale, is a counted skip."""
    source = Path(source)
    skips = skips if skips is not None else SkipCounter()
    (v0, v1), (a0, a1) = parse_scale(scale)
    if not source.exists():
        raise CoEmoGenError(f"valence/arousal set not found: {source}")
    rows: list[tuple[str, Path, dict, str | None, str | None]] = []  # id, path, ratings, emotion, split
    if source.is_dir():  # an EmoSet-layout folder whose annotations carry the ratings
        for item in read_dataset(source, taxonomy or Taxonomy.default(), skips):
            rows.append((item.id, item.path, item.attributes, item.emotion, item.split))
    else:
        for n, row in enumerate(read_table_rows(source, skips)):
            image = next((row.get(k) for k in IMAGE_COLUMNS if isinstance(row, dict) and row.get(k)), None)
            if not isinstance(image, str):
                skips.skip(f"{source.name}[{n}]", "no image path")
                continue
            path = Path(image) if Path(image).is_absolute() else source.parent / image
            emotion = row.get("emotion") or None
            if emotion is not None and taxonomy is not None and emotion.strip().lower() not in taxonomy.emotions:
                skips.skip(f"{source.name}[{n}]", f"emotion not in the taxonomy: {emotion}")
                continue
            rows.append((str(row.get("id") or image), path, row, emotion, row.get("split") or None))
    records = []
    for item_id, path, ratings, emotion, split in rows:
        v, a = _number(ratings, VALENCE_COLUMNS), _number(ratings, AROUSAL_COLUMNS)
        if v is None or a is None:
            skips.skip(item_id, "no numeric valence and arousal")
            continue
        if not (v0 <= v <= v1 and a0 <= a <= a1):
            skips.skip(item_id, f"rating outside the scale {scale}")
            continue
        emotion = emotion.strip().lower() if isinstance(emotion, str) else None
        records.append(VARecord(item_id, path, to_circumplex(v, v0, v1), to_circumplex(a, a0, a1), emotion, split))
    if not records:
        raise CoEmoGenError(f"no rated image in {source} ({skips.total} skipped: {dict(skips.reasons)})")
    return records
