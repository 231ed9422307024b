"""Loading the frozen base models: a diffusers-format Stable Diffusion of a registered family
(1.x/2.x, SDXL: `models/families/`, chosen from its model_index.json) plus any CLIP.

Hub ids and local directories go through the same `from_pretrained` calls; registered model
aliases (`coemogen.registry`, e.g. the synthetic world's pocket models) name local directories in
those formats.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import registry
from ..errors import CoEmoGenError
from .clip import ClipImagePreprocessor, image_tokens
from .families import ModelFamily, family_for


@dataclass
class BaseModels:
    """Frozen components CoEmoGen builds on. `clip` is None when loaded for inference only.
    `text_encoders` / `tokenizers` in the family's order; the first is CLIP-width (L_SEM, captions)."""

    family: ModelFamily
    vae: torch.nn.Module
    unet: torch.nn.Module
    text_encoders: list[torch.nn.Module]
    tokenizers: list
    noise_scheduler: object
    clip: torch.nn.Module | None
    clip_preprocess: ClipImagePreprocessor | None
    pretrained_model_name_or_path: str
    clip_model_name_or_path: str
    pretrained_vae_model_name_or_path: str | None = None  # a VAE replacing the base model's

    clip_config: object | None = None  # the CLIP model's configuration, also when only its projection is loaded
    text_projection: torch.nn.Module | None = None  # CLIP's text projection, for L_SEM

    def __post_init__(self) -> None:
        self.vae_scale_factor = self.family.vae_scale_factor(self.vae.config)
        self.default_resolution = self.family.default_resolution(self.unet.config, self.vae.config)

    @property
    def text_encoder(self) -> torch.nn.Module:
        return self.text_encoders[0]

    @property
    def tokenizer(self):
        return self.tokenizers[0]

    @property
    def embed_dim(self) -> int:
        """The placeholder embedding's width: every text encoder's token width, side by side."""
        return sum(encoder.config.hidden_size for encoder in self.text_encoders)

    @property
    def vae_in_fp32(self) -> bool:
        """The VAE stays fp32 under mixed precision (SDXL's own VAE overflows in fp16)."""
        return self.family.vae_needs_fp32 and self.pretrained_vae_model_name_or_path is None

    def frozen_modules(self) -> list[torch.nn.Module]:
        modules = (self.vae, *self.text_encoders, self.clip, self.unet, self.text_projection)
        return list({id(m): m for m in modules if m is not None}.values())

    def image_tokens(self, pixels: torch.Tensor, layer: int = -1) -> torch.Tensor:
        """CLIP vision tokens v_i (CLS + patches at hidden layer `layer`) of images in [0, 1]."""
        if self.clip is None:
            raise CoEmoGenError("CLIP image tokens need the CLIP model (loaded with load_clip=True)")
        return image_tokens(self.clip, self.clip_preprocess(pixels.to(self.clip.dtype)), layer)


def resolve_sources(
    pretrained_model_name_or_path: str | None = None,
    clip_model_name_or_path: str | None = None,
    preset: str | None = None,
    data: str | Path | None = None,
) -> tuple[str, str]:
    """Explicit paths win, then the preset. Without either, the preset a registered client gives
    for `data` (an image, a dataset folder): the synthetic world's pocket models for a world's data.
    Any other data stops with an error naming the flags, as diffusers' scripts refuse to start
    without `--pretrained_model_name_or_path`."""
    presets = registry.presets()
    if preset is not None and preset not in presets:
        raise CoEmoGenError(f"unknown preset '{preset}'; choose from {', '.join(presets)}")
    if preset is None and not (pretrained_model_name_or_path and clip_model_name_or_path):
        preset = registry.data_defaults(data).get("preset")
        if preset is None:
            missing = [
                flag
                for flag, given in (
                    ("--pretrained_model_name_or_path", pretrained_model_name_or_path),
                    ("--clip_model_name_or_path", clip_model_name_or_path),
                )
                if not given
            ]
            raise CoEmoGenError(
                f"choose the base models: --preset sd15 (stable-diffusion-v1-5 with openai/clip-vit-large-patch14), "
                f"--preset sdxl (stable-diffusion-xl-base-1.0 with the same CLIP), "
                f"or {' and '.join(missing)}. The pocket models (--preset pocket) are the default only for a "
                f"synthetic world's data (`coemogen world build`)" + (f", and {data} is not one" if data else "")
            )
    sd, clip = presets[preset] if preset is not None else (None, None)
    return pretrained_model_name_or_path or sd, clip_model_name_or_path or clip


def model_path(source: str | Path) -> str:
    """A hub id or directory, with registered aliases (the shipped pocket models' stable names)
    resolved to their folders."""
    return str(registry.model_aliases().get(str(source), source))


def _load(loader, source: str, what: str, **kwargs):
    source = model_path(source)
    try:
        return loader(source, **kwargs)
    except (OSError, ValueError) as err:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in {"0", "", "false", "False"}
        hint = ("This machine is offline (HF_HUB_OFFLINE=1). " if offline else "") + (
            f"If '{source}' is a hub id, download it where you have network "
            f"(`hf download {source} --local-dir DIR`) and pass DIR instead."
        )
        if Path(source).exists():
            hint = f"'{source}' exists but is not a valid {what} directory."
        raise CoEmoGenError(f"could not load {what} from '{source}': {str(err).splitlines()[0]}\n{hint}") from None


