"""How much of a narrative world's emotion each kind of supervision carries
(`coemogen world probe WORLD`): the same small classifier fitted on the train split and scored on
the test split, given

- `relational`: the truth record (relation, entity, scene, props, expression, pose, brightness,
  saturation), i.e. what a sentence that states the relation can carry;
- `truth_bag`: the same record without the relation (the attribute words, had EmoSet missed none);
- `annotation_bag`: only the EmoSet annotation file (scene, object words, facial expression, human
  action, brightness, colourfulness; generic names, dropped attributes and empty annotations as
  written), i.e. what word-level supervision gets.

The classifier is a one-hidden-layer MLP on one-hot (and multi-hot) features with the two lighting
values as numbers, trained full-batch with Adam from a fixed seed; it is the same for all three, so
differences come from the inputs. `relational - annotation_bag` is the room sentence-level
supervision has over word-level attributes in this world.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..taxonomy import Taxonomy
from .narrative import read_narrative_truth
from .paths import is_narrative

FEATURE_SETS = ("relational", "truth_bag", "annotation_bag")


def _truth_tokens(spec, relational: bool) -> tuple[list[str], list[float]]:
    tokens = [f"entity={spec.entity}", f"scene={spec.scene}", f"action={spec.action}", f"face={spec.expression}"]
    tokens += [f"object={o}" for o in spec.objects]
    if relational:
        tokens.append(f"relation={spec.relation}")
    return tokens, [spec.brightness, spec.saturation, 1.0, 1.0]


def _annotation_tokens(annotation: dict) -> tuple[list[str], list[float]]:
    tokens = [f"scene={annotation.get('scene')}", f"face={annotation.get('facial_expression')}"]
    tokens.append(f"action={annotation.get('human_action')}")
    tokens += [f"object={o}" for o in annotation.get("object", [])]
    # A missing value is 0 with its indicator 0, so the model can tell it from a dark image.
    numbers = [float(annotation.get(k, 0.0)) for k in ("brightness", "colorfulness")]
    numbers += [float(k in annotation) for k in ("brightness", "colorfulness")]
    return tokens, numbers


def _examples(root: Path, split: str, kind: str, taxonomy: Taxonomy) -> tuple[list, list[int]]:
    truth = read_narrative_truth(root)
    rows, labels = [], []
    for emotion, image_path, ann_path in json.loads((root / f"{split}.json").read_text()):
        if kind == "annotation_bag":
            rows.append(_annotation_tokens(json.loads((root / ann_path).read_text())))
        else:
            rows.append(_truth_tokens(truth[image_path], relational=kind == "relational"))
        labels.append(taxonomy.index(emotion))
    return rows, labels


def _encode(rows: list, vocab: dict[str, int]) -> torch.Tensor:
    x = torch.zeros(len(rows), len(vocab) + len(rows[0][1]))
    for i, (tokens, numbers) in enumerate(rows):
        for t in tokens:
            if t in vocab:  # a value never seen in training carries nothing
                x[i, vocab[t]] = 1.0
        x[i, len(vocab) :] = torch.tensor(numbers)
    return x


def fit_probe(
    x: torch.Tensor, y: torch.Tensor, classes: int, seed: int = 0, hidden: int = 64, steps: int = 400
) -> nn.Module:
    """The probe's classifier: a one-hidden-layer MLP, full-batch Adam with weight decay."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(x.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, classes))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval()


