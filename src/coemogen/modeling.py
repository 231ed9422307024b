"""The CoEmoGen model: emotion symbol -> descriptor -> visual embedding -> condition, plus HiLoRA.

`CoEmoGen` holds the trainable non-U-Net parts (mapper, visual-perception encoder) and the
taxonomy; HiLoRA lives inside the base U-Net (see models/hilora.py). `save_run`/`load_run`
write and read a run directory: config.json + safetensors, never pickles.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .clusters import EmotionClusters
from .errors import CoEmoGenError
from .models.hilora import DEFAULT_TARGETS, adapter_gates, hilora_state_dict, inject_hilora, load_hilora_state_dict
from .models.mapper import NeuroSymbolicMapper
from .models.perception import VisualPerceptionEncoder
from .taxonomy import Taxonomy

CONFIG_NAME = "config.json"
WEIGHT_FILES = ("mapper", "perception_encoder", "hilora", "clusters")


@dataclass
class CoEmoGenConfig:
    """Everything needed to rebuild a trained model around its base models."""

    taxonomy: dict
    embed_dim: int
    image_dim: int
    pretrained_model_name_or_path: str
    clip_model_name_or_path: str
    resolution: int
    mapper_hidden_dim: int = 512
    mapper_layers: int = 2
    lora_rank: int = 4
    lora_alpha: float = 4.0
    lora_targets: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    emotion_lora: bool = True  # False: the "w/o emotion-specific LoRAs" ablation
    group_lora: bool = True  # False: the "w/o polarity-shared LoRAs" ablation
    shared_lora: bool = False  # True: one LoRA for every emotion (no hierarchy) baseline
    perception_encoder: bool = True  # False: e^v = mapper(y), one learned token per emotion (textual inversion)
    image_token_layer: int = -1
    template: str = "{}"
    cluster_components: int = 1
    # Default spread of the cluster samples at inference (1 = the fitted Gaussian, as in the paper);
    # lower trades diversity for fidelity, like the truncation trick.
    cluster_temperature: float = 1.0
    method: str = "coemogen"

    def save(self, run_dir: Path) -> None:
        (run_dir / CONFIG_NAME).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, run_dir: Path) -> CoEmoGenConfig:
        path = run_dir / CONFIG_NAME
        if not path.is_file():
            raise CoEmoGenError(f"'{run_dir}' is not a CoEmoGen run directory (no {CONFIG_NAME})")
        data = json.loads(path.read_text())
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


class CoEmoGen(nn.Module):
    """Neuro-symbolic mapper + visual-perception encoder for one taxonomy."""

    def __init__(self, config: CoEmoGenConfig) -> None:
        super().__init__()
        self.config = config
        self.taxonomy = Taxonomy.from_groups(config.taxonomy["groups"])
        self.mapper = NeuroSymbolicMapper(
            self.taxonomy.num_emotions, config.embed_dim, config.mapper_hidden_dim, config.mapper_layers
        )
        self.perception_encoder = VisualPerceptionEncoder(config.embed_dim, config.image_dim)
        membership = torch.zeros(self.taxonomy.num_emotions, self.taxonomy.num_groups)
        for i, emotion in enumerate(self.taxonomy.emotions):
            membership[i, self.taxonomy.group_index_of(emotion)] = 1.0
        self.register_buffer("membership", membership, persistent=False)

    @property
    def num_adapters(self) -> int:
        return 1 if self.config.shared_lora else self.taxonomy.num_emotions + self.taxonomy.num_groups

    def one_hot(self, emotion_indices: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(emotion_indices, self.taxonomy.num_emotions).float()

    def mix_weights(self, mixes: list[dict[str, float]]) -> torch.Tensor:
        """[{emotion: weight}] -> (batch, emotions) weight matrix."""
        weights = torch.zeros(len(mixes), self.taxonomy.num_emotions)
        for row, mix in enumerate(mixes):
            for emotion, w in mix.items():
                weights[row, self.taxonomy.index(emotion)] = w
        return weights

    def visual_embedding(self, emotion_weights: torch.Tensor, image_tokens: torch.Tensor) -> torch.Tensor:
        """e^v = encoder(mapper(y), v): (batch, emotions), (batch, tokens, image_dim) -> (batch, d0)."""
        if not self.config.perception_encoder:
            return self.mapper(emotion_weights)
        return self.perception_encoder(self.mapper(emotion_weights), image_tokens)

    def gates(self, emotion_weights: torch.Tensor) -> torch.Tensor:
        """Per-sample adapter weights: [emotions | groups], or one shared adapter."""
        if self.config.shared_lora:
            return emotion_weights.sum(dim=1, keepdim=True)
        return adapter_gates(
            emotion_weights, self.membership, float(self.config.emotion_lora), float(self.config.group_lora)
        )

    def inject_into(self, unet: nn.Module):
        """Add this model's HiLoRA layers to `unet`; returns the gate to set per batch."""
        return inject_hilora(
            unet, self.num_adapters, self.config.lora_rank, self.config.lora_alpha, tuple(self.config.lora_targets)
        )


