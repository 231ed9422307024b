"""`coemogen bench va-grid`: continuous valence/arousal control measured on a synthetic world
(docs/va/hypotheses.md holds the design, registered before the runs).

The runs are the paper table's CoEmoGen at `--scale` (trained under `OUT/runs` by `paper_table`);
the world is rated by its fixed rule (`world/va.py`). A V/A judge (`va-head` on the world's
independent judges' features) is trained on a separate world and its error stated on the run's
world's true test images. Each seed's run generates EmotiCrafter's 5 x 5 grid (valence and arousal
in -3, -1.5, 0, 1.5, 3) three ways: the point's kernel mix with the shipped anchors, the nearest
anchor's emotion alone (the baseline), and the kernel mix with anchors fitted by `va fit` from the
judge's verdicts on that run's own per-emotion images. Every (row, seed) is complete once its
`va.json` exists; a re-run resumes.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.images import image_grid
from ..evaluation.metrics import ValenceArousalAgreement
from ..evaluation.va import VAHead, fit_anchors, read_va_images, train_va_head
from ..io import atomic_output, write_text
from ..pipelines.folders import save_images
from ..pipelines.pipeline_coemogen import CoEmoGenPipeline
from ..tables import format_table
from ..taxonomy import Taxonomy
from ..world.va import rate_world
from .paper_table import SCALES, paper_table
from .stages import WORLDS

GRID = (-3.0, -1.5, 0.0, 1.5, 3.0)
ROWS = ("kernel, shipped anchors", "nearest category", "kernel, fitted anchors")
JUDGE_WORLD_SEED = 300  # the V/A judge's own world


def _slug(row: str) -> str:
    return row.replace(",", "").replace(" ", "_")


def nearest_emotion(taxonomy: Taxonomy, point: tuple[float, float]) -> str:
    """The emotion whose anchor is closest to `point` (the baseline: no mixing, full intensity)."""
    return min(taxonomy.anchors, key=lambda r: math.hypot(point[0] - r[1], point[1] - r[2]))[0]


def va_table(
    out: str | Path,
    content: str = "objects",
    scale: str = "resolved",
    seeds: int = 3,
    seed: int = 0,
    per_point: int = 8,
    num_resamples: int = 1000,
) -> str:
    """Build (or resume) the valence/arousal comparison on the world of `content`; returns the table."""
    out = Path(out).resolve()
    taxonomy = Taxonomy.default()
    runs = out / "runs"
    paper_table(runs, scale=scale, seeds=seeds, seed=seed, rows=["CoEmoGen"], content=content, num_resamples=200)
    world = runs / "world"
    rate_world(world, taxonomy)  # idempotent: the rule's ratings in the annotations
    steps = json.loads((runs / "settings.json").read_text())["inference_steps"]
    write_text(out / "settings.json", json.dumps({"scale": scale, "content": content, "grid": GRID,
                                                   "per_point": per_point}, indent=1))  # fmt: skip
    head = _judge(out, world, content, taxonomy, SCALES[scale].images_per_emotion)
    points = [(v, a) for a in reversed(GRID) for v in GRID]  # rows: arousal high to low; columns: valence
    for s in range(seed, seed + seeds):
        run = runs / "coemogen" / f"seed-{s}" / "run"
        pipe = None
        for row in ROWS:
            work = out / _slug(row) / f"seed-{s}"
            if (work / "va.json").is_file():
                continue
            pipe = pipe or CoEmoGenPipeline.from_pretrained(run, device="cpu")
            anchors = taxonomy
            if row == "kernel, fitted anchors":
                anchors, _ = fit_anchors(runs / "coemogen" / f"seed-{s}" / "generated", taxonomy, head=head)
                write_text(work / "anchors.json", json.dumps(anchors.to_dict(), indent=1))
            shutil.rmtree(work / "generated", ignore_errors=True)
            for k, point in enumerate(points):
                seeds_k = [100_000 * s + 1_000 * k + i for i in range(per_point)]
                if row == "nearest category":
                    output = pipe(nearest_emotion(taxonomy, point), num_images=per_point, seeds=seeds_k,
                                  num_inference_steps=steps)  # fmt: skip
                    for meta in output.metadata:
                        meta.update(va=list(point), intensity=1.0)
                else:
                    output = pipe(va=[point] * per_point, num_images=per_point, seeds=seeds_k,
                                  num_inference_steps=steps, va_anchors=anchors)  # fmt: skip
                save_images(output, work / "generated" / f"point-{k:02d}")
            paths, asked = read_va_images(work / "generated")
            judged = head.predict_paths(paths)
            write_text(work / "va.json", json.dumps({"asked": asked.tolist(), "judged": judged.tolist()}))
    return _write(out, range(seed, seed + seeds), num_resamples, seed, head, points)


def _judge(out: Path, world: Path, content: str, taxonomy: Taxonomy, images_per_emotion: int) -> VAHead:
    """The V/A judge: a head on the world's judges' features, trained on a world of its own seed;
    its errors on the run's world's true test images written beside it."""
    head_dir = out / "va-judge"
    if not (head_dir / "test_on_run_world.json").is_file():
        judge_world = WORLDS[content].build(
            out / "judge-world", SCALES["resolved"].images_per_emotion, JUDGE_WORLD_SEED
        )
        train_va_head(judge_world, head_dir, f"reference:{judge_world}")
        head = VAHead(head_dir)
        from ..data.va import read_va

        test = [r for r in read_va(world, taxonomy=taxonomy) if r.split == "test"]
        metric = ValenceArousalAgreement()
        metric.update(torch.tensor([[r.valence, r.arousal] for r in test], dtype=torch.float64),
                      head.predict_paths([r.path for r in test]).double())  # fmt: skip
        write_text(head_dir / "test_on_run_world.json", json.dumps({**metric.compute(), "images": len(test)}, indent=1))
    return VAHead(head_dir)


def _bootstrap(per_seed: list[dict], num_resamples: int, rng: np.random.Generator) -> dict:
    """Each metric's mean over seeds and its 95% interval (seeds, then images within a seed, resampled)."""

    def metrics(asked: np.ndarray, judged: np.ndarray) -> dict:
        metric = ValenceArousalAgreement()
        metric.update(torch.as_tensor(asked), torch.as_tensor(judged))
        return metric.compute()

    keys = ("v_error", "a_error", "v_spearman", "a_spearman", "polarity_flips")
    data = [(np.array(d["asked"]), np.array(d["judged"])) for d in per_seed]
    point = {k: float(np.mean([metrics(a, j)[k] for a, j in data])) for k in keys}
    replicates = {k: [] for k in keys}
    for _ in range(num_resamples):
        values = {k: [] for k in keys}
        for s in rng.integers(0, len(data), size=len(data)):
            asked, judged = data[s]
            idx = rng.integers(0, len(asked), size=len(asked))
            for k, v in metrics(asked[idx], judged[idx]).items():
                if k in values:
                    values[k].append(v)
        for k in keys:
            replicates[k].append(np.mean(values[k]))
    out = {}
    for k in keys:
        low, high = np.nanpercentile(replicates[k], [2.5, 97.5])
        out[k] = {"mean": point[k], "low": float(low), "high": float(high)}
    return out


