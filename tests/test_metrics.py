"""The metric objects (coemogen.evaluation.metrics), the report files (coemogen.evaluation.report)
and `evaluate` on stand-in networks (too few images for a metric: NaN plus a warning)."""

import json
import math
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import linalg

from coemogen.data.images import load_rgb, to_tensor
from coemogen.evaluation.evaluate import MetricNetworks, evaluate
from coemogen.evaluation.metrics import (
    CosineSemanticDiversity,
    EmotionAccuracy,
    FrechetDistance,
    LPIPSDiversity,
    PolarityAccuracy,
    SemanticConsistency,
    SemanticDiversity,
    TargetProbability,
    random_pairs,
)
from coemogen.evaluation.report import METRICS, markdown_table, write_report
from coemogen.taxonomy import Taxonomy

TAX = Taxonomy.default()


def _scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook FID on whole feature matrices: np.cov and scipy's matrix square root."""
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real))


def _feed(metric: FrechetDistance, x: np.ndarray, chunks: list[int], real: bool) -> None:
    for part in np.split(x, np.cumsum(chunks)[:-1]):
        metric.update(torch.from_numpy(part), real=real)


@pytest.mark.parametrize("chunks", [[200], [100, 100], [1, 199], [7, 50, 0, 143], [1] * 200])
@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_frechet_running_sums_match_the_full_matrix_computation(chunks, offset):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 5)) @ rng.normal(size=(5, 5)) + offset  # correlated, possibly far from zero
    b = rng.normal(loc=0.5, scale=1.5, size=(150, 5)) + offset
    m = FrechetDistance()
    _feed(m, a, chunks, real=True)
    _feed(m, b, [150], real=False)
    assert (m.num_real, m.num_fake) == (200, 150)
    mu, cov = m.real.mean_and_cov()
    np.testing.assert_allclose(mu, a.mean(0), rtol=1e-12, atol=1e-9 * (1 + offset))
    np.testing.assert_allclose(cov, np.cov(a, rowvar=False), rtol=1e-9, atol=1e-9)
    assert m.compute() == pytest.approx(_scipy_fid(a, b), rel=1e-8)


def test_frechet_state_is_independent_of_the_number_of_samples():
    m = FrechetDistance()
    for _ in range(3):
        m.update(torch.randn(1000, 16), real=True)
    assert m.real.outer.shape == (16, 16) and m.real.sum.shape == (16,)  # O(d^2), not O(n d)
    assert not [v for v in vars(m.real).values() if isinstance(v, (list, torch.Tensor))]


def test_frechet_distance_of_a_set_to_itself_is_zero_and_needs_two_samples_per_set():
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    same = FrechetDistance()
    same.update(x, True)
    same.update(x, False)
    assert abs(same.compute()) < 1e-6
    few = FrechetDistance()
    few.update(x, True)
    few.update(x[:1], False)
    with pytest.raises(ValueError, match="at least 2 real and 2 generated.*50 real and 1 generated"):
        few.compute()
    with pytest.raises(ValueError, match="0 real and 0 generated"):
        FrechetDistance().compute()


def _old_pairwise(kind: str, feats, pairs: torch.Tensor, layer_weights=None) -> float:
    """The pre-redesign `PairwiseDistance.compute`, on whole sets, as the reference."""
    i, j = pairs[:, 0], pairs[:, 1]
    if kind == "mse":
        return float(((feats[i] - feats[j]) ** 2).mean(dim=1).mean())
    if kind == "cosine":
        return float((1 - F.cosine_similarity(feats[i], feats[j], dim=1)).mean())
    total = torch.zeros(len(pairs), dtype=feats[0].dtype)
    for k, fmap in enumerate(feats):
        unit = fmap / torch.sqrt((fmap**2).sum(dim=1, keepdim=True) + 1e-8)
        w = layer_weights[k].view(1, -1, 1, 1) if layer_weights else 1.0
        total += (w * (unit[i] - unit[j]) ** 2).sum(dim=1).mean(dim=(1, 2))
    return float(total.mean())


