"""`coemogen study analyze`: attention-check exclusions, then the statistics the field reports
(paired preference against chance, pick-one vote shares, Bradley-Terry strengths) with their
intervals, agreement between participants, and a Markdown/HTML report with the raw answers as CSV."""

from __future__ import annotations

import csv
import html
import io
import json
from collections import Counter, defaultdict
from itertools import combinations
from pathlib import Path

import numpy as np
from scipy import stats
from tqdm.auto import tqdm

from ..errors import CoEmoGenError
from ..io import atomic_output, write_text
from .design import Study
from .store import Store, database_url

Z95 = float(stats.norm.ppf(0.975))


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (float(centre - half), float(centre + half))


def binomial_p(k: int, n: int) -> float:
    """Exact two-sided binomial test of k successes in n against 50%."""
    return float(stats.binomtest(k, n, 0.5).pvalue) if n else float("nan")


def bradley_terry(wins: np.ndarray, iterations: int = 5000, tol: float = 1e-12) -> np.ndarray:
    """Maximum-likelihood Bradley-Terry strengths (summing to 1) from wins[i, j] = times i beat j,
    by Hunter's (2004) minorise-maximise updates."""
    wins = np.asarray(wins, dtype=float)
    games = wins + wins.T
    total_wins = wins.sum(axis=1)
    p = np.full(len(wins), 1 / len(wins))
    for _ in range(iterations):
        pair = p[:, None] + p[None, :]
        denominator = np.divide(games, pair, out=np.zeros_like(games), where=pair > 0).sum(axis=1)
        new = np.divide(total_wins, denominator, out=np.zeros_like(p), where=denominator > 0)
        new /= new.sum()
        if np.abs(new - p).max() < tol:
            return new
        p = new
    return p


def krippendorff_alpha_nominal(units: list[list]) -> float:
    """Krippendorff's alpha for nominal values; each unit lists the values its raters gave (units
    with fewer than two values carry no pairs and are skipped)."""
    coincidence: Counter = Counter()
    for values in units:
        m = len(values)
        if m < 2:
            continue
        counts = Counter(values)
        for c, nc in counts.items():
            for k, nk in counts.items():
                coincidence[c, k] += (nc * (nk - (c == k))) / (m - 1)
    n_c: Counter = Counter()
    for (c, _), v in coincidence.items():
        n_c[c] += v
    n = sum(n_c.values())
    disagree_observed = sum(v for (c, k), v in coincidence.items() if c != k)
    disagree_expected = sum(n_c[c] * n_c[k] for c in n_c for k in n_c if c != k)
    if n < 2 or disagree_expected == 0:
        return float("nan")
    return float(1 - (n - 1) * disagree_observed / disagree_expected)


def answer_rows(study: Study, store: Store) -> list[dict]:
    """Every stored answer joined with its design: question, emotion, the methods shown, the check."""
    numbers = store.numbers()
    rows = []
    for answer in store.all_answers():
        steps = study.sequences[(numbers[answer["participant"]] - 1) % len(study.sequences)]
        plan = steps[answer["step"]]
        trial = study.trials[answer["trial"]]
        shown = [trial["options"][i] for i in plan["order"]]
        rows.append(
            {
                "participant": answer["participant"],
                "step": answer["step"],
                "trial": answer["trial"],
                "check": plan["check"] or "",
                "question": trial["question"],
                "emotion": trial["emotion"],
                "shown": [study.images[i]["method"] for i in shown],
                "shown_images": shown,
                "choice": answer["choice"],
                "method": study.images[answer["choice"]]["method"],
                "position": answer["position"],
                "correct": "" if trial["kind"] != "gold" else int(answer["choice"] == trial["answer"]),
                "rt_ms": answer["rt_ms"],
                "created": answer["created"].isoformat() if answer["created"] else "",
            }
        )
    return rows


def exclusions(study: Study, rows: list[dict]) -> dict[str, dict]:
    """participant -> gold errors, repeat agreement and whether the study's rule excludes them."""
    rule = study.spec["exclusion"]
    by_participant: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_participant[row["participant"]].append(row)
    report = {}
    for participant, answers in by_participant.items():
        gold_errors = sum(1 for r in answers if r["check"] == "gold" and not r["correct"])
        first = {r["trial"]: r["choice"] for r in answers if r["check"] == ""}
        repeats = [r["choice"] == first[r["trial"]] for r in answers if r["check"] == "repeat" and r["trial"] in first]
        agreement = sum(repeats) / len(repeats) if repeats else None
        excluded = gold_errors > rule["max_gold_errors"] or (
            agreement is not None and agreement < rule["min_repeat_agreement"]
        )
        report[participant] = {
            "answers": len(answers),
            "gold_errors": gold_errors,
            "repeats_compared": len(repeats),
            "repeat_agreement": agreement,
            "excluded": excluded,
        }
    return report


