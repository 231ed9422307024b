"""Per-emotion distributions of visual embeddings e^v, sampled at inference for diversity.

The paper fits a Gaussian per emotion (diagonal covariance); `components > 1` fits a diagonal
Gaussian mixture with EM instead.
"""

from __future__ import annotations

import torch

from ..errors import CoEmoGenError


class EmotionClusters:
    """Mixture weights, means and variances per emotion: (E, K), (E, K, D), (E, K, D)."""

    def __init__(self, weights: torch.Tensor, means: torch.Tensor, variances: torch.Tensor) -> None:
        self.weights, self.means, self.variances = weights, means, variances

    @classmethod
    def fit(
        cls,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        num_emotions: int,
        components: int = 1,
        iterations: int = 50,
        seed: int = 0,
        min_variance: float = 1e-6,
    ) -> EmotionClusters:
        """Fit one diagonal Gaussian (mixture) per emotion to `embeddings` (N, D) labelled `labels` (N,)."""
        embeddings = embeddings.detach().double().cpu()
        dim = embeddings.shape[1]
        weights = torch.zeros(num_emotions, components, dtype=torch.float64)
        means = torch.zeros(num_emotions, components, dim, dtype=torch.float64)
        variances = torch.ones(num_emotions, components, dim, dtype=torch.float64)
        g = torch.Generator().manual_seed(seed)
        for e in range(num_emotions):
            x = embeddings[labels.cpu() == e]
            if len(x) == 0:  # an emotion without training images keeps all-zero weights
                continue
            k = min(components, len(x))
            w, mu, var = _diag_gmm(x, k, iterations, g, min_variance)
            weights[e, :k], means[e, :k], variances[e, :k] = w, mu, var
        return cls(weights.float(), means.float(), variances.float())

    def sample(self, emotion: int, generator: torch.Generator, temperature: float = 1.0) -> tuple[torch.Tensor, int]:
        """One embedding from emotion `emotion`'s distribution, and the component it came from.

        `temperature` scales the standard deviation: 0 gives the component mean (fidelity),
        1 the fitted spread (diversity)."""
        if not self.weights[emotion].sum() > 0:
            raise CoEmoGenError(f"emotion index {emotion} had no training images, so it has no cluster to sample")
        component = int(torch.multinomial(self.weights[emotion], 1, generator=generator))
        noise = torch.randn(self.means.shape[-1], generator=generator)
        std = self.variances[emotion, component].sqrt() * temperature
        return self.means[emotion, component] + noise * std, component

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "weights": self.weights.contiguous(),
            "means": self.means.contiguous(),
            "variances": self.variances.contiguous(),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> EmotionClusters:
        return cls(state["weights"], state["means"], state["variances"])


def _diag_gmm(x: torch.Tensor, k: int, iterations: int, g: torch.Generator, min_variance: float):
    mu = x[torch.randperm(len(x), generator=g)[:k]].clone()
    var = x.var(0, unbiased=False).clamp_min(min_variance).expand(k, -1).clone()
    w = torch.full((k,), 1.0 / k, dtype=x.dtype)
    if k == 1:
        return w, x.mean(0, keepdim=True), var
    for _ in range(iterations):
        log_p = -0.5 * (((x[:, None] - mu[None]) ** 2 / var[None]) + var[None].log()).sum(-1) + w.log()[None]
        resp = torch.softmax(log_p, dim=1)  # (N, K)
        nk = resp.sum(0).clamp_min(1e-9)
        w = nk / nk.sum()
        mu = resp.T @ x / nk[:, None]
        var = (resp.T @ x**2 / nk[:, None] - mu**2).clamp_min(min_variance)
    return w, mu, var
