"""Resumable training checkpoints: trainable weights (safetensors), optimiser state (tensors only)
and the step, written to a temporary directory and renamed so a checkpoint is complete or absent."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from ..errors import CoEmoGenError
from ..io import is_write_error, read_safetensors, write_failure

PATTERN = "checkpoint-*[0-9]"


def save_checkpoint(path: Path, params: dict[str, nn.Parameter], optimizer: torch.optim.Optimizer, step: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        save_file({k: p.detach().cpu().contiguous() for k, p in params.items()}, tmp / "trainable.safetensors")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps({"global_step": step}))
    except Exception as err:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing half-written stays behind
        if is_write_error(err):
            raise write_failure(tmp, err) from None
        raise
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


def load_checkpoint(path: Path, params: dict[str, nn.Parameter], optimizer: torch.optim.Optimizer) -> int:
    """Restore weights and optimiser state in place; returns the checkpoint's step."""
    expected = {k: tuple(p.shape) for k, p in params.items()}
    state = read_safetensors(path / "trainable.safetensors", expected, f"checkpoint {path}")
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(state[k])
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu"))
    return int(json.loads((path / "state.json").read_text())["global_step"])


def _by_step(out: Path) -> list[Path]:
    return sorted(out.glob(PATTERN), key=lambda p: int(p.name.split("-")[1]))


def find_checkpoint(out: Path, spec: str) -> Path | None:
    """`spec`: 'latest' (the newest in `out`, or None) or a checkpoint directory."""
    if spec != "latest":
        path = Path(spec)
        if not (path / "state.json").is_file():
            raise CoEmoGenError(f"not a checkpoint directory: {spec}")
        return path
    found = _by_step(out)
    return found[-1] if found else None


def prune_checkpoints(out: Path, limit: int | None) -> None:
    if limit:
        for old in _by_step(out)[:-limit]:
            shutil.rmtree(old)
