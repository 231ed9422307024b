"""The paper's metrics as small objects on the torchmetrics contract, one class per metric.

Each has `update(...)` (add a batch to the running state), `compute()` (the value so far),
`reset()` (back to the empty state), a class attribute `higher_is_better` and
`is_differentiable = False`. They are plain classes, so the core package evaluates without
torchmetrics (an optional extra). `compute()` raises ValueError while the state holds too few
samples for the metric to mean anything.

The metrics take features, probabilities or logits: which network produces them (Inception, CLIP,
the synthetic world's judges) is the evaluator's choice and is named in every report.

- `FrechetDistance` (FID): running per-set moments, O(d^2) memory;
- `LPIPSDiversity`, `SemanticDiversity` (Sem-D), `CosineSemanticDiversity`: mean distance over
  seeded random pairs within one set (`random_pairs`);
- `EmotionAccuracy` (Emo-A), `PolarityAccuracy`, `WithinPolarityConfusion`, `TargetProbability`:
  from emotion logits;
- `SemanticConsistency` (Sem-C): from scene and object probabilities.

`REPORTED` defines the reported metrics once (key, column label, direction, how the overall value
aggregates): `evaluate` computes them with these objects and every table, report and bootstrap
reads the list from here. Each class's `from_samples` rebuilds the metric's state from the
per-image (or per-pair) samples `evaluate` writes, so a bootstrap resample is computed by the same
`compute()` as the report's value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def symmetric_root(sigma: np.ndarray) -> np.ndarray:
    """S^1/2 of a symmetric positive semi-definite matrix."""
    w, v = np.linalg.eigh(sigma)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, root1: np.ndarray | None = None
) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2), the FID formula.

    Tr (S1 S2)^1/2 = Tr (S1^1/2 S2 S1^1/2)^1/2: two symmetric eigen-decompositions instead of a
    general matrix square root, several times faster at 2048-d and stable for singular covariances.
    `root1`: S1^1/2 when the caller has it (a bootstrap compares many sets with one reference).
    """
    diff = mu1 - mu2
    root1 = symmetric_root(sigma1) if root1 is None else root1
    inner = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    trace_covmean = np.sqrt(np.clip(inner, 0, None)).sum()
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_covmean)


def random_pairs(n: int, num_pairs: int, seed: int) -> torch.Tensor:
    """Distinct index pairs (i != j), sampled with a seeded generator."""
    if n < 2:
        return torch.zeros(0, 2, dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    i = torch.randint(0, n, (num_pairs,), generator=g)
    j = (i + torch.randint(1, n, (num_pairs,), generator=g)) % n
    return torch.stack([i, j], dim=1)


class Metric:
    """The torchmetrics contract without torchmetrics: `update`, `compute`, `reset`.

    Subclasses set their running state in `reset()`, which the constructor calls.
    """

    higher_is_better: bool | None = None
    is_differentiable = False

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, *args, **kwargs) -> None:
        raise NotImplementedError

    def compute(self):
        raise NotImplementedError


class _Moments:
    """Running count, sum and sum of outer products of one feature set, in float64.

    The sums are taken around a shift (the first batch's mean), which leaves the covariance
    unchanged but keeps the sums small: no cancellation when the features sit far from zero.
    """

    def __init__(self) -> None:
        self.n = 0
        self.shift: np.ndarray | None = None
        self.sum: np.ndarray | None = None
        self.outer: np.ndarray | None = None

    def update(self, x: np.ndarray) -> None:
        if len(x) == 0:
            return
        if self.shift is None:
            self.shift = x.mean(0)
            self.sum = np.zeros_like(self.shift)
            self.outer = np.zeros((len(self.shift), len(self.shift)))
        x = x - self.shift
        self.n += len(x)
        self.sum += x.sum(0)
        self.outer += x.T @ x

    def mean_and_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """The mean and the unbiased (n - 1) covariance, as `np.cov(rowvar=False)` gives."""
        centred_sum = self.sum / self.n
        cov = (self.outer - self.n * np.outer(centred_sum, centred_sum)) / (self.n - 1)
        return self.shift + centred_sum, cov

    @classmethod
    def of(cls, mean: np.ndarray, cov: np.ndarray) -> _Moments:
        """A set with exactly this mean and covariance (its size is not recorded: n = 2 returns
        them unchanged, bit for bit)."""
        moments = cls()
        moments.n, moments.shift, moments.sum, moments.outer = 2, mean, np.zeros_like(mean), cov.copy()
        return moments


