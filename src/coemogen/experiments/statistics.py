"""Seeds and confidence intervals: a hierarchical bootstrap over training seeds and images.

Each evaluated seed leaves `samples.safetensors` (evaluation/evaluate.py `write_samples`): per image
its emotion, Emo-A and polarity hits, Sem-C value and FID features; per emotion the LPIPS and Sem-D
pair distances; the reference's FID moments. One bootstrap replicate draws the seeds with
replacement, then inside each drawn seed the images of every emotion (stratified: the generated set
has a fixed count per emotion) and each emotion's pairs, recomputes every metric with the metric
objects `evaluate` uses (`ReportedMetric.from_samples`), and averages over the drawn seeds. The 2.5
and 97.5 percentiles of the replicates, re-centred on the point estimate (`interval`), are the 95%
interval; the point estimate is the mean over seeds of each seed's full-data metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..evaluation.metrics import REPORTED
from ..io import read_safetensors

BY_KEY = {m.key: m for m in REPORTED}


@dataclass(frozen=True)
class Estimate:
    """A metric's mean over seeds and its bootstrap confidence interval."""

    mean: float
    low: float
    high: float
    seeds: int

    def __str__(self) -> str:
        return f"{self.mean:.4g} ± {(self.high - self.low) / 2:.2g}"


def measured(seeds: Sequence[dict[str, np.ndarray]]) -> tuple[str, ...]:
    """The reported metrics every seed's samples can compute (the relation metric only where the
    judges have a relation head)."""
    return tuple(m.key for m in REPORTED if all(m.needs in s for s in seeds))


def load_samples(path: str | Path) -> dict[str, np.ndarray]:
    """One seed's `samples.safetensors`, checked (tensors only) and as float64 arrays."""
    return {k: v.double().numpy() for k, v in read_safetensors(path, what="evaluation samples").items()}


def seed_metrics(
    samples: dict[str, np.ndarray],
    image_idx: np.ndarray | None = None,
    pair_idx: np.ndarray | None = None,
    metrics: Sequence[str] | None = None,
) -> dict[str, float]:
    """`metrics` (default: every `measured` one) of one seed, on the images `image_idx` and each
    emotion's pairs `pair_idx` (rows: emotions; default: everything, which is `evaluate`'s overall
    value), each computed by its metric object (`evaluation/metrics.py`, `ReportedMetric.from_samples`)."""
    metrics = measured([samples]) if metrics is None else metrics
    return {key: BY_KEY[key].from_samples(samples, image_idx, pair_idx) for key in metrics}


def _resample_images(emotion: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices drawn with replacement within each emotion, keeping each emotion's count."""
    parts = []
    for e in np.unique(emotion):
        members = np.flatnonzero(emotion == e)
        parts.append(rng.choice(members, size=len(members), replace=True))
    return np.concatenate(parts)


def _replicate(
    seeds: Sequence[dict[str, np.ndarray]], rng: np.random.Generator, metrics: Sequence[str]
) -> dict[str, float]:
    """One bootstrap replicate: seeds drawn with replacement, then images and pairs inside each."""
    values = {key: [] for key in metrics}
    for s in rng.integers(0, len(seeds), size=len(seeds)):
        samples = seeds[s]
        pairs = samples.get("lpips_pairs")
        pair_idx = None if pairs is None else rng.integers(0, pairs.shape[1], size=pairs.shape)
        for key, value in seed_metrics(samples, _resample_images(samples["emotion"], rng), pair_idx, metrics).items():
            values[key].append(value)
    return {key: float(np.mean(v)) for key, v in values.items()}


def interval(mean: float, replicates: np.ndarray, confidence: float, seeds: int) -> Estimate:
    """The percentile interval of the replicates, moved so that their median sits on the point
    estimate: FID's replicates hold duplicated images, which shrink the generated set's spread and
    shift every replicate up; the shift is bias, the spread is the uncertainty. For the mean-type
    metrics the median and the point estimate coincide up to noise."""
    tail = (1 - confidence) / 2 * 100
    low, median, high = np.nanpercentile(replicates, [tail, 50, 100 - tail])
    return Estimate(float(mean), float(mean - (median - low)), float(mean + (high - median)), seeds)


def bootstrap_replicates(
    seeds: Sequence[dict[str, np.ndarray]],
    num_resamples: int = 1000,
    seed: int = 0,
    metrics: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """`num_resamples` replicates of every metric (default: every `measured` one) from the two-level
    bootstrap (seeds, then images and pairs inside each seed). One seed gives replicates over images
    and pairs only."""
    if not seeds:
        raise ValueError("bootstrap needs at least one seed's samples")
    metrics = measured(seeds) if metrics is None else metrics
    rng = np.random.default_rng(seed)
    replicates = [_replicate(seeds, rng, metrics) for _ in range(num_resamples)]
    return {key: np.array([r[key] for r in replicates]) for key in metrics}


def point_estimates(seeds: Sequence[dict[str, np.ndarray]], metrics: Sequence[str] | None = None) -> dict[str, float]:
    """Each metric's (default: every `measured` one) mean over seeds of the full-data value."""
    metrics = measured(seeds) if metrics is None else metrics
    full = [seed_metrics(s, metrics=metrics) for s in seeds]
    return {key: float(np.mean([f[key] for f in full])) for key in metrics}


def bootstrap(
    seeds: Sequence[dict[str, np.ndarray]],
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    metrics: Sequence[str] | None = None,
) -> dict[str, Estimate]:
    """Mean over seeds and its interval for every metric (default: every `measured` one)."""
    metrics = measured(seeds) if metrics is None else metrics
    replicates = bootstrap_replicates(seeds, num_resamples, seed, metrics)
    means = point_estimates(seeds, metrics)
    return {key: interval(means[key], replicates[key], confidence, len(seeds)) for key in metrics}


def difference(
    a: Sequence[dict[str, np.ndarray]],
    b: Sequence[dict[str, np.ndarray]],
    replicates_a: np.ndarray,
    replicates_b: np.ndarray,
    metric: str,
    confidence: float = 0.95,
) -> Estimate:
    """Mean of a - b for one metric and its interval, from the two rows' replicates drawn
    independently (with different bootstrap seeds): an interval that excludes 0 is a difference
    beyond the seed and image noise."""
    mean = point_estimates(a, [metric])[metric] - point_estimates(b, [metric])[metric]
    return interval(mean, replicates_a - replicates_b, confidence, min(len(a), len(b)))


def bootstrap_difference(
    a: Sequence[dict[str, np.ndarray]],
    b: Sequence[dict[str, np.ndarray]],
    metric: str,
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """`difference` with both rows' replicates drawn here (seeds `seed` and `seed + 1`)."""
    if not a or not b:
        raise ValueError("bootstrap_difference needs at least one seed's samples on each side")
    reps_a = bootstrap_replicates(a, num_resamples, seed, [metric])[metric]
    reps_b = bootstrap_replicates(b, num_resamples, seed + 1, [metric])[metric]
    return difference(a, b, reps_a, reps_b, metric, confidence)
