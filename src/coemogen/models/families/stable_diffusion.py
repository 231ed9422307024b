"""Stable Diffusion 1.x and 2.x: one CLIP text encoder, its last hidden states condition the U-Net."""

from __future__ import annotations

import torch

from ..conditioning import TextCondition
from .base import ModelFamily, TextEncoderSpec


class StableDiffusion(ModelFamily):
    name = "sd"
    description = "Stable Diffusion 1.x / 2.x"
    pipeline_class_names = ("StableDiffusionPipeline",)
    # A1111 and ComfyUI read a one-encoder embedding from `emb_params`.
    text_encoders = (TextEncoderSpec("text_encoder", "tokenizer", "CLIPTextModel", "emb_params"),)
    lora_targets = ("to_q", "to_k", "to_v", "to_out.0")

    def text_condition(self, outputs: list) -> TextCondition:
        (out,) = outputs
        return TextCondition(out.last_hidden_state, out.pooler_output)

    def unet_kwargs(self, condition: TextCondition, time_ids: torch.Tensor | None) -> dict:
        return {"encoder_hidden_states": condition.hidden_states}

    def kohya_module_name(self, module_path: str, unet_config) -> str:
        # Kohya's SD1/2 LoRA names are the diffusers module paths; A1111 maps them to its own.
        return module_path.replace(".", "_")

    def kohya_metadata(self, unet_config) -> dict[str, str]:
        v2 = int(unet_config.cross_attention_dim) == 1024  # SD2's OpenCLIP ViT-H text encoder
        return {
            "ss_base_model_version": "sd_v2" if v2 else "sd_v1",
            "ss_v2": str(v2),
            "modelspec.architecture": "stable-diffusion-v2-512/lora" if v2 else "stable-diffusion-v1/lora",
        }

    def diffusers_pipeline_class(self) -> type:
        from diffusers import StableDiffusionPipeline

        return StableDiffusionPipeline
