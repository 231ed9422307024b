"""`coemogen bench paper-table`: every method and ablation of the paper, trained and evaluated in the
synthetic world, in the paper's table layout (paper numbers alongside), over several training seeds
with 95% bootstrap intervals (statistics.py).

Each row is a named configuration of the same caption / filter / train / generate commands, not a
fork of the code. The world, captions and filtered manifests are data and stay fixed; a seed sets a
row's training, generation and evaluation pairs. Every (row, seed) is complete once its
`samples.safetensors` exists; a re-run skips those and redoes any partial one, so a long table can
be built over several runs, and the table is rewritten after every (row, seed).
"""

from __future__ import annotations

import json
import os
import shutil
import zlib
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from ..captioning.captioners import AttributeCaptioner
from ..captioning.filtering import filter_captions
from ..captioning.runner import run_captioning
from ..errors import CoEmoGenError
from ..evaluation.evaluate import evaluate
from ..evaluation.metrics import REPORTED
from ..io import write_text
from ..pipelines.pipeline_coemogen import CoEmoGenOutput, CoEmoGenPipeline
from ..tables import format_table
from ..taxonomy import Taxonomy
from ..training.loop import train
from ..world.judges import world_networks_for
from ..world.oracle import OracleCaptioner
from .dreambooth import DreamBoothConfig, class_images, dreambooth_images, identifier, train_dreambooth_lora
from .stages import (
    WORLDS,
    Scale,
    StageRunner,
    base_model_images,
    generate_per_emotion,
    study_training_arguments,
    world_train_items,
)
from .statistics import (
    Estimate,
    bootstrap_replicates,
    difference,
    interval,
    load_samples,
    point_estimates,
    seed_metrics,
)

# The paper's Table 1 and ablation table: FID, LPIPS, Emo-A, Sem-C, Sem-D.
PAPER = {
    "Stable Diffusion": (44.05, 0.687, 0.7077, 0.608, 0.0199),
    "Textual Inversion": (50.51, 0.702, 0.7487, 0.605, 0.0282),
    "EmoGen": (41.60, 0.717, 0.7625, 0.633, 0.0335),
    "DreamBooth": (46.89, 0.661, 0.7050, 0.614, 0.0178),
    "CoEmoGen": (40.66, 0.732, 0.8015, 0.641, 0.0349),
    "w/o L_SEM": (50.32, 0.698, 0.6590, 0.562, 0.0255),
    "w/o emotion-specific LoRAs": (45.30, 0.713, 0.7537, 0.625, 0.0308),
    "w/o polarity-shared LoRAs": (41.47, 0.724, 0.7883, 0.638, 0.0336),
}


@dataclass
class Row:
    name: str
    # coemogen | emogen (EmoGen as published) | base (the base model prompted with the emotion) | dreambooth
    method: str = "coemogen"
    captions: str = "oracle"  # oracle | oracle-no-prior | attributes
    drop: float = 0.2
    lambda_sem: float = 1.0
    model: dict = field(default_factory=dict)  # CoEmoGenConfig hyper-parameters

    @property
    def slug(self) -> str:
        return self.name.lower().replace(" ", "_").replace("/", "")


ROWS = [
    Row("Stable Diffusion", method="base"),
    Row(
        "Textual Inversion",
        lambda_sem=0.0,
        model=dict(perception_encoder=False, emotion_lora=False, group_lora=False),
    ),
    Row("DreamBooth", method="dreambooth"),
    Row("Shared LoRA", model=dict(shared_lora=True)),
    Row("EmoGen", method="emogen"),
    # CoEmoGen with L_SEM's target written from EmoSet's attribute words: sentence against word supervision
    Row("CoEmoGen w/ word-level attributes", captions="attributes"),
    Row("CoEmoGen"),
    Row("w/o L_SEM", lambda_sem=0.0),
    Row("w/o emotion-specific LoRAs", model=dict(emotion_lora=False)),
    Row("w/o polarity-shared LoRAs", model=dict(group_lora=False)),
    Row("w/o CLIP filtering", drop=0.0),
    Row("w/o emotion prior", captions="oracle-no-prior"),
]

