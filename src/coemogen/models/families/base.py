"""The base-model seam: what a diffusion model family must say for CoEmoGen to build on it.

A family is chosen from the base model's own `model_index.json` (its pipeline class) and answers
every question whose answer differs between model families: which text encoders there are and how
the text condition is built from their outputs, which extra inputs the U-Net takes, where the LoRA
targets are and what the ecosystem's file formats call them. Everything shared (the VAE scale
factor, the default resolution) is derived here once from the components' configs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..conditioning import TextCondition


@dataclass(frozen=True)
class TextEncoderSpec:
    """One text encoder of a family: its folders in the diffusers layout and its transformers class."""

    subfolder: str
    tokenizer_subfolder: str
    model_class: str  # a transformers class name (CLIPTextModel, CLIPTextModelWithProjection)
    ecosystem_name: str  # the key of its embedding in A1111/ComfyUI files ("emb_params"; "clip_l", "clip_g")


class ModelFamily(ABC):
    """One diffusion model family. Subclasses set the class attributes and implement the abstract
    methods; `register_family` refuses a subclass that leaves any of them out."""

    name: ClassVar[str]
    description: ClassVar[str]
    pipeline_class_names: ClassVar[tuple[str, ...]]  # model_index.json `_class_name`s it reads
    text_encoders: ClassVar[tuple[TextEncoderSpec, ...]]
    lora_targets: ClassVar[tuple[str, ...]]  # the U-Net linear layers HiLoRA adapts by default
    # Frozen VAE kept in fp32 under mixed precision (SDXL's overflows in fp16) unless a fixed VAE is given.
    vae_needs_fp32: ClassVar[bool] = False
    # The U-Net takes each training image's original size and crop (SDXL's micro-conditioning).
    micro_conditioning: ClassVar[bool] = False
    required: ClassVar[tuple[str, ...]] = (
        "name",
        "description",
        "pipeline_class_names",
        "text_encoders",
        "lora_targets",
    )

    def __init__(self, model_index: dict | None = None) -> None:
        self.model_index = dict(model_index or {})

    # How the text condition is built.
    def encoder_call_kwargs(self) -> dict:
        """Extra keyword arguments of every text-encoder call (e.g. output_hidden_states)."""
        return {}

    @abstractmethod
    def text_condition(self, outputs: list) -> TextCondition:
        """The U-Net condition from each text encoder's output, in `text_encoders` order."""

    def unconditional(self, encoded_empty_prompt: TextCondition) -> TextCondition:
        """The classifier-free guidance condition, given the empty prompt's encoding."""
        return encoded_empty_prompt

    # The U-Net's extra inputs.
    @abstractmethod
    def unet_kwargs(self, condition: TextCondition, time_ids: torch.Tensor | None) -> dict:
        """Keyword arguments of a U-Net call besides the latents and the timestep."""

    def time_ids(
        self, original_size: torch.Tensor, crop_top_left: torch.Tensor, target_size: tuple[int, int]
    ) -> torch.Tensor | None:
        """(batch, 6) micro-conditions, or None for a family without them."""
        return None

    # Export names.
    @abstractmethod
    def kohya_module_name(self, module_path: str, unet_config) -> str:
        """The module's name in kohya LoRA keys (without `lora_unet_`), from its diffusers path."""

    @abstractmethod
    def kohya_metadata(self, unet_config) -> dict[str, str]:
        """The kohya and modelspec metadata naming the base model (ss_base_model_version, ...)."""

    @abstractmethod
    def diffusers_pipeline_class(self) -> type:
        """The diffusers pipeline class of this family (plain-base-model images, `save_lora_weights`)."""

    # Shared derivations.
    @staticmethod
    def vae_scale_factor(vae_config) -> int:
        return 2 ** (len(vae_config.block_out_channels) - 1)

    def default_resolution(self, unet_config, vae_config) -> int:
        return int(unet_config.sample_size) * self.vae_scale_factor(vae_config)
