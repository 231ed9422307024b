"""An emotion's condition vector as textual-inversion embeddings.

CoEmoGen's visual embedding e^v replaces one input-token embedding, exactly what a one-vector
textual-inversion embedding does, so a sample of an emotion's cluster (or its mean) is a standard
embedding. Two file forms hold it, both `[1, d]` (2-D even for one vector: a 1-D tensor can be
read as d vectors):

- A1111 / kohya / ComfyUI: `{"emb_params": [1, d]}`, the prompt word is the file stem;
- diffusers (`load_textual_inversion`): `{token: [1, d]}`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from ..errors import CoEmoGenError
from ..models.clusters import EmotionClusters
from ..taxonomy import Taxonomy


def cluster_mean(clusters: EmotionClusters, taxonomy: Taxonomy, mix: dict[str, float]) -> torch.Tensor:
    """(d,) mean of a mix's visual embeddings: each emotion's mixture mean, weighted as in the mix
    (the pipeline's sample of a mix is the same weighted sum of per-emotion samples)."""
    mean = torch.zeros(clusters.means.shape[-1])
    for emotion, weight in mix.items():
        index = taxonomy.index(emotion)
        if not clusters.weights[index].sum() > 0:
            raise CoEmoGenError(f"emotion '{emotion}' had no training images, so it has no cluster mean")
        mean += weight * (clusters.weights[index] @ clusters.means[index])
    return mean


def save_embedding(vector: torch.Tensor, token: str, a1111_dir: str | Path, diffusers_dir: str | Path) -> None:
    """Write `<token>.safetensors` in both forms: A1111 (`emb_params`) and diffusers (`{token: ...}`)."""
    row = vector.detach().float().cpu().reshape(1, -1).contiguous()
    for directory, key in ((Path(a1111_dir), "emb_params"), (Path(diffusers_dir), token)):
        directory.mkdir(parents=True, exist_ok=True)
        save_file({key: row.clone()}, directory / f"{token}.safetensors", metadata={"name": token})
