"""`coemogen study simulate`: simulated participants who answer from the synthetic world's judges,
so the whole loop (create, answers in the database, analyze) runs offline.

A participant scores each image by the judge the question asks for (emotion: the emotion judge's
probability of the trial's emotion; coherence: the semantics judge's confidence in its scene) and
chooses by a softmax of log-scores at their own sharpness, with lapses; a few answer at random, so
the attention checks have someone to catch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.images import load_rgb, to_tensor
from ..errors import CoEmoGenError
from ..taxonomy import Taxonomy
from ..world.paths import EVALUATORS
from .design import Study
from .server import StudyService
from .store import Store, database_url

SIMULATED_QUESTIONS = ("emotion", "coherence")


@torch.no_grad()
def judge_scores(study: Study, evaluators: str | Path = EVALUATORS) -> dict[str, dict[str, float]]:
    """image id -> {"emotion": P(the image's study emotion), "coherence": max scene probability}."""
    from ..world.judges import WorldCNN

    evaluators = Path(evaluators)
    if not (evaluators / "emotion-judge").is_dir():
        raise CoEmoGenError(f"no world judges in {evaluators} (build them with `coemogen world judges`)")
    judge = WorldCNN.load(evaluators / "emotion-judge")
    semantics = WorldCNN.load(evaluators / "semantics")
    taxonomy = Taxonomy.default()
    size = judge.config["image_size"]
    ids = list(study.images)
    scores = {}
    for start in tqdm(range(0, len(ids), 64), desc="judging the study's images", leave=False):
        batch = ids[start : start + 64]
        images = torch.stack([to_tensor(load_rgb(study.image_path(i)), size) for i in batch])
        emotion = judge(images)["emotion"].softmax(-1)
        scene = semantics(images)["scene"].softmax(-1).amax(-1)
        for row, image_id in enumerate(batch):
            wanted = study.images[image_id]["emotion"]
            p = float(emotion[row, taxonomy.index(wanted)]) if wanted in taxonomy.emotions else 0.0
            scores[image_id] = {"emotion": p, "coherence": float(scene[row])}
    return scores


def simulate(
    study_root: str | Path,
    participants: int,
    seed: int = 0,
    database: str | None = None,
    inattentive: float = 0.1,
    lapse: float = 0.05,
    evaluators: str | Path = EVALUATORS,
) -> int:
    """Answer the study as `participants` simulated people (ids sim-<seed>-0000 ...); returns the
    number of answers stored."""
    study = Study.load(study_root)
    unknown = set(study.spec["questions"]) - set(SIMULATED_QUESTIONS)
    if unknown:
        raise CoEmoGenError(
            f"simulated participants answer only the questions {', '.join(SIMULATED_QUESTIONS)}; "
            f"this study also asks {', '.join(sorted(unknown))}"
        )
    if participants < 1:
        raise CoEmoGenError("--participants must be at least 1")
    scores = judge_scores(study, evaluators)
    rng = np.random.default_rng(seed)
    store = Store(database_url(study.root, database), study.id)
    service = StudyService(study, store)
    stored = 0
    try:
        for k in tqdm(range(participants), desc="simulated participants"):
            careless = rng.random() < inattentive
            sharpness = float(rng.lognormal(np.log(2.0), 0.4))
            state = service.start({"participant": f"sim-{seed}-{k:04d}"})
            while not state["done"]:
                question = study.trials[state["trial"]]["question"]
                shown = [image["id"] for image in state["images"]]
                logits = sharpness * np.log(np.array([scores[i][question] for i in shown]) + 1e-3)
                p = np.exp(logits - logits.max())
                p = (1 - lapse) * p / p.sum() + lapse / len(shown)
                pick = rng.integers(len(shown)) if careless else rng.choice(len(shown), p=p)
                state = service.answer(
                    {
                        "participant": state["participant"],
                        "step": state["step"],
                        "trial": state["trial"],
                        "choice": shown[pick],
                        "rt_ms": int(rng.gamma(4.0, 500.0)),
                    }
                )
                stored += 1
    finally:
        store.close()
    return stored
