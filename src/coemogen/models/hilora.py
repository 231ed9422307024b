"""HiLoRA: hierarchical LoRA with one adapter per emotion and one per group (polarity).

For a sample of emotion e in group p the paper uses W' = W + A^p B^p + A^e B^e. All adapters of a
layer are stored side by side (A: adapters*rank x in, B: out x adapters*rank) and each sample
gets a gate vector over adapters (one-hot emotion + its group, or mixing weights). Then

    y = W x + scaling * B (g * (A x))

is two small GEMMs whatever the batch mixes; a gate of zero blocks both the forward signal and
the gradient, so unselected adapters receive exactly zero gradient.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


class HiLoRAGate:
    """Per-sample adapter weights shared by every HiLoRA layer of one U-Net."""

    def __init__(self) -> None:
        self.weights: torch.Tensor | None = None  # (batch, num_adapters)


class HiLoRALinear(nn.Module):
    """A frozen nn.Linear plus `num_adapters` rank-`rank` LoRAs selected per sample by a gate."""

    def __init__(self, base: nn.Linear, num_adapters: int, rank: int, alpha: float, gate: HiLoRAGate) -> None:
        super().__init__()
        self.base = base
        self.rank = rank
        self.num_adapters = num_adapters
        self.scaling = alpha / rank
        self.gate = gate
        self.lora_A = nn.Parameter(torch.empty(num_adapters * rank, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, num_adapters * rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self._unmerged_weight: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        gate = self.gate.weights
        if gate is None or self._unmerged_weight is not None:
            return out
        if gate.shape[0] != x.shape[0]:  # classifier-free guidance stacks [uncond, cond] copies
            gate = gate.repeat(x.shape[0] // gate.shape[0], 1)
        gate = gate.to(self.lora_A.dtype).repeat_interleave(self.rank, dim=1)
        gate = gate.view(gate.shape[0], *([1] * (x.dim() - 2)), gate.shape[1])
        h = F.linear(x.to(self.lora_A.dtype), self.lora_A) * gate
        return out + (F.linear(h, self.lora_B) * self.scaling).to(out.dtype)

    @torch.no_grad()
    def merge(self, gate_row: torch.Tensor) -> None:
        """Fold one gate vector into the base weight (every sample then shares it: no LoRA cost)."""
        if self._unmerged_weight is None:
            self._unmerged_weight = self.base.weight.detach().clone()
        g = gate_row.to(self.lora_A).repeat_interleave(self.rank)
        delta = (self.lora_B * g) @ self.lora_A * self.scaling
        self.base.weight.copy_(self._unmerged_weight + delta.to(self._unmerged_weight))

    @torch.no_grad()
    def unmerge(self) -> None:
        """Restore the exact base weight saved by `merge`."""
        if self._unmerged_weight is not None:
            self.base.weight.copy_(self._unmerged_weight)
            self._unmerged_weight = None


def inject_hilora(
    model: nn.Module,
    num_adapters: int,
    rank: int = 4,
    alpha: float | None = None,
    target_modules: tuple[str, ...] = DEFAULT_TARGETS,
) -> HiLoRAGate:
    """Replace every nn.Linear whose name ends with a target by a HiLoRALinear; return their gate."""
    gate = HiLoRAGate()
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and any(name == t or name.endswith("." + t) for t in target_modules)
    ]
    if not targets:
        raise ValueError(f"no nn.Linear named {target_modules} in {type(model).__name__}")
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        layer = HiLoRALinear(module, num_adapters, rank, float(alpha or rank), gate)
        layer.to(device=module.weight.device)
        setattr(parent, child, layer)
    return gate


def hilora_layers(model: nn.Module) -> Iterator[tuple[str, HiLoRALinear]]:
    for name, module in model.named_modules():
        if isinstance(module, HiLoRALinear):
            yield name, module


def hilora_gate(model: nn.Module) -> HiLoRAGate:
    """The gate shared by the HiLoRA layers of `model`."""
    for _, layer in hilora_layers(model):
        return layer.gate
    raise ValueError(f"{type(model).__name__} has no HiLoRA layers")


def hilora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        f"{name}.{p}": getattr(layer, p).detach().cpu().contiguous()
        for name, layer in hilora_layers(model)
        for p in ("lora_A", "lora_B")
    }


def load_hilora_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    expected = hilora_state_dict(model)
    if set(expected) != set(state):
        missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        raise ValueError(f"HiLoRA weights do not match the U-Net (missing {missing[:3]}, unexpected {extra[:3]})")
    for name, layer in hilora_layers(model):
        for p in ("lora_A", "lora_B"):
            tensor = state[f"{name}.{p}"]
            if tensor.shape != getattr(layer, p).shape:
                raise ValueError(
                    f"HiLoRA weight {name}.{p} has shape {tuple(tensor.shape)}, "
                    f"expected {tuple(getattr(layer, p).shape)}"
                )
            getattr(layer, p).data.copy_(tensor)


def adapter_gates(
    emotion_weights: torch.Tensor, membership: torch.Tensor, emotion_scale: float = 1.0, group_scale: float = 1.0
) -> torch.Tensor:
    """(batch, emotions) weights -> (batch, emotions + groups) gates: [emotion part | group part].

    A group's gate is the total weight of its emotions, so a one-hot emotion switches on exactly
    its own adapter and its group's; a scale of 0 switches a level off (ablations).
    """
    return torch.cat(
        [emotion_weights * emotion_scale, emotion_weights @ membership.to(emotion_weights) * group_scale], dim=1
    )
