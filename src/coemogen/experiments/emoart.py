"""`coemogen bench emoart`: the paper's scalability study (EmoArt) in miniature.

The paper labels WikiArt paintings with an emotion classifier trained on EmoSet, keeps those it
labels with confidence above 0.75 among EmoArt's 6 emotions (excitement and disgust dropped),
captions and trains them with the same pipeline. Here:

1. an unlabelled art pool: the world's scenes of every emotion, painted (`world build --style art`);
2. selection: the photo world's emotion classifier (trained on photographs only) labels the pool;
   a painting is kept when its top emotion is an EmoArt emotion with probability above 0.75;
3. the kept paintings, under their predicted labels, are captioned by the oracle (with
   hallucinations), CLIP-filtered and trained with the `emoart` taxonomy;
4. judges: art-world judges trained on the true labels of a separately seeded art world (they
   share no weights with the labeller, the pocket models or any run); reference: another art world;
5. compared: CoEmoGen trained on the art, the photo-world run (the shipped run) asked for the same
   emotions, and the base model prompted with them.

Finished stages are kept (each writes its result last), so a killed study resumes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from ..captioning.filtering import filter_captions
from ..captioning.runner import run_captioning
from ..data.images import image_grid, load_rgb, to_tensor
from ..data.manifest import SkipCounter
from ..data.readers import DatasetItem, read_dataset
from ..errors import CoEmoGenError
from ..evaluation.evaluate import evaluate
from ..evaluation.metrics import REPORTED
from ..io import atomic_output, write_text
from ..pipelines.pipeline_coemogen import CoEmoGenPipeline
from ..tables import format_table
from ..taxonomy import Taxonomy
from ..training.loop import train
from ..world.dataset import build_world
from ..world.judges import WorldCNN, build_evaluators, world_networks
from ..world.oracle import OracleCaptioner
from ..world.paths import EVALUATORS, POCKET_CLIP, SHIPPED_RUN
from .stages import StageRunner, base_model_images, generate_per_emotion, study_training_arguments

CONFIDENCE = 0.75  # the paper's selection threshold


@dataclass(frozen=True)
class EmoArtScale:
    pool_per_emotion: int  # unlabelled paintings per (true) emotion, all 8 emotions
    judge_images_per_emotion: int
    judge_steps: int
    reference_per_emotion: int
    train_steps: int
    generated_per_emotion: int
    inference_steps: int
    train_batch_size: int = 8


SCALES = {
    "default": EmoArtScale(400, 200, 300, 100, 600, 32, 15),
    "quick": EmoArtScale(40, 6, 4, 4, 4, 2, 3, train_batch_size=2),
}
METHODS = {
    "CoEmoGen trained on EmoArt": "art",
    "photo-world CoEmoGen (shipped run)": "photo",
    "Stable Diffusion prompted": "base",
}


@torch.no_grad()
def select_paintings(pool: Path, labeller: WorldCNN, source: Taxonomy, target: Taxonomy) -> tuple[list, dict]:
    """Label the pool with the photo classifier; keep paintings whose top emotion is one of
    `target`'s with probability above CONFIDENCE. Returns the kept items (predicted labels) and
    the selection's statistics (how many kept per label, and how often the label is the true one)."""
    items = read_dataset(pool, source, SkipCounter())
    size = labeller.config["image_size"]
    kept, correct, per_label = [], 0, {e: 0 for e in target.emotions}
    for i in range(0, len(items), 256):
        batch = items[i : i + 256]
        probs = F.softmax(labeller(torch.stack([to_tensor(load_rgb(it.path), size) for it in batch]))["emotion"], 1)
        confidence, label = probs.max(1)
        for item, p, k in zip(batch, confidence.tolist(), label.tolist()):
            predicted = source.emotions[k]
            if p > CONFIDENCE and predicted in target.emotions:
                kept.append(DatasetItem(item.id, item.path, predicted, split="train"))
                per_label[predicted] += 1
                correct += predicted == item.emotion
    stats = {
        "pool": len(items),
        "kept": len(kept),
        "kept_share": len(kept) / max(1, len(items)),
        "label_precision": correct / max(1, len(kept)),  # kept paintings whose predicted label is the true one
        "kept_per_label": per_label,
        "confidence_threshold": CONFIDENCE,
    }
    return kept, stats


