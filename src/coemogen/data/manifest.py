"""The training manifest: JSONL lines with at least `image`, `emotion` and `caption`.

Written by `coemogen filter` (or by hand); extra fields are kept. Bad lines are counted
skips with reasons, never a crash halfway through a dataset.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CoEmoGenError
from ..taxonomy import Taxonomy

logger = logging.getLogger(__name__)
REQUIRED = ("image", "emotion", "caption")


@dataclass
class ManifestRecord:
    image: Path
    emotion: str
    caption: str
    extra: dict = field(default_factory=dict)


@dataclass
class SkipCounter:
    """Counts skipped items by reason and logs each one."""

    reasons: Counter = field(default_factory=Counter)

    def skip(self, where: str, reason: str) -> None:
        self.reasons[reason.split(":")[0]] += 1
        logger.warning("skipped %s: %s", where, reason)

    @property
    def total(self) -> int:
        return sum(self.reasons.values())


def resolve_image(path: str, base: Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else base / p


def read_manifest(
    path: str | Path, taxonomy: Taxonomy, skips: SkipCounter | None = None, check_files: bool = True
) -> list[ManifestRecord]:
    """Read a manifest; relative image paths are relative to the manifest's folder."""
    path = Path(path)
    if not path.is_file():
        raise CoEmoGenError(f"manifest not found: {path}")
    skips = skips if skips is not None else SkipCounter()
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path.name}:{number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            skips.skip(where, "malformed JSON line")
            continue
        if not isinstance(item, dict):
            skips.skip(where, "line is not a JSON object")
            continue
        missing = [k for k in REQUIRED if not isinstance(item.get(k), str) or not item[k].strip()]
        if missing:
            skips.skip(where, f"missing field: {', '.join(missing)}")
            continue
        try:
            emotion = taxonomy.emotions[taxonomy.index(item["emotion"])]
        except CoEmoGenError:
            skips.skip(where, f"unknown emotion: '{item['emotion']}'")
            continue
        image = resolve_image(item["image"], path.parent)
        if check_files and not image.is_file():
            skips.skip(where, f"missing image file: {image}")
            continue
        extra = {k: v for k, v in item.items() if k not in REQUIRED}
        records.append(ManifestRecord(image, emotion, item["caption"].strip(), extra))
    return records


def first_image(path: str | Path) -> Path | None:
    """The image of a JSONL file's first readable record (relative to the file's folder), to tell
    where a manifest's data comes from; None when there is none."""
    path = Path(path)
    if not path.is_file():
        return None
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        for line in f:
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(item, dict) and isinstance(item.get("image"), str):
                return resolve_image(item["image"], path.parent)
    return None
