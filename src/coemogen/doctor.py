"""`coemogen doctor`: what in this environment will stop a command, and how to fix it.

Checks the torch build and its device, the versions of the libraries CoEmoGen builds on against
the ones the test suite last passed with (`TESTED`, the same pins as .ci/constraints.txt), the
hub (reachable, or offline mode), the base models of a run or preset (found locally?), an output
folder (free space, write access) and the optional extras.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .errors import CoEmoGenError

# Distribution -> the version the suite last passed with. Outside the same release series
# (major.minor) the doctor warns. Keep equal to .ci/constraints.txt (a test checks it).
TESTED = {
    "torch": "2.14.1",
    "diffusers": "0.42.1",
    "transformers": "5.24.0",
    "accelerate": "1.15.0",
    "safetensors": "0.8.0",
    "huggingface_hub": "2.4.0",
    "peft": "0.21.2",
    "torchvision": "0.29.1",
    "torchmetrics": "1.9.0",
    "torch_fidelity": "0.4.0",
    "gradio": "6.31.0",
}
REQUIRED = ("torch", "diffusers", "transformers", "accelerate", "safetensors", "huggingface_hub")
EXTRAS = {"metrics": ("torchvision", "torch_fidelity", "torchmetrics"), "web": ("gradio",)}
LOW_DISK_BYTES = 2 * 10**9


@dataclass
class Check:
    """One finding: `status` is ok, warn or fail; `fix` says what to do when it is not ok."""

    name: str
    status: str
    detail: str
    fix: str = ""


def _installed(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def release_series(version: str) -> tuple[int, ...]:
    """(major, minor) of a version string ('2.14.1+cu128' -> (2, 14))."""
    from packaging.version import Version

    return Version(version).release[:2]


def check_versions() -> list[Check]:
    checks = []
    for name, tested in TESTED.items():
        found = _installed(name)
        optional = name not in REQUIRED
        if found is None:
            if not optional:
                checks.append(Check(name, "fail", "not installed", f'pip install "{name}=={tested}"'))
            continue  # optional extras are reported by check_extras
        if release_series(found) == release_series(tested):
            checks.append(Check(name, "ok", f"{found} (tested {tested})"))
        else:
            checks.append(
                Check(
                    name,
                    "warn",
                    f"{found} is outside the tested {'.'.join(map(str, release_series(tested)))}.x series "
                    f"(tested {tested})",
                    f'if results differ or a command fails, install the tested version: pip install "{name}=={tested}"',
                )
            )
    return checks


def check_torch() -> list[Check]:
    import torch

    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only"
    if torch.cuda.is_available():
        names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
        return [
            Check("device", "ok", f"torch {torch.__version__} ({build} build): {torch.cuda.device_count()} x {names}")
        ]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return [Check("device", "ok", f"torch {torch.__version__}: Apple MPS")]
    detail = f"torch {torch.__version__} ({build} build): CPU only, {torch.get_num_threads()} CPU threads"
    if shutil.which("nvidia-smi"):
        fix = (
            "an NVIDIA driver is present but torch sees no GPU: install a CUDA build of torch "
            "(https://pytorch.org/get-started/locally/) or check `nvidia-smi`"
        )
        return [Check("device", "warn", detail, fix)]
    return [Check("device", "ok", detail + " (fine for the synthetic world; SD1.5 training wants a GPU)")]


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() not in {"0", "", "false", "no"}


def check_hub(timeout: float = 3.0) -> list[Check]:
    if hub_offline():
        return [Check("hub", "ok", "offline mode (HF_HUB_OFFLINE=1): hub ids load only from the local cache")]
    from huggingface_hub import constants

    try:
        urllib.request.urlopen(urllib.request.Request(constants.ENDPOINT, method="HEAD"), timeout=timeout)
    except OSError as err:
        return [
            Check(
                "hub",
                "warn",
                f"{constants.ENDPOINT} unreachable ({getattr(err, 'reason', err)})",
                "set HF_HUB_OFFLINE=1 (no waiting on timeouts) and pass local model directories",
            )
        ]
    return [Check("hub", "ok", f"{constants.ENDPOINT} reachable")]


def _base_model_check(role: str, source: str, marker: str) -> Check:
    from huggingface_hub import try_to_load_from_cache

    from .models.base import model_path

    path = Path(model_path(source))
    if path.exists():
        if (path / marker).is_file():
            return Check(role, "ok", f"{source}: local directory")
        return Check(
            role, "fail", f"{path} exists but has no {marker}", f"point at the model's top folder (with {marker})"
        )
    if source.count("/") == 1 and not source.startswith((".", "/")):
        cached = try_to_load_from_cache(source, marker)
        if isinstance(cached, str):
            return Check(role, "ok", f"{source}: in the hub cache")
        fix = f"hf download {source} --local-dir DIR (where there is network), then pass DIR"
        if hub_offline():
            return Check(role, "fail", f"{source}: not in the local hub cache and the hub is off", fix)
        return Check(role, "warn", f"{source}: not cached yet; the first command downloads it", fix)
    return Check(role, "fail", f"{source}: no such directory", "pass an existing directory or a hub id")


def check_base_models(model: str | None = None, preset: str | None = None) -> list[Check]:
    """The base models a run directory names (`model`), or those of a preset (default: pocket)."""
    from .models.base import resolve_sources
    from .models.runs import load_run_config, run_or_default

    if model is not None:
        config = load_run_config(model)
        sd, clip = config.pretrained_model_name_or_path, config.clip_model_name_or_path
        origin = f"run {model}"
    elif preset is not None:
        sd, clip = resolve_sources(preset=preset)
        origin = f"preset {preset}"
    else:
        config = load_run_config(run_or_default(None))
        sd, clip = config.pretrained_model_name_or_path, config.clip_model_name_or_path
        origin = "the shipped world run"
    checks = [
        _base_model_check(f"Stable Diffusion of {origin}", sd, "model_index.json"),
        _base_model_check(f"CLIP of {origin}", clip, "config.json"),
    ]
    if checks[0].status == "ok":
        checks.append(_family_check(sd))
    return checks


def _family_check(source: str) -> Check:
    """Which model family (models/families/) the base model is, from its model_index.json."""
    from .errors import CoEmoGenError
    from .models.base import model_index
    from .models.families import family_for

    try:
        family = family_for(model_index(source), source)
    except CoEmoGenError as err:
        return Check("model family", "fail", str(err).splitlines()[0], "pass a Stable Diffusion 1.x/2.x or SDXL")
    return Check("model family", "ok", f"{family.description} ({family.name})")


def check_output(out: str | Path) -> list[Check]:
    """Free space and write access where `out` is (or would be created)."""
    out = Path(out).absolute()
    existing = next(p for p in (out, *out.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    space = Check("disk space", "ok", f"{free / 1e9:.1f} GB free at {existing}")
    if free < LOW_DISK_BYTES:
        space = Check(
            "disk space",
            "warn",
            f"only {free / 1e9:.2f} GB free at {existing}",
            "a SD1.5 run needs ~0.1 GB, its feature cache 10-100 GB (README); free space or choose another --out",
        )
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".coemogen-doctor-"):
            pass
        access = Check("write access", "ok", f"{existing} is writable")
    except OSError as err:
        access = Check("write access", "fail", f"{existing}: {err.strerror}", "choose a writable --out folder")
    return [space, access]


def check_extras() -> list[Check]:
    checks = []
    for extra, modules in EXTRAS.items():
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if missing:
            checks.append(
                Check(
                    f"extra '{extra}'",
                    "warn",
                    f"not installed ({', '.join(missing)})",
                    f'pip install "coemogen[{extra}]"',
                )
            )
        else:
            versions = ", ".join(f"{m} {_installed(m)}" for m in modules)
            checks.append(Check(f"extra '{extra}'", "ok", versions))
    return checks


def run_checks(out: str | Path = ".", model: str | None = None, preset: str | None = None) -> list[Check]:
    return [
        *check_torch(),
        *check_versions(),
        *check_hub(),
        *check_base_models(model, preset),
        *check_output(out),
        *check_extras(),
    ]


def report(checks: list[Check]) -> str:
    """The checks as a table, then what to do about each one that is not ok."""
    from .tables import format_table

    rows = [
        {"status": c.status.upper() if c.status == "fail" else c.status, "check": c.name, "detail": c.detail}
        for c in checks
    ]
    lines = [format_table(rows, ["status", "check", "detail"])]
    fixes = [f"- {c.name}: {c.fix}" for c in checks if c.status != "ok" and c.fix]
    if fixes:
        lines += ["", "To fix:", *fixes]
    return "\n".join(lines)


def doctor(out: str | Path = ".", model: str | None = None, preset: str | None = None) -> list[Check]:
    """Print the report; a failed check is an error (exit status 2)."""
    checks = run_checks(out, model, preset)
    print(report(checks))
    failed = [c.name for c in checks if c.status == "fail"]
    if failed:
        raise CoEmoGenError(f"{len(failed)} check(s) failed: {', '.join(failed)}")
    return checks
