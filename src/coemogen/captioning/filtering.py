"""`coemogen filter`: CLIP image-caption scores, drop the bottom fraction within each emotion.

MLLM captions hallucinate; the paper keeps the 80% of each emotion's pairs that CLIP finds
most similar. Output: the training manifest (with scores), a per-emotion summary and a
score histogram.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data.images import ImageLoadError, load_rgb, to_tensor
from ..data.manifest import SkipCounter
from ..errors import CoEmoGenError
from ..io import atomic_output, write_text
from ..models.clip import image_embeds, text_embeds

logger = logging.getLogger(__name__)


@torch.no_grad()
def clip_scores(
    clip,
    preprocess,
    tokenizer,
    images: list[Path],
    captions: list[str],
    batch_size: int = 64,
    device: str = "cpu",
    skips: SkipCounter | None = None,
) -> tuple[list[float | None], int]:
    """Cosine similarity of each (image, caption) pair; None for unreadable images. Also returns
    how many captions were longer than the text encoder's limit (they are truncated)."""
    skips = skips if skips is not None else SkipCounter()
    max_length = clip.config.text_config.max_position_embeddings
    scores: list[float | None] = [None] * len(images)
    truncated = 0
    for start in tqdm(range(0, len(images), batch_size), desc="clip scores", unit="batch"):
        idx, pixels = [], []
        for i in range(start, min(len(images), start + batch_size)):
            try:
                pixels.append(to_tensor(load_rgb(images[i]), preprocess.image_size))
                idx.append(i)
            except ImageLoadError as err:
                skips.skip(str(images[i]), str(err))
        if not idx:
            continue
        texts = [captions[i] for i in idx]
        lengths = tokenizer(texts, truncation=False).input_ids
        truncated += sum(len(x) > max_length for x in lengths)
        ids = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        img = image_embeds(clip, preprocess(torch.stack(pixels).to(device)))
        txt = text_embeds(clip, ids.input_ids.to(device), ids.attention_mask.to(device))
        for i, s in zip(idx, F.cosine_similarity(img, txt, dim=-1).tolist()):
            scores[i] = s
    return scores, truncated


def keep_mask(scores: list[float], emotions: list[str], drop: float) -> list[bool]:
    """True for records kept: within each emotion the lowest `drop` share is removed."""
    by_emotion: dict[str, list[int]] = defaultdict(list)
    for i, e in enumerate(emotions):
        by_emotion[e].append(i)
    keep = [True] * len(scores)
    for idx in by_emotion.values():
        n_drop = int(len(idx) * drop)
        for i in sorted(idx, key=lambda j: (scores[j], j))[:n_drop]:
            keep[i] = False
    return keep


