"""The synthetic worlds' valence and arousal: each image rated the way people's ratings behave, its
emotion's anchor plus a variation driven by what the image shows.

The rule, fixed before any method ran on it (docs/va/hypotheses.md):
- valence = the emotion's anchor + 0.5 x the mean of two z-scores within the emotion: the image's
  brightness and its colourfulness (brighter, more colourful: more pleasant);
- arousal = the emotion's anchor + 0.5 x the z-score within the emotion of its visual activity, the
  mean absolute difference between neighbouring pixels (busier, larger-contrast scenes: more arousing);
- both clipped to [-3, 3]. The anchors are the taxonomy's (for the Mikels emotions, Warriner et al.
  2013). Deterministic: the same world gives the same ratings.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from ..io import write_text
from ..taxonomy import VA_RANGE, Taxonomy

SPREAD = 0.5  # per-image variation around the anchor, in z-score units of the content statistics


def content_statistics(image: Image.Image) -> tuple[float, float, float]:
    """(brightness, colourfulness, activity) of an image: the mean of the channel maximum, Hasler and
    Suesstrunk's colourfulness, and the mean absolute difference of neighbouring pixels."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    brightness = rgb.max(axis=2).mean()
    rg, yb = rgb[..., 0] - rgb[..., 1], 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    colourfulness = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    grey = rgb.mean(axis=2)
    activity = 0.5 * (np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean())
    return float(brightness), float(colourfulness), float(activity)


def _z(values: np.ndarray) -> np.ndarray:
    std = values.std()
    return (values - values.mean()) / std if std > 0 else np.zeros_like(values)


def rate_world(root: str | Path, taxonomy: Taxonomy) -> int:
    """Add `valence` and `arousal` to every annotation of the world at `root` (from its split files);
    returns the images rated. A taxonomy without anchors rates nothing."""
    root = Path(root)
    anchors = {e: (v, a) for e, v, a, _ in taxonomy.anchors}
    if not anchors:
        return 0
    records = []
    for split in ("train", "val", "test"):
        if (root / f"{split}.json").is_file():
            records += json.loads((root / f"{split}.json").read_text())
    by_emotion: dict[str, list[tuple[str, tuple[float, float, float]]]] = {}
    for emotion, image_path, ann_path in ((r[0], r[-2], r[-1]) for r in records):
        if emotion in anchors:
            with Image.open(root / image_path) as image:
                by_emotion.setdefault(emotion, []).append((ann_path, content_statistics(image)))
    for emotion, rows in by_emotion.items():
        stats = np.array([s for _, s in rows])
        valence = anchors[emotion][0] + SPREAD * 0.5 * (_z(stats[:, 0]) + _z(stats[:, 1]))
        arousal = anchors[emotion][1] + SPREAD * _z(stats[:, 2])
        for (ann_path, _), v, a in zip(rows, valence, arousal):
            annotation = json.loads((root / ann_path).read_text())
            annotation["valence"] = round(float(np.clip(v, -VA_RANGE, VA_RANGE)), 3)
            annotation["arousal"] = round(float(np.clip(a, -VA_RANGE, VA_RANGE)), 3)
            write_text(root / ann_path, json.dumps(annotation))
    return sum(len(rows) for rows in by_emotion.values())
