"""Continuous valence/arousal control: the point -> mix map, the anchors, the rated-set reader, the
world's ratings, the V/A judge and metrics, and V/A through generate, edit and export."""

import json
import math

import pytest
import torch

from coemogen.cli import main
from coemogen.data.va import read_va, to_circumplex
from coemogen.errors import CoEmoGenError
from coemogen.evaluation.metrics import ValenceArousalAgreement
from coemogen.taxonomy import MIKELS_ANCHORS, Taxonomy

MIKELS = Taxonomy.default()


@pytest.mark.parametrize("emotion", MIKELS.emotions)
def test_a_point_on_an_anchor_gives_that_emotions_weights(emotion):
    v, a, _ = MIKELS_ANCHORS[emotion]
    mix, intensity = MIKELS.va_mixes([(v, a)])[0]
    assert mix == {emotion: 1.0}
    assert torch.equal(MIKELS.weights([mix]), MIKELS.weights([emotion]))
    assert 0 < intensity <= 1


def test_weights_vary_continuously_between_anchors():
    (v0, a0, _), (v1, a1, _) = MIKELS_ANCHORS["sadness"], MIKELS_ANCHORS["excitement"]
    path = [(v0 + (v1 - v0) * t / 400, a0 + (a1 - a0) * t / 400) for t in range(401)]
    rows = MIKELS.weights([mix for mix, _ in MIKELS.va_mixes(path)])
    assert torch.allclose(rows.sum(1), torch.ones(len(rows)))
    steps = (rows[1:] - rows[:-1]).abs().max(1).values
    assert steps.max() < 0.1  # no jump along a path of 400 small steps
    assert rows[0, MIKELS.index("sadness")] == 1 and rows[-1, MIKELS.index("excitement")] == 1
    # the sharper the temperature, the nearer the mix to the nearest anchor's emotion
    between = ((v0 + v1) / 2 + 0.3, (a0 + a1) / 2)
    soft, sharp = (MIKELS.va_mixes([between], t)[0][0] for t in (2.0, 0.25))
    assert max(sharp.values()) > max(soft.values())


def test_intensity_is_zero_at_neutral_and_one_at_the_anchors_typical_distance():
    assert MIKELS.va_mixes([(0.0, 0.0)])[0][1] == 0.0
    assert MIKELS.va_mixes([(3.0, 3.0)])[0][1] == 1.0
    reach = sum(math.hypot(v, a) for v, a, _ in MIKELS_ANCHORS.values()) / 8
    assert MIKELS.va_mixes([(reach / 2, 0.0)])[0][1] == pytest.approx(0.5)


@pytest.mark.parametrize("point", [(3.01, 0), (0, -3.5), (float("nan"), 0), ("high", 0)])
def test_points_outside_the_circumplex_are_refused(point):
    with pytest.raises(CoEmoGenError, match="must (lie in \\[-3, 3\\]|be numbers)"):
        MIKELS.va_mixes([point])


def test_a_taxonomy_without_anchors_gives_a_clear_error(tmp_path, shipped_pipeline):
    colours = Taxonomy.from_groups({"warm": ["red", "orange"], "cold": ["blue"]})
    with pytest.raises(CoEmoGenError, match="places no emotion in valence/arousal space"):
        colours.va_mixes([(1.0, 1.0)])
    # ArtEmis' "something else" has no anchor: the taxonomy takes none by default
    with pytest.raises(CoEmoGenError, match="places no emotion"):
        Taxonomy.load("artemis").va_mixes([(0.5, 0.5)])
    # a taxonomy file may carry anchors, checked
    path = tmp_path / "colours.json"
    anchors = {"red": {"valence": 1, "arousal": 2}, "orange": {"valence": 2, "arousal": 0}, "blue": {"valence": -1,
               "arousal": -2, "spread": 0.5}}  # fmt: skip
    path.write_text(json.dumps({"groups": colours.to_dict()["groups"], "anchors": anchors, "anchor_source": "mine"}))
    loaded = Taxonomy.load(path)
    assert loaded == colours and loaded.anchor_source == "mine" and loaded.va_mixes([(1, 2)])[0][0] == {"red": 1.0}
    anchors["red"]["valence"] = 4
    path.write_text(json.dumps({"groups": colours.to_dict()["groups"], "anchors": anchors}))
    with pytest.raises(CoEmoGenError, match="anchor of 'red'"):
        Taxonomy.load(path)
    # anchors for another run's emotions are refused by the pipeline
    with pytest.raises(CoEmoGenError, match="is not the run's"):
        shipped_pipeline(va=(1.0, 1.0), va_anchors=loaded, num_inference_steps=1)


