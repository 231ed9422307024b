"""The configuration records of every method, importable without torch (the command line builds
its `train` flags from them).

A config is the frozen constructor record of a model, as in diffusers: the fields recorded from
the base models and data (`derived`) and the hyper-parameters, each with its help text (one
`coemogen train` flag each). `CoEmoGenConfig` is CoEmoGen's, `EmoGenConfig` EmoGen's;
`METHOD_CONFIGS` names them by the `method` a run's config.json records.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from ..errors import CoEmoGenError
from ..io import write_text

CONFIG_NAME = "config.json"
DEFAULT_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")  # the U-Net linear layers that get HiLoRA adapters
DEFAULT_INFERENCE_STEPS = 15  # DPM-Solver++ steps of `generate`, the web app and the exported cards
DEFAULT_EDIT_STEPS = 30  # steps of `edit` and the web app's Edit tab
EDIT_METHODS = ("sdedit", "inversion")
EDIT_FORMATS = ("PNG", "JPEG", "WEBP")  # what `edit` and the web app accept from a user
SMALL_CNN = "small-cnn"
TUNING_HELP = "set by `coemogen tune`: the starting run, the reward, the guards and the steps"
REWARD_SHAPINGS = ("polarity", "target")
MAPPERS = ("MLP", "FC")


def derived(help: str):
    """A config field recorded from the base models or the data at training time (no flag)."""
    return field(metadata={"help": help, "derived": True})


def hparam(default, help: str):
    """A hyper-parameter: it gets a `coemogen train --<name>` flag."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


class RunConfigRecord:
    """What every method's configuration dataclass shares: its flags, and its config.json written
    and read back (a run of another method refused by name). The dataclass's `method` field default
    names the method."""

    @classmethod
    def hyperparameters(cls) -> list:
        """The fields users choose (each is a `coemogen train` flag)."""
        return [f for f in fields(cls) if not f.metadata.get("derived")]

    def save(self, run_dir: Path) -> None:
        write_text(run_dir / CONFIG_NAME, json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, run_dir: str | Path):
        data = read_run_config(run_dir)
        expected = next(f.default for f in fields(cls) if f.name == "method")
        if data.get("method", "coemogen") != expected:
            raise CoEmoGenError(
                f"'{run_dir}' is a run of method '{data.get('method', 'coemogen')}', not a {expected} run"
            )
        return config_from_dict(cls, data, str(Path(run_dir) / CONFIG_NAME))


@dataclass
class CoEmoGenConfig(RunConfigRecord):
    """Everything needed to rebuild a trained model around its base models."""

    taxonomy: dict = derived("groups -> emotions, from --taxonomy")
    embed_dim: int = derived("width d0 of e^v: the text encoders' token widths side by side (SDXL: 768 + 1280)")
    image_dim: int = derived("width of the CLIP vision tower's tokens v_i")
    pretrained_model_name_or_path: str = derived("the base Stable Diffusion (1.x/2.x or SDXL)")
    clip_model_name_or_path: str = derived("the CLIP model (image tokens, L_SEM, filter)")
    resolution: int = derived("training image resolution")
    pretrained_vae_model_name_or_path: str | None = field(
        default=None, metadata={"help": "a VAE that replaced the base model's", "derived": True}
    )
    mapper_hidden_dim: int = hparam(512, "hidden width of the neuro-symbolic mapper")
    mapper_layers: int = hparam(2, "linear layers in the neuro-symbolic mapper (>= 2)")
    lora_rank: int = hparam(4, "rank of every HiLoRA adapter")
    lora_alpha: float | None = hparam(None, "LoRA alpha (scaling alpha/rank); default: the rank, i.e. scaling 1")
    lora_targets: list[str] = hparam(
        list(DEFAULT_TARGETS), "U-Net linear layers that get HiLoRA adapters (training: the model family's by default)"
    )
    emotion_lora: bool = hparam(True, "false: the 'w/o emotion-specific LoRAs' ablation")
    group_lora: bool = hparam(True, "false: the 'w/o polarity-shared LoRAs' ablation")
    shared_lora: bool = hparam(False, "true: one LoRA for every emotion (no hierarchy) baseline")
    perception_encoder: bool = hparam(
        True, "false: e^v = mapper(y), one learned token per emotion, no image features (textual inversion)"
    )
    image_token_layer: int = hparam(-1, "CLIP vision hidden layer used as the image tokens v_i")
    template: str = hparam("{}", "prompt template around the placeholder token")
    cluster_components: int = hparam(1, "Gaussian mixture components per emotion cluster")
    cluster_temperature: float = hparam(
        1.0, "default spread of cluster samples at inference (1 = fitted Gaussian, 0 = emotion mean)"
    )
    run_name: str = hparam("coemogen", "name recorded for this configuration (e.g. an ablation's)")
    method: str = field(default="coemogen", metadata={"help": "the method family", "derived": True})
    tuning: dict | None = field(default=None, metadata={"help": TUNING_HELP, "derived": True})

    def __post_init__(self) -> None:
        if self.lora_alpha is None:
            self.lora_alpha = float(self.lora_rank)
        if not self.lora_alpha > 0:
            raise CoEmoGenError(f"lora_alpha must be positive, got {self.lora_alpha}")
        if self.mapper_layers < 2:
            raise CoEmoGenError(f"mapper_layers must be at least 2, got {self.mapper_layers}")
        if self.method != "coemogen":
            raise CoEmoGenError(f"a CoEmoGen configuration records method 'coemogen', not '{self.method}'")


