"""`coemogen evaluate --edits DIR --sources DIR`: edits judged as EmoEdit reports them.

Structure kept, each edit against its source: PSNR, SSIM, LPIPS, CLIP-I; emotion reached: Emo-A
(the share of edits the emotion classifier assigns to the target) and Emo-S (the rise of the
target's probability over the source's). Per (source emotion, target emotion) and overall, each
with a 95% bootstrap interval over the edits (percentiles of 1000 resamples, the metric objects'
own `compute` on each). On a synthetic world the world's judges and networks; on real data the
local networks the flags name, as `evaluate` takes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import registry
from ..data.images import load_rgb, pixels, to_tensor
from ..errors import CoEmoGenError
from ..io import write_text
from ..tables import format_table
from ..taxonomy import Taxonomy
from .metrics import (
    ClipImageSimilarity,
    EmotionAccuracy,
    EmotionGain,
    PairedLPIPS,
    PeakSignalToNoiseRatio,
    StructuralSimilarity,
)

EDIT_METRICS = (
    ("psnr", "PSNR", PeakSignalToNoiseRatio),
    ("ssim", "SSIM", StructuralSimilarity),
    ("lpips", "LPIPS", PairedLPIPS),
    ("clip_i", "CLIP-I", ClipImageSimilarity),
    ("emo_a", "Emo-A", EmotionAccuracy),
    ("emo_s", "Emo-S", EmotionGain),
)


@dataclass
class EditNetworks:
    """The networks behind the edit metrics: LPIPS feature maps, emotion logits, CLIP features."""

    lpips: object
    emotion: object
    clip: object

    def names(self) -> dict[str, str]:
        return {"lpips": self.lpips.name, "emo_a": self.emotion.name, "clip_i": self.clip.name}


def edit_networks(
    sources: str | Path,
    taxonomy: Taxonomy,
    alexnet_weights: str | None = None,
    lpips_lin_weights: str | None = None,
    emotion_classifier: str | None = None,
    emotion_clip: str | None = None,
    clip_model_name_or_path: str | None = None,
    evaluators: str | None = None,
) -> EditNetworks:
    """A registered client's networks for the sources (the world's judges for world images), each
    replaced by the one a flag names; for other images every flag is required."""
    from .emotion_head import emotion_head
    from .networks import AlexNetLPIPS, ClipFeatures

    world = registry.reference_networks(sources, clip_model_name_or_path, evaluators)
    if world is None and not (alexnet_weights and emotion_classifier and clip_model_name_or_path):
        raise CoEmoGenError(
            "edits of images no registered client knows need --alexnet-weights (LPIPS), --emotion-classifier "
            "(Emo-A, Emo-S) and --clip_model_name_or_path (CLIP-I)"
        )
    return EditNetworks(
        lpips=AlexNetLPIPS(alexnet_weights, lpips_lin_weights) if alexnet_weights else world.lpips,
        emotion=emotion_head(emotion_classifier, emotion_clip, taxonomy) if emotion_classifier else world.emotion,
        clip=world.clip if world is not None else ClipFeatures(clip_model_name_or_path),
    )


def read_edits(edits_dir: Path, sources_dir: Path, taxonomy: Taxonomy) -> list[dict]:
    """Every edit `coemogen edit` wrote in `edits_dir` (its metadata JSON beside the PNG): its
    paths, target emotion, and its source's emotion (the emotion-named folder it sits in under
    `sources_dir`, else "unknown")."""
    if not edits_dir.is_dir():
        raise CoEmoGenError(f"edits folder not found: {edits_dir}")
    edits = []
    for meta_file in sorted(edits_dir.glob("*.json")):
        meta = json.loads(meta_file.read_text())
        png = meta_file.with_suffix(".png")
        if "source" not in meta or not png.is_file():
            continue
        source = Path(meta["source"])
        if not source.is_absolute() and not source.is_file():
            source = sources_dir / source
        folder = source.parent.name if source.parent.resolve() != sources_dir.resolve() else None
        edits.append(
            {
                "edit": png,
                "source": source,
                "target": taxonomy.index(meta["emotion"]),
                "source_emotion": folder if folder in taxonomy.emotions else "unknown",
            }
        )
    if not edits:
        raise CoEmoGenError(f"no edits written by `coemogen edit` in {edits_dir}")
    return edits


def _bootstrap(cls, values: dict, idx: np.ndarray, rng: np.random.Generator, resamples: int) -> tuple[float, float]:
    """95% percentile interval of the metric over resampled edits, each computed by the metric."""
    stats = [cls.from_samples(values, "v", rng.choice(idx, len(idx))).compute() for _ in range(resamples)]
    return float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))


def evaluate_edits(
    edits_dir: str | Path,
    sources_dir: str | Path,
    out: str | Path,
    taxonomy: Taxonomy | None = None,
    networks: EditNetworks | None = None,
    seed: int = 0,
    num_resamples: int = 1000,
) -> dict:
    """The edit metrics per (source emotion -> target emotion) and overall, with 95% intervals;
    writes edits.json, edits.md and per_edit.json (every edit's value of every metric, in the edits'
    order: what a bootstrap over seeds resamples) into `out`; returns {"rows", "settings"}."""
    taxonomy = taxonomy or Taxonomy.default()
    edits_dir, sources_dir, out = Path(edits_dir), Path(sources_dir), Path(out)
    edits = read_edits(edits_dir, sources_dir, taxonomy)
    nets = networks or edit_networks(sources_dir, taxonomy)
    metrics = {key: cls(getattr(nets.lpips, "layer_weights", None)) if cls is PairedLPIPS else cls()
               for key, _, cls in EDIT_METRICS}  # fmt: skip
    for item in edits:
        edit, source = load_rgb(item["edit"]), load_rgb(item["source"])
        if source.size != edit.size:
            source = source.resize(edit.size, Image.LANCZOS)
        pair = torch.stack([pixels(edit), pixels(source)])
        metrics["psnr"].update(pair[:1], pair[1:])
        metrics["ssim"].update(pair[:1], pair[1:])
        maps = nets.lpips(_pair(edit, source, nets.lpips.image_size))
        metrics["lpips"].update([m[:1] for m in maps], [m[1:] for m in maps])
        feats = nets.clip(_pair(edit, source, nets.clip.image_size))
        metrics["clip_i"].update(feats[:1], feats[1:])
        logits = nets.emotion(_pair(edit, source, nets.emotion.image_size))
        target = torch.tensor([item["target"]])
        metrics["emo_a"].update(logits[:1], target)
        metrics["emo_s"].update(logits[:1], logits[1:], target)
    per_edit = {key: m.per_sample().numpy() for key, m in metrics.items()}
    cells = {"overall": np.arange(len(edits))}
    for pair_name in sorted({(e["source_emotion"], taxonomy.emotions[e["target"]]) for e in edits}):
        idx = [i for i, e in enumerate(edits) if (e["source_emotion"], taxonomy.emotions[e["target"]]) == pair_name]
        cells[f"{pair_name[0]} -> {pair_name[1]}"] = np.array(idx)
    rng = np.random.default_rng(seed)
    rows = []
    for name, idx in cells.items():
        row = {"edits": name, "n": len(idx)}
        for key, _, cls in EDIT_METRICS:
            values = {"v": per_edit[key]}
            value = cls.from_samples(values, "v", idx).compute()
            low, high = _bootstrap(cls, values, idx, rng, num_resamples)
            row[key] = {"value": value, "low": low, "high": high}
        rows.append(row)
    report = {
        "rows": rows,
        "settings": {"edits": str(edits_dir), "sources": str(sources_dir), "networks": nets.names(), "seed": seed,
                     "num_resamples": num_resamples},
    }  # fmt: skip
    table = format_table(
        [{"edits": r["edits"], "n": r["n"], **{label: _cell(r[key]) for key, label, _ in EDIT_METRICS}} for r in rows],
        ["edits", "n", *(label for _, label, _ in EDIT_METRICS)],
    )
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "edits.json", json.dumps(report, indent=1))
    write_text(out / "per_edit.json", json.dumps({key: values.tolist() for key, values in per_edit.items()}))
    write_text(out / "edits.md", table + "\n\nPSNR, SSIM, CLIP-I, Emo-A, Emo-S: higher is better; LPIPS: lower.\n")
    return report


def _pair(edit: Image.Image, source: Image.Image, size: int) -> torch.Tensor:
    """(edit, source) as one batch at a network's input size."""
    return torch.stack([to_tensor(edit, size), to_tensor(source, size)])


def _cell(estimate: dict) -> str:
    return f"{estimate['value']:.4g} [{estimate['low']:.3g}, {estimate['high']:.3g}]"
