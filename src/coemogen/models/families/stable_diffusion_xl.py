"""Stable Diffusion XL: two text encoders (CLIP ViT-L, 768 wide, and OpenCLIP bigG, 1280 wide).

The condition is both encoders' penultimate hidden states side by side (768 + 1280 = 2048), the
U-Net's added inputs the second encoder's projected pooled output and six micro-conditions per
image (original size, crop top-left, target size). CoEmoGen's visual embedding e^v is one
2048-wide vector: its first 768 entries are the placeholder token's embedding in the first
encoder, the other 1280 in the second (the A1111/ComfyUI `clip_l` / `clip_g` split).
"""

from __future__ import annotations

import torch

from ...errors import CoEmoGenError
from ..conditioning import TextCondition
from .base import ModelFamily, TextEncoderSpec


class StableDiffusionXL(ModelFamily):
    name = "sdxl"
    description = "Stable Diffusion XL"
    pipeline_class_names = ("StableDiffusionXLPipeline",)
    text_encoders = (
        TextEncoderSpec("text_encoder", "tokenizer", "CLIPTextModel", "clip_l"),
        TextEncoderSpec("text_encoder_2", "tokenizer_2", "CLIPTextModelWithProjection", "clip_g"),
    )
    lora_targets = ("to_q", "to_k", "to_v", "to_out.0")
    vae_needs_fp32 = True
    micro_conditioning = True

    def encoder_call_kwargs(self) -> dict:
        return {"output_hidden_states": True}

    def text_condition(self, outputs: list) -> TextCondition:
        first, second = outputs
        hidden = torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1)
        return TextCondition(hidden, first.pooler_output, text_embeds=second.text_embeds)

    def unconditional(self, encoded_empty_prompt: TextCondition) -> TextCondition:
        # SDXL base guides against zeros, not the empty prompt's encoding (its pipeline's default).
        if self.model_index.get("force_zeros_for_empty_prompt", True):
            return encoded_empty_prompt.zeros_like()
        return encoded_empty_prompt

    def unet_kwargs(self, condition: TextCondition, time_ids: torch.Tensor | None) -> dict:
        if time_ids is None:
            raise CoEmoGenError("an SDXL U-Net needs the micro-conditions (time_ids) of each image")
        hidden = condition.hidden_states
        return {
            "encoder_hidden_states": hidden,
            "added_cond_kwargs": {"text_embeds": condition.text_embeds, "time_ids": time_ids.to(hidden)},
        }

    def time_ids(
        self, original_size: torch.Tensor, crop_top_left: torch.Tensor, target_size: tuple[int, int]
    ) -> torch.Tensor:
        target = torch.tensor(target_size, dtype=torch.float32).expand(len(original_size), 2)
        return torch.cat([original_size.float(), crop_top_left.float(), target], dim=1)

    def kohya_module_name(self, module_path: str, unet_config) -> str:
        return sgm_module_path(module_path, unet_config).replace(".", "_")

    def kohya_metadata(self, unet_config) -> dict[str, str]:
        return {
            "ss_base_model_version": "sdxl_base_v1-0",
            "ss_v2": "False",
            "modelspec.architecture": "stable-diffusion-xl-v1-base/lora",
        }

    def diffusers_pipeline_class(self) -> type:
        from diffusers import StableDiffusionXLPipeline

        return StableDiffusionXLPipeline


def sgm_module_path(module_path: str, unet_config) -> str:
    """A diffusers U-Net module path in the original (SGM) U-Net's numbering, which kohya's SDXL LoRA
    keys and the SDXL tools use: `down_blocks.1.attentions.0.X` -> `input_blocks.4.1.X` (two layers per
    block). Input block 0 is conv_in; each down block's layer j is one input block (resnet .0,
    attention .1), its downsampler the next; the middle block is resnet, attention, resnet; each up
    block has one layer more."""
    layers = unet_config.layers_per_block
    if not isinstance(layers, int):
        if len(set(layers)) != 1:
            raise CoEmoGenError(f"kohya names need one layers_per_block for every block, got {layers}")
        layers = layers[0]
    parts = module_path.split(".")
    inner = {"resnets": 0, "attentions": 1}
    if parts[0] in ("down_blocks", "up_blocks") and len(parts) > 4 and parts[2] in inner:
        block, kind, layer = int(parts[1]), parts[2], int(parts[3])
        if parts[0] == "down_blocks":
            name = f"input_blocks.{1 + block * (layers + 1) + layer}.{inner[kind]}"
        else:
            name = f"output_blocks.{block * (layers + 1) + layer}.{inner[kind]}"
        return ".".join([name, *parts[4:]])
    if parts[0] == "mid_block" and len(parts) > 3 and parts[1] in inner:
        index = 1 if parts[1] == "attentions" else 2 * int(parts[2])
        return ".".join([f"middle_block.{index}", *parts[3:]])
    raise CoEmoGenError(f"U-Net module '{module_path}' has no place in the SGM U-Net's numbering")