@dataclass
class EmoGenConfig(RunConfigRecord):
    """Everything needed to rebuild a trained EmoGen around its base models."""

    taxonomy: dict = derived("groups -> emotions, from --taxonomy")
    embed_dim: int = derived("token-embedding width d0: the text encoders' widths side by side")
    clip_dim: int = derived("width of CLIP's shared image-text space (L_attr, L_emo)")
    pretrained_model_name_or_path: str = derived("the base Stable Diffusion (1.x/2.x or SDXL)")
    clip_model_name_or_path: str = derived("the CLIP model (attribute words, L_emo's classifier)")
    resolution: int = derived("training image resolution")
    pretrained_vae_model_name_or_path: str | None = field(
        default=None, metadata={"help": "a VAE that replaced the base model's", "derived": True}
    )
    emotion_encoder: str = hparam(
        SMALL_CNN,
        "image emotion classifier whose penultimate features are the emotion space: small-cnn, or any "
        "torchvision classification model name (resnet50 in EmoGen)",
    )
    emotion_encoder_weights: str | None = hparam(
        None, "torchvision weights for --emotion_encoder before its emotion training (e.g. DEFAULT: ImageNet)"
    )
    emotion_dim: int = hparam(768, "width of the emotion space (their fc_1: 2048 -> 768)")
    encoder_image_size: int = hparam(224, "emotion-encoder input size (their Resize(256) + CenterCrop(224))")
    encoder_epochs: float = hparam(10, "emotion-classifier training passes over the run's training split")
    encoder_batch_size: int = hparam(32, "emotion-classifier batch size")
    encoder_learning_rate: float = hparam(1e-3, "emotion-classifier AdamW learning rate")
    emogen_mapper: str = hparam(
        "MLP",
        "mapper: MLP (theirs, default) or FC (one linear layer)",
    )
    num_fc_layers: int = hparam(2, "linear layers of the MLP mapper (>= 2)")
    mapper_width: int = hparam(1024, "hidden width of the MLP mapper")
    need_relu: bool = hparam(True, "ReLU after each hidden layer of the MLP mapper")
    need_ln: bool = hparam(False, "LayerNorm after each hidden layer of the MLP mapper")
    need_dropout: bool = hparam(False, "Dropout(0.5) after each hidden layer of the MLP mapper")
    attr_rate: float = hparam(0.01, "weight of L_attr (their attr_rate)")
    emo_rate: float = hparam(0.0, "weight of L_emo (their emo_rate; 0 in their configuration)")
    threshold: float = hparam(0.0, "attribute-emotion coefficients below this are set to 0 (their threshold)")
    classifier_steps: int = hparam(300, "training steps of L_emo's linear CLIP-space emotion classifier")
    template: str = hparam("{}", "prompt template around the placeholder token")
    cluster_temperature: float = hparam(
        1.0, "default spread of the emotion-space Gaussian samples (1 = fitted std, 0 = emotion mean)"
    )
    run_name: str = hparam("emogen", "name recorded for this configuration")
    method: str = field(default="emogen", metadata={"help": "the method family", "derived": True})
    tuning: dict | None = field(default=None, metadata={"help": TUNING_HELP, "derived": True})

    def __post_init__(self) -> None:
        if self.emogen_mapper not in MAPPERS:
            raise CoEmoGenError(f"--emogen_mapper must be one of {', '.join(MAPPERS)}, not '{self.emogen_mapper}'")
        if self.emogen_mapper == "MLP" and self.num_fc_layers < 2:
            raise CoEmoGenError(f"--num_fc_layers must be at least 2, got {self.num_fc_layers}")
        for name in ("emotion_dim", "encoder_image_size", "encoder_batch_size", "mapper_width"):
            if getattr(self, name) < 1:
                raise CoEmoGenError(f"--{name} must be positive, got {getattr(self, name)}")
        if self.method != "emogen":
            raise CoEmoGenError(f"an EmoGen configuration records method 'emogen', not '{self.method}'")