def _paired_table(study: Study, main: list[dict]) -> list[dict]:
    table = []
    for a, b in combinations(study.spec["methods"], 2):
        for question in study.spec["questions"]:
            for emotion in ["all", *study.spec["emotions"]]:
                picks = [
                    r["method"]
                    for r in main
                    if set(r["shown"]) == {a, b} and r["question"] == question and emotion in ("all", r["emotion"])
                ]
                k, n = picks.count(a), len(picks)
                if n == 0:
                    continue
                low, high = wilson_interval(k, n)
                table.append(
                    {
                        "a": a,
                        "b": b,
                        "question": question,
                        "emotion": emotion,
                        "a_wins": k,
                        "n": n,
                        "rate": k / n,
                        "ci_low": low,
                        "ci_high": high,
                        "p_value": binomial_p(k, n),
                    }
                )
    return table


def _vote_shares(study: Study, main: list[dict], rng: np.random.Generator, resamples: int) -> list[dict]:
    methods = list(study.spec["methods"])
    table = []
    for question in study.spec["questions"]:
        per_participant: dict[str, Counter] = defaultdict(Counter)
        for r in main:
            if r["question"] == question:
                per_participant[r["participant"]][r["method"]] += 1
        if not per_participant:
            continue
        shares = np.array([[c[m] / sum(c.values()) for m in methods] for c in per_participant.values()])
        picks = rng.integers(0, len(shares), size=(resamples, len(shares)))
        boot = shares[picks].mean(axis=1)
        for j, method in enumerate(methods):
            table.append(
                {
                    "question": question,
                    "method": method,
                    "mean": float(shares[:, j].mean()),
                    "std": float(shares[:, j].std(ddof=1)) if len(shares) > 1 else 0.0,
                    "ci_low": float(np.percentile(boot[:, j], 2.5)),
                    "ci_high": float(np.percentile(boot[:, j], 97.5)),
                    "participants": len(shares),
                }
            )
    return table


def _wins(rows: list[dict], methods: list[str]) -> np.ndarray:
    """wins[i, j]: times method i was chosen over method j (pick-one: the choice beats every other shown)."""
    index = {m: i for i, m in enumerate(methods)}
    wins = np.zeros((len(methods), len(methods)))
    for r in rows:
        for other in r["shown"]:
            if other != r["method"]:
                wins[index[r["method"]], index[other]] += 1
    return wins


def _bradley_terry_table(study: Study, main: list[dict], rng: np.random.Generator, resamples: int) -> list[dict]:
    methods = list(study.spec["methods"])
    table = []
    for question in study.spec["questions"]:
        rows = [r for r in main if r["question"] == question]
        if not rows:
            continue
        by_participant: dict[str, list[dict]] = defaultdict(list)
        for r in rows:
            by_participant[r["participant"]].append(r)
        groups = [_wins(g, methods) for g in by_participant.values()]
        point = bradley_terry(sum(groups))
        boot = np.array(
            [
                bradley_terry(sum(groups[i] for i in rng.integers(0, len(groups), len(groups))))
                for _ in tqdm(range(resamples), desc=f"Bradley-Terry bootstrap ({question})", leave=False)
            ]
        )
        for j, method in enumerate(methods):
            table.append(
                {
                    "question": question,
                    "method": method,
                    "strength": float(point[j]),
                    "ci_low": float(np.percentile(boot[:, j], 2.5)),
                    "ci_high": float(np.percentile(boot[:, j], 97.5)),
                }
            )
    return table


def _agreement(study: Study, main: list[dict]) -> list[dict]:
    table = []
    for question in study.spec["questions"]:
        units: dict[str, list[str]] = defaultdict(list)
        for r in main:
            if r["question"] == question:
                units[r["trial"]].append(r["method"])
        rated = [u for u in units.values() if len(u) >= 2]
        table.append(
            {
                "question": question,
                "alpha": krippendorff_alpha_nominal(list(units.values())),
                "trials_with_two_or_more_answers": len(rated),
                "answers": sum(len(u) for u in rated),
            }
        )
    return table


