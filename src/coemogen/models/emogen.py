"""EmoGen (Yang et al., CVPR 2024) as published, the paper's main baseline, on the same base models.

EmoGen keeps the whole Stable Diffusion frozen (no LoRA). An image emotion classifier trained on
the training set gives each image a feature in an "emotion space" (its penultimate layer); a small
MLP maps that feature to one placeholder-token embedding that goes through the frozen text encoder.
At inference per-emotion Gaussians in the emotion space are sampled and mapped. Their code:
JingyuanYY/EmoGen, `training/model.py` (networks), `training/main.py` (loss), `training/inference.py`;
`docs/baselines.md` compares this module with it line by line.

`EmoGenConfig` is the constructor record (its hyper-parameters are the `train --method emogen`
flags); `EmoGen` holds the emotion encoder, the mapper and (for L_emo) the CLIP-space emotion
classifier; `save_emogen_run` / `load_emogen_run` write and read its run directory.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from ..errors import CoEmoGenError
from ..io import read_safetensors, refuse_pickles, save_safetensors, write_text
from ..taxonomy import Taxonomy
from .clusters import EmotionClusters
from .configs import CONFIG_NAME, SMALL_CNN, EmoGenConfig

WEIGHT_FILES = ("emotion_encoder", "mapper")  # clip_emotion_classifier when emo_rate > 0; clusters last


class SmallEmotionCNN(nn.Module):
    """The synthetic world's default backbone: four strided conv blocks and a global average pool."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        chans = [3, width, width * 2, width * 4, width * 8]
        layers: list[nn.Module] = []
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(a, b, 3, stride=2, padding=1), nn.BatchNorm2d(b), nn.ReLU()]
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_dim = chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def make_backbone(name: str, weights: str | None = None) -> tuple[nn.Module, int]:
    """(backbone returning pooled features, their width): the small CNN or a torchvision classifier
    with its classification layer removed (their `children()[:-2]` + AvgPool + Flatten)."""
    if name == SMALL_CNN:
        if weights is not None:
            raise CoEmoGenError("--emotion_encoder_weights applies to torchvision backbones, not small-cnn")
        cnn = SmallEmotionCNN()
        return cnn, cnn.out_dim
    try:
        import torchvision
    except ImportError:
        raise CoEmoGenError(f"--emotion_encoder {name} needs torchvision: pip install torchvision") from None
    try:
        net = torchvision.models.get_model(name, weights=weights)
    except (ValueError, KeyError) as err:
        raise CoEmoGenError(f"--emotion_encoder '{name}' is not a torchvision model ({err})") from None
    for attr in ("fc", "classifier", "head", "heads"):
        head = getattr(net, attr, None)
        if head is not None:
            width = _in_features(head)
            setattr(net, attr, nn.Identity())
            return net, width
    raise CoEmoGenError(f"--emotion_encoder '{name}': no fc/classifier/head layer to replace with the emotion head")


def _in_features(head: nn.Module) -> int:
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)] if not isinstance(head, nn.Linear) else [head]
    if not linears:
        raise CoEmoGenError(f"cannot read the feature width of the classification head {type(head).__name__}")
    return linears[0].in_features


class EmotionEncoder(nn.Module):
    """Their `BackBone`: backbone -> fc_1 (the emotion space) -> ReLU, Dropout(0.5) -> fc_2 (emotions).

    `features` is their `image_encoder` (every layer but the classifier): the emotion-space feature
    the mapper reads. Inputs are images in [0, 1], resized and normalised here as their loader does."""

    def __init__(self, config: EmoGenConfig, num_emotions: int) -> None:
        super().__init__()
        self.image_size = config.encoder_image_size
        self.backbone, width = make_backbone(config.emotion_encoder, config.emotion_encoder_weights)
        self.fc_1 = nn.Linear(width, config.emotion_dim)
        self.fc_2 = nn.Sequential(nn.ReLU(), nn.Dropout(0.5), nn.Linear(config.emotion_dim, num_emotions))

    def preprocess(self, pixels: torch.Tensor) -> torch.Tensor:
        """[0, 1] square images -> the encoder's size, normalised to [-1, 1] (their mean = std = 0.5)."""
        if pixels.shape[-1] != self.image_size:
            pixels = nn.functional.interpolate(pixels, size=self.image_size, mode="bilinear", antialias=True)
        return pixels * 2 - 1

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.fc_1(self.backbone(self.preprocess(pixels)))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Emotion logits."""
        return self.fc_2(self.features(pixels))


class EmoGenMapper(nn.Module):
    """Their `MLP` (Linear -> [LayerNorm] [ReLU] [Dropout] -> ... -> Linear) or `FC` (one Linear),
    from the emotion space to the text encoder's token space."""

    def __init__(self, config: EmoGenConfig) -> None:
        super().__init__()
        if config.emogen_mapper == "FC":
            self.mlp = nn.Sequential(nn.Linear(config.emotion_dim, config.embed_dim))
            return
        layers: list[nn.Module] = []
        dims = [config.emotion_dim] + [config.mapper_width] * (config.num_fc_layers - 1)
        for a, b in zip(dims[:-1], dims[1:]):
            layers.append(nn.Linear(a, b))
            if config.need_ln:
                layers.append(nn.LayerNorm(b))
            if config.need_relu:
                layers.append(nn.ReLU())
            if config.need_dropout:
                layers.append(nn.Dropout(0.5))
        layers.append(nn.Linear(dims[-1], config.embed_dim))
        self.mlp = nn.Sequential(*layers)

    def forward(self, emotion_features: torch.Tensor) -> torch.Tensor:
        return self.mlp(emotion_features)


