"""Safe image loading: every format quirk becomes RGB or a clear, catchable error."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

MAX_PIXELS = 64_000_000  # decompression-bomb guard, larger than any photo in the field's datasets


class ImageLoadError(Exception):
    """An image that cannot be used; the message is the reason to log with the skip."""


def load_rgb(path: str | Path, max_pixels: int = MAX_PIXELS, formats: tuple[str, ...] | None = None) -> Image.Image:
    """Open an image as 8-bit RGB (CMYK, grayscale, alpha, 16-bit and palette images converted).
    `formats`: the PIL formats accepted (e.g. ("PNG", "JPEG", "WEBP") for untrusted uploads)."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageLoadError("empty file")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if formats is not None and im.format not in formats:
                    raise ImageLoadError(
                        f"unsupported format ({im.format} images are not accepted; {', '.join(formats)})"
                    )
                if im.width * im.height > max_pixels:
                    raise ImageLoadError(f"image too large ({im.width}x{im.height} > {max_pixels} pixels)")
                im.load()
                im = ImageOps.exif_transpose(im)
                if im.mode in {"I;16", "I;16B", "I;16L", "I"}:  # 16/32-bit grayscale: rescale, not clip
                    arr = np.asarray(im, dtype=np.float64)
                    arr = arr / max(1.0, float(arr.max())) * 255.0
                    im = Image.fromarray(arr.astype(np.uint8), "L")
                if im.mode in {"RGBA", "LA", "P", "PA"}:
                    im = im.convert("RGBA")
                    background = Image.new("RGBA", im.size, (255, 255, 255, 255))
                    im = Image.alpha_composite(background, im)
                return im.convert("RGB")
    except ImageLoadError:
        raise
    except FileNotFoundError:
        raise ImageLoadError("file not found") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageLoadError(f"unreadable image: {err}") from None


def resized_size(size: tuple[int, int], resolution: int) -> tuple[int, int]:
    """(width, height) after resizing the shorter side of a (width, height) image to `resolution`."""
    w, h = size
    if (w, h) == (resolution, resolution):
        return w, h
    scale = resolution / min(w, h)
    return max(resolution, round(w * scale)), max(resolution, round(h * scale))


def crop_top_left(size: tuple[int, int], resolution: int, crop: tuple[float, float] = (0.5, 0.5)) -> tuple[int, int]:
    """(top, left) of the square `to_tensor` cuts from a (width, height) image, in resized pixels
    (SDXL's crop micro-condition)."""
    w, h = resized_size(size, resolution)
    return round((h - resolution) * crop[1]), round((w - resolution) * crop[0])


def pixels(image: Image.Image) -> torch.Tensor:
    """An RGB image as float (3, H, W) in [0, 1], as torchvision's `ToTensor` gives it."""
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def to_tensor(image: Image.Image, resolution: int, crop: tuple[float, float] = (0.5, 0.5)) -> torch.Tensor:
    """Resize (shorter side, bicubic) + crop to `resolution`; float (3, H, W) in [0, 1].

    `crop`: where the square sits along the longer side, (x, y) in [0, 1]; (0.5, 0.5) is the centre.
    """
    if image.size != (resolution, resolution):
        image = image.resize(resized_size(image.size, resolution), Image.BICUBIC)
        top, left = crop_top_left(image.size, resolution, crop)
        image = image.crop((left, top, left + resolution, top + resolution))
    return pixels(image)


def stretch_to_tensor(image: Image.Image, resolution: int) -> torch.Tensor:
    """Both sides resized to `resolution` (aspect not kept), bilinear: torchvision's
    `Resize((r, r))` on a PIL image, the FID input of EmoGen's metric code."""
    return pixels(image.resize((resolution, resolution), Image.BILINEAR))


def resize_center_crop_to_tensor(image: Image.Image, short_side: int, crop: int) -> torch.Tensor:
    """Shorter side to `short_side` (the longer one truncated), bilinear, then the central
    `crop` x `crop` square: torchvision's `Resize(short_side)` + `CenterCrop(crop)` on a PIL image,
    the classifier input of EmoGen's Sem-C code."""
    w, h = image.size
    if min(w, h) != short_side:
        long_side = int(short_side * max(w, h) / min(w, h))
        w, h = (short_side, long_side) if w <= h else (long_side, short_side)
        image = image.resize((w, h), Image.BILINEAR)
    if crop > min(w, h):
        raise ValueError(f"cannot crop {crop}x{crop} from a {w}x{h} image")
    top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    return pixels(image.crop((left, top, left + crop, top + crop)))


def image_grid(images: list[Image.Image], columns: int | None = None) -> Image.Image:
    """Paste equally sized images into rows of `columns` (default: up to 8)."""
    columns = columns or min(len(images), 8)
    rows = (len(images) + columns - 1) // columns
    w, h = images[0].size
    grid = Image.new("RGB", (columns * w, rows * h), "white")
    for i, im in enumerate(images):
        grid.paste(im, ((i % columns) * w, (i // columns) * h))
    return grid
