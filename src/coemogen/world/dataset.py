"""Write the synthetic world as an EmoSet-118K-layout dataset, and its neutral corpus."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..io import atomic_output, write_text
from ..taxonomy import Taxonomy
from .renderer import render
from .scenes import ACTIONS, CONTENT, EXPRESSIONS, OBJECTS, SCENES, SceneSpec, describe, sample_scene
from .va import rate_world

SPLITS = (("train", 0.80), ("val", 0.05), ("test", 0.15))
ATTRIBUTE_DROP = 0.15  # EmoSet leaves attributes out; so do we, at this rate per attribute


def image_stats(image: Image.Image) -> tuple[float, float]:
    """EmoSet-style brightness and colourfulness in 0..1, one decimal."""
    rgb = np.asarray(image, dtype=np.float32) / 255.0
    brightness = float(rgb.max(axis=2).mean())
    rg, yb = rgb[..., 0] - rgb[..., 1], 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    colorfulness = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    return round(brightness, 1), round(float(min(1.0, colorfulness * 2.0)), 1)


def build_world(
    out: str | Path,
    images_per_emotion: int = 500,
    seed: int = 0,
    size: int = 64,
    content_noise: float = 0.2,
    style: str = "photo",
    taxonomy: Taxonomy | None = None,
) -> Path:
    """Render `images_per_emotion` images per emotion of `taxonomy` (default: the 8 Mikels
    emotions) into `out` in the EmoSet layout, as photographs or (`style="art"`) as paintings.

    Besides EmoSet's own files, `truth.jsonl` keeps each image's complete scene description
    (the oracle captioner and the Sem-C judges read it; EmoSet annotations may omit fields).
    Every file is written atomically and `info.json` last, so a killed build re-run gives the same
    bytes.
    """
    out = Path(out)
    taxonomy = taxonomy or Taxonomy.default()
    rng = random.Random(seed)
    records: dict[str, list[list[str]]] = {name: [] for name, _ in SPLITS}
    truth = []
    total = images_per_emotion * taxonomy.num_emotions
    with tqdm(total=total, desc="world build", unit="img") as bar:
        for emotion in taxonomy.emotions:
            for n in range(images_per_emotion):
                spec = sample_scene(emotion, rng, content_noise)
                image = render(spec, size, style)
                image_id = f"{emotion}_{n:05d}"
                image_path = f"image/{emotion}/{image_id}.jpg"
                ann_path = f"annotation/{emotion}/{image_id}.json"
                with atomic_output(out / image_path) as tmp:
                    image.save(tmp, format="JPEG", quality=95)
                brightness, colorfulness = image_stats(image)
                annotation = {
                    "emotion": emotion,
                    "image_id": image_id,
                    "brightness": brightness,
                    "colorfulness": colorfulness,
                    "scene": spec.scene,
                    "object": [o.replace("_", " ").title() for o in spec.objects],
                }
                if spec.expression:
                    annotation["facial_expression"] = spec.expression
                    annotation["human_action"] = spec.action.replace("_", " ")
                for key in ("brightness", "colorfulness", "scene", "object", "facial_expression", "human_action"):
                    if key in annotation and rng.random() < ATTRIBUTE_DROP:
                        del annotation[key]
                write_text(out / ann_path, json.dumps(annotation))
                split = _pick_split(rng)
                records[split].append([emotion, image_path, ann_path])
                truth.append({"image_id": image_id, "image_path": image_path, **asdict(spec)})
                bar.update()
    for split, items in records.items():
        write_text(out / f"{split}.json", json.dumps(items))
    write_text(out / "truth.jsonl", "".join(json.dumps(t) + "\n" for t in truth))
    rate_world(out, taxonomy)  # valence and arousal in the annotations (world/va.py)
    info = {
        "emotion": {"label2idx": {e: i for i, e in enumerate(taxonomy.emotions)}},
        "world": {
            "seed": seed,
            "images_per_emotion": images_per_emotion,
            "size": size,
            "content_noise": content_noise,
            "style": style,
        },
        "scene": {"label2idx": {s: i for i, s in enumerate(SCENES)}},
        "object": {"label2idx": {o: i for i, o in enumerate(OBJECTS)}},
    }
    write_text(out / "info.json", json.dumps(info, indent=1))
    return out


def _pick_split(rng: random.Random) -> str:
    u, acc = rng.random(), 0.0
    for name, share in SPLITS:
        acc += share
        if u < acc:
            return name
    return SPLITS[-1][0]


def neutral_specs(n: int, seed: int) -> Iterator[SceneSpec]:
    """Scenes drawn from the whole vocabulary with no emotion behind them (pretraining corpus)."""
    rng = random.Random(seed)
    for _ in range(n):
        spec = sample_scene(rng.choice(list(CONTENT)), rng, content_noise=0.0)
        # Decouple content from lighting and from each other: no emotion is implied.
        spec.scene = rng.choice(SCENES)
        spec.objects = list(dict.fromkeys(rng.choice(OBJECTS) for _ in range(rng.choice([1, 2, 2, 3]))))
        if spec.expression is not None:
            spec.expression, spec.action = rng.choice(EXPRESSIONS), rng.choice(ACTIONS)
        positive = rng.random() < 0.5
        spec.brightness = rng.uniform(0.6, 0.95) if positive else rng.uniform(0.15, 0.5)
        spec.saturation = rng.uniform(0.55, 0.95) if rng.random() < 0.5 else rng.uniform(0.05, 0.4)
        yield spec


def write_corpus(out: str | Path, n: int = 8000, seed: int = 1, size: int = 64) -> Path:
    """Write the neutral corpus: images plus `captions.jsonl` (file, caption)."""
    out = Path(out)
    lines = []
    for i, spec in enumerate(tqdm(neutral_specs(n, seed), total=n, desc="corpus", unit="img")):
        name = f"images/{i:06d}.png"
        with atomic_output(out / name) as tmp:
            render(spec, size).save(tmp, format="PNG")
        lines.append(json.dumps({"file": name, "caption": describe(spec)}) + "\n")
    write_text(out / "captions.jsonl", "".join(lines))
    return out


def read_truth(root: str | Path) -> dict[str, SceneSpec]:
    """image_path (relative to the world root) -> the scene that was rendered there.

    Keys that are not `SceneSpec` fields are ignored, so worlds written by earlier versions (whose
    records also carried an always-empty "extras") still load."""
    fields = SceneSpec.__dataclass_fields__
    truth = {}
    for line in (Path(root) / "truth.jsonl").read_text().splitlines():
        item = json.loads(line)
        truth[item["image_path"]] = SceneSpec(**{k: item[k] for k in fields})
    return truth
