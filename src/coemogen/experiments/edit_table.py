"""`coemogen bench edit-table`: editing toward an emotion, compared on a synthetic world
(docs/edit/hypotheses.md holds the design, registered before the runs).

The runs are the paper table's (CoEmoGen and EmoGen at `--scale`, trained and kept under
`OUT/runs` by `paper_table`); the sources are held-out test images of every emotion, each edited
toward every other emotion by four rows: CoEmoGen SDEdit, CoEmoGen inversion, the base model's
SDEdit prompted "an image of {emotion}" (diffusers' img2img on the world's pocket SD) and EmoGen's
SDEdit. Every edit is written as `coemogen edit` writes it (PNG, then its JSON), so a killed run
resumes where it stopped; each (row, seed) is judged with `evaluate_edits` on the world's networks;
the table bootstraps over seeds and edits. A strength sweep (seed 0) is drawn as Emo-A against
LPIPS, and a grid shows the same sources under each row.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.images import image_grid, load_rgb
from ..data.readers import read_dataset
from ..evaluation.edits import EDIT_METRICS, edit_networks, evaluate_edits
from ..io import atomic_output, write_text
from ..pipelines.pipeline_edit import CoEmoGenEditPipeline
from ..tables import format_table
from ..taxonomy import Taxonomy
from .paper_table import paper_table
from .stages import WORLDS

ROWS = ("CoEmoGen SDEdit", "CoEmoGen inversion", "base model SDEdit", "EmoGen SDEdit")
REFERENCE = "CoEmoGen SDEdit"
SWEEP = (0.3, 0.5, 0.7, 0.9)


@dataclass(frozen=True)
class Job:
    source: Path
    target: str
    seed: int


def _slug(row: str) -> str:
    return row.lower().replace(" ", "_")


def test_sources(world: Path, taxonomy: Taxonomy, per_emotion: int) -> list[tuple[Path, str]]:
    """The first `per_emotion` test-split images of each emotion (sorted ids: the same every run)."""
    items = sorted((it for it in read_dataset(world, taxonomy) if it.split == "test"), key=lambda it: it.id)
    chosen = []
    for emotion in taxonomy.emotions:
        chosen += [(it.path, emotion) for it in items if it.emotion == emotion][:per_emotion]
    return chosen


def editor(
    row: str, runs: Path, seed: int, pocket_sd: Path, steps: int
) -> Callable[[Image.Image, str, float, int], Image.Image]:
    """(source, target emotion, strength, edit seed) -> the edit, for one row and training seed."""
    if row == "base model SDEdit":
        from diffusers import DPMSolverMultistepScheduler, StableDiffusionImg2ImgPipeline

        base = StableDiffusionImg2ImgPipeline.from_pretrained(
            str(pocket_sd), safety_checker=None, requires_safety_checker=False
        )
        base.scheduler = DPMSolverMultistepScheduler.from_config(base.scheduler.config)
        base.set_progress_bar_config(disable=True)

        def edit_base(image: Image.Image, target: str, strength: float, edit_seed: int) -> Image.Image:
            generator = torch.Generator().manual_seed(edit_seed)
            return base(f"an image of {target}", image=image, strength=strength, num_inference_steps=steps,
                        guidance_scale=5.0, generator=generator).images[0]  # fmt: skip

        return edit_base
    run = runs / ("emogen" if row.startswith("EmoGen") else "coemogen") / f"seed-{seed}" / "run"
    pipe = CoEmoGenEditPipeline.from_pretrained(run, device="cpu")
    method = "inversion" if row.endswith("inversion") else "sdedit"

    def edit_run(image: Image.Image, target: str, strength: float, edit_seed: int) -> Image.Image:
        return pipe(image, target, strength=strength, method=method, seeds=[edit_seed], num_inference_steps=steps,
                    guidance_scale=5.0).images[0]  # fmt: skip

    return edit_run


def make_edits(folder: Path, jobs: list[Job], edit: Callable, strength: float) -> None:
    """Every job's edit in `folder` as `coemogen edit` writes it (the PNG, then its JSON); edits
    already complete are kept."""
    from tqdm import tqdm

    folder.mkdir(parents=True, exist_ok=True)
    for job in tqdm(jobs, desc=folder.parent.name, leave=False):
        stem = folder / f"{job.source.parent.name}-{job.source.stem}_{job.target}"
        if stem.with_suffix(".json").is_file():
            continue
        result = edit(load_rgb(job.source), job.target, strength, job.seed)
        with atomic_output(stem.with_suffix(".png")) as tmp:
            result.save(tmp, format="PNG")
        meta = {"source": str(job.source), "emotion": job.target, "strength": strength, "seed": job.seed}
        write_text(stem.with_suffix(".json"), json.dumps(meta, indent=1))


def _per_edit(report_dir: Path) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in json.loads((report_dir / "per_edit.json").read_text()).items()}


def bootstrap_rows(per_seed: dict[str, list[dict]], resamples: int, rng: np.random.Generator) -> dict:
    """{row: {metric: replicates}}: seeds drawn with replacement, then edits within each drawn seed;
    a replicate is the mean over the drawn seeds of each seed's metric (the metric object's compute)."""
    classes = {key: cls for key, _, cls in EDIT_METRICS}
    out = {}
    for row, seeds in per_seed.items():
        reps = {key: np.empty(resamples) for key in classes}
        for r in range(resamples):
            drawn = [seeds[i] for i in rng.integers(0, len(seeds), len(seeds))]
            values = {key: [] for key in classes}
            for seed_values in drawn:
                idx = rng.integers(0, len(seed_values["emo_a"]), len(seed_values["emo_a"]))
                for key, cls in classes.items():
                    values[key].append(cls.from_samples({"v": seed_values[key]}, "v", idx).compute())
            for key in classes:
                reps[key][r] = np.mean(values[key])
        out[row] = reps
    return out


def edit_table(
    out: str | Path,
    content: str = "objects",
    scale: str = "resolved",
    seeds: int = 3,
    seed: int = 0,
    sources_per_emotion: int = 5,
    strength: float = 0.6,
    sweep_sources: int = 1,
    num_resamples: int = 1000,
) -> str:
    """Build (or resume) the editing comparison on the world of `content`; returns the table."""
    out = Path(out).resolve()
    taxonomy = Taxonomy.default()
    runs = out / "runs"
    paper_table(runs, scale=scale, seeds=seeds, seed=seed, rows=["CoEmoGen", "EmoGen"], content=content,
                num_resamples=200)  # fmt: skip
    world = runs / "world"
    steps = json.loads((runs / "settings.json").read_text())["inference_steps"]
    pocket_sd = WORLDS[content].pocket_sd
    sources = test_sources(world, taxonomy, sources_per_emotion)
    networks = edit_networks(world, taxonomy)
    per_seed: dict[str, list[dict]] = {row: [] for row in ROWS}
    for s in range(seed, seed + seeds):
        jobs = [Job(path, target, 100_000 * s + k) for k, (path, target) in enumerate(
            (path, t) for path, own in sources for t in taxonomy.emotions if t != own)]  # fmt: skip
        for row in ROWS:
            work = out / _slug(row) / f"seed-{s}"
            report = work / "report"
            if not (report / "per_edit.json").is_file():
                make_edits(work / "edits", jobs, editor(row, runs, s, pocket_sd, steps), strength)
                evaluate_edits(work / "edits", world / "image", report, taxonomy, networks, seed=s, num_resamples=100)
            per_seed[row].append(_per_edit(report))
    table = _write_table(out, per_seed, num_resamples, seed)
    _sweep_and_grid(out, runs, world, sources, taxonomy, pocket_sd, steps, networks, seed, sweep_sources, strength)
    return table


def _write_table(out: Path, per_seed: dict[str, list[dict]], num_resamples: int, seed: int) -> str:
    reps = bootstrap_rows(per_seed, num_resamples, np.random.default_rng(seed))
    labels = {key: label for key, label, _ in EDIT_METRICS}
    record, lines = {}, []
    for row in ROWS:
        seeds_values = per_seed[row]
        means = {key: float(np.mean([cls.from_samples({"v": sv[key]}, "v", np.arange(len(sv[key]))).compute()
                                     for sv in seeds_values])) for key, _, cls in EDIT_METRICS}  # fmt: skip
        line = {"row": row, "seeds": len(seeds_values)}
        entry = {"seeds": len(seeds_values), "edits_per_seed": len(seeds_values[0]["emo_a"])}
        for key in labels:
            low, high = np.percentile(reps[row][key], [2.5, 97.5])
            line[labels[key]] = f"{means[key]:.4g} [{low:.4g}, {high:.4g}]"
            entry[key] = {"mean": means[key], "low": float(low), "high": float(high)}
        record[row] = entry
        lines.append(line)
    for row in ROWS:
        if row == REFERENCE:
            continue
        for key in ("emo_a", "psnr", "lpips"):
            diff = reps[REFERENCE][key] - reps[row][key]
            point = record[REFERENCE][key]["mean"] - record[row][key]["mean"]
            low, high = np.percentile(diff, [2.5, 97.5])
            record[row][f"{key}_reference_minus_row"] = {"mean": point, "low": float(low), "high": float(high)}
            next(line for line in lines if line["row"] == row)[f"{labels[key]}: {REFERENCE} − row"] = (
                f"{point:+.3f} [{low:+.3f}, {high:+.3f}]"
            )
    columns = list(dict.fromkeys(k for line in lines for k in line))
    table = format_table(lines, columns)
    write_text(out / "edit_table.md", table + "\n")
    write_text(out / "edit_table.json", json.dumps(record, indent=1))
    return table


def _sweep_and_grid(out, runs, world, sources, taxonomy, pocket_sd, steps, networks, seed, per_emotion, strength):
    """Seed `seed`: Emo-A against LPIPS along the strength sweep for every row, and a grid of the
    same sources (one per emotion) under each row at `strength`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    firsts = []
    for emotion in taxonomy.emotions:
        firsts += [(p, e) for p, e in sources if e == emotion][:per_emotion]
    jobs = [Job(p, t, 100_000 * seed + 50_000 + k)
            for k, (p, t) in enumerate((p, t) for p, own in firsts for t in taxonomy.emotions if t != own)]  # fmt: skip
    points: dict[str, list[tuple[float, float, float]]] = {}
    for row in ROWS:
        edit = None
        for value in [v for v in SWEEP if int(steps * v) >= 1]:  # a strength of no step leaves nothing to judge
            report = out / "sweep" / _slug(row) / f"strength-{value}" / "report"
            if not (report / "per_edit.json").is_file():
                edit = edit or editor(row, runs, seed, pocket_sd, steps)
                make_edits(report.parent / "edits", jobs, edit, value)
                evaluate_edits(report.parent / "edits", world / "image", report, taxonomy, networks, seed=seed,
                               num_resamples=100)  # fmt: skip
            overall = json.loads((report / "edits.json").read_text())["rows"][0]
            points.setdefault(row, []).append((value, overall["lpips"]["value"], overall["emo_a"]["value"]))
    fig, ax = plt.subplots(figsize=(5, 4))
    for row, pts in points.items():
        ax.plot([p[1] for p in pts], [p[2] for p in pts], marker="o", label=row)
        for value, x, y in pts:
            ax.annotate(f"{value:g}", (x, y), fontsize=7)
    ax.set_xlabel("LPIPS to the source (lower: more kept)")
    ax.set_ylabel("Emo-A (world judge)")
    ax.set_title("strength sweep (labels: strength)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_output(out / "tradeoff.png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    write_text(out / "sweep.json", json.dumps(points, indent=1))
    # the grid: each row's edits of the first source of each emotion toward the next emotion
    grid_sources = [(p, e) for p, e in sources if (p, e) in firsts][: len(taxonomy.emotions)]
    cells = []
    for path, own in grid_sources:
        target = taxonomy.emotions[(taxonomy.index(own) + 1) % taxonomy.num_emotions]
        cells.append(load_rgb(path))
        for row in ROWS:
            stem = out / _slug(row) / f"seed-{seed}" / "edits" / f"{path.parent.name}-{path.stem}_{target}"
            cells.append(Image.open(stem.with_suffix(".png")).convert("RGB"))
    with atomic_output(out / "grid.png") as tmp:
        image_grid(cells, columns=1 + len(ROWS)).save(tmp, format="PNG")