def load_pretrained(loader, source: str, what: str, dtype: torch.dtype | str = torch.float32, **kwargs):
    """`_load` for a model with weights, at an explicit `dtype` (float32 unless told otherwise):
    transformers 5 otherwise loads a model in the dtype its config declares (fp16-published
    checkpoints declare float16), which would put fp16 encoders beside an fp32 U-Net. The
    mixed-precision rule casts the frozen parts afterwards."""
    owner = getattr(loader, "__self__", None)
    keyword = "torch_dtype"  # diffusers, and transformers before 4.56
    if getattr(owner, "__module__", "").startswith("transformers"):
        import transformers
        from packaging.version import Version

        if Version(transformers.__version__) >= Version("4.56"):
            keyword = "dtype"
    return _load(loader, source, what, **kwargs, **{keyword: dtype})


def model_index(source: str) -> dict:
    """A diffusers model directory's model_index.json (local folder or hub id), with clear errors."""
    from diffusers import DiffusionPipeline

    return _load(DiffusionPipeline.load_config, source, "a Stable Diffusion (diffusers format)")


def load_base_models(
    pretrained_model_name_or_path: str,
    clip_model_name_or_path: str,
    dtype: torch.dtype | None = None,
    load_clip: bool | str = True,
    pretrained_vae_model_name_or_path: str | None = None,
) -> BaseModels:
    """Load VAE, U-Net, text encoders, tokenizers, noise scheduler and (for training) CLIP, all frozen
    and in eval mode, as the base model's family lays them out. Inference never uses CLIP:
    `load_clip=False` skips it (1.7 GB at ViT-L/14); `load_clip="text_projection"` reads only its
    configuration and text projection (training from a feature cache that holds every CLIP output).
    `pretrained_vae_model_name_or_path`: another VAE (e.g. SDXL's fp16-safe one), a diffusers
    AutoencoderKL folder or hub id. `dtype` casts every module but a VAE that must stay fp32."""
    import transformers
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

    sd, clip_src = pretrained_model_name_or_path, clip_model_name_or_path
    family = family_for(model_index(sd), f"'{sd}'")
    what = f"a {family.description} (diffusers format)"
    if pretrained_vae_model_name_or_path is None:
        vae = load_pretrained(AutoencoderKL.from_pretrained, sd, what, subfolder="vae")
    else:
        vae = load_pretrained(
            AutoencoderKL.from_pretrained, pretrained_vae_model_name_or_path, "a VAE (diffusers AutoencoderKL)"
        )
    models = BaseModels(
        family=family,
        vae=vae,
        unet=load_pretrained(UNet2DConditionModel.from_pretrained, sd, what, subfolder="unet"),
        text_encoders=[
            load_pretrained(getattr(transformers, spec.model_class).from_pretrained, sd, what, subfolder=spec.subfolder)
            for spec in family.text_encoders
        ],
        tokenizers=[
            _load(transformers.CLIPTokenizer.from_pretrained, sd, what, subfolder=spec.tokenizer_subfolder)
            for spec in family.text_encoders
        ],
        noise_scheduler=_load(DDPMScheduler.from_pretrained, sd, what, subfolder="scheduler"),
        clip=None,
        clip_preprocess=None,
        pretrained_model_name_or_path=sd,
        clip_model_name_or_path=clip_src,
        pretrained_vae_model_name_or_path=pretrained_vae_model_name_or_path,
    )
    if load_clip == "text_projection":
        models.clip_config, models.text_projection = _load(load_text_projection, clip_src, "a CLIP model")
    elif load_clip:
        from transformers import CLIPImageProcessor, CLIPModel

        models.clip = load_pretrained(CLIPModel.from_pretrained, clip_src, "a CLIP model")
        processor = _load(CLIPImageProcessor.from_pretrained, clip_src, "a CLIP image processor")
        models.clip_preprocess = ClipImagePreprocessor.from_clip(models.clip, processor)
        models.clip_config, models.text_projection = models.clip.config, models.clip.text_projection
    for module in models.frozen_modules():
        module.requires_grad_(False)
        module.eval()
        if dtype is not None and not (module is models.vae and models.vae_in_fp32):
            module.to(dtype)
    clip_width = models.clip_config.text_config.hidden_size if models.clip_config is not None else None
    if clip_width is not None and models.text_encoder.config.hidden_size != clip_width:
        raise CoEmoGenError(
            f"the CLIP model's text tower is {clip_width} wide but the base model's first text encoder is "
            f"{models.text_encoder.config.hidden_size}; L_SEM projects that encoder's pooled output with the CLIP "
            "text projection, so they must match"
        )
    return models


def load_text_projection(clip_source: str) -> tuple[object, torch.nn.Linear]:
    """A CLIP model's configuration and its text projection, read from its safetensors weights
    without loading the towers."""
    from safetensors import safe_open
    from transformers import CLIPConfig
    from transformers.utils import cached_file

    config = CLIPConfig.from_pretrained(clip_source)
    weights = cached_file(clip_source, "model.safetensors")
    with safe_open(weights, framework="pt") as f:
        weight = f.get_tensor("text_projection.weight")
    projection = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    projection.weight.data.copy_(weight)
    return config, projection
