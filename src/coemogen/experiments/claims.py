"""`coemogen bench claims`: the paper's claims marked holds / within noise / fails on each world, by
the decision rule pre-registered in `docs/paper-table/hypotheses.md`, from finished paper tables.

A comparison's interval is the one its table already computed (`paper_table.json`: each row's
difference from CoEmoGen, from the two rows' bootstrap replicates), so the claims page and the
table cannot disagree. A claim counts as tested only where that interval is no wider than
`RESOLUTION` and the rows have at least `MIN_SEEDS` seeds; otherwise it is "not resolved". The
filter claims read the filter summary of the CoEmoGen row's manifest (a 95% Wilson interval on the
share of hallucinated, or reasoning-error, captions the CLIP cut removed).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import CoEmoGenError
from ..io import write_text
from ..tables import format_table

RESOLUTION = 0.05  # the widest half-width of an Emo-A (or relation) difference that counts
MIN_SEEDS = 3
REFERENCE = "CoEmoGen"


@dataclass(frozen=True)
class Claim:
    """One of the paper's claims as a table comparison: CoEmoGen predicted above `row` on `metric`
    (`higher`), at least not below it (`not_below`: "higher or within noise" both count), or below
    it (`lower`: a confusion rate)."""

    number: str
    text: str
    row: str
    metric: str = "emo_a"
    prediction: str = "higher"  # higher | not_below | lower
    worlds: tuple[str, ...] = ("objects", "narrative")
    table: str = "paper"  # paper | tune (the reward-tuning comparison) | tune-reward (its reward-model table)


CLAIMS = (
    Claim("1", "CoEmoGen over EmoGen", "EmoGen"),
    Claim("2", "sentences over words", "CoEmoGen w/ word-level attributes"),
    Claim(
        "2b",
        "sentences carry the narrative (relation agreement)",
        "CoEmoGen w/ word-level attributes",
        metric="relation_acc",
        worlds=("narrative",),
    ),
    Claim("3", "L_SEM matters", "w/o L_SEM"),
    Claim("4", "emotion-specific LoRAs matter", "w/o emotion-specific LoRAs"),
    Claim(
        "4c",
        "emotion-specific LoRAs: fewer within-polarity confusions",
        "w/o emotion-specific LoRAs",
        metric="within_polarity",
        prediction="lower",
    ),
    Claim("4b", "polarity-shared LoRAs help a little", "w/o polarity-shared LoRAs", prediction="not_below"),
    Claim("5", "CLIP filtering helps", "w/o CLIP filtering", prediction="not_below"),
    # reward tuning (docs/tune/hypotheses.md): "CoEmoGen" there is the starting run
    Claim(
        "T1",
        "reward tuning raises Emo-A (the reward model's)",
        "CoEmoGen tuned",
        prediction="lower",
        table="tune-reward",
    ),  # fmt: skip
    Claim(
        "T2", "reward tuning raises Emo-A (the independent judges')", "CoEmoGen tuned", prediction="lower", table="tune"
    ),  # fmt: skip
    # found, not registered: the registered recipe's drift weight (100) held the runs; the anchor alone
    Claim(
        "T3",
        "tuning, anchor alone: Emo-A (the reward model's)",
        "tuned w/o KL",
        prediction="lower",
        table="tune-reward",
    ),
    Claim(
        "T4", "tuning, anchor alone: Emo-A (the independent judges')", "tuned w/o KL", prediction="lower", table="tune"
    ),
)
TUNE_TABLES = {"tune": "", "tune-reward": "reward-model"}  # each claim table's folder under a tuning comparison


def verdict(low: float, high: float, prediction: str = "higher") -> str:
    """The pre-registered rule for "CoEmoGen minus the other row" in [low, high]: holds when the
    interval lies on the predicted side of 0 (above it; below it for `lower`), fails when on the
    other, else within noise. For `not_below` an interval containing 0 also holds (the paper
    predicts "higher or within noise")."""
    if prediction == "lower":
        low, high = -high, -low
    if low > 0:
        return "holds"
    if high < 0:
        return "fails"
    return "holds (within noise)" if prediction == "not_below" else "within noise"


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a share k / n."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _table(folder: Path) -> dict:
    path = folder / "paper_table.json"
    if not path.is_file():
        raise CoEmoGenError(f"no paper table in {folder} (run `coemogen bench paper-table --out {folder}`)")
    return json.loads(path.read_text())


def comparison(table: dict, claim: Claim) -> dict:
    """Claim `claim` on one table: CoEmoGen minus the row, its interval, seeds, and the verdict."""
    row = table.get(claim.row)
    key = f"{claim.metric}_minus_coemogen"
    if row is None or key not in row or REFERENCE not in table:
        return {"verdict": "not measured"}
    d = row[key]  # the row minus CoEmoGen: flip it to CoEmoGen minus the row
    mean, low, high = -d["mean"], -d["high"], -d["low"]
    seeds = min(d["seeds"], len(table[REFERENCE]["per_seed"]))
    half = (high - low) / 2
    result = {"mean": mean, "low": low, "high": high, "half_width": half, "seeds": seeds}
    if half > RESOLUTION or seeds < MIN_SEEDS:
        result["verdict"] = f"not resolved ({verdict(low, high, claim.prediction)} at ±{half:.2f}, {seeds} seeds)"
    else:
        result["verdict"] = verdict(low, high, claim.prediction)
    return result


def filter_claims(folder: Path) -> list[dict]:
    """Claims 5 (the cut removes hallucinated captions above the random rate) and 6 (reasoning
    errors removed near the random rate, below the hallucination removal) from the CoEmoGen
    row's filter summary."""
    path = folder / "coemogen" / "manifest.summary.json"
    if not path.is_file():
        return []
    summary = json.loads(path.read_text())
    out = []
    shares = {}
    for kind, label in (("hallucination", "hallucinated"), ("reasoning_error", "reasoning-error")):
        part = summary.get(kind)
        if not part or not part.get("hallucinated"):
            continue
        k, n, random_share = part["removed_by_clip_cut"], part["hallucinated"], part["random_cut_share"]
        low, high = wilson(k, n)
        shares[kind] = (low, high)
        out.append(
            {
                "kind": kind,
                "text": f"share of {label} captions the CLIP cut removes ({k} of {n})",
                "mean": k / n,
                "low": low,
                "high": high,
                "random_cut_share": random_share,
            }
        )
    for record in out:
        low, high, random_share = record["low"], record["high"], record["random_cut_share"]
        if record["kind"] == "hallucination":  # claim 5's check on the captions: above a random cut
            record["claim"] = "5 (captions)"
            record["verdict"] = "holds" if low > random_share else ("fails" if high < random_share else "within noise")
        else:  # claim 6: near the random rate and below the hallucination removal
            record["claim"] = "6"
            near_random = low <= random_share <= high
            below = "hallucination" in shares and high < shares["hallucination"][0]
            if near_random and below:
                record["verdict"] = "holds"
            elif not near_random and not below:
                record["verdict"] = "fails"
            else:
                rate = "near the random rate" if near_random else "not near the random rate"
                record["verdict"] = f"partly ({rate}; {'below' if below else 'not below'} the hallucination removal)"
    return out