def analyze(
    study_root: str | Path, out: str | Path, database: str | None = None, resamples: int = 1000, seed: int = 0
) -> dict:
    """Write results.json, answers.csv, report.md, report.html and the plots to `out`."""
    study = Study.load(study_root)
    store = Store(database_url(study.root, database), study.id)
    try:
        rows = answer_rows(study, store)
    finally:
        store.close()
    if not rows:
        raise CoEmoGenError(f"no answers for study {study.id} in the database yet")
    out = Path(out)
    rng = np.random.default_rng(seed)
    checks = exclusions(study, rows)
    included = {p for p, c in checks.items() if not c["excluded"]}
    main = [r for r in rows if r["check"] == "" and r["participant"] in included]
    rule = study.spec["exclusion"]
    results = {
        "study": study.id,
        "design": study.spec["design"],
        "methods": list(study.spec["methods"]),
        "questions": study.spec["questions"],
        "participants": len(checks),
        "complete": sum(c["answers"] >= len(study.sequences[0]) for c in checks.values()),
        "included": len(included),
        "exclusion_rule": (
            f"a participant is excluded who chose the unrelated image on more than {rule['max_gold_errors']} gold "
            f"trial(s), or who gave the same answer on fewer than {rule['min_repeat_agreement']:.0%} of the "
            "repeated trials (sides swapped)"
        ),
        "exclusions": checks,
        "main_answers": len(main),
        "agreement": _agreement(study, main),
    }
    if study.spec["design"] == "paired":
        results["preference"] = _paired_table(study, main)
    else:
        results["vote_share"] = _vote_shares(study, main, rng, resamples)
    if len(study.spec["methods"]) > 2:
        results["bradley_terry"] = _bradley_terry_table(study, main, rng, resamples)
    _write_csv(out / "answers.csv", rows)
    write_text(out / "results.json", json.dumps(results, indent=1, default=str))
    blocks = _report_blocks(results, _plots(results, out))
    write_text(out / "report.md", _markdown(blocks))
    write_text(out / "report.html", _html(blocks, f"Study {study.id}"))
    return results


def _write_csv(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    fields = [k for k in rows[0] if k != "shown_images"]
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "shown": "|".join(row["shown"])})
    write_text(path, buffer.getvalue())


def _plots(results: dict, out: Path) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []

    def save(fig, name: str, caption: str) -> None:
        fig.tight_layout()
        with atomic_output(out / name) as tmp:
            fig.savefig(tmp, format="png", dpi=90)
        plt.close(fig)
        made.append((name, caption))

    if "preference" in results:
        overall = [r for r in results["preference"] if r["emotion"] == "all"]
        fig, ax = plt.subplots(figsize=(6.5, 0.5 + 0.45 * len(overall)))
        labels = [f"{r['a']} vs {r['b']}: {r['question']}" for r in overall]
        rates = np.array([r["rate"] for r in overall])
        errors = np.array([[r["rate"] - r["ci_low"], r["ci_high"] - r["rate"]] for r in overall]).T
        ax.barh(labels, rates, xerr=errors, color="#3a7", capsize=3)
        ax.axvline(0.5, color="k", lw=0.8, ls="--")
        ax.set_xlim(0, 1)
        ax.set_xlabel("share preferring the first method (Wilson 95%)")
        save(fig, "preference.png", "Preference rate per method pair and question, with Wilson 95% intervals")
    if "vote_share" in results:
        fig, ax = plt.subplots(figsize=(6.5, 3))
        questions = list(dict.fromkeys(r["question"] for r in results["vote_share"]))
        methods = results["methods"]
        width = 0.8 / len(methods)
        for j, method in enumerate(methods):
            rows = [r for r in results["vote_share"] if r["method"] == method]
            ax.bar(
                np.arange(len(rows)) + j * width,
                [r["mean"] for r in rows],
                width,
                yerr=[r["std"] for r in rows],
                capsize=3,
                label=method,
            )
        ax.set_xticks(np.arange(len(questions)) + 0.4 - width / 2, questions)
        ax.set_ylabel("vote share (mean ± std)")
        ax.legend()
        save(fig, "vote_share.png", "Vote share per method and question (mean ± std over participants)")
    if "bradley_terry" in results:
        fig, ax = plt.subplots(figsize=(6.5, 0.5 + 0.4 * len(results["bradley_terry"])))
        rows = results["bradley_terry"]
        strengths = np.array([r["strength"] for r in rows])
        errors = np.array([[r["strength"] - r["ci_low"], r["ci_high"] - r["strength"]] for r in rows]).T
        ax.barh([f"{r['method']} ({r['question']})" for r in rows], strengths, xerr=errors.clip(0), capsize=3)
        ax.set_xlabel("Bradley-Terry strength (bootstrap 95%)")
        save(fig, "bradley_terry.png", "Bradley-Terry strengths with bootstrap 95% intervals")
    return made


def _fmt(value) -> str:
    if isinstance(value, float):
        return "n/a" if np.isnan(value) else (f"{value:.2e}" if 0 < abs(value) < 1e-3 else f"{value:.3f}")
    return str(value)