class FrechetDistance(Metric):
    """FID on whatever features are fed in: `update(features, real=True)` for the reference set,
    `real=False` for the generated one. Keeps running moments per set (memory O(d^2), not O(n d)).

    Examples:
        >>> import torch
        >>> fid = FrechetDistance()
        >>> fid.update(torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]]), real=True)
        >>> fid.update(torch.tensor([[1.0, 1.0], [3.0, 1.0], [1.0, 3.0], [3.0, 3.0]]), real=False)
        >>> round(fid.compute(), 6)  # the same spread, means sqrt(2) apart
        2.0
    """

    higher_is_better = False

    def reset(self) -> None:
        self.real, self.fake = _Moments(), _Moments()
        self.reference_root: np.ndarray | None = None  # the real covariance's square root, when known

    @property
    def num_real(self) -> int:
        return self.real.n

    @property
    def num_fake(self) -> int:
        return self.fake.n

    def update(self, features: torch.Tensor, real: bool) -> None:
        (self.real if real else self.fake).update(features.detach().double().cpu().numpy())

    def compute(self) -> float:
        if self.real.n < 2 or self.fake.n < 2:
            raise ValueError(
                "Frechet distance needs at least 2 real and 2 generated samples, "
                f"got {self.real.n} real and {self.fake.n} generated"
            )
        return frechet_distance(*self.real.mean_and_cov(), *self.fake.mean_and_cov(), root1=self.reference_root)

    @classmethod
    def from_samples(cls, samples: dict, key: str, image_idx: np.ndarray, pair_idx=None) -> FrechetDistance:
        """The generated images `image_idx` against the reference moments of `samples` (the
        reference's square root computed once per samples dict and kept in it)."""
        metric = cls()
        metric.real = _Moments.of(samples["reference_mean"], samples["reference_cov"])
        if "_reference_root" not in samples:
            samples["_reference_root"] = symmetric_root(samples["reference_cov"])
        metric.reference_root = samples["_reference_root"]
        metric.fake.update(samples["fid_features"][image_idx])
        return metric


