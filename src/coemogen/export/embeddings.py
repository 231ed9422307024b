"""An emotion's condition vector as textual-inversion embeddings.

CoEmoGen's visual embedding e^v replaces one input-token embedding, exactly what a one-vector
textual-inversion embedding does, so a sample of an emotion's cluster (or its mean) is a standard
embedding. Two file forms hold it, each vector `[1, d]` (2-D even for one vector: a 1-D tensor can
be read as d vectors):

- A1111 / kohya / ComfyUI: one file, the prompt word is its stem; one text encoder (SD1/2):
  `{"emb_params": [1, d]}`; SDXL: `{"clip_l": [1, 768], "clip_g": [1, 1280]}`, e^v's two parts;
- diffusers (`load_textual_inversion`): `{token: [1, d]}`, one file per text encoder
  (`learned_embeds/`, and for SDXL's second encoder `learned_embeds_2/`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from ..errors import CoEmoGenError
from ..models.clusters import EmotionClusters
from ..models.families import ModelFamily
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


def diffusers_embedding_dirs(family: ModelFamily) -> list[str]:
    """The diffusers-form folders, one per text encoder: learned_embeds, learned_embeds_2, ..."""
    return ["learned_embeds" + (f"_{k + 1}" if k else "") for k in range(len(family.text_encoders))]


def save_embedding(
    vector: torch.Tensor, token: str, directory: str | Path, family: ModelFamily, widths: list[int]
) -> None:
    """Write `<token>.safetensors` in both forms under `directory`: the A1111 one in `embeddings/`
    and the diffusers ones in `diffusers_embedding_dirs`. `widths`: the text encoders' widths, which
    split e^v into each encoder's part."""
    row = vector.detach().float().cpu().reshape(1, -1)
    if row.shape[1] != sum(widths):
        raise CoEmoGenError(f"an embedding of width {row.shape[1]} does not fit text encoders of widths {widths}")
    parts = [part.contiguous() for part in row.split(widths, dim=1)]
    files = {"embeddings": {spec.ecosystem_name: part for spec, part in zip(family.text_encoders, parts)}}
    for folder, part in zip(diffusers_embedding_dirs(family), parts):
        files[folder] = {token: part}
    for folder, tensors in files.items():
        (Path(directory) / folder).mkdir(parents=True, exist_ok=True)
        save_file({k: v.clone() for k, v in tensors.items()}, Path(directory) / folder / f"{token}.safetensors",
                  metadata={"name": token})  # fmt: skip
