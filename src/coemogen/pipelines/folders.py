"""Folders of generated images: each image written with its metadata JSON (atomically, the JSON
last, so an image whose JSON exists is complete), a grid, and `generate_to_folders`, which makes an
evaluation set in fixed batches, resumable and shared among the processes of `accelerate launch`.
The pipeline itself (`pipeline_coemogen.py`) returns images and writes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from ..data.images import image_grid
from ..io import atomic_output, write_text
from .pipeline_coemogen import CoEmoGenOutput, CoEmoGenPipeline


def save_image(image: Image.Image, meta: dict, out_dir: Path, prefix: str = "") -> Path:
    """Write one image and then its metadata JSON, each to a temporary file renamed into place: an
    image whose JSON exists is complete (what `completed_indices` counts on after a kill)."""
    stem = out_dir / f"{prefix}{meta['emotion']}_{meta['index']:04d}"
    with atomic_output(stem.with_suffix(".png")) as tmp:
        image.save(tmp, format="PNG")
    write_text(stem.with_suffix(".json"), json.dumps(meta, indent=1))
    return stem.with_suffix(".png")


def save_images(output: CoEmoGenOutput, out_dir: str | Path, prefix: str = "") -> Path:
    """Write PNGs, one metadata JSON per image and a grid."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for image, meta in zip(output.images, output.metadata):
        save_image(image, meta, out_dir, prefix)
    with atomic_output(out_dir / f"{prefix}grid.png") as tmp:
        image_grid(output.images).save(tmp, format="PNG")
    return out_dir


def completed_indices(out_dir: Path) -> dict[int, Path]:
    """Index -> PNG of every complete image in `out_dir` (its metadata JSON written after it)."""
    done = {}
    for meta_file in out_dir.glob("*_[0-9][0-9][0-9][0-9]*.json"):
        png = meta_file.with_suffix(".png")
        if png.is_file():
            done[int(meta_file.stem.rsplit("_", 1)[1])] = png
    return done


def generate_to_folders(
    pipe: CoEmoGenPipeline,
    jobs: list[tuple[str | list[str], Path]],
    num_images: int,
    seed: int = 0,
    batch_size: int = 16,
    grid_size: int = 64,
    process_index: int = 0,
    num_processes: int = 1,
    barrier: Callable[[], None] | None = None,
    **call_kwargs,
) -> int:
    """Make `num_images` images for each (emotion spec(s), folder) job, in batches, with one progress
    bar over all images. Each image is written as soon as it is made; images already complete in a
    folder are kept, so a killed run re-run completes the set. Images are always made in the same
    batches (images k*batch_size ... (k+1)*batch_size - 1): a batch with a missing image is made again
    whole and only the missing ones are written, since a CPU's float rounding can depend on the batch
    size. Returns how many images were written now.

    Several processes (`accelerate launch`): the batches left to make are dealt out in turn, process
    p taking every `num_processes`-th from the p-th; every image keeps its own seed and batch, so the
    set is the one a single process makes. `barrier` (every process waits for all) comes between
    reading what is done and writing, so all processes deal out the same list. The grids are then
    written by `write_grids` once every process is done (with one process, here)."""
    from tqdm import tqdm

    work = []  # (spec, folder, first image of the batch, the batch's missing images)
    for spec, folder in jobs:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        done = completed_indices(folder)
        missing = {i for i in range(num_images) if i not in done}
        for first in sorted({i - i % batch_size for i in missing}):
            work.append((spec, folder, first, {i for i in missing if first <= i < first + batch_size}))
    if barrier is not None:
        barrier()
    share = work[process_index::num_processes]
    todo = sum(len(m) for *_, m in share)
    bar = tqdm(total=todo, desc="generate", unit="img", disable=process_index != 0)
    for spec, folder, first, missing in share:
        count = min(batch_size, num_images - first)
        output = pipe(spec, num_images=count, seed=seed, batch_size=batch_size, first_index=first, **call_kwargs)
        for image, meta in zip(output.images, output.metadata):
            if meta["index"] in missing:
                save_image(image, meta, folder)
        bar.update(len(missing))
    bar.close()
    if num_processes == 1:
        write_grids([folder for _, folder in jobs], grid_size)
    return todo


def write_grids(folders: list[Path], grid_size: int = 64) -> None:
    """Each folder's `grid.png` of its first `grid_size` complete images."""
    for folder in folders:
        shown = sorted(completed_indices(Path(folder)).items())[:grid_size]
        with atomic_output(Path(folder) / "grid.png") as tmp:
            image_grid([Image.open(png).convert("RGB") for _, png in shown]).save(tmp, format="PNG")
