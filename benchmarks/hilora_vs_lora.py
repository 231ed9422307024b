"""HiLoRA training step on a mixed 8-emotion batch vs one ordinary rank-8 LoRA (peft), same U-Net.

Both variants run interleaved in one process; the printed ratio is HiLoRA time / LoRA time
(target <= 1.05). Usage: python benchmarks/hilora_vs_lora.py [--size small|sd15] [--repeats N]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import time

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from peft import LoraConfig, inject_adapter_in_model

from coemogen.models.hilora import adapter_gates, adapter_weights, inject_hilora
from coemogen.taxonomy import Taxonomy

SIZES = {
    # block widths, cross-attention width, latent size, batch
    "small": dict(block_out_channels=(64, 128, 256), cross_attention_dim=256, sample_size=32, batch=8),
    "sd15": dict(block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, sample_size=64, batch=8),
}
TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def make_unet(size: str) -> UNet2DConditionModel:
    s = SIZES[size]
    n = len(s["block_out_channels"])
    return UNet2DConditionModel(
        sample_size=s["sample_size"],
        block_out_channels=s["block_out_channels"],
        layers_per_block=2 if n == 4 else 1,
        down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1),
        cross_attention_dim=s["cross_attention_dim"],
        attention_head_dim=8,
    )


def step_fn(unet, params, batch, cond, selection):
    """One training step; `selection()` is the context the step runs in (HiLoRA's adapter choice)."""
    opt = torch.optim.AdamW(params, lr=1e-4)

    def step():
        with selection():
            noise = torch.randn_like(batch)
            pred = unet(batch, torch.randint(0, 1000, (len(batch),)), cond).sample
            loss = F.mse_loss(pred, noise)
            opt.zero_grad(set_to_none=True)
            loss.backward()
        opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="small", choices=list(SIZES))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    s = SIZES[args.size]
    base = make_unet(args.size).requires_grad_(False)
    tax = Taxonomy.default()

    lora_unet = copy.deepcopy(base)
    lora_unet = inject_adapter_in_model(LoraConfig(r=8, lora_alpha=8, target_modules=TARGETS), lora_unet)
    lora_params = [p for n, p in lora_unet.named_parameters() if "lora_" in n]
    for p in lora_params:
        p.requires_grad_(True)

    hi_unet = copy.deepcopy(base)
    inject_hilora(hi_unet, tax.num_emotions + tax.num_groups, rank=4, alpha=4.0, target_modules=tuple(TARGETS))
    hi_params = [p for n, p in hi_unet.named_parameters() if "lora_" in n]
    for p in hi_params:
        p.requires_grad_(True)
    labels = torch.arange(s["batch"]) % tax.num_emotions  # every emotion in one batch
    gates = adapter_gates(F.one_hot(labels, tax.num_emotions).float(), tax.membership()).to(args.device)

    dev = args.device
    lora_unet.to(dev)
    hi_unet.to(dev)
    x = torch.randn(s["batch"], 4, s["sample_size"], s["sample_size"], device=dev)
    cond = torch.randn(s["batch"], 77, s["cross_attention_dim"], device=dev)

    steps = {
        "hilora": step_fn(hi_unet, hi_params, x, cond, lambda: adapter_weights(hi_unet, gates)),
        "lora_r8": step_fn(lora_unet, lora_params, x, cond, contextlib.nullcontext),
    }
    times = {k: [] for k in steps}
    for name in steps:  # warm-up
        steps[name]()
    for _ in range(args.repeats):
        for name, fn in steps.items():  # interleaved, so drift hits both alike
            if dev == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if dev == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    n_hi, n_lo = sum(p.numel() for p in hi_params), sum(p.numel() for p in lora_params)
    print(f"device={dev} size={args.size} batch={s['batch']} repeats={args.repeats}")
    print(f"HiLoRA (10 adapters x rank 4, {n_hi:,} params): {med['hilora'] * 1000:.1f} ms/step")
    print(f"peft LoRA rank 8 ({n_lo:,} params):          {med['lora_r8'] * 1000:.1f} ms/step")
    print(f"ratio HiLoRA / LoRA-r8 = {med['hilora'] / med['lora_r8']:.3f}  (target <= 1.05)")


if __name__ == "__main__":
    main()