def claims_table(
    tables: dict[str, str | Path], out: str | Path, tune_tables: dict[str, str | Path] | None = None
) -> str:
    """Mark every claim on every world in `tables` ({world: table folder}) and, given `tune_tables`
    ({world: a `bench tune-table` folder}), the reward-tuning claims; write `out` (Markdown) and its
    JSON beside it; return the Markdown."""
    loaded = {world: (Path(folder), _table(Path(folder))) for world, folder in tables.items()}
    tuned = {
        (kind, world): _table(Path(folder) / sub) for world, folder in (tune_tables or {}).items()
        for kind, sub in TUNE_TABLES.items()
    }  # fmt: skip
    rows, record = [], {}
    for claim in CLAIMS:
        if claim.table != "paper" and not tuned:
            continue
        line = {"#": claim.number, "claim": claim.text, "comparison": f"CoEmoGen − {claim.row}", "metric": claim.metric}
        for world, (_, table) in loaded.items():
            if world not in claim.worlds:
                line[world] = "-"
                continue
            if claim.table != "paper":
                if (claim.table, world) not in tuned:
                    line[world] = "not measured"
                    continue
                table = tuned[(claim.table, world)]
            result = comparison(table, claim)
            record.setdefault(world, {})[claim.number] = result
            cell = result["verdict"]
            if "mean" in result:
                cell = f"{result['mean']:+.3f} [{result['low']:+.3f}, {result['high']:+.3f}] {cell}"
            line[world] = cell
        rows.append(line)
    for world, (folder, _) in loaded.items():
        for f in filter_claims(folder):
            record.setdefault(world, {})[f"filter:{f['kind']}"] = f
            line = {
                "#": f["claim"],
                "claim": f["text"],
                "comparison": f"random cut {f['random_cut_share']:.3f}",
                "metric": "share removed",
            }
            for other in loaded:
                line[other] = (
                    f"{f['mean']:.3f} [{f['low']:.3f}, {f['high']:.3f}] {f['verdict']}" if other == world else "-"
                )
            rows.append(line)
    text = format_table(rows, ["#", "claim", "comparison", "metric", *loaded])
    out = Path(out)
    write_text(out, text + "\n")
    write_text(out.with_suffix(".json"), json.dumps(record, indent=1))
    return text
