"""Dataset readers behind one interface: image path, emotion, optional attributes, split.

Formats: EmoSet-118K layout, ArtEmis/WikiArt CSV, a folder per emotion (ImageFolder style),
and a JSONL/CSV manifest with a path and an emotion column. `read_dataset` picks the reader.
"""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CoEmoGenError
from ..taxonomy import Taxonomy
from .manifest import SkipCounter

logger = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
csv.field_size_limit(2**24)  # ArtEmis utterances and long captions exceed csv's default 128 kB field


def read_csv_rows(path: Path) -> list[dict]:
    """CSV rows as dicts (a UTF-8 BOM dropped, undecodable bytes replaced); a broken CSV is a clear error."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.DictReader(f)
        try:
            return list(reader)
        except csv.Error as err:
            raise CoEmoGenError(f"{path}: unreadable CSV at line {reader.line_num}: {err}") from None


def _text(value: object) -> str | None:
    """A non-empty string field, or None (missing, empty or another JSON type)."""
    return value if isinstance(value, str) and value.strip() else None


@dataclass
class DatasetItem:
    id: str
    path: Path
    emotion: str
    attributes: dict = field(default_factory=dict)
    split: str | None = None


class _Collector:
    """Maps emotion names through the taxonomy and drops duplicate ids, counting every skip."""

    def __init__(self, taxonomy: Taxonomy, skips: SkipCounter, skip_unknown: bool) -> None:
        self.taxonomy, self.skips, self.skip_unknown = taxonomy, skips, skip_unknown
        self.items: list[DatasetItem] = []
        self.ids: set[str] = set()

    def add(
        self, item_id: str, path: Path, emotion: str, attributes: dict | None = None, split: str | None = None
    ) -> None:
        try:
            name = self.taxonomy.emotions[self.taxonomy.index(emotion)]
        except CoEmoGenError as err:
            if not self.skip_unknown:
                raise CoEmoGenError(
                    f"{err} (item '{item_id}'; pass --skip-unknown-emotions to skip such items)"
                ) from None
            self.skips.skip(item_id, f"unknown emotion: '{emotion}'")
            return
        if item_id in self.ids:
            self.skips.skip(item_id, "duplicate id")
            return
        self.ids.add(item_id)
        self.items.append(DatasetItem(item_id, path, name, attributes or {}, split))


def read_emoset(
    root: Path,
    taxonomy: Taxonomy,
    skips: SkipCounter,
    skip_unknown: bool = False,
    splits: tuple[str, ...] = ("train", "val", "test"),
) -> list[DatasetItem]:
    """EmoSet-118K: split files of [emotion, (image_id,) image_path, annotation_path] records."""
    out = _Collector(taxonomy, skips, skip_unknown)
    found = [s for s in splits if (root / f"{s}.json").is_file()]
    if not found:
        raise CoEmoGenError(f"{root}: no split file ({', '.join(s + '.json' for s in splits)}) found")
    for split in found:
        try:
            records = json.loads((root / f"{split}.json").read_text(encoding="utf-8-sig"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CoEmoGenError(f"{root / (split + '.json')} is not valid JSON: {err}") from None
        if not isinstance(records, list):
            raise CoEmoGenError(f"{root / (split + '.json')}: expected a list of records, got {type(records).__name__}")
        for n, record in enumerate(records):
            if not isinstance(record, list) or len(record) not in (3, 4):
                skips.skip(f"{split}.json[{n}]", "malformed split record: expected 3 or 4 fields")
                continue
            if not all(isinstance(field, (str, int)) and not isinstance(field, bool) for field in record) or not all(
                _text(field) for field in (record[0], record[-2], record[-1])
            ):
                skips.skip(f"{split}.json[{n}]", "malformed split record: fields must be strings")
                continue
            emotion, image_path, ann_path = record[0], record[-2], record[-1]
            item_id = record[1] if len(record) == 4 else Path(image_path).stem
            attributes = {}
            ann = root / ann_path
            if ann.is_file():
                try:
                    annotation = json.loads(ann.read_text(encoding="utf-8-sig"))
                    attributes = {k: v for k, v in annotation.items() if k not in {"emotion", "image_id"}}
                except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):  # AttributeError: not an object
                    skips.reasons["unreadable annotation (kept without attributes)"] += 1
            else:
                skips.reasons["missing annotation (kept without attributes)"] += 1
            out.add(str(item_id), root / image_path, emotion, attributes, split)
    return out.items


def read_artemis(
    csv_path: Path, image_dir: Path, taxonomy: Taxonomy, skips: SkipCounter, skip_unknown: bool = False
) -> list[DatasetItem]:
    """ArtEmis CSV: one item per painting, its majority emotion; utterances kept as attributes."""
    votes: dict[tuple[str, str], Counter] = defaultdict(Counter)
    utterances: dict[tuple[str, str], list[str]] = defaultdict(list)
    rows = read_csv_rows(csv_path)
    missing = {"art_style", "painting", "emotion"} - set(rows[0] if rows else [])
    if missing:
        raise CoEmoGenError(f"{csv_path}: not an ArtEmis CSV, missing columns {sorted(missing)}")
    for n, row in enumerate(rows):
        if not all(_text(row.get(k)) for k in ("art_style", "painting", "emotion")):
            skips.skip(f"{csv_path.name}[{n}]", "missing field: art_style, painting or emotion")
            continue
        key = (row["art_style"], row["painting"])
        votes[key][row["emotion"].strip().lower()] += 1
        if _text(row.get("utterance")):
            utterances[key].append(row["utterance"])
    out = _Collector(taxonomy, skips, skip_unknown)
    for (style, painting), counter in votes.items():
        emotion = counter.most_common(1)[0][0]
        out.add(
            f"{style}/{painting}",
            image_dir / style / f"{painting}.jpg",
            emotion,
            {"art_style": style, "utterances": utterances[(style, painting)], "votes": dict(counter)},
        )
    return out.items


def read_folders(root: Path, taxonomy: Taxonomy, skips: SkipCounter, skip_unknown: bool = False) -> list[DatasetItem]:
    """One sub-folder per emotion holding images (ImageFolder style)."""
    out = _Collector(taxonomy, skips, skip_unknown)
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            skips.skip(str(folder), "empty emotion folder")
            continue
        for file in files:
            out.add(str(file.relative_to(root).with_suffix("")), file, folder.name)
    return out.items


def read_table_rows(path: Path, skips: SkipCounter) -> list:
    """The rows of a CSV (dicts) or JSONL file (any JSON value per line; a malformed line is a counted skip)."""
    if path.suffix == ".csv":
        return read_csv_rows(path)
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8-sig", errors="replace").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                skips.skip(f"{path.name}:{n}", "malformed JSON line")
    return rows


def read_table(path: Path, taxonomy: Taxonomy, skips: SkipCounter, skip_unknown: bool = False) -> list[DatasetItem]:
    """JSONL or CSV with a path column (`image`, `path`, `image_path` or `file`) and `emotion`."""
    rows = read_table_rows(path, skips)
    out = _Collector(taxonomy, skips, skip_unknown)
    for n, row in enumerate(rows):
        if not isinstance(row, dict):
            skips.skip(f"{path.name}[{n}]", "line is not a JSON object")
            continue
        image = next((row[k] for k in ("image", "path", "image_path", "file") if _text(row.get(k))), None)
        if image is None or not _text(row.get("emotion")) or "\x00" in image:
            skips.skip(f"{path.name}[{n}]", "missing field: image path or emotion")
            continue
        p = Path(image) if Path(image).is_absolute() else path.parent / image
        extra = {k: v for k, v in row.items() if k not in {"image", "path", "image_path", "file", "emotion", "id"}}
        item_id = row.get("id") or (str(Path(image).with_suffix("")) if Path(image).suffix else image)
        out.add(str(item_id), p, row["emotion"], extra)
    return out.items


def read_dataset(
    source: str | Path,
    taxonomy: Taxonomy,
    skips: SkipCounter | None = None,
    skip_unknown: bool = False,
    image_dir: str | Path | None = None,
) -> list[DatasetItem]:
    """Detect the format of `source` and read it."""
    source = Path(source)
    skips = skips if skips is not None else SkipCounter()
    if not source.exists():
        raise CoEmoGenError(f"dataset not found: {source}")
    if source.is_dir():
        if any((source / f"{s}.json").is_file() for s in ("train", "val", "test")):
            return read_emoset(source, taxonomy, skips, skip_unknown)
        return read_folders(source, taxonomy, skips, skip_unknown)
    if source.suffix == ".csv":
        with open(source, newline="", encoding="utf-8-sig", errors="replace") as f:
            try:
                header = next(csv.reader(f), [])
            except csv.Error as err:
                raise CoEmoGenError(f"{source}: unreadable CSV header: {err}") from None
        if {"art_style", "painting"} <= set(header):
            if image_dir is None:
                raise CoEmoGenError(
                    "an ArtEmis CSV needs --image-dir (the WikiArt folder of <art_style>/<painting>.jpg)"
                )
            return read_artemis(source, Path(image_dir), taxonomy, skips, skip_unknown)
    if source.suffix in {".csv", ".jsonl", ".json"}:
        return read_table(source, taxonomy, skips, skip_unknown)
    raise CoEmoGenError(
        f"unrecognised dataset '{source}': expected an EmoSet folder, a folder per emotion, "
        "an ArtEmis CSV or a JSONL/CSV manifest"
    )