def filter_captions(
    captions_path: str | Path,
    out: str | Path,
    clip_model_name_or_path: str,
    drop: float = 0.2,
    batch_size: int = 64,
    device: str | None = None,
    seed: int = 0,
) -> dict:
    """Score, filter and write the manifest, `<out>.summary.json` and `<out>.hist.png`."""
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    from ..models.base import _load, load_pretrained
    from ..models.clip import ClipImagePreprocessor
    from ..tables import format_table

    if not 0 <= drop < 1:
        raise CoEmoGenError(f"--drop must be in [0, 1), got {drop}")
    captions_path, out = Path(captions_path), Path(out)
    if not captions_path.is_file():
        raise CoEmoGenError(f"captions file not found: {captions_path}")
    skips = SkipCounter()
    records = []
    for n, line in enumerate(captions_path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        try:
            r = json.loads(line)
            if all(isinstance(r.get(k), str) and r[k] for k in ("image", "emotion", "caption")):
                records.append(r)
                continue
            skips.skip(f"{captions_path.name}:{n}", "missing field")
        except json.JSONDecodeError:
            skips.skip(f"{captions_path.name}:{n}", "malformed JSON line")
    if not records:
        raise CoEmoGenError(f"no usable caption records in {captions_path}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    clip = load_pretrained(CLIPModel.from_pretrained, clip_model_name_or_path, "a CLIP model").to(device).eval()
    tokenizer = _load(CLIPTokenizer.from_pretrained, clip_model_name_or_path, "a CLIP tokenizer")
    processor = _load(CLIPImageProcessor.from_pretrained, clip_model_name_or_path, "a CLIP image processor")
    preprocess = ClipImagePreprocessor.from_clip(clip, processor)
    base = captions_path.parent
    paths = [Path(r["image"]) if Path(r["image"]).is_absolute() else base / r["image"] for r in records]
    scores, truncated = clip_scores(
        clip, preprocess, tokenizer, paths, [r["caption"] for r in records], batch_size, device, skips
    )
    scored = [(dict(r, image=str(p)), s) for r, p, s in zip(records, paths, scores) if s is not None]
    if not scored:
        raise CoEmoGenError("no image could be read: nothing to filter")
    keep = keep_mask([s for _, s in scored], [r["emotion"] for r, _ in scored], drop)
    kept = sorted(
        (dict(r, clip_score=round(s, 6)) for (r, s), k in zip(scored, keep) if k), key=lambda r: r.get("id", r["image"])
    )
    write_text(out, "".join(json.dumps(r) + "\n" for r in kept))

    rows = []
    for emotion in sorted({r["emotion"] for r, _ in scored}):
        s = np.array([sc for (r, sc) in scored if r["emotion"] == emotion])
        k = sum(1 for (r, _), kk in zip(scored, keep) if kk and r["emotion"] == emotion)
        rows.append(
            {
                "emotion": emotion,
                "kept": k,
                "dropped": len(s) - k,
                "q10": float(np.quantile(s, 0.1)),
                "median": float(np.median(s)),
                "q90": float(np.quantile(s, 0.9)),
            }
        )
    summary = {
        "input": len(records),
        "scored": len(scored),
        "kept": len(kept),
        "drop": drop,
        "truncated_captions": truncated,
        "skipped": skips.total,
        "skip_reasons": dict(skips.reasons),
        "per_emotion": rows,
    }
    flags = [bool(r.get("hallucinated")) for r, _ in scored]
    if any(flags):  # synthetic world: how well does the cut find the hallucinated captions?
        summary["hallucination"] = hallucination_removal(flags, keep, [r["emotion"] for r, _ in scored], drop, seed)
    errors = [bool(r.get("reasoning_error")) for r, _ in scored]
    if any(errors):  # narrative world: does the cut find wrong relations as well (the paper's stated blind spot)?
        summary["reasoning_error"] = hallucination_removal(errors, keep, [r["emotion"] for r, _ in scored], drop, seed)
    write_text(out.parent / (out.stem + ".summary.json"), json.dumps(summary, indent=1))
    _histogram([s for _, s in scored], keep, out.parent / (out.stem + ".hist.png"))
    print(format_table(rows, ["emotion", "kept", "dropped", "q10", "median", "q90"]))
    print(f"kept {len(kept)} of {len(scored)} scored records; {truncated} captions truncated; {skips.total} skipped")
    return summary


def hallucination_removal(
    flags: list[bool], keep: list[bool], emotions: list[str], drop: float, seed: int, trials: int = 200
) -> dict:
    """Share of hallucinated captions the CLIP cut removes, against a random per-emotion cut."""
    total = sum(flags)
    removed = sum(f and not k for f, k in zip(flags, keep))
    rng = random.Random(seed)
    random_removed = []
    for _ in range(trials):
        mask = keep_mask([rng.random() for _ in flags], emotions, drop)
        random_removed.append(sum(f and not k for f, k in zip(flags, mask)) / total)
    clip_share = removed / total
    random_share = float(np.mean(random_removed))
    return {
        "hallucinated": total,
        "removed_by_clip_cut": removed,
        "clip_share": clip_share,
        "random_cut_share": random_share,
        "ratio": clip_share / random_share if random_share else None,
        "counts": dict(Counter("hallucinated" if f else "faithful" for f in flags)),
    }


def _histogram(scores: list[float], keep: list[bool], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = np.linspace(min(scores), max(scores), 40)
    ax.hist([s for s, k in zip(scores, keep) if k], bins=bins, alpha=0.7, label="kept")
    ax.hist([s for s, k in zip(scores, keep) if not k], bins=bins, alpha=0.7, label="dropped")
    ax.set_xlabel("CLIP image-caption cosine")
    ax.set_ylabel("pairs")
    ax.legend()
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
