"""One small supervised loop for the helper networks: the pocket models, the world judges and the
Emo-A head. The caller supplies the loss of one step; this owns the optimiser, the one-cycle
schedule, the seeded batch draws and the progress bar."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from tqdm import tqdm


def fit(
    params: Iterable[torch.nn.Parameter],
    loss_fn: Callable[[torch.Generator], torch.Tensor],
    steps: int,
    lr: float,
    seed: int,
    desc: str,
    weight_decay: float = 1e-2,
    warmup: float | None = 0.1,
    clip_grad_norm: float | None = None,
) -> float:
    """Run `steps` AdamW steps of `loss_fn(generator)` (which draws its batch from the generator);
    `warmup`: share of a one-cycle schedule peaking at `lr`, or None for a constant rate.
    Returns the last loss."""
    params = list(params)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = (
        torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=warmup)
        if warmup is not None
        else None
    )
    g = torch.Generator().manual_seed(seed)
    loss = torch.tensor(float("nan"))
    for _ in tqdm(range(steps), desc=desc):
        loss = loss_fn(g)
        opt.zero_grad()
        loss.backward()
        if clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, clip_grad_norm)
        opt.step()
        if sched is not None:
            sched.step()
    return float(loss.detach())
