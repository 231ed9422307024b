"""`coemogen analyze timesteps`: when in the denoising does the emotion enter?

For k in `ks`, generate with the emotion active only during the first k of T steps, and only
during the last k (`EmotionWindow`), at three levels: the whole emotion (condition and every
adapter; outside the window a neutral condition and no adapters), the emotion-specific LoRAs alone,
and the polarity-shared LoRAs alone (the rest on throughout). Every setting draws the same seeds, so
settings differ only in the window. Each is judged for Emo-A and polarity accuracy; the results,
a plot against k and image strips go into the output folder. Settings already judged are kept
(`results.jsonl`), so a killed analysis resumes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from ..data.images import image_grid, to_tensor
from ..errors import CoEmoGenError
from ..evaluation.metrics import EmotionAccuracy, PolarityAccuracy
from ..io import atomic_output, write_text
from ..pipelines.pipeline_coemogen import CoEmoGenPipeline, EmotionWindow
from ..tables import format_table

LEVEL_NAMES = {"all": "whole emotion", "emotion": "emotion-specific LoRAs", "group": "polarity-shared LoRAs"}


@dataclass(frozen=True)
class Setting:
    level: str
    direction: str  # first | last
    k: int
    steps: int

    @property
    def window(self) -> EmotionWindow:
        start, stop = (0, self.k) if self.direction == "first" else (self.steps - self.k, self.steps)
        return EmotionWindow(start, stop, self.level)

    @property
    def key(self) -> str:
        """Settings that generate the same images share a key (k = T: everything on, at any level)."""
        if self.k == self.steps:
            return "full"
        if self.k == 0:
            return f"{self.level}-off"
        return f"{self.level}-{self.direction}-{self.k}"


def settings(ks: list[int], steps: int, levels: tuple[str, ...] = tuple(LEVEL_NAMES)) -> list[Setting]:
    return [Setting(level, direction, k, steps) for level in levels for direction in ("first", "last") for k in ks]


def _judge(images: list[Image.Image], targets: list[int], judge, groups: list[int]) -> dict[str, float]:
    emo_a, polarity = EmotionAccuracy(), PolarityAccuracy(groups)
    for i in range(0, len(images), 64):
        px = torch.stack([to_tensor(im, judge.image_size) for im in images[i : i + 64]])
        logits, target = judge(px), torch.tensor(targets[i : i + 64])
        emo_a.update(logits, target)
        polarity.update(logits, target)
    return {"emo_a": emo_a.compute(), "polarity_acc": polarity.compute(), "num_images": len(images)}


def analyze_timesteps(
    model: str | Path | None,
    out: str | Path,
    num_images: int = 8,
    num_inference_steps: int = 15,
    ks: list[int] | None = None,
    seed: int = 0,
    device: str | None = None,
    levels: tuple[str, ...] = tuple(LEVEL_NAMES),
    emotion_classifier: str | None = None,
    emotion_clip: str | None = None,
) -> list[dict]:
    """Run every setting (resumable); write results.jsonl, timesteps.json/.md, timesteps.png and
    strips/<level>-<direction>.png (columns: k; rows: two images of one emotion per group).
    The judge is the world's emotion judge, or `emotion_classifier` (a head folder or a published
    head file, with `emotion_clip`) for a real-data run."""
    from ..evaluation.emotion_head import emotion_head
    from ..world.judges import world_networks

    out = Path(out)
    (out / "strips").mkdir(parents=True, exist_ok=True)
    ks = sorted(set(ks if ks is not None else range(0, num_inference_steps + 1, 3)) | {0, num_inference_steps})
    if ks[0] < 0 or ks[-1] > num_inference_steps:
        raise CoEmoGenError(f"every k must lie in [0, {num_inference_steps}], got {ks}")
    pipe = CoEmoGenPipeline.from_pretrained(model, device=device)
    taxonomy = pipe.taxonomy
    if emotion_classifier:
        judge = emotion_head(emotion_classifier, emotion_clip, taxonomy)
    else:
        judge = world_networks().emotion
    groups = [taxonomy.group_index_of(e) for e in taxonomy.emotions]
    done_path = out / "results.jsonl"
    done = {}
    if done_path.is_file():
        for line in done_path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                done[record["key"]] = record
    # strip rows: two images of the first emotion of every group (e.g. one positive, one negative)
    strip_emotions = [taxonomy.index(members[0]) for _, members in taxonomy.groups]
    todo = settings(ks, num_inference_steps, levels)
    for setting in tqdm(todo, desc="timestep settings"):
        cell = out / "strips" / "cells" / f"{setting.key}.png"
        if setting.key in done and cell.is_file():
            continue
        images, targets = [], []
        for emotion in taxonomy.emotions:
            made = pipe(
                emotion,
                num_images=num_images,
                seed=seed,
                num_inference_steps=num_inference_steps,
                emotion_window=setting.window,
            )
            images += made.images
            targets += [taxonomy.index(emotion)] * num_images
        column = [images[e * num_images + i] for e in strip_emotions for i in range(min(2, num_images))]
        cell.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(cell) as tmp:
            image_grid(column, columns=1).save(tmp, format="PNG")
        if setting.key not in done:
            record = {"key": setting.key, **_judge(images, targets, judge, groups)}
            with open(done_path, "a", encoding="utf-8") as f:  # one line per setting: resumable
                f.write(json.dumps(record) + "\n")
            done[setting.key] = record
    for level in levels:
        for direction in ("first", "last"):
            cells = [
                Image.open(out / "strips" / "cells" / f"{Setting(level, direction, k, num_inference_steps).key}.png")
                for k in ks
            ]
            with atomic_output(out / "strips" / f"{level}-{direction}.png") as tmp:
                image_grid([c.convert("RGB") for c in cells], columns=len(cells)).save(tmp, format="PNG")
    results = [
        {"level": s.level, "direction": s.direction, "k": s.k, **{m: done[s.key][m] for m in ("emo_a", "polarity_acc")}}
        for s in todo
    ]
    settings_record = {
        "model": str(model or "shipped world run"),
        "num_images_per_emotion": num_images,
        "num_inference_steps": num_inference_steps,
        "ks": ks,
        "seed": seed,
        "judge": judge.name,
    }
    write_text(out / "timesteps.json", json.dumps({"settings": settings_record, "results": results}, indent=1))
    table = format_table(
        [
            {
                "level": LEVEL_NAMES[r["level"]],
                "emotion during": f"{r['direction']} {r['k']}",
                "Emo-A": r["emo_a"],
                "polarity": r["polarity_acc"],
            }
            for r in results
        ],  # fmt: skip
        ["level", "emotion during", "Emo-A", "polarity"],
    )
    write_text(out / "timesteps.md", table + "\n")
    plot(results, num_inference_steps, out / "timesteps.png")
    return results


def plot(results: list[dict], steps: int, path: Path) -> Path:
    """Emo-A and polarity accuracy against k: one panel per metric, one line per level and window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    colours = {"all": "black", "emotion": "tab:red", "group": "tab:blue"}
    for ax, metric, title in zip(axes, ("emo_a", "polarity_acc"), ("Emo-A", "polarity accuracy")):
        for level in LEVEL_NAMES:
            for direction, style in (("first", "-"), ("last", "--")):
                rows = sorted(
                    (r for r in results if r["level"] == level and r["direction"] == direction), key=lambda r: r["k"]
                )
                if rows:
                    label = f"{LEVEL_NAMES[level]}, {direction} k steps"
                    xs, ys = [r["k"] for r in rows], [r[metric] for r in rows]
                    ax.plot(xs, ys, style, marker="o", color=colours[level], label=label)
        ax.set_xlabel(f"k (denoising steps of {steps} carrying the emotion)")
        ax.set_title(title)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