def _report_blocks(results: dict, plots: list[tuple[str, str]]) -> list[tuple]:
    excluded = [p for p, c in results["exclusions"].items() if c["excluded"]]
    blocks: list[tuple] = [
        (
            "p",
            f"Design: {results['design']}; methods: {', '.join(results['methods'])}. "
            f"{results['participants']} participants ({results['complete']} complete); "
            f"{len(excluded)} excluded, {results['included']} included; {results['main_answers']} answers analysed "
            "(attention checks left out).",
        ),
        ("h2", "Exclusions"),
        ("p", f"Rule: {results['exclusion_rule']}."),
        (
            "table",
            ["participant", "answers", "gold errors", "repeat agreement", "excluded"],
            [
                [
                    p,
                    c["answers"],
                    c["gold_errors"],
                    "n/a" if c["repeat_agreement"] is None else c["repeat_agreement"],
                    "yes" if c["excluded"] else "no",
                ]
                for p, c in results["exclusions"].items()
                if c["excluded"]
            ]
            or [["(none)", "", "", "", ""]],
        ),
    ]
    if "preference" in results:
        blocks += [
            ("h2", "Paired preference"),
            (
                "p",
                "Share of answers preferring method A over method B, Wilson 95% interval, exact two-sided binomial "
                "test against 50%.",
            ),
            (
                "table",
                ["A", "B", "question", "emotion", "A chosen", "n", "rate", "95% CI", "p"],
                [
                    [
                        r["a"],
                        r["b"],
                        r["question"],
                        r["emotion"],
                        r["a_wins"],
                        r["n"],
                        r["rate"],
                        f"{r['ci_low']:.3f}-{r['ci_high']:.3f}",
                        r["p_value"],
                    ]
                    for r in results["preference"]
                ],
            ),
        ]
    if "vote_share" in results:
        blocks += [
            ("h2", "Vote share"),
            (
                "p",
                "Share of a participant's answers given to each method: mean ± std over participants, "
                "bootstrap 95% interval of the mean (participants resampled).",
            ),
            (
                "table",
                ["question", "method", "mean ± std", "95% CI", "participants"],
                [
                    [
                        r["question"],
                        r["method"],
                        f"{r['mean']:.3f} ± {r['std']:.3f}",
                        f"{r['ci_low']:.3f}-{r['ci_high']:.3f}",
                        r["participants"],
                    ]
                    for r in results["vote_share"]
                ],
            ),
        ]
    if "bradley_terry" in results:
        blocks += [
            ("h2", "Bradley-Terry strengths"),
            ("p", "Maximum-likelihood strengths (summing to 1), bootstrap 95% intervals over participants."),
            (
                "table",
                ["question", "method", "strength", "95% CI"],
                [
                    [r["question"], r["method"], r["strength"], f"{r['ci_low']:.3f}-{r['ci_high']:.3f}"]
                    for r in results["bradley_terry"]
                ],
            ),
        ]
    blocks += [
        ("h2", "Agreement between participants"),
        (
            "p",
            "Krippendorff's alpha (nominal: the method chosen) over the trials answered by two or more included "
            "participants.",
        ),
        (
            "table",
            ["question", "alpha", "trials", "answers"],
            [
                [r["question"], r["alpha"], r["trials_with_two_or_more_answers"], r["answers"]]
                for r in results["agreement"]
            ],
        ),
    ]
    for name, caption in plots:
        blocks.append(("img", name, caption))
    blocks.append(("p", "Raw answers, one row per answer: answers.csv; every number above: results.json."))
    return blocks


def _markdown(blocks: list[tuple]) -> str:
    lines = ["# Study report", ""]
    for block in blocks:
        if block[0] == "h2":
            lines += [f"## {block[1]}", ""]
        elif block[0] == "p":
            lines += [block[1], ""]
        elif block[0] == "img":
            lines += [f"![{block[2]}]({block[1]})", ""]
        else:
            header, rows = block[1], block[2]
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
            lines.append("")
    return "\n".join(lines)


def _html(blocks: list[tuple], title: str) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{e(title)}</title><style>body{{font-family:sans-serif;max-width:60rem;margin:auto;padding:1rem}}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2rem .5rem}</style></head><body>",
        f"<h1>Study report</h1><p>{e(title)}</p>",
    ]
    for block in blocks:
        if block[0] in ("h2", "p"):
            parts.append(f"<{block[0]}>{e(block[1])}</{block[0]}>")
        elif block[0] == "img":
            parts.append(
                f"<figure><img src='{e(block[1])}' alt='{e(block[2])}'><figcaption>{e(block[2])}</figcaption></figure>"
            )
        else:
            parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in block[1]) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{e(_fmt(v))}</td>" for v in row) + "</tr>" for row in block[2]]
            parts.append("</table>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
