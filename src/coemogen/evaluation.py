"""`coemogen evaluate`: FID, LPIPS, Emo-A, Sem-C, Sem-D per emotion and overall (EmoGen protocol).

Networks (metric_networks.py): for a synthetic-world reference, the world's independent judges
(emotion classifier, scene and object classifiers, feature network) and the pocket CLIP for
Sem-D; for real data, Inception FID, LPIPS-alex, a CLIP emotion head, torchvision scene/object
classifiers and CLIP ViT-L/14. Every report names the networks it used.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from .data.images import ImageLoadError, load_rgb, to_tensor
from .data.manifest import SkipCounter
from .data.readers import read_dataset
from .errors import CoEmoGenError
from .loaders import ASSETS, POCKET_CLIP
from .metric_networks import AlexNetLPIPS, ClipEmotionHead, ClipFeatures, InceptionFeatures, TorchvisionClassifier
from .metrics import EmotionAccuracy, FrechetDistance, PairwiseDistance, SemanticConsistency
from .pipeline import image_grid
from .tables import format_table
from .taxonomy import Taxonomy

EVALUATORS = ASSETS / "evaluators"
METRICS = ("fid", "lpips", "emo_a", "sem_c", "sem_d", "polarity_acc")


def load_generated(images_dir: str | Path, taxonomy: Taxonomy, skips: SkipCounter) -> dict[str, list[Image.Image]]:
    """Generated images by emotion: from each PNG's metadata JSON, else an emotion-named sub-folder,
    else an `<emotion>_` file-name prefix."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise CoEmoGenError(f"images folder not found: {images_dir}")
    out: dict[str, list[Image.Image]] = {}
    for path in sorted(images_dir.rglob("*.png")) + sorted(images_dir.rglob("*.jpg")):
        if path.stem.endswith("grid"):
            continue
        meta = path.with_suffix(".json")
        if meta.is_file():
            emotion = json.loads(meta.read_text())["emotion"]
        elif path.parent != images_dir:
            emotion = path.parent.name
        else:
            emotion = path.stem.rsplit("_", 1)[0]
        try:
            name = taxonomy.emotions[taxonomy.index(emotion)]
            out.setdefault(name, []).append(load_rgb(path))
        except (CoEmoGenError, ImageLoadError) as err:
            skips.skip(str(path), str(err).split(";")[0])
    if not out:
        raise CoEmoGenError(f"no generated images with a known emotion in {images_dir}")
    return out


class _WorldNetwork:
    """One role of the world's independent CNNs (see world/evaluators.py)."""

    def __init__(self, model, role: str, name: str) -> None:
        self.model, self.role, self.name = model, role, name
        self.image_size = model.config["image_size"]

    @torch.no_grad()
    def __call__(self, pixels: torch.Tensor):
        if self.role == "features":
            return self.model.features(pixels)
        if self.role == "maps":
            return self.model.feature_maps(pixels)
        logits = self.model(pixels)[self.role]
        return logits if self.role == "emotion" else logits.softmax(1)  # Emo-A wants logits, Sem-C probabilities


@dataclass
class MetricNetworks:
    """Which network computes each metric: `fid` features, `lpips` feature maps (optional
    `layer_weights`), `emotion` logits, `scene` / `object` probabilities, `clip` features."""

    fid: Callable
    lpips: Callable
    emotion: Callable
    scene: Callable
    object: Callable
    clip: Callable

    def names(self) -> dict[str, str]:
        return {
            "fid": self.fid.name,
            "lpips": self.lpips.name,
            "emo_a": self.emotion.name,
            "sem_c": f"scene: {self.scene.name}; object: {self.object.name}",
            "sem_d": self.clip.name,
        }

    @classmethod
    def world(
        cls, evaluators_dir: str | Path = EVALUATORS, clip_model_name_or_path: str | Path = POCKET_CLIP
    ) -> MetricNetworks:
        """The synthetic world's judges (trained on world images, sharing no weights with CoEmoGen)."""
        from .world.evaluators import WorldCNN

        evaluators_dir = Path(evaluators_dir)
        if not (evaluators_dir / "emotion-judge").is_dir():
            raise CoEmoGenError(f"no world evaluators in {evaluators_dir} (build them with `coemogen world judges`)")
        judge = WorldCNN.load(evaluators_dir / "emotion-judge")
        semantics = WorldCNN.load(evaluators_dir / "semantics")
        return cls(
            fid=_WorldNetwork(semantics, "features", "world feature network (semantics CNN, pooled last stage)"),
            lpips=_WorldNetwork(semantics, "maps", "LPIPS form with uniform layer weights on the world semantics CNN"),
            emotion=_WorldNetwork(judge, "emotion", "world emotion judge (independent CNN)"),
            scene=_WorldNetwork(semantics, "scene", "world scene judge"),
            object=_WorldNetwork(semantics, "object", "world object judge"),
            clip=ClipFeatures(clip_model_name_or_path),
        )


