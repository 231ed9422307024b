import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import linalg

from coemogen.metrics import EmotionAccuracy, FrechetDistance, PairwiseDistance, SemanticConsistency, random_pairs


def test_frechet_distance_matches_a_direct_scipy_computation():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 5))
    b = rng.normal(loc=0.5, scale=1.5, size=(150, 5))
    m = FrechetDistance()
    m.update(torch.from_numpy(a[:100]), real=True)
    m.update(torch.from_numpy(a[100:]), real=True)
    m.update(torch.from_numpy(b), real=False)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert m.compute() == pytest.approx(expected, rel=1e-9)
    same = FrechetDistance()
    same.update(torch.from_numpy(a), True)
    same.update(torch.from_numpy(a), False)
    assert abs(same.compute()) < 1e-6


def test_pair_distances_on_known_features():
    pairs = random_pairs(5, 100, seed=1)
    assert (pairs[:, 0] != pairs[:, 1]).all() and torch.equal(pairs, random_pairs(5, 100, seed=1))
    feats = torch.tensor([[0.0, 0.0], [2.0, 0.0]])  # every pair is (0, 1) or (1, 0)
    mse = PairwiseDistance("mse", num_pairs=10)
    mse.update(feats)
    assert mse.compute() == pytest.approx(2.0)  # ((2-0)^2 + 0^2) / 2 dimensions
    cos = PairwiseDistance("cosine", num_pairs=10)
    cos.update(torch.tensor([[1.0, 0.0], [0.0, 3.0]]))
    assert cos.compute() == pytest.approx(1.0)
    lp = PairwiseDistance("lpips", num_pairs=10)
    lp.update([torch.tensor([[[[1.0]], [[0.0]]], [[[0.0]], [[1.0]]]])])  # unit vectors e1, e2 at one position
    assert lp.compute() == pytest.approx(2.0)


def test_accuracy_and_consistency_on_known_logits():
    m = EmotionAccuracy(group_of_class=[0, 0, 1, 1])
    m.update(torch.tensor([[5.0, 0, 0, 0], [0, 5.0, 0, 0], [0, 0, 0, 5.0], [5.0, 0, 0, 0]]), torch.tensor([0, 0, 2, 2]))
    r = m.compute()
    assert r["emo_a"] == 0.25 and r["polarity_acc"] == 0.75
    p = torch.softmax(torch.tensor([5.0, 0, 0, 0]), 0)[0].item()
    assert r["target_prob"] == pytest.approx((p + (1 - p) / 3 + (1 - p) / 3 + (1 - p) / 3) / 4)
    s = SemanticConsistency()
    s.update(torch.tensor([[0.7, 0.3], [0.5, 0.5]]), torch.tensor([[0.2, 0.8], [0.1, 0.4]]))
    assert s.compute() == pytest.approx((0.8 + 0.5) / 2)


def test_report_files_hold_the_json_numbers(tmp_path):
    from coemogen.evaluation import write_report

    report = {
        "overall": {k: 0.5 for k in ("fid", "lpips", "emo_a", "sem_c", "sem_d", "polarity_acc")},
        "per_emotion": {
            "awe": {"fid": 12.345, "lpips": 0.25, "emo_a": 0.875, "sem_c": 0.6, "sem_d": 0.03, "polarity_acc": 1.0}
        },
        "settings": {"networks": {"fid": "test"}},
    }
    write_report(report, {"awe": [Image.new("RGB", (8, 8))] * 3}, tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text()) == report
    md = (tmp_path / "metrics.md").read_text()
    assert "12.35" in md and "0.875" in md
    html = (tmp_path / "report.html").read_text()
    assert "12.35" in html and "data:image/png;base64" in html
