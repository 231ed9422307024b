"""`coemogen bench claims`: the pre-registered decision rule applied to finished paper tables."""

import json

import pytest

from coemogen.cli import main
from coemogen.experiments.claims import verdict, wilson


def test_the_decision_rule():
    assert verdict(0.01, 0.09) == "holds"
    assert verdict(-0.09, -0.01) == "fails"
    assert verdict(-0.02, 0.05) == "within noise"
    assert verdict(-0.02, 0.05, "not_below") == "holds (within noise)"
    assert verdict(-0.09, -0.01, "not_below") == "fails"
    # a confusion rate: CoEmoGen predicted below the other row
    assert verdict(-0.09, -0.01, "lower") == "holds"
    assert verdict(0.01, 0.09, "lower") == "fails"
    assert verdict(-0.02, 0.05, "lower") == "within noise"


def test_wilson_interval():
    low, high = wilson(0, 34)
    assert low == pytest.approx(0.0, abs=1e-12) and high == pytest.approx(0.1015, abs=1e-3)
    low, high = wilson(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-3) and high == pytest.approx(0.5962, abs=1e-3)


def _difference(mean, half, seeds=3):
    return {"mean": mean, "low": mean - half, "high": mean + half, "seeds": seeds}


def test_claims_from_a_table(tmp_path, capsys):
    seeds = [{}] * 3
    table = {
        "CoEmoGen": {"per_seed": seeds},
        "EmoGen": {"per_seed": seeds, "emo_a_minus_coemogen": _difference(-0.10, 0.04)},  # resolved, holds
        "CoEmoGen w/ word-level attributes": {
            "per_seed": seeds,
            "emo_a_minus_coemogen": _difference(-0.02, 0.08),  # too wide: not resolved
            "relation_acc_minus_coemogen": _difference(0.10, 0.03),  # resolved, the other way: fails
        },
        "w/o CLIP filtering": {"per_seed": seeds, "emo_a_minus_coemogen": _difference(0.01, 0.04)},
        # the ablation confuses emotions of one polarity more: CoEmoGen's rate is lower, as predicted
        "w/o emotion-specific LoRAs": {"per_seed": seeds, "within_polarity_minus_coemogen": _difference(0.06, 0.03)},
    }
    folder = tmp_path / "narrative"
    (folder / "coemogen").mkdir(parents=True)
    (folder / "paper_table.json").write_text(json.dumps(table))
    summary = {
        "hallucination": {"hallucinated": 100, "removed_by_clip_cut": 70, "random_cut_share": 0.2},
        "reasoning_error": {"hallucinated": 100, "removed_by_clip_cut": 21, "random_cut_share": 0.2},
    }
    (folder / "coemogen" / "manifest.summary.json").write_text(json.dumps(summary))
    main(["bench", "claims", "--table", f"narrative={folder}", "--out", str(tmp_path / "claims.md")])
    record = json.loads((tmp_path / "claims.json").read_text())["narrative"]
    assert record["1"]["verdict"] == "holds" and record["1"]["mean"] == pytest.approx(0.10)
    assert record["2"]["verdict"].startswith("not resolved (within noise at ±0.08")
    assert record["2b"]["verdict"] == "fails"
    assert record["5"]["verdict"] == "holds (within noise)"
    assert record["3"]["verdict"] == "not measured"
    assert record["4c"]["verdict"] == "holds" and record["4c"]["mean"] == pytest.approx(-0.06)
    assert record["4"]["verdict"] == "not measured"
    assert record["filter:hallucination"]["verdict"] == "holds"
    assert record["filter:reasoning_error"]["verdict"] == "holds"  # near 0.2 and below 0.70's interval
    assert "CoEmoGen − EmoGen" in (tmp_path / "claims.md").read_text()
    capsys.readouterr()
    assert main(["bench", "claims", "--table", str(folder), "--out", str(tmp_path / "x.md")]) == 2
    assert "WORLD=DIR" in capsys.readouterr().err
    assert main(["bench", "claims", "--table", f"objects={tmp_path}", "--out", str(tmp_path / "x.md")]) == 2
    assert "no paper table" in capsys.readouterr().err and not (tmp_path / "x.md").exists()
