"""`coemogen bench tune-table`: emotion reward tuning compared on a synthetic world
(docs/tune/hypotheses.md holds the design, registered before the runs).

The starting runs are the paper table's CoEmoGen and EmoGen at `--scale` (trained and judged under
`OUT/runs` by `paper_table`). Each seed's starting run is tuned by `coemogen tune` four ways: with
both guards, without the anchor, without the drift penalty, and EmoGen's (its mapper). Every row
generates the paper table's images (the same seeds, so a before/after pair shares its cluster
sample and noise) and is judged twice: by the world's independent judges (`report/`) and by the
reward model itself (`report-reward/`, the reward head as the Emo-A network): the gap between the
two is the measure of reward hacking. The first seed is tuned in stages, each judged, for the
curve over tuning steps. Each (row, seed) is complete once its reports exist; a re-run resumes.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

from PIL import Image

from .. import registry
from ..data.images import image_grid
from ..errors import CoEmoGenError
from ..evaluation.emotion_head import ClipEmotionHead
from ..evaluation.evaluate import evaluate
from ..io import atomic_output, write_text
from ..pipelines.pipeline_coemogen import CoEmoGenPipeline
from ..tables import format_table
from ..taxonomy import Taxonomy
from ..training.tune import tune
from ..world.judges import world_networks_for
from ..world.paths import POCKET_IDS
from .paper_table import SCALES, Row, Table, estimate_cell, paper_table
from .stages import WORLDS, generate_per_emotion


@dataclass(frozen=True)
class TuneRow:
    name: str
    start: str  # the paper table's row whose runs it starts from
    settings: dict | None = None  # TuneConfig values; None: the starting run itself

    @property
    def slug(self) -> str:
        return Row(self.name).slug


ROWS = (
    TuneRow("CoEmoGen", "CoEmoGen"),
    # the registered recipe's guards: anchor weight 1, drift weight 100 (docs/tune/hypotheses.md)
    TuneRow("CoEmoGen tuned", "CoEmoGen", {"anchor_weight": 1.0, "kl_weight": 100.0}),
    TuneRow("tuned w/o anchor", "CoEmoGen", {"anchor_weight": 0.0, "kl_weight": 100.0}),
    TuneRow("tuned w/o KL", "CoEmoGen", {"anchor_weight": 1.0, "kl_weight": 0.0}),
    TuneRow("EmoGen", "EmoGen"),
    TuneRow("EmoGen tuned", "EmoGen", {"anchor_weight": 1.0, "kl_weight": 100.0}),
    # added after the first results, before its runs (docs/tune/hypotheses.md, addendum): the shipped recipe
    TuneRow("EmoGen tuned w/o KL", "EmoGen", {"anchor_weight": 1.0, "kl_weight": 0.0}),
)
CURVE_ROWS = ("CoEmoGen tuned", "tuned w/o anchor", "tuned w/o KL")  # tuned in stages on the first seed


@dataclass(frozen=True)
class TuneSettings:
    """The registered tuning recipe (docs/tune/hypotheses.md)."""

    steps: int = 100
    stages: tuple[int, ...] = (25, 50, 75, 100)
    train_batch_size: int = 8
    learning_rate: float = 5e-4
    truncation_steps: int = 1


def tune_table(
    out: str | Path,
    content: str = "objects",
    scale: str = "resolved",
    seeds: int = 3,
    seed: int = 0,
    settings: TuneSettings = TuneSettings(),
    num_resamples: int = 1000,
    rows: list[str] | None = None,
    curve_rows: list[str] | None = None,
    tune_seeds: list[int] | None = None,
) -> str:
    """Build (or resume) the tuning comparison on the world of `content`; returns the table. `rows`
    and `curve_rows`: only these rows, and these tuned in stages (default: all, `CURVE_ROWS`);
    `tune_seeds`: measure only these of the seeds (several processes can share the seeds; the tables
    cover every finished one)."""
    selected = [r for r in ROWS if rows is None or r.name in rows]
    curve = CURVE_ROWS if curve_rows is None else tuple(curve_rows)
    unknown = set(rows or []) - {r.name for r in ROWS}
    if unknown:
        raise CoEmoGenError(f"unknown rows {sorted(unknown)}; the rows are {[r.name for r in ROWS]}")
    out = Path(out).resolve()
    taxonomy = Taxonomy.default()
    runs = out / "runs"
    paper_table(runs, scale=scale, seeds=seeds, seed=seed, rows=["CoEmoGen", "EmoGen"], content=content,
                num_resamples=200)  # fmt: skip
    world = runs / "world"
    steps = json.loads((runs / "settings.json").read_text())["inference_steps"]
    per_emotion = SCALES[scale].generated_per_emotion
    write_text(out / "settings.json", json.dumps({"scale": scale, "content": content, **vars(settings)}, indent=1))
    networks = world_networks_for(world)
    pocket_sd = next(name for name, folder in POCKET_IDS.items() if folder == WORLDS[content].pocket_sd)
    head_dir = registry.reward_model(pocket_sd)
    reward_networks = replace(networks, emotion=ClipEmotionHead(head_dir, taxonomy))

    def judge(generated: Path, report: Path, s: int) -> None:
        for folder, nets in ((report, networks), (report.parent / f"{report.name}-reward", reward_networks)):
            if not (folder / "samples.safetensors").is_file():
                evaluate(generated, world, folder, taxonomy, num_pairs=500, seed=s, networks=nets)

    for s in range(seed, seed + seeds):
        if tune_seeds is not None and s not in tune_seeds:
            continue
        for row in selected:
            start = runs / Row(row.start).slug / f"seed-{s}"
            work = out / row.slug / f"seed-{s}"
            if row.settings is None:  # the starting run: the paper table's images and report, and the reward's
                for name in ("generated", "report"):
                    if not (work / name).is_dir():  # copied whole, then renamed: a kill leaves no half copy
                        shutil.rmtree(work / f".{name}", ignore_errors=True)
                        shutil.copytree(start / name, work / f".{name}")
                        (work / f".{name}").rename(work / name)
                judge(work / "generated", work / "report", s)
                continue
            stages = settings.stages if (s == seed and row.name in curve) else (settings.steps,)
            manifest = json.loads((start / "run" / "training_args.json").read_text())["manifest"]
            for stage in stages:
                target = work if stage == settings.steps else work / "stages" / f"step-{stage}"
                if not (target / "generated.done").is_file():
                    # resumed from the last stage's checkpoint: the constant schedule makes each stage
                    # the uninterrupted run's weights at that step
                    run = tune(
                        manifest, work / "run", start / "run", seed=s, max_train_steps=stage,
                        train_batch_size=settings.train_batch_size, learning_rate=settings.learning_rate,
                        truncation_steps=settings.truncation_steps, num_inference_steps=steps,
                        checkpointing_steps=min(settings.stages), resume_from_checkpoint="latest",
                        validation_steps=0, report_to="none", **row.settings,
                    )  # fmt: skip
                    pipe = CoEmoGenPipeline.from_pretrained(run)
                    shutil.rmtree(target / "generated", ignore_errors=True)
                    make = partial(pipe, num_images=per_emotion, seed=s, num_inference_steps=steps)
                    generate_per_emotion(make, taxonomy, target / "generated")
                    write_text(target / "generated.done", f"{stage}\n")
                judge(target / "generated", target / "report", s)
    return _write(out, taxonomy, range(seed, seed + seeds), settings, num_resamples, seed, selected, curve)


def _write(
    out: Path,
    taxonomy: Taxonomy,
    seeds: range,
    settings: TuneSettings,
    num_resamples: int,
    seed: int,
    selected: list[TuneRow],
    curve: tuple[str, ...],
) -> str:
    """The two tables (the world's judges: `paper_table.md`; the reward model: the same layout in
    `reward-model/`), each tuned row against its own start (`vs_start.md`), the curve over tuning
    steps and the grid."""
    # the selected rows and their starts (a tuned row is measured against its start's reports)
    names = {r.name for r in selected} | {r.start for r in selected}
    selected = [r for r in ROWS if r.name in names]
    rows = [Row(r.name) for r in selected]
    judges = Table(out, rows, seeds, num_resamples)
    text = judges.write()
    for row in selected:  # the reward model's reports, laid out as Table reads them
        for s in seeds:
            src = out / row.slug / f"seed-{s}" / "report-reward"
            dst = out / "reward-model" / row.slug / f"seed-{s}" / "report"
            if (src / "samples.safetensors").is_file() and not (dst / "samples.safetensors").is_file():
                shutil.rmtree(dst, ignore_errors=True)
                shutil.copytree(src, dst)
    reward = Table(out / "reward-model", rows, seeds, num_resamples)
    reward.write()
    _vs_start(out, selected, judges, reward)
    _curve(out, seed, settings, curve)
    _grid(out, taxonomy, seed, selected)
    return text


def _vs_start(out: Path, selected: list[TuneRow], judges: Table, reward: Table) -> None:
    """Each tuned row minus its own starting row ("EmoGen tuned" − "EmoGen"; the CoEmoGen rows −
    "CoEmoGen"): both judges' Emo-A and FID, with intervals from the rows' independent replicates."""
    measures = (
        ("Emo-A − start, judges", judges, "emo_a"),
        ("Emo-A − start, reward model", reward, "emo_a"),
        ("FID − start", judges, "fid"),
    )
    lines, record = [], {}
    for row in selected:
        if row.settings is None:
            continue
        line = {"row": row.name, "start": row.start}
        for column, table, metric in measures:
            estimate = table.difference(row.name, row.start, metric)
            line[column] = "-" if estimate is None else estimate_cell(estimate)
            if estimate is not None:
                record.setdefault(row.name, {"start": row.start})[column] = asdict(estimate)
        lines.append(line)
    if lines:
        write_text(out / "vs_start.md", format_table(lines, list(lines[0])) + "\n")
        write_text(out / "vs_start.json", json.dumps(record, indent=1))


def _overall(report: Path, key: str) -> float:
    return json.loads((report / "metrics.json").read_text())["overall"][key]


def _curve(out: Path, seed: int, settings: TuneSettings, curve: tuple[str, ...]) -> None:
    """Both judges' Emo-A and FID over tuning steps (first seed), from the stage reports."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = out / Row("CoEmoGen").slug / f"seed-{seed}"
    points: dict[str, list[dict]] = {}
    for name in curve:
        work = out / Row(name).slug / f"seed-{seed}"
        folders = [(0, start)] + [
            (stage, work if stage == settings.steps else work / "stages" / f"step-{stage}") for stage in settings.stages
        ]
        points[name] = [
            {
                "step": stage,
                "emo_a_judges": _overall(folder / "report", "emo_a"),
                "emo_a_reward_model": _overall(folder / "report-reward", "emo_a"),
                "fid": _overall(folder / "report", "fid"),
            }
            for stage, folder in folders
            if (folder / "report-reward" / "metrics.json").is_file()
        ]
    write_text(out / "curve.json", json.dumps(points, indent=1))
    fig, (acc, fid) = plt.subplots(1, 2, figsize=(9, 3.6))
    for (name, pts), color in zip(points.items(), ("C0", "C1", "C2")):
        steps = [p["step"] for p in pts]
        acc.plot(steps, [p["emo_a_judges"] for p in pts], marker="o", color=color, label=f"{name}: world judges")
        acc.plot(steps, [p["emo_a_reward_model"] for p in pts], marker="x", ls="--", color=color,
                 label=f"{name}: reward model")  # fmt: skip
        fid.plot(steps, [p["fid"] for p in pts], marker="o", color=color, label=name)
    acc.set_xlabel("tuning step")
    acc.set_ylabel("Emo-A")
    acc.set_title("accuracy: independent judges (solid) vs the reward (dashed)", fontsize=8)
    acc.legend(fontsize=6)
    fid.set_xlabel("tuning step")
    fid.set_ylabel("FID (world features)")
    fid.legend(fontsize=6)
    fig.tight_layout()
    with atomic_output(out / "curve.png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def _grid(out: Path, taxonomy: Taxonomy, seed: int, selected: list[TuneRow], per_emotion: int = 2) -> None:
    """The same seeds before and after: per emotion, its first images under each selected row whose
    first seed is generated (columns in `ROWS` order)."""

    images = {
        (row.name, emotion): sorted((out / row.slug / f"seed-{seed}" / "generated" / emotion).glob("*.png"))
        for row in selected
        for emotion in taxonomy.emotions
    }
    shown = [r for r in selected if all(len(images[r.name, e]) >= per_emotion for e in taxonomy.emotions)]
    if not shown:
        return
    cells = [
        Image.open(images[row.name, emotion][k]).convert("RGB")
        for emotion in taxonomy.emotions
        for k in range(per_emotion)
        for row in shown
    ]
    with atomic_output(out / "grid.png") as tmp:
        image_grid(cells, columns=len(shown)).save(tmp, format="PNG")