SCALES = {
    "default": Scale(300, 600, 32, 20),  # the single-seed table of the first release
    "short": Scale(300, 200, 12, 10),  # the committed several-seed table: fits a 2-core CPU
    "long": Scale(100, 3000, 12, 10, train_batch_size=2),  # the filter study: about 12 passes over the data
    # the short table with 40 images per emotion: Emo-A differences resolved to about ±0.05 over 3 seeds
    # (docs/paper-table/hypotheses.md, "The scale")
    "resolved": Scale(300, 200, 40, 10),
    "quick": Scale(6, 6, 2, 3, train_batch_size=2),  # tests
}
REFERENCE_ROW = "CoEmoGen"  # differences are reported against it


def _dreambooth(
    work: Path, class_dir: Path, items: list, taxonomy: Taxonomy, scale: Scale, seed: int, data_seed: int, base: Path
):
    """Train one DreamBooth LoRA per emotion on the base model `base`; return `make_images(emotion)`.
    Each emotion sees as many of its images as in a CoEmoGen run (half of every batch is class images)."""
    instance_batch = max(1, scale.train_batch_size // 2)
    steps = max(1, scale.train_steps * scale.train_batch_size // (taxonomy.num_emotions * instance_batch))
    config = DreamBoothConfig(
        steps=steps,
        instance_batch=instance_batch,
        num_class_images=max(2, scale.generated_per_emotion * 2),
        inference_steps=scale.inference_steps,
    )
    prior = class_images(class_dir, config, data_seed, base)
    loras = {}
    for k, emotion in enumerate(taxonomy.emotions):
        paths = [it.path for it in items if it.emotion == emotion]
        prompt = f"an image of {identifier(taxonomy.emotions, emotion)}"
        lora = train_dreambooth_lora(paths, prompt, prior, work / "run" / emotion, config, seed + k, base)
        loras[emotion] = (lora, prompt)

    def make_images(emotion: str) -> CoEmoGenOutput:
        lora, prompt = loras[emotion]
        return dreambooth_images(lora.parent, prompt, emotion, scale.generated_per_emotion, seed, config, base)

    return make_images


def paper_table(
    out: str | Path,
    scale: str = "default",
    seeds: int = 1,
    seed: int = 0,
    rows: list[str] | None = None,
    num_resamples: int = 1000,
    measure: bool = True,
    content: str = "objects",
) -> dict[str, dict[str, Estimate]]:
    """Train, generate and judge every row (or `rows`) with seeds `seed`, ..., `seed + seeds - 1`
    in the synthetic world of `content` (objects or narrative: its pocket models and judges);
    returns each row's estimates. `seed` also builds the world and captions (the data).
    `measure=False` only rewrites the table from the (row, seed) pairs already finished."""
    if scale not in SCALES:
        raise CoEmoGenError(f"unknown scale '{scale}'; choose one of {sorted(SCALES)}")
    if content not in WORLDS:
        raise CoEmoGenError(f"unknown world content '{content}'; choose one of {sorted(WORLDS)}")
    unknown = set(rows or []) - {r.name for r in ROWS}
    if unknown:
        raise CoEmoGenError(f"unknown rows {sorted(unknown)}; the rows are {[r.name for r in ROWS]}")
    sc = SCALES[scale]
    out = Path(out).resolve()  # captions and manifests record image paths
    settings = {"scale": scale, **asdict(sc), "data_seed": seed}
    if content != "objects":  # the objects world's tables predate the narrative world
        settings["content"] = content
    kind = WORLDS[content]
    if (out / "settings.json").is_file() and json.loads((out / "settings.json").read_text()) != settings:
        raise CoEmoGenError(
            f"{out} holds a table of other settings ({(out / 'settings.json').read_text().strip()}); "
            "use another --out to build this one"
        )
    write_text(out / "settings.json", json.dumps(settings, indent=1))
    tax = Taxonomy.default()
    stages = StageRunner()
    selected = [r for r in ROWS if not rows or r.name in rows]
    table = Table(out, selected, range(seed, seed + seeds), num_resamples)
    # seed-major: a partial table has every row at its first seeds
    pending = [
        (s, row)
        for s in range(seed, seed + seeds)
        for row in selected
        if measure and not (out / row.slug / f"seed-{s}" / "report" / "samples.safetensors").is_file()
    ]
    if pending:  # the data and the judges, only when something is left to measure
        world, items = world_train_items(out / "world", sc.images_per_emotion, seed, tax, content)
        captioners = {
            "oracle": OracleCaptioner(0.2, seed=seed),
            "oracle-no-prior": OracleCaptioner(0.2, seed=seed, emotion_prior=False),
            "attributes": AttributeCaptioner(emotion_prior=False),
        }
        networks = world_networks_for(world)
    for s, row in pending:
        work = out / row.slug / f"seed-{s}"
        if (work / "report" / "samples.safetensors").is_file() or not claim(work):
            continue  # finished or being measured by another process since this one started
        shutil.rmtree(work, ignore_errors=True)  # a (row, seed) a kill interrupted starts over
        with stages.stage(f"{row.name}, seed {s}"):
            if row.method == "base":
                make = partial(
                    base_model_images, n=sc.generated_per_emotion, steps=sc.inference_steps, seed=s, base=kind.pocket_sd
                )
            elif row.method == "dreambooth":
                make = _dreambooth(work, out / "dreambooth_class_images", items, tax, sc, s, seed, kind.pocket_sd)
            else:
                pipe = CoEmoGenPipeline.from_pretrained(
                    train(
                        _training_arguments(row, work, out, items, captioners, sc, s, seed, kind.pocket_clip),
                        run_name=row.slug,
                        **row.model,
                    )
                )
                make = partial(
                    pipe, num_images=sc.generated_per_emotion, seed=s, num_inference_steps=sc.inference_steps
                )
            generate_per_emotion(make, tax, work / "generated")
            evaluate(work / "generated", world, work / "report", tax, num_pairs=500, seed=s, networks=networks)
        Path(f"{work}.claim").unlink(missing_ok=True)
        table.write(intervals=False)  # after every (row, seed): an interrupted run keeps what it measured
    print("\n" + table.write())
    return table.estimates


def claim(work: Path) -> bool:
    """Claim a (row, seed) for this process: `<work>.claim` holds the claimant's pid. Several
    processes on one machine can build one table: each skips what another holds. A claim whose
    process is gone (killed) is taken over."""
    path = Path(f"{work}.claim")
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                os.kill(int(path.read_text() or 0), 0)
                return False  # its claimant is alive
            except (ProcessLookupError, ValueError):
                path.unlink(missing_ok=True)  # a killed claimant: take over
                continue
            except PermissionError:
                return False
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True
    return False


def _training_arguments(
    row: Row, work: Path, out: Path, items: list, captioners: dict, sc: Scale, seed: int, data_seed: int, clip: Path
):
    """Caption and filter (with the world's pocket CLIP `clip`) once per row (data, shared by its
    seeds), then the row's training arguments.
    EmoGen trains on every image with its EmoSet attributes (the unfiltered captions file is its
    manifest; it reads no caption)."""
    from filelock import FileLock

    captions = out / f"captions_{row.captions}.jsonl"
    manifest = captions if row.method == "emogen" else out / row.slug / "manifest.jsonl"
    with FileLock(out / ".data.lock"):  # processes sharing the table caption and filter one at a time
        run_captioning(items, captioners[row.captions], captions)
        if not manifest.is_file():
            filter_captions(captions, manifest, str(clip), drop=row.drop, seed=data_seed)
    return study_training_arguments(
        manifest, work / "run", sc.train_steps, sc.train_batch_size, seed, lambda_sem=row.lambda_sem, method=row.method
    )


COLUMNS = {m.label: m.key for m in REPORTED}
PAPER_COLUMN = "paper (FID/LPIPS/Emo-A/Sem-C/Sem-D‡)"
# Sem-D is computed by two different protocols in the two places: say so under every table.
SEM_D_NOTE = (
    "Sem-D: this package's protocol (`--protocol coemogen`: CLIP on correctly scaled images). "
    "Sem-D‡, the paper's: EmoGen's metric code, whose CLIP sees the images scaled by 1/255 twice "
    "(docs/evaluation.md); the two columns do not compare."
)
# each row's difference from CoEmoGen, with its interval (the relation metric where the world has one)
DIFFERENCES = (("emo_a", "Emo-A"), ("fid", "FID"), ("within_polarity", "within-polarity"), ("relation_acc", "relation"))


def estimate_cell(e: Estimate) -> str:
    """An estimate as a table cell: "mean [low, high]"."""
    return f"{e.mean:.4g} [{e.low:.4g}, {e.high:.4g}]"


class Table:
    """The table files of one output folder. `write()` bootstraps every row over its finished
    seeds (replicates kept until the row gains a seed) and each row's Emo-A, FID, within-polarity
    confusion and (narrative world) relation difference from CoEmoGen (from the two rows'
    independent replicates); `write(intervals=False)`, after each (row, seed) of a long run,
    writes the means only, which costs nothing."""

    def __init__(self, out: Path, rows: list[Row], seeds: range, num_resamples: int) -> None:
        self.out, self.rows, self.seeds, self.num_resamples = out, rows, seeds, num_resamples
        self.estimates: dict[str, dict[str, Estimate]] = {}
        self._seen: dict[str, tuple] = {}
        self._samples: dict[str, list[dict]] = {}
        self._replicates: dict[str, dict[str, np.ndarray]] = {}

    def _load(self) -> None:
        for row in self.rows:
            files = [self.out / row.slug / f"seed-{s}" / "report" / "samples.safetensors" for s in self.seeds]
            key = tuple(str(f) for f in files if f.is_file())
            if key and self._seen.get(row.name) != key:
                self._samples[row.name] = [load_samples(f) for f in key]
                self._replicates.pop(row.name, None)
                self._seen[row.name] = key

    def difference(self, row: str, reference: str, metric: str) -> Estimate | None:
        """`row` minus `reference` on `metric` with its interval, from the two rows' independent
        replicates (after `write()`); None where either row lacks them."""
        if metric not in self._replicates.get(row, {}) or metric not in self._replicates.get(reference, {}):
            return None
        return difference(
            self._samples[row],
            self._samples[reference],
            self._replicates[row][metric],
            self._replicates[reference][metric],
            metric,
        )

    def write(self, intervals: bool = True) -> str:
        self._load()
        lines, record = [], {}
        for row in self.rows:
            if row.name not in self._samples:
                continue
            samples = self._samples[row.name]
            line = {"method": row.name, "seeds": len(samples)}
            record[row.name] = {"per_seed": [seed_metrics(s) for s in samples]}
            means = point_estimates(samples)
            if intervals:
                if row.name not in self._replicates:  # a bootstrap seed per row: rows resampled independently
                    self._replicates[row.name] = bootstrap_replicates(
                        samples, self.num_resamples, zlib.crc32(row.name.encode())
                    )
                est = {k: interval(means[k], self._replicates[row.name][k], 0.95, len(samples)) for k in means}
                self.estimates[row.name] = est
                line.update({column: estimate_cell(est[key]) for column, key in COLUMNS.items() if key in est})
                record[row.name]["estimates"] = {key: asdict(e) for key, e in est.items()}
            else:
                line.update({column: f"{means[key]:.4g}" for column, key in COLUMNS.items() if key in means})
            paper = PAPER.get(row.name)
            line[PAPER_COLUMN] = "/".join(f"{v:g}" for v in paper) if paper else "-"
            lines.append(line)
        if intervals and REFERENCE_ROW in self._replicates:
            for line in lines:
                name = line["method"]
                for metric, column in DIFFERENCES:
                    if metric not in self._replicates[REFERENCE_ROW]:
                        continue
                    cell = "-"
                    diff = None if name == REFERENCE_ROW else self.difference(name, REFERENCE_ROW, metric)
                    if diff is not None:
                        cell = estimate_cell(diff)
                        record[name][f"{metric}_minus_coemogen"] = asdict(diff)
                    line[f"{column} − CoEmoGen"] = cell
        if not lines:
            return ""
        columns = list(dict.fromkeys(k for line in lines for k in line))
        columns = [c for c in columns if c != PAPER_COLUMN] + [PAPER_COLUMN]
        table = format_table(lines, columns) + "\n\n" + SEM_D_NOTE
        if not intervals:
            table += "\n\nMeans over the finished seeds; intervals when the run ends (or with --report-only)."
        write_text(self.out / "paper_table.md", table + "\n")
        write_text(self.out / "paper_table.json", json.dumps(record, indent=1))
        return table
