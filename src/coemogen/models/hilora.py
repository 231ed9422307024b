"""HiLoRA: hierarchical LoRA with one adapter per emotion and one per group (polarity).

For a sample of emotion e in group p the paper uses W' = W + A^p B^p + A^e B^e. All adapters of a
layer are stored side by side (A: adapters*rank x in, B: out x adapters*rank) and each sample
gets a gate vector over adapters (one-hot emotion + its group, or mixing weights). Then

    y = W x + scaling * B (g * (A x))

is two small GEMMs whatever the batch mixes; a gate of zero blocks both the forward signal and
the gradient, so unselected adapters receive exactly zero gradient.

When every sample selects only a few adapters (training: its emotion's and its group's, 2 of 10),
the dense form would still project every token through all ten A matrices. The gathered form
multiplies each sample only by its selected adapters' rows (a batched GEMM of rank k*rank; two plain
GEMMs when every sample selects the same adapters); it is the same sum without the zero terms, and
the unselected adapters' gradient is still exactly zero.
`adapter_weights` picks it whenever the gates are sparse.

Adapter selection is explicit, as in peft: `with adapter_weights(unet, gates): ...` selects each
sample's adapters for every HiLoRA layer and restores the previous selection on exit. The selection
belongs to the calling thread (a `ContextVar`), not to the modules, so one loaded model serves
several threads at once, each with its own gates. The layers also keep the latest selection still active as a
fallback for autograd's device threads, which re-run a checkpointed forward during backward outside
the caller's context (training is one caller). Merging (`merge=True`) does change the shared
weights: a model shared between threads must be called without it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import nn

from .configs import DEFAULT_TARGETS

# layer -> (gates, selected) of the calling thread's `adapter_weights` blocks; never mutated, replaced
_SELECTIONS: ContextVar[Mapping] = ContextVar("hilora_selections", default=MappingProxyType({}))


class HiLoRALinear(nn.Module):
    """A frozen nn.Linear plus `num_adapters` rank-`rank` LoRAs selected per sample by `gates`.

    The selection (set only through `adapter_weights`, per calling thread): `gates`, a (rows,
    num_adapters) tensor or None; `selected`, the (adapter indices, gate values) of each row, (rows,
    k) both, or one row of indices every sample shares, when the gathered form is used, else None.
    `self.gates` / `self.selected` are the latest selection still active in any thread (the fallback
    for autograd's threads); `merged_gate` is the gate row folded into the base weight, or None.
    """

    def __init__(self, base: nn.Linear, num_adapters: int, rank: int, alpha: float) -> None:
        super().__init__()
        if rank < 1 or num_adapters < 1:
            raise ValueError(f"HiLoRA needs rank >= 1 and at least one adapter (got {rank}, {num_adapters})")
        if not alpha > 0:
            raise ValueError(f"HiLoRA alpha must be positive (got {alpha})")
        self.base = base
        self.rank = rank
        self.num_adapters = num_adapters
        self.scaling = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(num_adapters * rank, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, num_adapters * rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        # every active block's (gates, selected), oldest first: blocks of several threads may end in
        # any order, and the fallback must be one still active (none once all have ended)
        self._active: list[tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]] = []
        self.merged_gate: torch.Tensor | None = None
        self._unmerged_weight: torch.Tensor | None = None

    @property
    def gates(self) -> torch.Tensor | None:
        return self._active[-1][0] if self._active else None

    @property
    def selected(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        return self._active[-1][1] if self._active else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.merged_gate is not None:  # the selected adapters are already inside base.weight
            return out
        gates, selected = _SELECTIONS.get().get(self, (self.gates, self.selected))
        if gates is None:
            if torch.is_grad_enabled() and self.lora_A.requires_grad:
                raise RuntimeError(
                    "HiLoRA layer called for training with no adapter selected; run the forward and "
                    "backward inside `with adapter_weights(unet, gates):`"
                )
            return out  # no selection: the base model alone
        if x.shape[0] % gates.shape[0]:
            raise RuntimeError(
                f"HiLoRA gates have {gates.shape[0]} rows but the batch has {x.shape[0]} samples; "
                "the batch must be a whole multiple of the gate rows"
            )
        copies = x.shape[0] // gates.shape[0]  # classifier-free guidance stacks [uncond, cond] copies
        if selected is not None:
            index, values = selected
            values = values.repeat(copies, 1)
            if index.shape[0] == 1:  # every sample selects the same adapters (one row of indices)
                return out + self._shared(x, index[0], values).to(out.dtype)
            return out + self._gathered(x, index.repeat(copies, 1), values).to(out.dtype)
        gates = gates.repeat(copies, 1).to(self.lora_A.dtype).repeat_interleave(self.rank, dim=1)
        gates = gates.view(gates.shape[0], *([1] * (x.dim() - 2)), gates.shape[1])
        h = F.linear(x.to(self.lora_A.dtype), self.lora_A) * gates
        return out + (F.linear(h, self.lora_B) * self.scaling).to(out.dtype)

    def adapter_rows(self, adapters: torch.Tensor) -> torch.Tensor:
        """The rows of `lora_A` (columns of `lora_B`) that hold these adapters, in their order."""
        return (adapters[:, None] * self.rank + torch.arange(self.rank, device=adapters.device)).flatten()

    def _shared(self, x: torch.Tensor, index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """scaling * B_I (g_s * (A_I x)) when every sample selects the adapters I (index: (k,)): two
        plain GEMMs over those adapters' rows, as one LoRA of rank k*rank; values: (batch, k)."""
        rows = self.adapter_rows(index)
        gates = values.to(self.lora_A.dtype).repeat_interleave(self.rank, dim=1)
        gates = gates.view(gates.shape[0], *([1] * (x.dim() - 2)), gates.shape[1])
        h = F.linear(x.to(self.lora_A.dtype), self.lora_A[rows]) * gates
        return F.linear(h, self.lora_B[:, rows]) * self.scaling

    def _gathered(self, x: torch.Tensor, index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """scaling * B_s (g_s * (A_s x)) with only sample s's selected adapters (index, values: (batch, k))."""
        batch, k, r = x.shape[0], index.shape[1], self.rank
        A = self.lora_A.view(self.num_adapters, r, -1)[index].reshape(batch, k * r, -1)  # (batch, k*r, in)
        B = self.lora_B.view(-1, self.num_adapters, r).permute(1, 2, 0)[index].reshape(batch, k * r, -1)
        h = torch.bmm(x.reshape(batch, -1, x.shape[-1]).to(A.dtype), A.transpose(1, 2))  # (batch, tokens, k*r)
        h = h * values.to(h.dtype).repeat_interleave(r, dim=1).unsqueeze(1)
        return (torch.bmm(h, B) * self.scaling).reshape(*x.shape[:-1], -1)

    @torch.no_grad()
    def delta(self, gate_row: torch.Tensor) -> torch.Tensor:
        """The weight change of one gate vector g: scaling * B diag(g) A, (out, in). `merge` adds it;
        `factors` writes it as a plain LoRA."""
        g = gate_row.to(self.lora_A).repeat_interleave(self.rank)
        return (self.lora_B * g) @ self.lora_A * self.scaling

    @torch.no_grad()
    def factors(self, gate_row: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`delta(gate_row)` as (down, up), up @ down, keeping only the adapters with a non-zero gate:
        down = A[their rows], up = B[:, their rows] * g * scaling (rank 4 + 4 = 8 for one emotion)."""
        gate_row = gate_row.detach().to(self.lora_A)
        active = gate_row.nonzero().flatten()
        rows = self.adapter_rows(active)
        down = self.lora_A.detach()[rows]
        up = self.lora_B.detach()[:, rows] * (gate_row[active].repeat_interleave(self.rank) * self.scaling)
        return down.contiguous(), up.contiguous()

    @torch.no_grad()
    def merge(self, gate_row: torch.Tensor) -> None:
        """Fold one gate vector into the base weight (every sample then shares it: no LoRA cost)."""
        if self.merged_gate is not None:
            raise RuntimeError("HiLoRA layer is already merged; unmerge it before merging another gate")
        self._unmerged_weight = self.base.weight.detach().clone()
        self.base.weight.copy_(self._unmerged_weight + self.delta(gate_row).to(self._unmerged_weight))
        self.merged_gate = gate_row.detach().clone()

    @torch.no_grad()
    def unmerge(self) -> None:
        """Restore the exact base weight saved by `merge`."""
        if self.merged_gate is not None:
            self.base.weight.copy_(self._unmerged_weight)
            self._unmerged_weight = self.merged_gate = None


def hilora_layers(model: nn.Module) -> Iterator[tuple[str, HiLoRALinear]]:
    for name, module in model.named_modules():
        if isinstance(module, HiLoRALinear):
            yield name, module


@contextmanager
def adapter_weights(model: nn.Module, gates: torch.Tensor, merge: bool = False) -> Iterator[None]:
    """Select each sample's adapters in every HiLoRA layer of `model` for the duration of the block.

    `gates`: (rows, num_adapters); the batch seen by the layers must be a multiple of `rows`
    (classifier-free guidance doubles it). `merge=True` with rows that are all equal folds the
    adapters into the weights for the block (same maths, no LoRA cost per call). The previous
    selection is restored on exit, also after an error.
    """
    layers = [layer for _, layer in hilora_layers(model)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no HiLoRA layers")
    if gates.dim() != 2 or gates.shape[1] != layers[0].num_adapters:
        raise ValueError(f"gates must be (rows, {layers[0].num_adapters}), got {tuple(gates.shape)}")
    merged = [layer for layer in layers if layer.merged_gate is not None]
    if merged and not bool((gates == merged[0].merged_gate.to(gates)).all()):
        raise RuntimeError("HiLoRA layers are merged with another gate; leave that adapter_weights block first")
    merge_now = merge and not merged and bool((gates == gates[:1]).all())
    selected = None if merge_now else sparse_selection(gates)
    entry = (gates, selected)
    token = _SELECTIONS.set({**_SELECTIONS.get(), **{layer: entry for layer in layers}})
    for layer in layers:
        layer._active.append(entry)
        if merge_now:
            layer.merge(gates[0])
    try:
        yield
    finally:
        _SELECTIONS.reset(token)
        for layer in layers:
            # this block's own entry, by identity (list.remove compares tensors by value)
            del layer._active[next(i for i, e in enumerate(layer._active) if e is entry)]
            if merge_now:
                layer.unmerge()


def sparse_selection(gates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(adapter indices, gate values) of the k = most non-zero gates of any row: values (rows, k);
    indices (rows, k), or (1, k) when every row selects the same adapters (one emotion's batch, a
    batch of one: the layers then use two plain GEMMs). None when some row uses every adapter (the
    dense form is then as cheap)."""
    k = int((gates != 0).sum(dim=1).max())
    if k == gates.shape[1]:
        return None
    index = gates.abs().topk(max(k, 1), dim=1).indices
    values = gates.gather(1, index)
    if bool((index == index[:1]).all()):
        index = index[:1]
    return index, values


def inject_hilora(
    model: nn.Module,
    num_adapters: int,
    rank: int,
    alpha: float,
    target_modules: tuple[str, ...] = DEFAULT_TARGETS,
) -> list[str]:
    """Replace every nn.Linear whose name ends with a target by a HiLoRALinear; return their names."""
    targets = _target_linears(model, target_modules)
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        layer = HiLoRALinear(module, num_adapters, rank, alpha)
        layer.to(device=module.weight.device)
        setattr(parent, child, layer)
    return [name for name, _ in targets]


def _target_linears(model: nn.Module, target_modules: tuple[str, ...]) -> list[tuple[str, nn.Linear]]:
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and any(name == t or name.endswith("." + t) for t in target_modules)
    ]
    if not targets:
        raise ValueError(f"no nn.Linear named {target_modules} in {type(model).__name__}")
    return targets


def hilora_shapes(
    model: nn.Module, num_adapters: int, rank: int, target_modules: tuple[str, ...] = DEFAULT_TARGETS
) -> dict[str, tuple[int, int]]:
    """The shapes `hilora_state_dict` would give after `inject_hilora`, computed without allocating
    (a saved run's weights are checked against them before anything is built)."""
    return {
        f"{name}.{p}": shape
        for name, linear in _target_linears(model, target_modules)
        for p, shape in (
            ("lora_A", (num_adapters * rank, linear.in_features)),
            ("lora_B", (linear.out_features, num_adapters * rank)),
        )
    }


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