def test_pairwise_metrics_equal_the_old_pairwise_distance():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(23, 6, generator=g)
    pairs = random_pairs(23, 300, seed=4)
    for kind, cls in (("mse", SemanticDiversity), ("cosine", CosineSemanticDiversity)):
        m = cls(num_pairs=300, seed=4)
        for part in (feats[:5], feats[5:6], feats[6:]):
            m.update(part)
        assert m.compute() == _old_pairwise(kind, feats.double(), pairs)
    maps = [torch.randn(23, c, 3, 3, generator=g) for c in (2, 5)]
    for weights in (None, [torch.rand(2, generator=g), torch.rand(5, generator=g)]):
        m = LPIPSDiversity(num_pairs=300, seed=4, layer_weights=weights)
        m.update([f[:10] for f in maps])
        m.update([f[10:] for f in maps])
        as_double = None if weights is None else [w.double() for w in weights]
        assert m.compute() == _old_pairwise("lpips", [f.double() for f in maps], pairs, as_double)  # float64 now


def test_random_pairs_are_the_published_ones():
    """The pairs behind every reported LPIPS and Sem-D: changing them changes past numbers."""
    assert random_pairs(7, 8, 0).tolist() == [[4, 6], [3, 0], [0, 6], [2, 5], [1, 2], [2, 6], [6, 4], [3, 6]]
    assert random_pairs(1, 8, 0).shape == (0, 2)


def test_pair_distances_on_known_features():
    pairs = random_pairs(5, 100, seed=1)
    assert (pairs[:, 0] != pairs[:, 1]).all() and torch.equal(pairs, random_pairs(5, 100, seed=1))
    feats = torch.tensor([[0.0, 0.0], [2.0, 0.0]])  # every pair is (0, 1) or (1, 0)
    mse = SemanticDiversity(num_pairs=10)
    mse.update(feats)
    assert mse.compute() == pytest.approx(2.0)  # ((2-0)^2 + 0^2) / 2 dimensions
    cos = CosineSemanticDiversity(num_pairs=10)
    cos.update(torch.tensor([[1.0, 0.0], [0.0, 3.0]]))
    assert cos.compute() == pytest.approx(1.0)
    lp = LPIPSDiversity(num_pairs=10)
    lp.update([torch.tensor([[[[1.0]], [[0.0]]], [[[0.0]], [[1.0]]]])])  # unit vectors e1, e2 at one position
    assert lp.compute() == pytest.approx(2.0)
    single = SemanticDiversity()
    single.update(feats[:1])
    with pytest.raises(ValueError, match="at least 2 samples.*got 1"):
        single.compute()


LOGITS = torch.tensor([[5.0, 0, 0, 0], [0, 5.0, 0, 0], [0, 0, 0, 5.0], [5.0, 0, 0, 0]])
TARGETS = torch.tensor([0, 0, 2, 2])


def test_emotion_accuracy_keeps_counts():
    m = EmotionAccuracy()
    m.update(LOGITS[:3], TARGETS[:3])
    assert (m.correct, m.total) == (1, 3)
    m.update(LOGITS[3:], TARGETS[3:])
    assert (m.correct, m.total) == (1, 4) and m.compute() == 0.25
    polarity = PolarityAccuracy(group_of_class=[0, 0, 1, 1])
    polarity.update(LOGITS, TARGETS)
    assert (polarity.correct, polarity.total) == (3, 4) and polarity.compute() == 0.75
    target = TargetProbability()
    target.update(LOGITS[:1], TARGETS[:1])
    target.update(LOGITS[1:], TARGETS[1:])
    p = torch.softmax(torch.tensor([5.0, 0, 0, 0]), 0)[0].item()
    assert target.count == 4 and target.compute() == pytest.approx((p + 3 * (1 - p) / 3) / 4)


def test_semantic_consistency_on_known_probabilities():
    s = SemanticConsistency()
    s.update(torch.tensor([[0.7, 0.3]]), torch.tensor([[0.2, 0.8]]))
    s.update(torch.tensor([[0.5, 0.5]]), torch.tensor([[0.1, 0.4]]))
    assert s.count == 2 and s.compute() == pytest.approx((0.8 + 0.5) / 2)


def _data(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "feats": torch.randn(12, 4, generator=g),
        "maps": torch.randn(12, 3, 2, 2, generator=g),
        "logits": torch.randn(12, 4, generator=g),
        "targets": torch.randint(0, 4, (12,), generator=g),
        "probs": torch.rand(12, 5, generator=g).softmax(1),
    }