class EmoGen(nn.Module):
    """Emotion encoder + mapper (+ L_emo's linear CLIP-space classifier) for one taxonomy.

    Shares the generation pipeline with CoEmoGen through `token_embeddings` (cluster samples ->
    placeholder embeddings) and `gates` (None: EmoGen has no adapters)."""

    has_adapters = False

    def __init__(self, config: EmoGenConfig) -> None:
        super().__init__()
        self.config = config
        self.taxonomy = Taxonomy.from_dict(config.taxonomy)
        self.emotion_encoder = EmotionEncoder(config, self.taxonomy.num_emotions)
        self.mapper = EmoGenMapper(config)
        self.clip_emotion_classifier = nn.Linear(config.clip_dim, self.taxonomy.num_emotions)

    def token_embeddings(self, cluster_samples: torch.Tensor) -> torch.Tensor:
        """Emotion-space samples (batch, emotion_dim) -> placeholder embeddings (batch, d0)."""
        return self.mapper(cluster_samples.to(next(self.mapper.parameters()).device))

    def gates(self, emotion_weights: torch.Tensor) -> None:
        return None


def float_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A module's weights for safetensors: BatchNorm's integer step counters are left out (they
    only matter for momentum=None, which no backbone here uses)."""
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items() if v.is_floating_point()}


def load_float_state(module: nn.Module, path: Path, what: str) -> None:
    """Load `float_state` weights, shapes checked first; only the integer counters may be absent."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items() if v.is_floating_point()}
    missing, unexpected = module.load_state_dict(read_safetensors(path, expected, what), strict=False)
    if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
        raise CoEmoGenError(f"{what}: {path} does not match the configuration (missing {missing[:3]})")


def save_emogen_run(
    run_dir: str | Path, model: EmoGen, clusters: EmotionClusters | None, attributes: dict | None = None
) -> Path:
    """config.json, taxonomy.json, attributes.json, the networks' safetensors, clusters last."""
    run_dir = Path(run_dir)
    model.config.save(run_dir)
    write_text(run_dir / "taxonomy.json", json.dumps(model.taxonomy.to_dict(), indent=2))
    if attributes is not None:
        write_text(run_dir / "attributes.json", json.dumps(attributes, indent=1))
    for name in (*WEIGHT_FILES, "clip_emotion_classifier"):
        save_safetensors(float_state(getattr(model, name)), run_dir / f"{name}.safetensors")
    if clusters is not None:
        save_safetensors(clusters.state_dict(), run_dir / "clusters.safetensors")
    return run_dir


def load_emogen_run(
    run_dir: str | Path, config: EmoGenConfig, taxonomy: Taxonomy | None = None, require_clusters: bool = True
) -> tuple[EmoGen, EmotionClusters | None]:
    """Rebuild a saved EmoGen (safetensors only, every file's shapes checked before it is read)."""
    run_dir = Path(run_dir)
    refuse_pickles(run_dir, "run directory")
    build = replace(config, emotion_encoder_weights=None)  # the trained weights are in the run
    try:
        model = EmoGen(build)
    except (TypeError, ValueError, RuntimeError) as err:
        raise CoEmoGenError(f"run '{run_dir}': {CONFIG_NAME} does not describe an EmoGen model ({err})") from None
    if taxonomy is not None and taxonomy != model.taxonomy:
        raise CoEmoGenError(
            f"run '{run_dir}' was trained on the taxonomy {model.taxonomy.to_dict()['groups']}, "
            f"not the requested {taxonomy.to_dict()['groups']}"
        )
    model.config = config
    for name in (*WEIGHT_FILES, "clip_emotion_classifier"):
        path = run_dir / f"{name}.safetensors"
        if not path.is_file():
            raise CoEmoGenError(f"run '{run_dir}' is missing {name}.safetensors")
        load_float_state(getattr(model, name), path, f"run '{run_dir}'")
    clusters = None
    if (run_dir / "clusters.safetensors").is_file():
        state = read_safetensors(run_dir / "clusters.safetensors", what=f"run '{run_dir}'")
        clusters = EmotionClusters.from_state_dict(state)
        want = (model.taxonomy.num_emotions, config.emotion_dim)
        if (clusters.means.shape[0], clusters.means.shape[-1]) != want:
            raise CoEmoGenError(
                f"run '{run_dir}': clusters have shape {tuple(clusters.means.shape)}, expected "
                f"({want[0]}, K, {want[1]}) (emotions, components, emotion-space width)"
            )
    elif require_clusters:
        raise CoEmoGenError(f"run '{run_dir}' has no clusters.safetensors (training did not finish?)")
    return model, clusters
