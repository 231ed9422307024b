"""Judging valence and arousal: a V/A head (image features into two regression outputs, EmotiCrafter's
form), its training on a rated set (`coemogen va-head train`), the agreement of generated images
with the points they were asked for (`coemogen evaluate --va-head`), and the anchors of a
taxonomy fitted from rated data or from a head's verdicts (`coemogen va fit`).

A head is a folder with `head.safetensors` (a linear layer on L2-normalised features) and
`config.json` (its feature network, the emotions' scale note, its errors on held-out images). The
feature network is a CLIP (`clip:<model>`, image features as Sem-D takes them) or the FID-feature
network of a reference a client knows (`reference:<dataset>`: for a synthetic world, its
independent judges' features, which share nothing with the generator).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .. import registry
from ..data.images import load_rgb, to_tensor
from ..data.manifest import SkipCounter
from ..data.va import VARecord, read_va
from ..errors import CoEmoGenError
from ..io import save_safetensors, write_text
from ..taxonomy import VA_RANGE, Taxonomy
from .metrics import ValenceArousalAgreement

RIDGE = 1e-2  # the regression's L2 penalty on normalised features


def feature_network(spec: str):
    """`clip:<model id or folder>` or `reference:<dataset>` -> a callable on [0, 1] images with an
    `image_size` and a `name`."""
    kind, _, target = spec.partition(":")
    if kind == "clip" and target:
        from .networks import ClipFeatures

        return ClipFeatures(target)
    if kind == "reference" and target:
        networks = registry.reference_networks(target)
        if networks is None:
            raise CoEmoGenError(f"no client knows the reference {target}: use clip:<model> features")
        return networks.fid
    raise CoEmoGenError(f"unknown feature network '{spec}': use clip:<model> or reference:<dataset>")


@torch.no_grad()
def image_features(network, paths: list[Path], batch_size: int = 64, desc: str = "features") -> torch.Tensor:
    """L2-normalised features of the images at `paths`."""
    feats = []
    for start in tqdm(range(0, len(paths), batch_size), desc=desc, leave=False):
        pixels = torch.stack([to_tensor(load_rgb(p), network.image_size) for p in paths[start : start + batch_size]])
        feats.append(F.normalize(network(pixels).float(), dim=-1))
    return torch.cat(feats) if feats else torch.zeros(0, 1)


class VAHead:
    """(valence, arousal) in [-3, 3] of images, from a head folder of `train_va_head`."""

    def __init__(self, head_dir: str | Path) -> None:
        from safetensors.torch import load_file

        head_dir = Path(head_dir)
        if not (head_dir / "config.json").is_file():
            raise CoEmoGenError(f"no valence/arousal head in {head_dir} (train one with `coemogen va-head train`)")
        self.config = json.loads((head_dir / "config.json").read_text())
        self.network = feature_network(self.config["features"])
        state = load_file(head_dir / "head.safetensors")
        self.weight, self.bias = state["weight"], state["bias"]
        self.name = f"linear valence/arousal head on {self.network.name} ({head_dir})"

    @torch.no_grad()
    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        feats = F.normalize(self.network(pixels).float(), dim=-1)
        return (feats @ self.weight.T + self.bias).clamp(-VA_RANGE, VA_RANGE)

    def predict_paths(self, paths: list[Path], batch_size: int = 64) -> torch.Tensor:
        feats = image_features(self.network, paths, batch_size, "valence/arousal")
        return (feats @ self.weight.T + self.bias).clamp(-VA_RANGE, VA_RANGE)


def _splits(records: list[VARecord], seed: int) -> dict[str, list[VARecord]]:
    """The set's own train/test split, else a seeded 10% held out."""
    train = [r for r in records if r.split == "train"]
    test = [r for r in records if r.split == "test"]
    if train and test:
        return {"train": train, "test": test}
    order = torch.randperm(len(records), generator=torch.Generator().manual_seed(seed)).tolist()
    cut = max(1, len(records) // 10)
    return {"train": [records[i] for i in order[cut:]], "test": [records[i] for i in order[:cut]]}


def train_va_head(
    dataset: str | Path,
    out: str | Path,
    features: str,
    scale: str = "circumplex",
    seed: int = 0,
    taxonomy: Taxonomy | None = None,
) -> dict:
    """Fit the two regression outputs on the set's train split (ridge regression, closed form, on
    L2-normalised features); report the mean absolute errors and Spearman correlations on its test
    split (or a seeded 10% hold-out). Writes the head into `out` and returns its config."""
    skips = SkipCounter()
    records = read_va(dataset, scale, taxonomy, skips)
    splits = _splits(records, seed)
    network = feature_network(features)
    x = {s: image_features(network, [r.path for r in rs], desc=f"features ({s})") for s, rs in splits.items()}
    y = {s: torch.tensor([[r.valence, r.arousal] for r in rs], dtype=torch.float64) for s, rs in splits.items()}
    design = torch.cat([x["train"].double(), torch.ones(len(x["train"]), 1, dtype=torch.float64)], 1)
    penalty = RIDGE * torch.eye(design.shape[1], dtype=torch.float64)
    penalty[-1, -1] = 0  # the intercept is not penalised
    solution = torch.linalg.solve(design.T @ design + penalty, design.T @ y["train"])
    weight, bias = solution[:-1].T.float().contiguous(), solution[-1].float().contiguous()
    errors = {}
    for split in splits:
        metric = ValenceArousalAgreement()
        metric.update(y[split], (x[split] @ weight.T + bias).clamp(-VA_RANGE, VA_RANGE).double())
        errors[split] = {k: v for k, v in metric.compute().items() if k != "polarity_flips"}
    out = Path(out)
    save_safetensors({"weight": weight, "bias": bias}, out / "head.safetensors")
    config = {
        "features": features,
        "dataset": str(dataset),
        "scale": scale,
        "seed": seed,
        "ridge": RIDGE,
        "errors": errors,
        "num_images": {s: len(rs) for s, rs in splits.items()},
        "skipped": skips.total,
    }
    write_text(out / "config.json", json.dumps(config, indent=1))
    return config


def read_va_images(images_dir: str | Path) -> tuple[list[Path], torch.Tensor]:
    """The images under `images_dir` whose metadata JSON records the valence/arousal point they were
    made for (`generate --valence --arousal`), and those points."""
    paths, points = [], []
    for meta_path in sorted(Path(images_dir).rglob("*.json")):
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        image = meta_path.with_suffix(".png")
        if isinstance(meta, dict) and isinstance(meta.get("va"), list) and image.is_file():
            paths.append(image)
            points.append(meta["va"])
    if not paths:
        raise CoEmoGenError(
            f"no image under {images_dir} records a valence/arousal point (generate --valence --arousal)"
        )
    return paths, torch.tensor(points, dtype=torch.float64)


def evaluate_va(images_dir: str | Path, head: VAHead, out: str | Path | None = None) -> dict:
    """V-Error, A-Error, Spearman correlations and polarity flips of the images under `images_dir`
    against the points their metadata asked for; written to `out/va_metrics.json` when given."""
    paths, asked = read_va_images(images_dir)
    metric = ValenceArousalAgreement()
    metric.update(asked, head.predict_paths(paths).double())
    report = {**metric.compute(), "judge": head.name}
    if out is not None:
        write_text(Path(out) / "va_metrics.json", json.dumps(report, indent=1))
    return report


def fit_anchors(
    dataset: str | Path,
    taxonomy: Taxonomy,
    scale: str = "circumplex",
    head: VAHead | None = None,
) -> tuple[Taxonomy, dict[str, int]]:
    """Each emotion's anchor (the mean valence and arousal of its images) and spread (their root-mean-
    square distance from it) from a set with per-image ratings and emotion labels, or, with `head`,
    from the head's verdicts on an emotion-labelled set; returns the taxonomy with them and the
    images per emotion."""
    if head is None:
        records = [r for r in read_va(dataset, scale, taxonomy) if r.emotion]
        points = {r.path: (r.valence, r.arousal) for r in records}
        labelled = [(r.path, taxonomy.emotions[taxonomy.index(r.emotion)]) for r in records]
    else:
        from ..data.readers import read_dataset

        items = read_dataset(dataset, taxonomy)
        labelled = [(it.path, it.emotion) for it in items]
        predicted = head.predict_paths([p for p, _ in labelled]).tolist()
        points = {p: tuple(v) for (p, _), v in zip(labelled, predicted)}
    anchors, counts = {}, {}
    for emotion in taxonomy.emotions:
        values = np.array([points[p] for p, e in labelled if e == emotion])
        if len(values) == 0:
            continue
        centre = values.mean(0)
        spread = float(np.sqrt(((values - centre) ** 2).sum(1).mean())) if len(values) > 1 else 1.0
        anchors[emotion] = {
            "valence": round(float(centre[0]), 4),
            "arousal": round(float(centre[1]), 4),
            "spread": round(max(spread, 1e-3), 4),
        }
        counts[emotion] = len(values)
    if not anchors:
        raise CoEmoGenError(f"no image of {dataset} has both an emotion of the taxonomy and a rating")
    source = f"fitted by `coemogen va fit` on {dataset} ({'the head ' + head.name if head else 'its ratings'})"
    return taxonomy.with_anchors(anchors, source), counts