def test_the_reader_maps_each_native_scale_onto_the_circumplex(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    rows = ["image,valence,arousal,emotion", "a.png,3,0,awe", "a.png,-3,6,fear", "a.png,0,3,", "a.png,4,1,awe",
            "a.png,,2,awe", "a.png,1,2,shame"]  # fmt: skip
    (tmp_path / "findingemo.csv").write_text("\n".join(rows) + "\n")
    from coemogen.data.manifest import SkipCounter

    skips = SkipCounter()
    records = read_va(tmp_path / "findingemo.csv", "findingemo", MIKELS, skips)
    assert [(r.valence, r.arousal, r.emotion) for r in records] == [(3, -3, "awe"), (-3, 3, "fear"), (0, 0, None)]
    assert skips.total == 3 and any("outside the scale" in r for r in skips.reasons)
    assert to_circumplex(4, 1, 7) == 0 and to_circumplex(7, 1, 7) == 3  # OASIS, 1..7
    assert to_circumplex(1, 1, 9) == -3 and to_circumplex(7, 1, 9) == 1.5  # SAM / Warriner, 1..9
    (tmp_path / "oasis.jsonl").write_text(json.dumps({"image": "a.png", "v": 5.5, "a": 2.5}) + "\n")
    (record,) = read_va(tmp_path / "oasis.jsonl", "oasis")
    assert (record.valence, record.arousal) == (1.5, -1.5)
    (record,) = read_va(tmp_path / "oasis.jsonl", "0:10,0:5")
    assert (record.valence, record.arousal) == pytest.approx((0.3, 0.0))
    with pytest.raises(CoEmoGenError, match="unknown valence/arousal scale"):
        read_va(tmp_path / "oasis.jsonl", "likert")


def test_the_worlds_ratings_are_deterministic_and_centred_on_the_anchors(tmp_path):
    from coemogen.world.dataset import build_world
    from coemogen.world.va import content_statistics

    first, second = (build_world(tmp_path / name, images_per_emotion=6, seed=4, size=32) for name in ("a", "b"))
    records = read_va(first)
    assert [(r.valence, r.arousal) for r in records] == [(r.valence, r.arousal) for r in read_va(second)]
    for emotion, (v, a, _) in MIKELS_ANCHORS.items():
        mine = [r for r in records if r.emotion == emotion]
        assert sum(r.valence for r in mine) / len(mine) == pytest.approx(v, abs=0.01)
        assert sum(r.arousal for r in mine) / len(mine) == pytest.approx(a, abs=0.01)
    # brighter images of an emotion are rated more pleasant (the rule's valence term)
    from PIL import Image

    fear = [r for r in records if r.emotion == "fear"]
    brightness = [content_statistics(Image.open(r.path))[0] for r in fear]
    brightest, darkest = fear[brightness.index(max(brightness))], fear[brightness.index(min(brightness))]
    assert brightest.valence > darkest.valence


def test_agreement_metric_values():
    metric = ValenceArousalAgreement()
    asked = torch.tensor([[-2.0, 1.0], [-1.0, 0.0], [1.0, -1.0], [2.0, 2.0]])
    judged = torch.tensor([[-1.5, 1.0], [0.5, 0.0], [1.0, -2.0], [2.5, 3.0]])
    metric.update(asked, judged)
    out = metric.compute()
    assert out["v_error"] == pytest.approx((0.5 + 1.5 + 0 + 0.5) / 4) and out["a_error"] == pytest.approx(0.5)
    assert out["v_spearman"] == pytest.approx(1.0) and out["polarity_flips"] == pytest.approx(0.25)


def test_va_through_generate_edit_export_head_and_fit(tmp_path, capsys):
    """generate at a point, edit toward one, export one as a mix folder; a V/A head judges the
    generated images (evaluate --va-head); `va fit` writes anchors that --va_anchors then uses."""
    from coemogen.world.dataset import build_world

    gen = tmp_path / "gen"
    assert main(["generate", "--valence", "-2", "--arousal", "-1.5", "--num-images", "3", "--steps", "2",
                 "--out", str(gen)]) == 0  # fmt: skip
    metas = [json.loads(p.read_text()) for p in sorted(gen.glob("*.json"))]
    mix, intensity = MIKELS.va_mixes([(-2.0, -1.5)])[0]
    assert [m["va"] for m in metas] == [[-2.0, -1.5]] * 3 and metas[0]["intensity"] == pytest.approx(intensity)
    assert metas[0]["weights"] == pytest.approx(mix) and metas[0]["emotion"] == "sadness"
    assert main(["generate", "--emotion", "awe", "--valence", "1", "--arousal", "1", "--out", str(tmp_path)]) != 0
    assert "not both" in capsys.readouterr().err

    assert main(["edit", "--images", str(gen / "sadness_0000.png"), "--valence", "2.5", "--arousal", "1",
                 "--steps", "2", "--out", str(tmp_path / "edit")]) == 0  # fmt: skip
    (edit_meta,) = [json.loads(p.read_text()) for p in (tmp_path / "edit").glob("*.json")]
    assert edit_meta["va"] == [2.5, 1.0] and edit_meta["emotion"] == "excitement"

    assert main(["export", "--valence", "1.5", "--arousal", "0.5", "--out", str(tmp_path / "export"),
                 "--num-embeddings", "1"]) == 0  # fmt: skip
    folder = tmp_path / "export" / "va_v+1p5_a+0p5"
    assert (folder / "va_v+1p5_a+0p5.safetensors").is_file() and "va_v+1p5_a+0p5_mean" in (
        folder / "USAGE.md"
    ).read_text()

    world = build_world(tmp_path / "world", images_per_emotion=8, seed=1, size=64)
    head = tmp_path / "va-head"
    assert (
        main(["va-head", "train", "--dataset", str(world), "--features", f"reference:{world}", "--out", str(head)]) == 0
    )
    config = json.loads((head / "config.json").read_text())
    assert config["errors"]["test"]["v_error"] < 1.5 and config["num_images"]["train"] > 0
    assert main(["evaluate", "--images", str(gen), "--va-head", str(head), "--out", str(tmp_path / "report")]) == 0
    report = json.loads((tmp_path / "report" / "va_metrics.json").read_text())
    assert report["images"] == 3 and 0 <= report["v_error"] <= 6

    fitted = tmp_path / "fitted.json"
    assert main(["va", "fit", "--dataset", str(world), "--out", str(fitted)]) == 0
    anchors = Taxonomy.load(fitted)
    assert anchors.anchors and "fitted by `coemogen va fit`" in anchors.anchor_source
    assert main(["generate", "--valence", "-2", "--arousal", "-1.5", "--num-images", "1", "--steps", "2",
                 "--va_anchors", str(fitted), "--out", str(tmp_path / "gen2")]) == 0  # fmt: skip
