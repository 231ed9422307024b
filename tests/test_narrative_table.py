"""The paper table and the metrics on the narrative world: its data gets its own pocket models and
judges by default, and the relation metric counts generated images that show a relation of their
emotion."""

import json
import shutil

import numpy as np
import pytest
import torch

from coemogen.cli import main
from coemogen.data.readers import read_dataset
from coemogen.evaluation.evaluate import evaluate
from coemogen.evaluation.metrics import RelationAgreement
from coemogen.experiments.statistics import bootstrap, load_samples, measured
from coemogen.models.base import resolve_sources
from coemogen.taxonomy import Taxonomy
from coemogen.world.judges import world_networks_for
from coemogen.world.narrative import RELATION

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def narrative_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("narrative") / "w"
    main(["world", "build", "--content", "narrative", "--out", str(root), "--images-per-emotion", "4"])
    return root


def test_relation_agreement_counts_relations_of_the_target_emotion():
    metric = RelationAgreement(emotion_of_relation=(0, 1, 1, 2))
    logits = torch.tensor([[5.0, 0, 0, 0], [0, 0, 5.0, 0], [0, 0, 0, 5.0], [0, 5.0, 0, 0]])
    metric.update(logits, torch.tensor([0, 1, 1, 2]))  # relations 0, 2, 3, 1 -> emotions 0, 1, 2, 1
    assert metric.compute() == 0.5
    assert metric.per_sample().tolist() == [1.0, 1.0, 0.0, 0.0]


def test_narrative_data_defaults_to_the_narrative_pocket_models(narrative_world, tmp_path):
    image = next(iter(read_dataset(narrative_world, Taxonomy.default()))).path
    assert resolve_sources(data=image) == ("coemogen:narrative-pocket-sd", "coemogen:narrative-pocket-clip")
    main(["world", "build", "--out", str(tmp_path / "objects"), "--images-per-emotion", "1", "--size", "32"])
    objects_image = next(iter(read_dataset(tmp_path / "objects", Taxonomy.default()))).path
    assert resolve_sources(data=objects_image) == ("coemogen:pocket-sd", "coemogen:pocket-clip")


def test_evaluate_on_a_narrative_world_judges_relations(narrative_world, tmp_path):
    """The world's own images as the generated set: the relation judge finds their relations, and the
    same images filed under the wrong emotions score low (the metric can fail)."""
    items = list(read_dataset(narrative_world, Taxonomy.default()))
    truth = {
        json.loads(line)["image_path"]: json.loads(line)["relation"]
        for line in (narrative_world / "truth.jsonl").read_text().splitlines()
    }
    emotions = Taxonomy.default().emotions
    for folder, shift in (("true", 0), ("shifted", 1)):
        for k, item in enumerate(items):
            emotion = RELATION[truth[str(item.path.relative_to(narrative_world))]].emotion
            filed = emotions[(emotions.index(emotion) + shift) % len(emotions)]
            (tmp_path / folder / filed).mkdir(parents=True, exist_ok=True)
            shutil.copy(item.path, tmp_path / folder / filed / f"{k:03d}.png")
    nets = world_networks_for(narrative_world)
    assert nets.relation is not None and "narrative world" in nets.emotion.name
    true = evaluate(tmp_path / "true", narrative_world, tmp_path / "r1", num_pairs=10, networks=nets)
    shifted = evaluate(tmp_path / "shifted", narrative_world, tmp_path / "r2", num_pairs=10, networks=nets)
    assert true["overall"]["relation_acc"] >= 0.8
    assert shifted["overall"]["relation_acc"] <= 0.3
    assert "relation_acc" in true["settings"]["networks"]
    samples = load_samples(tmp_path / "r1" / "samples.safetensors")
    assert "relation_acc" in measured([samples])
    estimate = bootstrap([samples], num_resamples=20)["relation_acc"]
    assert estimate.low <= true["overall"]["relation_acc"] <= estimate.high
    assert "relation_acc" in (tmp_path / "r1" / "metrics.md").read_text()


def test_objects_world_reports_have_no_relation_metric(tmp_path):
    main(["world", "build", "--out", str(tmp_path / "w"), "--images-per-emotion", "3"])
    for item in read_dataset(tmp_path / "w", Taxonomy.default()):
        (tmp_path / "gen" / item.emotion).mkdir(parents=True, exist_ok=True)
        shutil.copy(item.path, tmp_path / "gen" / item.emotion / item.path.name)
    report = evaluate(tmp_path / "gen", tmp_path / "w", tmp_path / "r", num_pairs=5)
    assert "relation_acc" not in report["overall"] and "relation_acc" not in report["settings"]["networks"]
    samples = load_samples(tmp_path / "r" / "samples.safetensors")
    assert "relation_acc" not in samples and "relation_acc" not in measured([samples])
    assert "relation_acc" not in (tmp_path / "r" / "metrics.md").read_text()


@pytest.mark.slow
def test_paper_table_on_the_narrative_world(tmp_path):
    from coemogen.experiments.paper_table import paper_table

    out = tmp_path / "table"
    estimates = paper_table(out, scale="quick", rows=["CoEmoGen"], num_resamples=20, content="narrative")
    assert json.loads((out / "settings.json").read_text())["content"] == "narrative"
    run = json.loads((out / "coemogen" / "seed-0" / "run" / "config.json").read_text())
    assert run["pretrained_model_name_or_path"] == "coemogen:narrative-pocket-sd"
    assert run["clip_model_name_or_path"] == "coemogen:narrative-pocket-clip"
    assert 0.0 <= estimates["CoEmoGen"]["relation_acc"].mean <= 1.0
    header = (out / "paper_table.md").read_text().splitlines()[0]
    assert "| relation" in header
    assert np.isfinite(estimates["CoEmoGen"]["emo_a"].mean)