def probe_world(root: str | Path, seed: int = 0, taxonomy: Taxonomy | None = None) -> dict:
    """Test-split accuracy of the probe classifier on each feature set (see the module docstring)."""
    root = Path(root)
    if not is_narrative(root):
        raise ValueError(f"{root} is not a narrative world (coemogen world build --content narrative)")
    taxonomy = taxonomy or Taxonomy.default()
    report: dict = {"world": str(root), "seed": seed}
    for kind in FEATURE_SETS:
        train_rows, train_y = _examples(root, "train", kind, taxonomy)
        test_rows, test_y = _examples(root, "test", kind, taxonomy)
        vocab = {t: i for i, t in enumerate(sorted({t for tokens, _ in train_rows for t in tokens}))}
        model = fit_probe(_encode(train_rows, vocab), torch.tensor(train_y), taxonomy.num_emotions, seed)
        with torch.no_grad():
            pred = model(_encode(test_rows, vocab)).argmax(1)
        report[kind] = round(float((pred == torch.tensor(test_y)).float().mean()), 4)
        report[f"{kind}_train_images"] = len(train_y)
        report["test_images"] = len(test_y)
    report["chance"] = round(1 / taxonomy.num_emotions, 4)
    report["relational_minus_annotation_bag"] = round(report["relational"] - report["annotation_bag"], 4)
    return report


# What each mechanism of the annotation and of the world contributes to the gap (docs/world-narrative.md).
SENSITIVITY_VARIANTS: dict[str, dict[str, float]] = {
    "as designed": {},
    "no generic names": {"GENERIC_RATE": 0.0},
    "no empty annotations": {"NO_ATTRIBUTES_RATE": 0.0},
    "neither": {"GENERIC_RATE": 0.0, "NO_ATTRIBUTES_RATE": 0.0},
    "every face readable": {"FACE_RATE": 1.0},
    "no relation noise": {"RELATION_NOISE": 0.0},
}


def probe_sensitivity(out: str | Path, images_per_emotion: int = 300, seed: int = 0) -> list[dict]:
    """Build one narrative world per `SENSITIVITY_VARIANTS` entry under `out` (the named rates of
    `narrative` set for that build only) and probe each; returns one report per variant."""
    from . import narrative

    rows = []
    for i, (name, overrides) in enumerate(SENSITIVITY_VARIANTS.items()):
        saved = {k: getattr(narrative, k) for k in overrides}
        try:
            for k, v in overrides.items():
                setattr(narrative, k, v)
            root = narrative.build_narrative_world(
                Path(out) / f"variant-{i}", images_per_emotion, seed, relation_noise=narrative.RELATION_NOISE
            )
        finally:
            for k, v in saved.items():
                setattr(narrative, k, v)
        rows.append({"variant": name, **overrides, **probe_world(root, seed)})
    return rows


def filter_blind_spot(captions: str | Path, manifest: str | Path, world: str | Path) -> dict:
    """Which oracle captions of a narrative world the CLIP filter removed (`coemogen filter`'s
    manifest against the captions it read), by kind: faithful, hallucinated only, reasoning error
    only (split by how the wrong relation differs from the true one: its word-order twin, another
    verb with the same entity and pose, or another pose), and both."""
    from .narrative import RELATION

    records = [json.loads(line) for line in Path(captions).read_text().splitlines() if line.strip()]
    kept = {json.loads(line)["id"] for line in Path(manifest).read_text().splitlines() if line.strip()}
    world = Path(world).resolve()
    truth = read_narrative_truth(world)

    def true_relation(r: dict) -> str:
        return truth[str(Path(r["image"]).resolve().relative_to(world))].relation

    def kind(r: dict) -> str:
        if r.get("hallucinated") and r.get("reasoning_error"):
            return "both"
        if r.get("hallucinated"):
            return "hallucinated only"
        if not r.get("reasoning_error"):
            return "faithful"
        true, written = RELATION[true_relation(r)], RELATION[r["relation"]]
        if sorted(true.sentence().split()) == sorted(written.sentence().split()):
            return "reasoning error: word-order twin"
        if true.action == written.action:
            return "reasoning error: same entity and pose, another verb"
        return "reasoning error: same entity, another pose"

    groups: dict[str, list[bool]] = {}
    for r in records:
        groups.setdefault(kind(r), []).append(r["id"] not in kept)
    return {
        "captions": len(records),
        "kept": len(kept),
        "removed_share": {
            k: {"removed": sum(v), "of": len(v), "share": round(sum(v) / len(v), 3)} for k, v in groups.items()
        },
    }
