"""`coemogen evaluate`: FID, LPIPS, Emo-A, Sem-C, Sem-D per emotion and overall (EmoGen protocol).

Networks: in the synthetic world, the world's independent judges (emotion classifier, scene and
object classifiers, feature network) and the pocket CLIP for Sem-D. Every report names the
networks it used, so a world figure is never mistaken for an Inception/LPIPS-alex figure.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from .clip import ClipImagePreprocessor, image_embeds
from .data.images import ImageLoadError, load_rgb, to_tensor
from .data.manifest import SkipCounter
from .data.readers import read_dataset
from .errors import CoEmoGenError
from .loaders import ASSETS, POCKET_CLIP, _load
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


class WorldJudges:
    """The synthetic world's evaluators plus a CLIP for Sem-D."""

    def __init__(self, evaluators_dir: str | Path = EVALUATORS, clip_model_name_or_path: str | Path = POCKET_CLIP):
        from transformers import CLIPImageProcessor, CLIPModel

        from .world.evaluators import WorldCNN

        evaluators_dir = Path(evaluators_dir)
        if not (evaluators_dir / "emotion-judge").is_dir():
            raise CoEmoGenError(f"no world evaluators in {evaluators_dir} (build them with `coemogen world judges`)")
        self.judge = WorldCNN.load(evaluators_dir / "emotion-judge")
        self.semantics = WorldCNN.load(evaluators_dir / "semantics")
        self.clip = _load(CLIPModel.from_pretrained, str(clip_model_name_or_path), "a CLIP model").eval()
        processor = _load(CLIPImageProcessor.from_pretrained, str(clip_model_name_or_path), "a CLIP image processor")
        self.clip_preprocess = ClipImagePreprocessor.from_clip(self.clip, processor)
        self.names = {
            "fid": "world feature network (semantics CNN, pooled last stage)",
            "lpips": "LPIPS form with uniform layer weights on the world semantics CNN",
            "emo_a": "world emotion judge (independent CNN)",
            "sem_c": "world scene and object judges",
            "sem_d": f"CLIP image features ({clip_model_name_or_path})",
        }

    @torch.no_grad()
    def run(self, pixels: torch.Tensor) -> dict:
        sem = self.semantics(pixels)
        return {
            "features": self.semantics.features(pixels),
            "maps": self.semantics.feature_maps(pixels),
            "emotion_logits": self.judge(pixels)["emotion"],
            "scene_probs": sem["scene"].softmax(1),
            "object_probs": sem["object"].softmax(1),
            "clip": image_embeds(self.clip, self.clip_preprocess(pixels)),
        }


def _batches(images: list[Image.Image], size: int, batch: int = 128):
    for i in range(0, len(images), batch):
        yield torch.stack([to_tensor(im, size) for im in images[i : i + batch]])


def evaluate(
    images_dir: str | Path,
    reference: str | Path,
    out: str | Path,
    taxonomy: Taxonomy | None = None,
    num_pairs: int = 1000,
    seed: int = 0,
    max_reference: int = 500,
    judges: WorldJudges | None = None,
) -> dict:
    """Compute the metrics and write metrics.json, metrics.md and report.html into `out`."""
    taxonomy = taxonomy or Taxonomy.default()
    skips = SkipCounter()
    generated = load_generated(images_dir, taxonomy, skips)
    ref_items = read_dataset(reference, taxonomy, SkipCounter())
    test_items = [it for it in ref_items if it.split in (None, "test")] or ref_items
    judges = judges or WorldJudges()
    size = judges.judge.config["image_size"]
    overall_fid = FrechetDistance()
    per_emotion, all_emo, all_semc = {}, EmotionAccuracy(_groups(taxonomy)), SemanticConsistency()
    for emotion, images in tqdm(sorted(generated.items()), desc="evaluate"):
        target = taxonomy.index(emotion)
        fid, emo, semc = FrechetDistance(), EmotionAccuracy(_groups(taxonomy)), SemanticConsistency()
        lpips = PairwiseDistance("lpips", num_pairs, seed)
        sem_d, sem_d_cos = PairwiseDistance("mse", num_pairs, seed), PairwiseDistance("cosine", num_pairs, seed)
        for pixels in _batches(images, size):
            r = judges.run(pixels)
            fid.update(r["features"], real=False)
            overall_fid.update(r["features"], real=False)
            targets = torch.full((len(pixels),), target)
            for m in (emo, all_emo):
                m.update(r["emotion_logits"], targets)
            for m in (semc, all_semc):
                m.update(r["scene_probs"], r["object_probs"])
            lpips.update(r["maps"])
            sem_d.update(r["clip"])
            sem_d_cos.update(r["clip"])
        refs = [it for it in test_items if it.emotion == emotion]
        if len(refs) < 2:  # a tiny reference set: fall back to every split of this emotion
            refs = [it for it in ref_items if it.emotion == emotion]
        refs = refs[:max_reference]
        ref_images = [load_rgb(it.path) for it in refs]
        for pixels in _batches(ref_images, size):
            feats = judges.run(pixels)["features"]
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
            "networks": judges.names,
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
