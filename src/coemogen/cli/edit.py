"""`coemogen edit`: make your own images evoke an emotion (SDEdit or DDIM inversion under a run's
emotion condition); a folder is edited resumably, every file not edited named with its reason."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import CoEmoGenError
from ..models.configs import DEFAULT_EDIT_STEPS, EDIT_FORMATS, EDIT_METHODS
from .common import add_va_flags, va_anchors, va_point


def add_to(sub: argparse._SubParsersAction) -> None:
    """Add the command's parser to `sub`."""
    p = sub.add_parser("edit", help="edit your own images toward an emotion (SDEdit or DDIM inversion)")
    p.add_argument("--model", help="run directory (default: the shipped synthetic-world run)")
    p.add_argument("--images", required=True, help="an image, or a folder of them (PNG, JPEG, WebP)")
    p.add_argument(
        "--emotion",
        help="name, mix 'fear:0.7,sadness:0.3', or 'all': every emotion but the source's own (known from an "
        "emotion-named folder)",
    )
    p.add_argument("--out", required=True, help="output folder (a re-run completes an interrupted one)")
    p.add_argument("--method", choices=list(EDIT_METHODS), default=EDIT_METHODS[0])
    p.add_argument("--strength", type=float, default=0.6, help="0: the source; 1: a new image (SDEdit)")
    p.add_argument("--template", help="prompt template around the emotion, e.g. 'a photo of {} street'")
    p.add_argument("--num_inference_steps", "--steps", type=int, default=DEFAULT_EDIT_STEPS)
    p.add_argument("--guidance_scale", type=float, default=5.0)
    p.add_argument("--cluster_temperature", type=float, help="default: the run's own")
    p.add_argument("--seed", type=int, default=0, help="edit k (in source, then emotion order) uses seed + k")
    p.add_argument("--model_size", action="store_true", help="keep the model's resolution instead of the source's size")
    p.add_argument("--device")
    add_va_flags(p, "edits")
    p.set_defaults(func=run_edit)


def sources(path: Path, skips) -> list[tuple[Path, object]]:
    """(path, RGB image) of every editable file under `path`; any other file is a counted, logged
    skip with its reason. A single file that cannot be edited is an error."""
    from ..data.images import ImageLoadError, load_rgb

    if not path.exists():
        raise CoEmoGenError(f"--images: {path} not found")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and p.suffix != ".json")
    found = []
    for file in files:
        try:
            found.append((file, load_rgb(file, formats=EDIT_FORMATS)))
            continue
        except ImageLoadError as err:
            why = str(err)
        if path.is_file():
            raise CoEmoGenError(f"cannot edit {file}: {why}")
        else:
            skips.skip(str(file), why)
    if not found:
        raise CoEmoGenError(f"no editable image in {path}")
    return found


def run_edit(a: argparse.Namespace) -> None:
    from PIL import Image

    from ..data.images import image_grid
    from ..data.manifest import SkipCounter
    from ..io import atomic_output, write_text
    from ..pipelines.pipeline_edit import CoEmoGenEditPipeline

    pipe = CoEmoGenEditPipeline.from_pretrained(a.model, device=a.device)
    taxonomy = pipe.taxonomy
    skips = SkipCounter()
    root, out = Path(a.images), Path(a.out)
    point = va_point(a, a.emotion)
    va = {} if point is None else {"va": point, "va_temperature": a.va_temperature, "va_anchors": va_anchors(a)}
    found = sources(root, skips)
    if point is not None:
        pipe.va_conditions(point, va["va_anchors"], a.va_temperature)  # anchors checked before any work
    elif a.emotion != "all":
        taxonomy.weights([a.emotion])  # a bad name or weight fails before any work
    jobs = []  # (source path, image, emotion spec, seed)
    for file, image in found:
        own = file.parent.name if file.parent != root and file.parent.name in taxonomy.emotions else None
        if point is not None:  # named by the point: 'va' + valence + arousal
            targets = [f"va{point[0]:+g}{point[1]:+g}"]
        else:
            targets = [e for e in taxonomy.emotions if e != own] if a.emotion == "all" else [a.emotion]
        for spec in targets:
            jobs.append((file, image, spec, a.seed + len(jobs)))
    out.mkdir(parents=True, exist_ok=True)
    written = kept = 0
    rows: dict[Path, list] = {}
    for file, image, spec, seed in jobs:
        stem = out / f"{file.stem}_{spec.replace(':', '').replace(',', '_').replace('.', '')}"
        if stem.with_suffix(".json").is_file() and stem.with_suffix(".png").is_file():  # done by an earlier run
            kept += 1
            rows.setdefault(file, [image]).append(Image.open(stem.with_suffix(".png")).convert("RGB"))
            continue
        output = pipe(
            image, None if point is not None else spec, **va, strength=a.strength, method=a.method, seeds=[seed],
            template=a.template,
            num_inference_steps=a.num_inference_steps, guidance_scale=a.guidance_scale,
            cluster_temperature=a.cluster_temperature, restore_size=not a.model_size,
        )  # fmt: skip
        edited = output.images[0]
        with atomic_output(stem.with_suffix(".png")) as tmp:
            edited.save(tmp, format="PNG")
        meta = {**output.metadata[0], "index": len(rows.get(file, [])), "source": str(file), "spec": spec}
        write_text(stem.with_suffix(".json"), json.dumps(meta, indent=1))  # last: marks the edit complete
        written += 1
        rows.setdefault(file, [image]).append(edited)
    # The before/after grid: each source, then its edits, at the model's resolution.
    size = pipe.base.default_resolution
    thumbs = [im.resize((size, size)) for row in rows.values() for im in row]
    with atomic_output(out / "grid.png") as tmp:
        image_grid(thumbs, columns=max(len(r) for r in rows.values())).save(tmp, format="PNG")
    summary = f"edited {written} image(s) into {out} ({kept} kept from an earlier run)"
    if skips.total:
        summary += f"; skipped {skips.total} file(s): " + ", ".join(f"{r} x{n}" for r, n in skips.reasons.items())
    print(summary)