def save_run(run_dir: str | Path, model: CoEmoGen, unet: nn.Module, clusters: EmotionClusters | None) -> Path:
    """Write config.json and mapper/perception_encoder/hilora/clusters safetensors."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    model.config.save(run_dir)
    (run_dir / "taxonomy.json").write_text(json.dumps(model.taxonomy.to_dict(), indent=2))

    def cpu(state):
        return {k: v.detach().cpu().contiguous() for k, v in state.items()}

    save_file(cpu(model.mapper.state_dict()), run_dir / "mapper.safetensors")
    save_file(cpu(model.perception_encoder.state_dict()), run_dir / "perception_encoder.safetensors")
    save_file(hilora_state_dict(unet), run_dir / "hilora.safetensors")
    if clusters is not None:
        save_file(clusters.state_dict(), run_dir / "clusters.safetensors")
    return run_dir


def load_run(
    run_dir: str | Path, unet: nn.Module, taxonomy: Taxonomy | None = None, require_clusters: bool = True
) -> tuple[CoEmoGen, EmotionClusters | None]:
    """Rebuild a saved model, inject and load its HiLoRA into `unet` (safetensors only)."""
    run_dir = Path(run_dir)
    config = CoEmoGenConfig.load(run_dir)
    model = CoEmoGen(config)
    if taxonomy is not None and taxonomy != model.taxonomy:
        raise CoEmoGenError(
            f"run '{run_dir}' was trained on the taxonomy {model.taxonomy.to_dict()['groups']}, "
            f"not the requested {taxonomy.to_dict()['groups']}"
        )
    for name in WEIGHT_FILES[:3]:
        if not (run_dir / f"{name}.safetensors").is_file():
            raise CoEmoGenError(f"run '{run_dir}' is missing {name}.safetensors")
    try:
        model.mapper.load_state_dict(load_file(run_dir / "mapper.safetensors"))
        model.perception_encoder.load_state_dict(load_file(run_dir / "perception_encoder.safetensors"))
        model.inject_into(unet)
        load_hilora_state_dict(unet, load_file(run_dir / "hilora.safetensors"))
    except (RuntimeError, ValueError) as err:
        raise CoEmoGenError(f"run '{run_dir}' does not fit these base models: {str(err).splitlines()[0]}") from None
    clusters = None
    if (run_dir / "clusters.safetensors").is_file():
        clusters = EmotionClusters.from_state_dict(load_file(run_dir / "clusters.safetensors"))
        if clusters.means.shape[0] != model.taxonomy.num_emotions:
            raise CoEmoGenError(
                f"run '{run_dir}': clusters cover {clusters.means.shape[0]} emotions, "
                f"the taxonomy has {model.taxonomy.num_emotions}"
            )
    elif require_clusters:
        raise CoEmoGenError(f"run '{run_dir}' has no clusters.safetensors (training did not finish?)")
    return model, clusters