def _write(out: Path, seeds: range, num_resamples: int, seed: int, head: VAHead, points: list) -> str:
    rng = np.random.default_rng(seed)
    results, lines = {}, []
    for row in ROWS:
        files = [out / _slug(row) / f"seed-{s}" / "va.json" for s in seeds]
        per_seed = [json.loads(f.read_text()) for f in files if f.is_file()]
        if not per_seed:
            continue
        results[row] = {"seeds": len(per_seed), **_bootstrap(per_seed, num_resamples, rng)}
        cells = {
            k: f"{e['mean']:.3f} [{e['low']:.3f}, {e['high']:.3f}]" for k, e in results[row].items() if k != "seeds"
        }
        lines.append({"row": row, "seeds": len(per_seed), "V-Error": cells["v_error"], "A-Error": cells["a_error"],
                      "Spearman V": cells["v_spearman"], "Spearman A": cells["a_spearman"],
                      "polarity flips": cells["polarity_flips"]})  # fmt: skip
    judge_test = json.loads((out / "va-judge" / "test_on_run_world.json").read_text())
    table = format_table(lines, list(lines[0])) if lines else ""
    table += (
        f"\n\nJudge: {head.name}; on the run's world's true test images ({judge_test['images']}): "
        f"V-Error {judge_test['v_error']:.3f}, A-Error {judge_test['a_error']:.3f}, Spearman V "
        f"{judge_test['v_spearman']:.3f}, A {judge_test['a_spearman']:.3f}."
    )
    write_text(out / "va_table.md", table + "\n")
    write_text(out / "va_table.json", json.dumps({"rows": results, "judge_on_true_test_images": judge_test}, indent=1))
    _plots(out, seeds)
    _grid(out, seeds.start, len(points))
    return table


def _plots(out: Path, seeds: range) -> None:
    """Asked against judged valence and arousal, per row: the mean judged value at each asked level
    (over the other axis, seeds and images), with the identity line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for row, marker in zip(ROWS, "osd"):
        data = [json.loads(f.read_text()) for s in seeds if (f := out / _slug(row) / f"seed-{s}" / "va.json").is_file()]
        if not data:
            continue
        asked = np.concatenate([np.array(d["asked"]) for d in data])
        judged = np.concatenate([np.array(d["judged"]) for d in data])
        for axis, ax, name in ((0, axes[0], "valence"), (1, axes[1], "arousal")):
            means = [judged[asked[:, axis] == level, axis].mean() for level in GRID]
            ax.plot(GRID, means, marker=marker, label=row)
            ax.set_xlabel(f"asked {name}")
            ax.set_ylabel(f"judged {name} (mean)")
    for ax in axes:
        ax.plot([-3, 3], [-3, 3], color="grey", lw=0.8, ls=":")
        ax.set_xlim(-3.3, 3.3)
        ax.set_ylim(-3.3, 3.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_output(out / "asked_vs_judged.png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def _grid(out: Path, seed: int, num_points: int) -> None:
    """The 5 x 5 grid of the first seed, one image per point: valence left to right, arousal top
    (high) to bottom, for the shipped anchors' kernel mix."""
    folder = out / _slug(ROWS[0]) / f"seed-{seed}" / "generated"
    cells = [Image.open(sorted((folder / f"point-{k:02d}").glob("*.png"))[0]).convert("RGB") for k in range(num_points)]
    with atomic_output(out / "grid.png") as tmp:
        image_grid(cells, columns=len(GRID)).save(tmp, format="PNG")