def build_metric_networks(
    reference: str | Path,
    taxonomy: Taxonomy,
    fid: str = "auto",
    inception_weights: str | None = None,
    lpips: str = "auto",
    alexnet_weights: str | None = None,
    lpips_lin_weights: str | None = None,
    lpips_size: int = 256,
    emotion_classifier: str | None = None,
    scene_classifier: str | None = None,
    object_classifier: str | None = None,
    clip_model_name_or_path: str | None = None,
    evaluators: str | Path | None = None,
) -> MetricNetworks:
    """Networks for `coemogen evaluate`. `auto` picks the world's judges when the reference is a
    synthetic world, else the paper's: Inception FID, LPIPS-alex, a CLIP emotion head, torchvision
    scene/object classifiers and CLIP ViT-L/14 for Sem-D. Explicit options override each role."""
    in_world = (Path(reference) / "truth.jsonl").is_file()
    world = MetricNetworks.world(evaluators or EVALUATORS, clip_model_name_or_path or POCKET_CLIP) if in_world else None
    if fid == "auto":
        fid = "world" if in_world else "inception"
    if lpips == "auto":
        lpips = "world" if in_world else "alex"

    def pick(role: str, chosen: bool, build: Callable, flag: str):
        """The network the options chose, else the world's, else an error naming the flag."""
        if chosen:
            return build()
        if world is None:
            raise CoEmoGenError(
                f"{role} for a non-world reference needs {flag} (the world's judges only know world images)"
            )
        return getattr(world, role)

    def alexnet() -> AlexNetLPIPS:
        if alexnet_weights is None:
            raise CoEmoGenError("LPIPS-alex needs --alexnet-weights (a torchvision AlexNet weights file)")
        return AlexNetLPIPS(alexnet_weights, lpips_lin_weights, lpips_size)

    return MetricNetworks(
        fid=pick("fid", fid == "inception", lambda: InceptionFeatures(inception_weights), "--fid-features inception"),
        lpips=pick("lpips", lpips == "alex", alexnet, "--lpips-net alex"),
        emotion=pick(
            "emotion",
            bool(emotion_classifier),
            lambda: ClipEmotionHead(emotion_classifier, taxonomy),
            "--emotion-classifier (see `coemogen emotion-head train`)",
        ),
        scene=pick(
            "scene", bool(scene_classifier), lambda: TorchvisionClassifier(scene_classifier), "--scene-classifier"
        ),
        object=pick(
            "object", bool(object_classifier), lambda: TorchvisionClassifier(object_classifier), "--object-classifier"
        ),
        clip=world.clip if world else ClipFeatures(clip_model_name_or_path or "openai/clip-vit-large-patch14"),
    )


def _batches(images: list[Image.Image], sizes: set[int], batch: int = 64):
    """Batches of the same images at every size the networks ask for."""
    for i in range(0, len(images), batch):
        yield {s: torch.stack([to_tensor(im, s) for im in images[i : i + batch]]) for s in sizes}


