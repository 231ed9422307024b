"""The CoEmoGen model: emotion symbol -> descriptor -> visual embedding -> condition, plus HiLoRA.

`CoEmoGenConfig` is the model's constructor: the fields recorded from the base models and data
(`derived`) and the hyper-parameters, each with its help text (the `train` flags are generated
from them). `CoEmoGen` holds the trainable non-U-Net parts (mapper, visual-perception encoder)
and the taxonomy; HiLoRA lives inside the base U-Net (models/hilora.py). `save_run` / `load_run`
write and read a run directory: config.json + safetensors, never pickles.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..errors import CoEmoGenError
from ..io import read_safetensors, refuse_pickles, save_safetensors, write_text
from ..taxonomy import Taxonomy
from .clusters import EmotionClusters
from .configs import CONFIG_NAME, CoEmoGenConfig
from .hilora import (
    adapter_gates,
    hilora_shapes,
    hilora_state_dict,
    inject_hilora,
    load_hilora_state_dict,
)
from .mapper import NeuroSymbolicMapper
from .perception import VisualPerceptionEncoder

REQUIRED_WEIGHTS = ("mapper", "perception_encoder", "hilora")  # clusters.safetensors is written last


class CoEmoGen(nn.Module):
    """The trainable non-U-Net parts of CoEmoGen for one taxonomy: the neuro-symbolic mapper
    (emotion weights -> descriptor e_i) and the visual-perception encoder (e_i attending over CLIP
    image tokens -> e^v). `gates` turns emotion weights into HiLoRA's per-sample gates; HiLoRA itself
    lives inside the base U-Net (`inject_into`)."""

    has_adapters = True

    def __init__(self, config: CoEmoGenConfig) -> None:
        super().__init__()
        self.config = config
        self.taxonomy = Taxonomy.from_dict(config.taxonomy)
        self.mapper = NeuroSymbolicMapper(
            self.taxonomy.num_emotions, config.embed_dim, config.mapper_hidden_dim, config.mapper_layers
        )
        self.perception_encoder = VisualPerceptionEncoder(config.embed_dim, config.image_dim)
        self.perception_encoder.requires_grad_(config.perception_encoder)  # unused when switched off
        self.register_buffer("membership", self.taxonomy.membership(), persistent=False)

    @property
    def num_adapters(self) -> int:
        return 1 if self.config.shared_lora else self.taxonomy.num_emotions + self.taxonomy.num_groups

    def trainable_modules(self) -> list[nn.Module]:
        """The parts that learn under this configuration (the encoder is unused when switched off)."""
        return [self.mapper, self.perception_encoder] if self.config.perception_encoder else [self.mapper]

    def one_hot(self, emotion_indices: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(emotion_indices, self.taxonomy.num_emotions).float()

    def visual_embedding(self, emotion_weights: torch.Tensor, image_tokens: torch.Tensor | None) -> torch.Tensor:
        """e^v = encoder(mapper(y), v): (batch, emotions), (batch, tokens, image_dim) -> (batch, d0)."""
        if not self.config.perception_encoder:
            return self.mapper(emotion_weights)
        if image_tokens is None:
            raise CoEmoGenError("the visual-perception encoder needs CLIP image tokens")
        return self.perception_encoder(self.mapper(emotion_weights), image_tokens)

    def token_embeddings(self, cluster_samples: torch.Tensor) -> torch.Tensor:
        """Cluster samples are visual embeddings e^v already: the placeholder embeddings themselves."""
        return cluster_samples

    def gates(self, emotion_weights: torch.Tensor) -> torch.Tensor:
        """Per-sample adapter weights: [emotions | groups], or one shared adapter."""
        if self.config.shared_lora:
            return emotion_weights.sum(dim=1, keepdim=True)
        return adapter_gates(
            emotion_weights, self.membership, float(self.config.emotion_lora), float(self.config.group_lora)
        )

    def gates_without_level(self, gates: torch.Tensor, level: str) -> torch.Tensor:
        """`gates` with one HiLoRA level switched off: "emotion" (the emotion-specific adapters) or
        "group" (the polarity-shared ones). The gate layout, [emotions | groups], stays in here."""
        if level not in ("emotion", "group"):
            raise CoEmoGenError(f"unknown HiLoRA level '{level}'; choose emotion or group")
        columns = (
            slice(0, self.taxonomy.num_emotions) if level == "emotion" else slice(self.taxonomy.num_emotions, None)
        )
        switched = gates.clone()
        switched[:, columns] = 0
        return switched

    def inject_into(self, unet: nn.Module) -> list[str]:
        """Add this model's HiLoRA layers to `unet`; returns the adapted layers' names."""
        return inject_hilora(
            unet, self.num_adapters, self.config.lora_rank, self.config.lora_alpha, tuple(self.config.lora_targets)
        )


def save_run(run_dir: str | Path, model: CoEmoGen, unet: nn.Module, clusters: EmotionClusters | None) -> Path:
    """Write config.json, taxonomy.json and mapper/perception_encoder/hilora/clusters safetensors."""
    run_dir = Path(run_dir)
    model.config.save(run_dir)
    write_text(run_dir / "taxonomy.json", json.dumps(model.taxonomy.to_dict(), indent=2))

    def cpu(state):
        return {k: v.detach().cpu().contiguous() for k, v in state.items()}

    save_safetensors(cpu(model.mapper.state_dict()), run_dir / "mapper.safetensors")
    save_safetensors(cpu(model.perception_encoder.state_dict()), run_dir / "perception_encoder.safetensors")
    save_safetensors(hilora_state_dict(unet), run_dir / "hilora.safetensors")
    if clusters is not None:
        save_safetensors(clusters.state_dict(), run_dir / "clusters.safetensors")
    return run_dir


def load_run(
    run_dir: str | Path,
    unet: nn.Module,
    taxonomy: Taxonomy | None = None,
    require_clusters: bool = True,
    config: CoEmoGenConfig | None = None,
) -> tuple[CoEmoGen, EmotionClusters | None]:
    """Rebuild a saved model, inject and load its HiLoRA into `unet` (safetensors only).

    Every weight file is checked against the shapes the configuration implies (and against free
    memory) before the model is built, and for NaN or infinite values; a pickle in the directory is
    refused. `config`: the run's config when the caller has read it already."""
    run_dir = Path(run_dir)
    config = config or CoEmoGenConfig.load(run_dir)
    refuse_pickles(run_dir, "run directory")
    for name in REQUIRED_WEIGHTS:
        if not (run_dir / f"{name}.safetensors").is_file():
            raise CoEmoGenError(f"run '{run_dir}' is missing {name}.safetensors")
    try:
        with torch.device("meta"):  # the shapes the configuration implies, nothing allocated
            shapes = CoEmoGen(config)
        expected = {
            "mapper": {k: tuple(v.shape) for k, v in shapes.mapper.state_dict().items()},
            "perception_encoder": {k: tuple(v.shape) for k, v in shapes.perception_encoder.state_dict().items()},
            "hilora": hilora_shapes(unet, shapes.num_adapters, config.lora_rank, tuple(config.lora_targets)),
        }
    except (TypeError, ValueError, KeyError, AttributeError, RuntimeError) as err:
        raise CoEmoGenError(
            f"run '{run_dir}': {CONFIG_NAME} does not describe a model for these base models "
            f"({str(err).splitlines()[0]})"
        ) from None
    if taxonomy is not None and taxonomy != shapes.taxonomy:
        raise CoEmoGenError(
            f"run '{run_dir}' was trained on the taxonomy {shapes.taxonomy.to_dict()['groups']}, "
            f"not the requested {taxonomy.to_dict()['groups']}"
        )
    weights = {
        name: read_safetensors(run_dir / f"{name}.safetensors", expected[name], f"run '{run_dir}'")
        for name in REQUIRED_WEIGHTS
    }
    model = CoEmoGen(config)
    model.mapper.load_state_dict(weights["mapper"])
    model.perception_encoder.load_state_dict(weights["perception_encoder"])
    model.inject_into(unet)
    load_hilora_state_dict(unet, weights["hilora"])
    clusters = None
    if (run_dir / "clusters.safetensors").is_file():
        state = read_safetensors(run_dir / "clusters.safetensors", what=f"run '{run_dir}'")
        _check_cluster_shapes(run_dir, state, model.taxonomy.num_emotions, config.embed_dim)
        clusters = EmotionClusters.from_state_dict(state)
    elif require_clusters:
        raise CoEmoGenError(f"run '{run_dir}' has no clusters.safetensors (training did not finish?)")
    return model, clusters


def _check_cluster_shapes(run_dir: Path, state: dict, num_emotions: int, embed_dim: int) -> None:
    """weights (emotions, K), means and variances (emotions, K, d0), K components of any number."""
    if set(state) != {"weights", "means", "variances"}:
        raise CoEmoGenError(f"run '{run_dir}': clusters.safetensors holds {sorted(state)}, not weights/means/variances")
    k = state["weights"].shape[-1] if state["weights"].dim() == 2 else -1
    need = {
        "weights": (num_emotions, k),
        "means": (num_emotions, k, embed_dim),
        "variances": (num_emotions, k, embed_dim),
    }
    for name, shape in need.items():
        if tuple(state[name].shape) != shape:
            raise CoEmoGenError(
                f"run '{run_dir}': clusters '{name}' has shape {tuple(state[name].shape)}, expected {shape} "
                f"({num_emotions} emotions, embedding width {embed_dim})"
            )
