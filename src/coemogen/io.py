"""Files the package writes and reads back: atomic writes, checked safetensors reads.

Every output file is written to a temporary sibling and renamed into place (`atomic_output`), so
after a kill, a full disk or a file-size limit a file is either complete or absent; the failure
becomes a `CoEmoGenError` naming the path. Weights are read with `read_safetensors`, which checks
the header (names, shapes, size against available memory) before any tensor is allocated and the
values (finite) after; pickles are refused.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from .errors import CoEmoGenError

TMP_MARK = ".tmp-"  # temporary files are `<name>.tmp-<pid>`
# errno values that mean "this output cannot be written here", as opposed to a bug.
WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}


def write_failure(path: str | Path, err: BaseException) -> CoEmoGenError:
    """A clear error for a failed write of `path` (disk full, file-size limit, read-only folder...)."""
    code = err.errno if isinstance(err, OSError) else None
    if code is None and (match := re.search(r"os error (\d+)", str(err))):  # safetensors' Rust I/O errors
        code = int(match.group(1))
    if code in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        hint = "free some space (or raise the file-size limit) and re-run the same command: it resumes"
    elif code in (errno.EROFS, errno.EACCES, errno.EPERM):
        hint = "choose a writable output folder or fix its permissions"
    else:
        hint = "check the disk and re-run the same command: it resumes"
    reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).splitlines()[0]
    return CoEmoGenError(f"could not write {path}: {reason}; {hint}")


def _remove_stale_temporaries(path: Path) -> None:
    """Delete `path`'s temporary siblings left by killed processes (their pid no longer runs)."""
    for tmp in path.parent.glob(path.name + TMP_MARK + "*"):
        pid = tmp.name.rsplit(TMP_MARK, 1)[1]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except PermissionError:  # another user's live process
            pass


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write `path`'s content to; on success it is renamed to `path`, on
    failure removed (write failures become a CoEmoGenError naming `path`)::

        with atomic_output(out / "grid.png") as tmp:
            image.save(tmp, format="PNG")
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_failure(path.parent, err) from None
    _remove_stale_temporaries(path)
    tmp = path.with_name(path.name + TMP_MARK + str(os.getpid()))
    try:
        yield tmp
        os.replace(tmp, path)  # a reader (or a re-run after a kill) sees the old file or the whole new one
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if is_write_error(err):
            raise write_failure(path, err) from None
        raise


def is_write_error(err: BaseException) -> bool:
    """An OSError, or how torch.save and safetensors report a failed write (their own error types)."""
    text = str(err)
    return (
        isinstance(err, OSError)
        or (type(err).__name__ == "SafetensorError" and ("I/O error" in text or "IoError" in text))
        or (isinstance(err, RuntimeError) and "file write failed" in text)
    )