def evaluate(
    images_dir: str | Path,
    reference: str | Path,
    out: str | Path,
    taxonomy: Taxonomy | None = None,
    num_pairs: int = 1000,
    seed: int = 0,
    max_reference: int = 500,
    networks: MetricNetworks | None = None,
) -> dict:
    """Compute the metrics and write metrics.json, metrics.md and report.html into `out`."""
    taxonomy = taxonomy or Taxonomy.default()
    skips = SkipCounter()
    generated = load_generated(images_dir, taxonomy, skips)
    ref_items = read_dataset(reference, taxonomy, SkipCounter())
    test_items = [it for it in ref_items if it.split in (None, "test")] or ref_items
    nets = networks or build_metric_networks(reference, taxonomy)
    sizes = {n.image_size for n in (nets.fid, nets.lpips, nets.emotion, nets.scene, nets.object, nets.clip)}
    lpips_weights = getattr(nets.lpips, "layer_weights", None)
    overall_fid = FrechetDistance()
    per_emotion, all_emo, all_semc = {}, EmotionAccuracy(_groups(taxonomy)), SemanticConsistency()
    for emotion, images in tqdm(sorted(generated.items()), desc="evaluate"):
        target = taxonomy.index(emotion)
        fid, emo, semc = FrechetDistance(), EmotionAccuracy(_groups(taxonomy)), SemanticConsistency()
        lpips = PairwiseDistance("lpips", num_pairs, seed, lpips_weights)
        sem_d, sem_d_cos = PairwiseDistance("mse", num_pairs, seed), PairwiseDistance("cosine", num_pairs, seed)
        for px in _batches(images, sizes):
            feats, logits = nets.fid(px[nets.fid.image_size]), nets.emotion(px[nets.emotion.image_size])
            fid.update(feats, real=False)
            overall_fid.update(feats, real=False)
            targets = torch.full((len(logits),), target)
            for m in (emo, all_emo):
                m.update(logits, targets)
            scene, obj = nets.scene(px[nets.scene.image_size]), nets.object(px[nets.object.image_size])
            for m in (semc, all_semc):
                m.update(scene, obj)
            lpips.update(nets.lpips(px[nets.lpips.image_size]))
            clip = nets.clip(px[nets.clip.image_size])
            sem_d.update(clip)
            sem_d_cos.update(clip)
        refs = [it for it in test_items if it.emotion == emotion]
        if len(refs) < 2:  # a tiny reference set: fall back to every split of this emotion
            refs = [it for it in ref_items if it.emotion == emotion]
        refs = refs[:max_reference]
        ref_images = [load_rgb(it.path) for it in refs]
        for px in _batches(ref_images, {nets.fid.image_size}):
            feats = nets.fid(px[nets.fid.image_size])
            fid.update(feats, real=True)
            overall_fid.update(feats, real=True)
        acc = emo.compute()
        per_emotion[emotion] = {
            "fid": fid.compute() if len(ref_images) >= 2 and len(images) >= 2 else float("nan"),
            "lpips": lpips.compute(),
            "emo_a": acc["emo_a"],
            "sem_c": semc.compute(),
            "sem_d": sem_d.compute(),
            "sem_d_cosine": sem_d_cos.compute(),
            "polarity_acc": acc["polarity_acc"],
            "target_prob": acc["target_prob"],
            "num_images": len(images),
            "num_reference": len(ref_images),
        }
    acc = all_emo.compute()
    mean = lambda key: sum(m[key] for m in per_emotion.values()) / len(per_emotion)  # noqa: E731
    overall = {
        "fid": overall_fid.compute(),
        "fid_mean_per_emotion": mean("fid"),
        "lpips": mean("lpips"),
        "emo_a": acc["emo_a"],
        "sem_c": all_semc.compute(),
        "sem_d": mean("sem_d"),
        "sem_d_cosine": mean("sem_d_cosine"),
        "polarity_acc": acc["polarity_acc"],
        "target_prob": acc["target_prob"],
        "num_images": sum(len(v) for v in generated.values()),
    }
    report = {
        "overall": overall,
        "per_emotion": per_emotion,
        "settings": {
            "images": str(images_dir),
            "reference": str(reference),
            "num_pairs": num_pairs,
            "seed": seed,
            "max_reference": max_reference,
            "networks": nets.names(),
            "skipped": skips.total,
            "skip_reasons": dict(skips.reasons),
        },
    }
    write_report(report, generated, out)
    return report


def _groups(taxonomy: Taxonomy) -> list[int]:
    return [taxonomy.group_index_of(e) for e in taxonomy.emotions]


def markdown_table(report: dict) -> str:
    rows = [{"emotion": e, **m} for e, m in report["per_emotion"].items()] + [
        {"emotion": "overall", **report["overall"]}
    ]
    return format_table(rows, ["emotion", *METRICS])


def write_report(report: dict, generated: dict[str, list[Image.Image]], out: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(report, indent=1))
    table = markdown_table(report)
    (out / "metrics.md").write_text(table + "\n")
    emotions = list(report["per_emotion"])
    fig, axes = plt.subplots(1, 5, figsize=(16, 3))
    for ax, key in zip(axes, METRICS[:5]):
        ax.bar(emotions, [report["per_emotion"][e][key] for e in emotions], color="tab:blue")
        ax.set_title(key)
        ax.tick_params(axis="x", rotation=60, labelsize=7)
    fig.tight_layout()
    charts = _png_data(fig)
    plt.close(fig)
    sections = []
    for emotion in emotions:
        grid = image_grid(generated[emotion][:16], columns=8)
        sections.append(
            f"<h3>{emotion}</h3><img src='{_png_data(grid)}' style='image-rendering:pixelated;"
            f"width:{min(100, 12 * len(generated[emotion][:8]))}%'>"
        )
    rows = "".join(
        "<tr>" + "".join(f"<td>{c.strip()}</td>" for c in line.strip("|").split("|")) + "</tr>"
        for i, line in enumerate(table.splitlines())
        if i != 1
    )
    html = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>CoEmoGen evaluation</title></head><body>"
        f"<h1>CoEmoGen evaluation</h1><table border=1 cellpadding=4>{rows}</table>"
        f"<p>Networks: {json.dumps(report['settings']['networks'])}</p><img src='{charts}' width='100%'>"
        f"{''.join(sections)}</body></html>"
    )
    (out / "report.html").write_text(html)
    return out


def _png_data(obj) -> str:
    buf = io.BytesIO()
    if isinstance(obj, Image.Image):
        obj.save(buf, format="PNG")
    else:
        obj.savefig(buf, format="png", dpi=80)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
