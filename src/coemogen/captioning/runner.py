"""`coemogen caption`: caption a dataset into an append-only, resumable JSONL.

Each finished record is written and flushed at once. Re-running the same command skips ids
already in the file; a half-written last line (a crash mid-write) is cut off first, so nothing
complete is ever lost. `--shard k/n` takes every item whose stable id hash falls in shard k.

Failures are counted in two kinds: transient ones (server or memory faults that outlasted their
retries; re-running the same command retries them) and permanent ones (unreadable images, empty
captions). Neither is written to the file, so a re-run tries every item still missing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from ..data.manifest import SkipCounter
from ..data.readers import DatasetItem
from ..errors import CoEmoGenError
from ..io import WRITE_ERRNOS, write_failure, write_text
from .captioners import Captioner

logger = logging.getLogger(__name__)


def parse_shard(spec: str | None) -> tuple[int, int]:
    if not spec:
        return 0, 1
    try:
        k, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise CoEmoGenError(f"--shard must look like k/n (e.g. 0/4), got '{spec}'") from None
    if not 0 <= k < n:
        raise CoEmoGenError(f"--shard {spec}: need 0 <= k < n")
    return k, n


def in_shard(item_id: str, k: int, n: int) -> bool:
    return int(hashlib.sha1(item_id.encode("utf-8", "surrogateescape")).hexdigest(), 16) % n == k


def read_finished(path: Path) -> set[str]:
    """Ids already captioned in `path`; truncates a trailing partial line in place."""
    if not path.exists():
        return set()
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        logger.warning("%s ends with a half-written line; removing it before resuming", path)
        with open(path, "r+b") as f:
            f.truncate(end)
    done = set()
    for line in data[:end].decode("utf-8", errors="replace").splitlines():
        try:
            done.add(json.loads(line)["id"])
        except (json.JSONDecodeError, KeyError, TypeError):
            logger.warning("%s: ignoring an unreadable line", path)
    return done


def run_captioning(
    items: list[DatasetItem],
    captioner: Captioner,
    out: str | Path,
    shard: str | None = None,
    skips: SkipCounter | None = None,
) -> dict:
    """Caption `items` not yet in `out`; returns a summary: written (per emotion), skipped (permanent
    failures) and failed (transient ones), each by reason."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    skips = skips if skips is not None else SkipCounter()
    k, n = parse_shard(shard)
    done = read_finished(out)
    todo = [it for it in items if in_shard(it.id, k, n) and it.id not in done]
    prompt_hash = hashlib.sha256(captioner.prompt(DatasetItem("x", Path("x"), "{emotion}")).encode()).hexdigest()[:12]
    written = Counter()
    failed = SkipCounter()
    try:
        with open(out, "a", encoding="utf-8") as f:
            _append_results(f, captioner, todo, prompt_hash, skips, failed, written)
    except OSError as err:
        if err.errno not in WRITE_ERRNOS:
            raise
        raise write_failure(out, err) from None  # disk full: a torn last line is cut off by the re-run
    return {
        "output": str(out),
        "already_done": len(done),
        "written": sum(written.values()),
        "per_emotion": dict(written),
        "skipped": skips.total,
        "skip_reasons": dict(skips.reasons),
        "failed": failed.total,
        "failure_reasons": dict(failed.reasons),
    }


def _append_results(
    f,
    captioner: Captioner,
    todo: list[DatasetItem],
    prompt_hash: str,
    skips: SkipCounter,
    failed: SkipCounter,
    written: Counter,
) -> None:
    """Append each finished record to the open file `f` as its reply lands; count the failures."""
    last_sync = time.monotonic()
    with tqdm(total=len(todo), desc="caption", unit="img") as bar:
        for item, result, seconds in captioner.stream(todo):
            bar.update(1)
            if result.caption is None:
                (failed if result.transient else skips).skip(item.id, result.error or "no caption")
                continue
            record = {
                "id": item.id,
                "image": str(item.path),
                "emotion": item.emotion,
                "caption": result.caption,
                "captioner": captioner.id,
                "prompt_hash": prompt_hash,
                "seconds": round(seconds, 4),
                **({"split": item.split} if item.split else {}),
                # EmoSet's word-level attributes travel to the manifest (EmoGen's L_attr reads them).
                **({"attributes": item.attributes} if item.attributes else {}),
                **result.extra,
            }
            f.write(json.dumps(record) + "\n")
            f.flush()  # a killed process keeps every finished record
            written[item.emotion] += 1
            if time.monotonic() - last_sync > 1.0:  # and a power cut keeps all but the last second
                os.fsync(f.fileno())
                last_sync = time.monotonic()
    os.fsync(f.fileno())


def unfinished_message(summary: dict) -> str | None:
    """What to tell the user when items failed on transient faults, or None when none did."""
    if not summary["failed"]:
        return None
    reasons = ", ".join(f"{n} {reason}" for reason, n in summary["failure_reasons"].items())
    return (
        f"{summary['failed']} items failed on server or memory errors ({reasons}); "
        "re-run the same command to retry them (finished captions are kept)"
    )


def merge_shards(parts: list[str | Path], out: str | Path) -> int:
    """Concatenate shard files, keeping the first record of each id; returns the record count."""
    seen, lines = set(), []
    for part in parts:
        for line in Path(part).read_text(encoding="utf-8").splitlines():
            try:
                item_id = json.loads(line)["id"]
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
            if item_id not in seen:
                seen.add(item_id)
                lines.append(line)
    write_text(out, "".join(x + "\n" for x in lines))
    return len(lines)
