"""An emotion's U-Net delta as a plain LoRA, in the kohya and the diffusers/peft key formats, named
as the base model's family names its modules (kohya SD1/2: diffusers paths; SDXL: the SGM U-Net's).

For a gate vector g over a HiLoRA layer's adapters (one emotion: its own adapter and its group's),
`HiLoRALinear.delta` is scaling * B diag(g) A, what `merge` adds to the weight. Keeping only the
adapters with a non-zero gate, that delta is exactly up @ down (`HiLoRALinear.factors`) with

    down = A[selected rows]                       (rank_out x in)
    up   = B[:, selected rows] * g * scaling      (out x rank_out)

so rank 4 (emotion) + rank 4 (group) is a rank-8 LoRA and a mix of two emotions of two groups a
rank-16 one, with no approximation. Every exported module gets alpha = rank_out, i.e. a LoRA scale
of 1: one alpha for all modules, which every loader maps the same way.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from ..models.families import ModelFamily
from ..models.hilora import hilora_layers

KOHYA_PREFIX = "lora_unet_"


def unet_lora_factors(unet: nn.Module, gate_row: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{diffusers module path: (down, up)} for every HiLoRA layer of `unet` (fp32, on the CPU)."""
    factors = {name: tuple(t.float().cpu() for t in layer.factors(gate_row)) for name, layer in hilora_layers(unet)}
    if not factors:
        raise ValueError(f"{type(unet).__name__} has no HiLoRA layers to export")
    if not next(iter(factors.values()))[0].shape[0]:
        raise ValueError("the gate vector selects no adapter: there is no delta to export")
    return factors


def kohya_key(module_path: str, family: ModelFamily, unet_config) -> str:
    """SD: `down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0` -> `lora_unet_down_blocks_0_..._to_out_0`;
    SDXL: `down_blocks.1.attentions.0...` -> `lora_unet_input_blocks_4_1_...` (kohya's SDXL names)."""
    return KOHYA_PREFIX + family.kohya_module_name(module_path, unet_config)


def save_kohya_lora(
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]],
    path: str | Path,
    title: str,
    resolution: int,
    family: ModelFamily,
    unet_config,
    prediction_type: str = "epsilon",
    extra_metadata: dict[str, str] | None = None,
) -> Path:
    """Write the LoRA in kohya's format (A1111, ComfyUI, InvokeAI, diffusers) with kohya and modelspec metadata."""
    rank = next(iter(factors.values()))[0].shape[0]
    alpha = torch.tensor(float(rank))
    tensors = {}
    for module_path, (down, up) in factors.items():
        stem = kohya_key(module_path, family, unet_config)
        tensors[f"{stem}.lora_down.weight"] = down
        tensors[f"{stem}.lora_up.weight"] = up
        tensors[f"{stem}.alpha"] = alpha.clone()
    metadata = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(rank),
        "ss_network_alpha": str(float(rank)),
        **family.kohya_metadata(unet_config),
        "ss_output_name": Path(path).stem,
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.implementation": "diffusers",
        "modelspec.title": title,
        "modelspec.date": date.today().isoformat(),
        "modelspec.resolution": f"{resolution}x{resolution}",
        "modelspec.prediction_type": prediction_type,
        **(extra_metadata or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, path, metadata=metadata)
    return path


def save_peft_lora(
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]], directory: str | Path, family: ModelFamily
) -> Path:
    """Write the LoRA in the diffusers/peft format (`unet.<module>.lora_A.weight` / `lora_B.weight`)
    with its adapter metadata, through the family's diffusers pipeline's own writer:
    `pytorch_lora_weights.safetensors`."""
    from diffusers.loaders.lora_base import LORA_WEIGHT_NAME_SAFE

    rank = next(iter(factors.values()))[0].shape[0]
    layers = {}
    for module_path, (down, up) in factors.items():
        layers[f"{module_path}.lora_A.weight"] = down
        layers[f"{module_path}.lora_B.weight"] = up
    adapter_metadata = {"r": rank, "lora_alpha": rank, "target_modules": sorted(factors)}
    family.diffusers_pipeline_class().save_lora_weights(
        directory, unet_lora_layers=layers, unet_lora_adapter_metadata=adapter_metadata
    )
    return Path(directory) / LORA_WEIGHT_NAME_SAFE
