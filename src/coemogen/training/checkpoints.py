"""Resumable training checkpoints, complete or absent: trainable weights (safetensors), the optimiser,
learning-rate schedule and GradScaler states, the sampler position and the RNG states (tensors and
plain numbers only, read back with `torch.load(weights_only=True)`) and the step, written to a
temporary directory and renamed into place."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from ..errors import CoEmoGenError
from ..io import is_write_error, read_safetensors, write_failure

PATTERN = "checkpoint-*[0-9]"


def rng_states() -> dict:
    """Every global RNG a step may draw from (dropout, a library's noise), as tensors and numbers."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },  # fmt: skip
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["position"], n["has_gauss"], n["gauss"]))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(
    path: Path,
    params: dict[str, nn.Parameter],
    optimizer: torch.optim.Optimizer,
    step: int,
    training_state: dict | None = None,
) -> None:
    """`training_state`: the loop's other states (schedule, GradScaler, sampler position, RNG)."""
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        save_file({k: p.detach().cpu().contiguous() for k, p in params.items()}, tmp / "trainable.safetensors")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        if training_state is not None:
            torch.save(training_state, tmp / "training_state.pt")
        (tmp / "state.json").write_text(json.dumps({"global_step": step}))
    except Exception as err:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing half-written stays behind
        if is_write_error(err):
            raise write_failure(tmp, err) from None
        raise
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


def load_checkpoint(
    path: Path, params: dict[str, nn.Parameter], optimizer: torch.optim.Optimizer
) -> tuple[int, dict | None]:
    """Restore weights and optimiser state in place; returns the checkpoint's step and its other
    training states (None for a checkpoint written before they were kept)."""
    expected = {k: tuple(p.shape) for k, p in params.items()}
    state = read_safetensors(path / "trainable.safetensors", expected, f"checkpoint {path}")
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(state[k])
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu"))
    extra = None
    if (path / "training_state.pt").is_file():
        try:
            extra = torch.load(path / "training_state.pt", weights_only=True, map_location="cpu")
        except Exception as err:  # weights_only refuses anything but tensors and plain values
            raise CoEmoGenError(f"checkpoint {path}: training_state.pt cannot be read safely ({err})") from None
    return int(json.loads((path / "state.json").read_text())["global_step"]), extra


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