# name: (metric factory, update with one data set, higher_is_better)
CASES = {
    "fid": (FrechetDistance, lambda m, d: (m.update(d["feats"], True), m.update(d["feats"][:5] * 2, False)), False),
    "lpips": (lambda: LPIPSDiversity(50, 0), lambda m, d: m.update([d["maps"]]), True),
    "sem_d": (lambda: SemanticDiversity(50, 0), lambda m, d: m.update(d["feats"]), True),
    "sem_d_cosine": (lambda: CosineSemanticDiversity(50, 0), lambda m, d: m.update(d["feats"]), True),
    "emo_a": (EmotionAccuracy, lambda m, d: m.update(d["logits"], d["targets"]), True),
    "polarity_acc": (lambda: PolarityAccuracy([0, 0, 1, 1]), lambda m, d: m.update(d["logits"], d["targets"]), True),
    "target_prob": (TargetProbability, lambda m, d: m.update(d["logits"], d["targets"]), True),
    "sem_c": (SemanticConsistency, lambda m, d: m.update(d["probs"], d["probs"][:, :3]), True),
}


@pytest.mark.parametrize("name", CASES)
def test_reset_returns_a_metric_to_its_empty_state(name):
    make, feed, _ = CASES[name]
    first, second = _data(1), _data(3)
    m = make()
    with pytest.raises(ValueError):
        m.compute()
    feed(m, first)
    before = m.compute()
    m.reset()
    with pytest.raises(ValueError):
        m.compute()
    feed(m, second)
    fresh = make()
    feed(fresh, second)
    assert m.compute() == fresh.compute() != before


@pytest.mark.parametrize("name", CASES)
def test_metrics_declare_their_direction(name):
    make, _, higher_is_better = CASES[name]
    m = make()
    assert m.higher_is_better is higher_is_better and m.is_differentiable is False


def _report() -> dict:
    return {
        "overall": {k: 0.5 for k in METRICS if k != "relation_acc"},  # an objects-world report
        "per_emotion": {
            "awe": {
                "fid": 12.345,
                "lpips": 0.25,
                "emo_a": 0.875,
                "sem_c": 0.6,
                "sem_d": 0.03,
                "polarity_acc": 1.0,
                "within_polarity": 0.125,
            },
            "fear & <dread>": {
                "fid": math.nan,
                "lpips": 0.125,
                "emo_a": 1 / 3,
                "sem_c": 0.7,
                "sem_d": 0.04,
                "polarity_acc": 0.0,
                "within_polarity": 0.0,
            },
        },
        "settings": {"networks": {"fid": "net <b>&</b>"}, "warnings": ["fear: FID needs <2>"]},
    }