class _PairwiseMean(Metric):
    """Mean distance over `num_pairs` seeded random pairs within one set (`random_pairs`).

    Keeps every sample, since the pairs are drawn at compute time over the whole set.
    """

    higher_is_better = True  # diversity

    def __init__(self, num_pairs: int = 1000, seed: int = 0) -> None:
        self.num_pairs, self.seed = num_pairs, seed
        super().__init__()

    def reset(self) -> None:
        self.items: list = []
        self.num_samples = 0
        self.given: torch.Tensor | None = None  # distances computed elsewhere (`from_samples`)

    def _stacked(self):
        raise NotImplementedError

    def _distances(self, stacked, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pair_distances(self) -> torch.Tensor:
        """The `num_pairs` distances whose mean `compute()` returns (what a bootstrap resamples)."""
        if self.given is not None:
            return self.given
        if self.num_samples < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 samples to draw pairs, got {self.num_samples}")
        pairs = random_pairs(self.num_samples, self.num_pairs, self.seed)
        return self._distances(self._stacked(), pairs[:, 0], pairs[:, 1])

    def compute(self) -> float:
        return float(self.pair_distances().mean())

    @classmethod
    def from_samples(cls, samples: dict, key: str, image_idx=None, pair_idx: np.ndarray | None = None) -> list:
        """One metric per emotion holding that emotion's pair distances (rows of `<key>_pairs`),
        resampled by `pair_idx` (rows: emotions)."""
        distances = samples[f"{key}_pairs"]
        if pair_idx is not None:
            distances = np.take_along_axis(distances, pair_idx, axis=1)
        metrics = []
        for row in distances:
            metric = cls.__new__(cls)
            metric.reset()
            metric.given = torch.as_tensor(row)
            metrics.append(metric)
        return metrics


class _VectorPairwiseMean(_PairwiseMean):
    """Pairwise mean on (N, D) feature vectors, compared in float64."""

    def update(self, features: torch.Tensor) -> None:
        self.items.append(features.detach().double().cpu())
        self.num_samples += len(features)

    def _stacked(self) -> torch.Tensor:
        return torch.cat(self.items)


class SemanticDiversity(_VectorPairwiseMean):
    """Sem-D (the paper's form): mean squared difference per dimension of CLIP image features,
    over `num_pairs` seeded random pairs of distinct images.

    Examples:
        >>> import torch
        >>> sem_d = SemanticDiversity(num_pairs=4, seed=0)
        >>> sem_d.update(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
        >>> sem_d.compute()  # the only pair, drawn four times: (1 + 1) / 2
        1.0
    """

    def _distances(self, feats: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        return ((feats[i] - feats[j]) ** 2).mean(dim=1)


class CosineSemanticDiversity(_VectorPairwiseMean):
    """Sem-D's cosine variant: 1 - cosine similarity of CLIP image features."""

    def _distances(self, feats: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        return 1 - F.cosine_similarity(feats[i], feats[j], dim=1)


def lpips_distance(
    maps_a: Sequence[torch.Tensor], maps_b: Sequence[torch.Tensor], layer_weights: Sequence[torch.Tensor] | None
) -> torch.Tensor:
    """LPIPS between images a[n] and b[n] from their per-layer feature maps (N, C, H, W):
    channel-normalised squared differences, weighted per channel (uniform without `layer_weights`),
    spatially averaged, summed over layers; float64, one value per pair."""
    total = torch.zeros(len(maps_a[0]), dtype=torch.float64)  # float64 like the stored pairs a bootstrap reads
    for k, (a, b) in enumerate(zip(maps_a, maps_b)):
        a, b = a.double(), b.double()
        unit_a = a / torch.sqrt((a**2).sum(dim=1, keepdim=True) + 1e-8)  # as in LPIPS
        unit_b = b / torch.sqrt((b**2).sum(dim=1, keepdim=True) + 1e-8)
        w = layer_weights[k].double().view(1, -1, 1, 1) if layer_weights else 1.0
        total += (w * (unit_a - unit_b) ** 2).sum(dim=1).mean(dim=(1, 2))
    return total


class LPIPSDiversity(_PairwiseMean):
    """LPIPS diversity: inputs are lists of per-layer feature maps (N, C, H, W); the distance is
    LPIPS's: channel-normalised squared differences, weighted per channel by `layer_weights`
    (LPIPS's learned linear layers; uniform when absent), spatially averaged, summed over layers."""

    def __init__(
        self, num_pairs: int = 1000, seed: int = 0, layer_weights: Sequence[torch.Tensor] | None = None
    ) -> None:
        self.layer_weights = layer_weights
        super().__init__(num_pairs, seed)

    def update(self, feature_maps: Sequence[torch.Tensor]) -> None:
        self.items.append([f.detach().cpu() for f in feature_maps])
        self.num_samples += len(feature_maps[0])

    def _stacked(self) -> list[torch.Tensor]:
        return [torch.cat([item[k] for item in self.items]) for k in range(len(self.items[0]))]

    def _distances(self, layers: list[torch.Tensor], i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        return lpips_distance([f[i] for f in layers], [f[j] for f in layers], self.layer_weights)


class _PerImage(Metric):
    """A metric whose state is one value per image (`_add`), so it can be rebuilt from them."""

    def _add(self, values: torch.Tensor) -> None:
        raise NotImplementedError

    @classmethod
    def from_samples(cls, samples: dict, key: str, image_idx: np.ndarray, pair_idx=None) -> _PerImage:
        """The metric over the images `image_idx`, from their per-image values `samples[key]`."""
        metric = cls.__new__(cls)
        metric.reset()
        metric._add(torch.as_tensor(samples[key][image_idx]))
        return metric


class _RunningMean(_PerImage):
    """A mean of per-sample values kept as a running sum (float64) and count, and the values
    themselves (`per_sample()`, one float each: what a bootstrap over images resamples)."""

    higher_is_better = True

    def reset(self) -> None:
        self.sum = 0.0
        self.count = 0
        self.values: list[torch.Tensor] = []

    def _add(self, values: torch.Tensor) -> None:
        values = values.detach().double().cpu()
        self.sum += float(values.sum())
        self.count += len(values)
        self.values.append(values)

    def per_sample(self) -> torch.Tensor:
        return torch.cat(self.values) if self.values else torch.zeros(0, dtype=torch.float64)

    def compute(self) -> float:
        if self.count == 0:
            raise ValueError(f"{type(self).__name__} has no samples (call update first)")
        return self.sum / self.count


class _Accuracy(_PerImage):
    """A share of hits kept as running counts, `correct` out of `total`, and the hits themselves
    (`per_sample()`, 1.0 or 0.0 per image)."""

    higher_is_better = True

    def reset(self) -> None:
        self.correct = 0
        self.total = 0
        self.hits: list[torch.Tensor] = []

    def _add(self, hits: torch.Tensor) -> None:
        self.correct += int(hits.sum())
        self.total += len(hits)
        self.hits.append(hits.detach().cpu().double())

    def per_sample(self) -> torch.Tensor:
        return torch.cat(self.hits) if self.hits else torch.zeros(0, dtype=torch.float64)

    def compute(self) -> float:
        if self.total == 0:
            raise ValueError(f"{type(self).__name__} has no samples (call update first)")
        return self.correct / self.total


class EmotionAccuracy(_Accuracy):
    """Emo-A: share of images whose argmax emotion is the target.

    Examples:
        >>> import torch
        >>> metric = EmotionAccuracy()
        >>> metric.update(torch.tensor([[2.0, 0.1], [0.3, 0.9], [1.0, 0.0]]), torch.tensor([0, 1, 1]))
        >>> round(metric.compute(), 4), metric.per_sample().tolist()
        (0.6667, [1.0, 1.0, 0.0])
    """

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        self._add(logits.detach().cpu().argmax(1) == targets.detach().cpu())


class PolarityAccuracy(_Accuracy):
    """Share of images whose predicted group (e.g. positive / negative) is the target's. The group
    is the argmax emotion's; with `summed=True` (EmoGen's 2-class accuracy) the group whose
    emotions' softmax probabilities sum highest."""

    def __init__(self, group_of_class: Sequence[int], summed: bool = False) -> None:
        self.group_of_class = torch.as_tensor(group_of_class)
        self.summed = summed
        super().__init__()

    def same_group(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per image: whether its predicted group is the target's."""
        logits, targets = logits.detach().float().cpu(), targets.detach().cpu()
        if self.summed:
            one_hot = F.one_hot(self.group_of_class, int(self.group_of_class.max()) + 1).float()
            pred_group = (logits.softmax(1) @ one_hot).argmax(1)
        else:
            pred_group = self.group_of_class[logits.argmax(1)]
        return pred_group == self.group_of_class[targets]

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        self._add(self.same_group(logits, targets))


class WithinPolarityConfusion(PolarityAccuracy):
    """Share of images judged in the target's polarity but as another emotion (fear taken for
    sadness): the confusion the paper's emotion-specific LoRAs are there to reduce; lower is
    better. With the argmax polarity it is exactly "the argmax is another emotion of the target's
    group", and per image it is the polarity hit without the Emo-A hit, which is how it is rebuilt
    from an evaluation's samples."""

    higher_is_better = False

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        wrong_emotion = logits.detach().cpu().argmax(1) != targets.detach().cpu()
        self._add(self.same_group(logits, targets) & wrong_emotion)

    @classmethod
    def from_samples(cls, samples: dict, key: str, image_idx: np.ndarray, pair_idx=None) -> WithinPolarityConfusion:
        metric = cls.__new__(cls)
        metric.reset()
        metric._add(torch.as_tensor(samples["polarity_acc"][image_idx] * (1 - samples["emo_a"][image_idx])))
        return metric


class RelationAgreement(_Accuracy):
    """Share of images whose relation (a relation judge's argmax) belongs to the target emotion:
    in the narrative world, whether an image shows a relation of its emotion ("the dog chases the
    person" for fear), not only its emotion's look. `emotion_of_relation[r]` is relation r's emotion."""

    def __init__(self, emotion_of_relation: Sequence[int]) -> None:
        self.emotion_of_relation = torch.as_tensor(emotion_of_relation)
        super().__init__()

    def update(self, relation_logits: torch.Tensor, targets: torch.Tensor) -> None:
        predicted = self.emotion_of_relation[relation_logits.detach().cpu().argmax(1)]
        self._add(predicted == targets.detach().cpu())


class TargetProbability(_RunningMean):
    """Mean softmax probability of the target emotion."""

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        probs = logits.detach().float().cpu().softmax(1)
        self._add(probs[torch.arange(len(targets)), targets.detach().cpu()])


class SemanticConsistency(_RunningMean):
    """Sem-C: mean over images of max(top scene probability, top object probability).

    Examples:
        >>> import torch
        >>> sem_c = SemanticConsistency()
        >>> sem_c.update(torch.tensor([[0.7, 0.3], [0.5, 0.5]]), torch.tensor([[0.2, 0.8], [0.4, 0.6]]))
        >>> round(sem_c.compute(), 4)
        0.7
    """

    def update(self, scene_probs: torch.Tensor, object_probs: torch.Tensor) -> None:
        top = torch.maximum(scene_probs.detach().cpu().max(1).values, object_probs.detach().cpu().max(1).values)
        self._add(top)


# --- edits: each edited image against its source (EmoEdit's metrics) ------------------------------


class PeakSignalToNoiseRatio(_RunningMean):
    """PSNR in dB between each edit and its source, images in [0, 1] of one size: 10 log10(1 / MSE).
    Higher: more of the source kept.

    Examples:
        >>> import torch
        >>> psnr = PeakSignalToNoiseRatio()
        >>> psnr.update(torch.full((1, 3, 4, 4), 0.6), torch.full((1, 3, 4, 4), 0.5))
        >>> round(psnr.compute(), 4)
        20.0
    """

    def update(self, edits: torch.Tensor, sources: torch.Tensor) -> None:
        mse = ((edits.double() - sources.double()) ** 2).flatten(1).mean(1).clamp_min(1e-20)
        self._add(10 * torch.log10(1 / mse))


class StructuralSimilarity(_RunningMean):
    """SSIM (Wang et al., 2004) between each edit and its source, images in [0, 1]: an 11-pixel
    Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, per channel, every pixel (the borders
    reflected), averaged: torchmetrics' definition. 1: the same image."""

    def update(self, edits: torch.Tensor, sources: torch.Tensor) -> None:
        x, y = edits.double(), sources.double()
        coords = torch.arange(11, dtype=torch.float64) - 5
        g = torch.exp(-(coords**2) / (2 * 1.5**2))
        window = (g[:, None] * g[None, :] / g.sum() ** 2).expand(x.shape[1], 1, 11, 11)

        def blur(t: torch.Tensor) -> torch.Tensor:
            return F.conv2d(F.pad(t, (5, 5, 5, 5), mode="reflect"), window, groups=x.shape[1])

        mu_x, mu_y = blur(x), blur(y)
        var_x, var_y = (blur(x * x) - mu_x**2).clamp_min(0), (blur(y * y) - mu_y**2).clamp_min(0)
        cov = blur(x * y) - mu_x * mu_y
        c1, c2 = 0.01**2, 0.03**2
        ssim = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
        self._add(ssim.flatten(1).mean(1))


class PairedLPIPS(_RunningMean):
    """LPIPS between each edit and its source (`lpips_distance` on their feature maps); lower: more
    of the source's look kept."""

    higher_is_better = False

    def __init__(self, layer_weights: Sequence[torch.Tensor] | None = None) -> None:
        self.layer_weights = layer_weights
        super().__init__()

    def update(self, edit_maps: Sequence[torch.Tensor], source_maps: Sequence[torch.Tensor]) -> None:
        self._add(lpips_distance(edit_maps, source_maps, self.layer_weights))


class ClipImageSimilarity(_RunningMean):
    """CLIP-I: cosine similarity of each edit's and its source's CLIP image features."""

    def update(self, edit_features: torch.Tensor, source_features: torch.Tensor) -> None:
        self._add(F.cosine_similarity(edit_features.double(), source_features.double(), dim=1))


class EmotionGain(_RunningMean):
    """Emo-S: how much an edit raised the target emotion's probability over its source's."""

    def update(self, edit_logits: torch.Tensor, source_logits: torch.Tensor, targets: torch.Tensor) -> None:
        rows = torch.arange(len(targets))
        gain = edit_logits.double().softmax(1)[rows, targets] - source_logits.double().softmax(1)[rows, targets]
        self._add(gain)


class ValenceArousalAgreement(Metric):
    """How close images land to the valence/arousal they were asked for (EmotiCrafter's V-Error and
    A-Error): the mean absolute error of the judged valence and arousal, the Spearman correlation of
    asked against judged on each axis, and the share of images asked off the valence midline whose
    judged valence has the other sign (`polarity_flips`)."""

    higher_is_better = None  # errors lower, correlations higher: `compute` returns both

    def reset(self) -> None:
        self.asked: list[torch.Tensor] = []
        self.judged: list[torch.Tensor] = []

    def update(self, asked: torch.Tensor, judged: torch.Tensor) -> None:
        """(N, 2) asked and judged (valence, arousal) points."""
        if asked.shape != judged.shape or asked.dim() != 2 or asked.shape[1] != 2:
            raise ValueError(f"asked and judged must both be (N, 2), got {tuple(asked.shape)}, {tuple(judged.shape)}")
        self.asked.append(asked.detach().double().cpu())
        self.judged.append(judged.detach().double().cpu())

    def compute(self) -> dict[str, float]:
        from scipy.stats import spearmanr

        if not self.asked:
            raise ValueError("ValenceArousalAgreement has no samples (call update first)")
        asked, judged = torch.cat(self.asked).numpy(), torch.cat(self.judged).numpy()
        error = np.abs(asked - judged).mean(0)
        off_midline = asked[:, 0] != 0
        flips = np.sign(asked[off_midline, 0]) != np.sign(judged[off_midline, 0])

        def rank_correlation(k: int) -> float:
            if len(asked) < 3 or np.ptp(asked[:, k]) == 0 or np.ptp(judged[:, k]) == 0:
                return float("nan")
            return float(spearmanr(asked[:, k], judged[:, k]).statistic)

        return {
            "v_error": float(error[0]),
            "a_error": float(error[1]),
            "v_spearman": rank_correlation(0),
            "a_spearman": rank_correlation(1),
            "polarity_flips": float(flips.mean()) if off_midline.any() else float("nan"),
            "images": int(len(asked)),
        }


@dataclass(frozen=True)
class ReportedMetric:
    """A metric as reports and tables show it. `per_emotion`: its overall value is the mean of the
    emotions' values (the diversity metrics: pairs are drawn within one emotion); otherwise it is
    computed over every image at once."""

    key: str
    label: str
    metric: type[Metric]
    per_emotion: bool = False
    samples_key: str = ""  # the samples entry it needs, where not its own key (or `<key>_pairs`)

    @property
    def higher_is_better(self) -> bool:
        return bool(self.metric.higher_is_better)

    @property
    def needs(self) -> str:
        """The entry of an evaluation's samples this metric is computed from."""
        if self.samples_key:
            return self.samples_key
        return f"{self.key}_pairs" if self.per_emotion else self.key

    def from_samples(
        self, samples: Mapping, image_idx: np.ndarray | None = None, pair_idx: np.ndarray | None = None
    ) -> float:
        """The overall value on the images `image_idx` and each emotion's pairs `pair_idx` of one
        evaluation's samples (default: all of them, which is `evaluate`'s overall value); NaN when
        the samples lack what the metric needs (too few images)."""
        if image_idx is None:
            image_idx = np.arange(len(samples["emotion"]))
        if self.needs not in samples or (self.key == "fid" and len(image_idx) < 2):
            return float("nan")
        built = self.metric.from_samples(samples, self.key, image_idx, pair_idx)
        if self.per_emotion:
            return float(np.mean([m.compute() for m in built]))
        return float(built.compute())


# The reported metrics, in table order; the first five are the paper's.
REPORTED = (
    ReportedMetric("fid", "FID", FrechetDistance, samples_key="reference_mean"),
    ReportedMetric("lpips", "LPIPS", LPIPSDiversity, per_emotion=True),
    ReportedMetric("emo_a", "Emo-A", EmotionAccuracy),
    ReportedMetric("sem_c", "Sem-C", SemanticConsistency),
    ReportedMetric("sem_d", "Sem-D", SemanticDiversity, per_emotion=True),
    ReportedMetric("polarity_acc", "polarity", PolarityAccuracy),
    ReportedMetric("within_polarity", "within-polarity", WithinPolarityConfusion, samples_key="polarity_acc"),
    # only where the judges have a relation head (the narrative world); NaN elsewhere
    ReportedMetric("relation_acc", "relation", RelationAgreement),
)
REPORTED_KEYS = tuple(m.key for m in REPORTED)
PAPER_METRICS = REPORTED_KEYS[:5]