def run_emoart(out: str | Path, quick: bool = False, seed: int = 0) -> dict:
    """The study; writes `emoart.md`, `emoart.json`, `selection.json` and one grid per method."""
    scale = SCALES["quick" if quick else "default"]
    out = Path(out).resolve()
    mikels, emoart = Taxonomy.default(), Taxonomy.load("emoart")
    stages = StageRunner()
    with stages.stage("art pool, art reference and art judges"):
        pool = build_world(out / "art-pool", scale.pool_per_emotion, seed, style="art", taxonomy=mikels)
        reference = build_world(
            out / "art-reference", scale.reference_per_emotion, seed + 11, style="art", taxonomy=emoart
        )
        judges = out / "art-judges"
        if not (judges / "evaluators.json").is_file():  # written last
            build_evaluators(
                judges, reference, scale.judge_images_per_emotion, seed + 100, scale.judge_steps,
                style="art", taxonomy=emoart,
            )  # fmt: skip
    with stages.stage("selection by the photo classifier"):
        labeller = WorldCNN.load(EVALUATORS / "emotion-judge")  # trained on the photo world only
        kept, selection = select_paintings(pool, labeller, mikels, emoart)
        write_text(out / "selection.json", json.dumps(selection, indent=1))
        empty = [e for e, n in selection["kept_per_label"].items() if n == 0]
        if empty:
            raise CoEmoGenError(
                f"the photo classifier labelled no painting {', '.join(empty)} with confidence above {CONFIDENCE}; "
                f"a larger pool (now {scale.pool_per_emotion} per emotion) is needed to train every EmoArt emotion"
            )
    run = out / "art-run"
    if not (run / "clusters.safetensors").is_file():  # the run's last file
        with stages.stage("caption, filter and train on the selected paintings"):
            run_captioning(kept, OracleCaptioner(0.2, seed=seed), out / "captions.jsonl")
            filter_captions(out / "captions.jsonl", out / "manifest.jsonl", str(POCKET_CLIP), seed=seed)
            args = study_training_arguments(
                out / "manifest.jsonl", run, scale.train_steps, scale.train_batch_size, seed, taxonomy="emoart"
            )
            train(args, run_name="coemogen-emoart")
    networks = world_networks(judges)
    results, grids = {}, []
    for name, source in METHODS.items():
        work = out / source
        with stages.stage(name):
            if not (work / "report" / "samples.safetensors").is_file():
                if source == "base":
                    make = partial(
                        base_model_images, n=scale.generated_per_emotion, steps=scale.inference_steps, seed=seed
                    )
                else:
                    pipe = CoEmoGenPipeline.from_pretrained(run if source == "art" else SHIPPED_RUN)
                    make = partial(
                        pipe,
                        num_images=scale.generated_per_emotion,
                        seed=seed,
                        num_inference_steps=scale.inference_steps,
                    )
                generate_per_emotion(make, emoart, work / "generated")
                evaluate(work / "generated", reference, work / "report", emoart, num_pairs=500, seed=seed,
                         networks=networks)  # fmt: skip
            results[name] = json.loads((work / "report" / "metrics.json").read_text())["overall"]
            grids.append(_grid(work / "generated", emoart))
    with atomic_output(out / "grids.png") as tmp:  # rows: methods; within a row, each emotion's first images
        image_grid(grids, columns=1).save(tmp, format="PNG")
    write_results(out, results, selection, json.loads((judges / "evaluators.json").read_text()), scale)
    print(f"\nstage seconds: {stages.seconds}")
    return {"results": results, "selection": selection}


def _grid(folder: Path, taxonomy: Taxonomy, per_emotion: int = 4):
    images = []
    for emotion in taxonomy.emotions:
        paths = sorted((folder / emotion).glob(f"{emotion}_*.png"))[:per_emotion]
        images += [load_rgb(p) for p in paths]
    return image_grid(images, columns=len(images))


def write_results(out: Path, results: dict, selection: dict, judges: dict, scale: EmoArtScale) -> str:
    present = {k for m in results.values() for k in m}
    columns = {m.label: m.key for m in REPORTED if m.key in present}
    rows = [{"method": name, **{c: m[k] for c, k in columns.items()}} for name, m in results.items()]
    table = format_table(rows, ["method", *columns])
    write_text(out / "emoart.md", table + "\n")
    record = {
        "results": results,
        "selection": selection,
        "judges": {k: judges[k] for k in ("emotion_accuracy", "polarity_accuracy", "scene_accuracy") if k in judges},
        "scale": asdict(scale),
    }
    write_text(out / "emoart.json", json.dumps(record, indent=1))
    print("\n" + table)
    return table