class _Html(HTMLParser):
    """Checks that every element closes in order, and collects the table's rows of cell texts."""

    VOID = {"meta", "img", "br", "hr", "input", "link"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.rows: list[list[str]] = []
        self.tables = 0

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables += 1
        if tag == "tr":
            self.rows.append([])
        if tag in ("td", "th"):
            self.rows[-1].append("")
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack.pop() == tag, f"</{tag}> closes nothing open"

    def handle_data(self, data):
        if self.stack and self.stack[-1] in ("td", "th"):
            self.rows[-1][-1] += data


def test_report_files_hold_the_report_data(tmp_path):
    report = _report()
    write_report(
        report, {"awe": [Image.new("RGB", (8, 8))] * 3, "fear & <dread>": [Image.new("RGB", (8, 8))]}, tmp_path
    )
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert math.isnan(saved["per_emotion"]["fear & <dread>"].pop("fid"))
    report["per_emotion"]["fear & <dread>"].pop("fid")
    assert saved == report
    md = (tmp_path / "metrics.md").read_text()
    assert md == markdown_table(_report()) + "\n" and "12.35" in md and "0.875" in md

    text = (tmp_path / "report.html").read_text()
    page = _Html()
    page.feed(text)
    page.close()
    assert page.stack == [] and page.tables == 1
    header, *rows = page.rows
    assert header == ["emotion", *(m for m in METRICS if m != "relation_acc")]
    assert rows == [
        ["awe", "12.35", "0.25", "0.875", "0.6", "0.03", "1", "0.125"],
        ["fear & <dread>", "nan", "0.125", "0.3333", "0.7", "0.04", "0", "0"],
        ["overall", "0.5", "0.5", "0.5", "0.5", "0.5", "0.5", "0.5"],
    ]
    assert "net &lt;b&gt;&amp;&lt;/b&gt;" in text and "<b>" not in text  # text is escaped
    assert "<td>fear &amp; &lt;dread&gt;</td>" in text and "<h3>fear &amp; &lt;dread&gt;</h3>" in text
    assert "fear: FID needs &lt;2&gt;" in text
    assert text.count("data:image/png;base64") == 3  # the charts and one grid per emotion


class _StandIn:
    """A metric network for tests: a fixed function of the pixels."""

    image_size = 8

    def __init__(self, name, fn) -> None:
        self.name, self.fn = name, fn

    def __call__(self, pixels):
        return self.fn(pixels)


def _stand_in_networks() -> MetricNetworks:
    def probs(k):
        return lambda px: px.flatten(1)[:, :k].softmax(1)

    return MetricNetworks(
        fid=_StandIn("mean colour", lambda px: px.mean((2, 3)).double()),
        lpips=_StandIn("pixels", lambda px: [px]),
        emotion=_StandIn("first pixels", lambda px: px.flatten(1)[:, : len(TAX.emotions)]),
        scene=_StandIn("scene", probs(5)),
        object=_StandIn("object", probs(7)),
        clip=_StandIn("flat", lambda px: px.flatten(1)),
    )


def _images(root, counts: dict[str, int]):
    g = torch.Generator().manual_seed(len(str(root)))
    for emotion, n in counts.items():
        (root / emotion).mkdir(parents=True)
        for i in range(n):
            pixels = (torch.rand(8, 8, 3, generator=g) * 255).to(torch.uint8).numpy()
            Image.fromarray(pixels).save(root / emotion / f"{i}.png")
    return root


def test_too_few_images_give_nan_and_a_warning_in_the_report(tmp_path, caplog):
    reference = _images(tmp_path / "reference", {"awe": 4, "fear": 4, "anger": 1})
    generated = _images(tmp_path / "generated", {"awe": 1, "fear": 3, "anger": 3})
    with caplog.at_level("WARNING"):
        report = evaluate(generated, reference, tmp_path / "out", TAX, num_pairs=20, networks=_stand_in_networks())
    awe, fear, anger = (report["per_emotion"][e] for e in ("awe", "fear", "anger"))
    assert all(math.isnan(awe[k]) for k in ("fid", "lpips", "sem_d", "sem_d_cosine"))
    assert math.isnan(anger["fid"]) and not math.isnan(anger["lpips"])
    assert all(math.isfinite(fear[k]) for k in ("fid", "lpips", "sem_d", "emo_a"))
    assert (anger["num_images"], anger["num_reference"]) == (3, 1)
    warnings = report["settings"]["warnings"]
    assert len(warnings) == 3
    assert any("awe" in w and "FID" in w and "1 generated and 4 reference" in w for w in warnings)
    assert any("awe" in w and "LPIPS" in w for w in warnings)
    assert any("anger" in w and "FID" in w and "3 generated and 1 reference" in w for w in warnings)
    assert not any("fear" in w for w in warnings)
    assert all(w in caplog.text for w in warnings)
    assert math.isfinite(report["overall"]["fid"])  # pooled over every emotion
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["settings"]["warnings"] == warnings
    assert "1 generated and 4 reference" in (tmp_path / "out" / "report.html").read_text()


def test_evaluate_pools_the_overall_metrics(tmp_path):
    reference = _images(tmp_path / "reference", {"awe": 3, "fear": 4})
    generated = _images(tmp_path / "generated", {"awe": 2, "fear": 5})
    nets = _stand_in_networks()
    report = evaluate(generated, reference, tmp_path / "out", TAX, num_pairs=20, networks=nets)
    assert report["settings"]["warnings"] == []
    per = report["per_emotion"]
    assert report["overall"]["emo_a"] == pytest.approx((2 * per["awe"]["emo_a"] + 5 * per["fear"]["emo_a"]) / 7)
    assert report["overall"]["lpips"] == pytest.approx((per["awe"]["lpips"] + per["fear"]["lpips"]) / 2)
    assert report["overall"]["fid_mean_per_emotion"] == pytest.approx((per["awe"]["fid"] + per["fear"]["fid"]) / 2)

    def feats(root):
        paths = sorted(root.rglob("*.png"))
        return torch.stack([nets.fid(to_tensor(load_rgb(p), 8)[None])[0] for p in paths]).numpy()

    assert report["overall"]["fid"] == pytest.approx(_scipy_fid(feats(reference), feats(generated)), rel=1e-6)