def write_text(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def save_safetensors(tensors: Mapping, path: str | Path) -> Path:
    """safetensors.torch.save_file, atomically."""
    from safetensors.torch import save_file

    with atomic_output(path) as tmp:
        save_file(dict(tensors), str(tmp))
    return Path(path)


def refuse_pickles(directory: str | Path, what: str) -> None:
    """A folder that should hold only safetensors/JSON but holds a pickle-format file is refused."""
    directory = Path(directory)
    found = sorted(p.name for p in directory.iterdir() if p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES)
    if found:
        raise CoEmoGenError(
            f"{what} '{directory}' holds {', '.join(found)}: pickle-format files can run code when loaded and "
            "CoEmoGen reads weights from safetensors only; remove them (or convert them to safetensors)"
        )


def _meminfo_available(meminfo: str = "/proc/meminfo") -> int | None:
    """MemAvailable: free memory plus what the kernel can reclaim (page cache, reclaimable slabs)."""
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available(root: str = "/sys/fs/cgroup") -> int | None:
    """What a memory-limited cgroup (v2, else v1) still allows: its limit minus its usage, the
    usage counted without the reclaimable file cache it holds (as MemAvailable counts it)."""
    for limit_file, usage_file, stat_file, cache_key in (
        ("memory.max", "memory.current", "memory.stat", "inactive_file"),
        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes", "memory/memory.stat", "total_inactive_file"),
    ):
        try:
            limit = Path(root, limit_file).read_text().strip()
            usage = int(Path(root, usage_file).read_text())
        except (OSError, ValueError):
            continue
        if limit == "max" or int(limit) >= 1 << 60:  # no limit set
            return None
        cache = 0
        try:
            for line in Path(root, stat_file).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == cache_key:
                    cache = int(value)
        except (OSError, ValueError):
            pass
        return max(0, int(limit) - (usage - cache))
    return None


def available_memory() -> int | None:
    """Bytes of memory this process can still allocate: /proc/meminfo's MemAvailable, capped by a
    cgroup memory limit where one is set; None where neither can be read (not Linux).

    Not the free memory (`SC_AVPHYS_PAGES`): after a large model has been read, the page cache holds
    most of the RAM and free memory is small, though the kernel hands that cache back on demand."""
    figures = [m for m in (_meminfo_available(), _cgroup_available()) if m is not None]
    return min(figures) if figures else None


def read_safetensors(
    path: str | Path, expected: Mapping[str, tuple[int, ...]] | None = None, what: str = "weights"
) -> dict:
    """Load a safetensors file of float tensors, checking from its header, before anything is mapped
    or allocated, that it is a safetensors file (not a pickle), that its names and shapes are
    `expected` (when given) and that it fits in the memory available to the process
    (`available_memory`); then that every value is finite. Every failure is a CoEmoGenError naming
    `path` and the tensor."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    header = _header(path, what)
    if expected is not None:
        _check_shapes(path, what, {k: shape for k, (_, shape) in header.items()}, expected)
    size = sum(_numel(shape) * FLOAT_BYTES[dtype] for dtype, shape in header.values())
    available = available_memory()
    if available is not None and size > available:
        raise CoEmoGenError(
            f"{what}: {path} declares {size / 1e9:.2f} GB of tensors and this process has "
            f"{available / 1e9:.2f} GB of memory available (MemAvailable, or its cgroup's limit); "
            "free some memory or load it on a larger machine"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in header}
    except SafetensorError as err:
        raise CoEmoGenError(f"{what}: {path} is not a readable safetensors file ({err})") from None
    for k, t in tensors.items():
        if not t.isfinite().all():
            raise CoEmoGenError(f"{what}: {path} tensor '{k}' holds NaN or infinite values")
    return tensors


FLOAT_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit


def _header(path: Path, what: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (dtype, shape) from a safetensors file's JSON header, reading nothing else."""
    import json

    if not path.is_file():
        raise CoEmoGenError(f"{what}: {path} not found")
    with open(path, "rb") as f:
        head = f.read(9)
        length = int.from_bytes(head[:8], "little") if len(head) == 9 else -1
        # A safetensors file: an 8-byte header length, then the JSON header. A header of 128 bytes
        # starts with 0x80 like a pickle, so the JSON brace decides before the pickle signatures.
        if not (0 < length <= min(MAX_HEADER_BYTES, path.stat().st_size - 8) and head[8:9] == b"{"):
            if head[:1] == b"\x80" or head[:2] == b"PK":  # pickle protocol 2+ / torch.save's zip archive
                raise CoEmoGenError(f"{what}: {path} is a pickle (torch.save) file; CoEmoGen loads safetensors only")
            raise CoEmoGenError(f"{what}: {path} is not a safetensors file (no valid header)")
        f.seek(8)
        try:
            entries = json.loads(f.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CoEmoGenError(f"{what}: {path} is not a safetensors file (its header is not JSON)") from None
    if not isinstance(entries, dict):
        raise CoEmoGenError(f"{what}: {path} is not a safetensors file (its header is not a mapping)")
    header = {}
    for name, entry in entries.items():
        if name == "__metadata__":
            continue
        dtype, shape = (entry.get("dtype"), entry.get("shape")) if isinstance(entry, dict) else (None, None)
        if dtype not in FLOAT_BYTES:
            raise CoEmoGenError(f"{what}: {path} tensor '{name}' has dtype {dtype}, expected floats")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise CoEmoGenError(f"{what}: {path} tensor '{name}' has no valid shape ({shape!r})")
        header[name] = (dtype, tuple(shape))
    return header


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _check_shapes(path: Path, what: str, shapes: Mapping, expected: Mapping) -> None:
    missing, extra = sorted(set(expected) - set(shapes)), sorted(set(shapes) - set(expected))
    if missing or extra:
        raise CoEmoGenError(f"{what}: {path} does not fit this model (missing {missing[:3]}, unexpected {extra[:3]})")
    for k, shape in shapes.items():
        if tuple(shape) != tuple(expected[k]):
            raise CoEmoGenError(f"{what}: {path} tensor '{k}' has shape {shape}, this model needs {tuple(expected[k])}")