@dataclass
class TuneConfig:
    """The settings of emotion reward tuning (`coemogen tune`), one flag each: how images are sampled
    for the reward (DRaFT-K: the last `truncation_steps` of the sampler keep their graph), the reward
    and its shaping, the optional quality term, and the two guards against reward hacking (the
    anchor on the data and the penalty on drifting from the starting run's noise prediction)."""

    truncation_steps: int = hparam(1, "K: the last K sampling steps keep their graph (DRaFT-K); the rest run without")
    num_inference_steps: int = hparam(DEFAULT_INFERENCE_STEPS, "DDIM steps of each tuning sample")
    guidance_scale: float = hparam(5.0, "classifier-free guidance of each tuning sample")
    reward_model: str | None = hparam(
        None,
        "the emotion reward: a head folder from `coemogen emotion-head train` (default: the one registered for "
        "the run's base model, e.g. the synthetic world's)",
    )
    reward_shaping: str = hparam(
        "polarity",
        "polarity: 0.8 p(target) + 0.2 (0.5 p(same polarity) - 0.5 p(opposite)) (EmoCtrl); target: p(target)",
    )
    reward_weight: float = hparam(1.0, "weight of the emotion reward (0: no sampling; anchor and penalty only)")
    quality_model: str | None = hparam(
        None, "a preference model to keep quality: a local CLIP-form directory (PickScore-style), scored on the prompt"
    )
    quality_weight: float = hparam(0.5, "weight of --quality_model's score beside the emotion reward")
    anchor_weight: float = hparam(1.0, "guard: the starting method's own loss on the manifest, every step (0: off)")
    kl_weight: float = hparam(
        0.0,
        "guard: weight of the mean squared distance of the noise prediction from the starting run's at the graph "
        "steps (default off: at 100 it held the runs of docs/tune at their start; the anchor alone let them learn)",
    )
    tune_encoders: bool = hparam(
        False,
        "also tune the mapper and visual-perception encoder (CoEmoGen; clusters then refitted); EmoGen's mapper always",
    )

    def __post_init__(self) -> None:
        if self.reward_shaping not in REWARD_SHAPINGS:
            raise CoEmoGenError(
                f"--reward_shaping must be one of {', '.join(REWARD_SHAPINGS)}, not '{self.reward_shaping}'"
            )
        if not 1 <= self.truncation_steps <= self.num_inference_steps:
            raise CoEmoGenError(
                f"--truncation_steps must be between 1 and --num_inference_steps ({self.num_inference_steps}), "
                f"got {self.truncation_steps}"
            )
        for name in ("reward_weight", "quality_weight", "anchor_weight", "kl_weight", "guidance_scale"):
            if not getattr(self, name) >= 0:
                raise CoEmoGenError(f"--{name} must be >= 0, got {getattr(self, name)}")
        if self.reward_weight == self.anchor_weight == self.kl_weight == 0:
            raise CoEmoGenError("every loss of tuning is switched off (--reward_weight, --anchor_weight, --kl_weight)")

    @classmethod
    def hyperparameters(cls) -> list:
        return list(fields(cls))


def config_from_dict(cls: type, data: dict, where: str):
    """A method's configuration from its config.json: the recorded fields must be there; keys of
    other versions are ignored."""
    known = {f.name for f in fields(cls)}
    required = [f for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    missing = sorted(f.name for f in required if f.name not in data)
    if missing:
        raise CoEmoGenError(f"{where} lacks {', '.join(missing)}")
    return cls(**{k: v for k, v in data.items() if k in known})


def read_run_config(run_dir: str | Path) -> dict:
    """A run directory's config.json as a dict (any method), with clear errors."""
    path = Path(run_dir) / CONFIG_NAME
    if not path.is_file():
        raise CoEmoGenError(f"'{run_dir}' is not a CoEmoGen run directory (no {CONFIG_NAME})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CoEmoGenError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise CoEmoGenError(f"{path}: expected a JSON object")
    return data


METHOD_CONFIGS = {"coemogen": CoEmoGenConfig, "emogen": EmoGenConfig}
RunConfig = CoEmoGenConfig | EmoGenConfig
