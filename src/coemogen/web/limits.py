"""What one web request may ask for, checked on the server for every request.

The page's sliders show the same bounds, but a request can come from any client (`gradio_client`,
curl), so nothing the browser enforces is trusted: `GenerationRequest.from_form` turns the raw form
values into pipeline arguments or raises `CoEmoGenError` with a message for the page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import CoEmoGenError
from ..models.conditioning import check_template
from ..models.configs import EDIT_FORMATS, EDIT_METHODS
from ..taxonomy import Taxonomy

MIX_CHOICE = "mix (sliders below)"  # the emotion choice that reads the mix sliders
VA_CHOICE = "valence / arousal (sliders below)"  # the choice that reads the valence and arousal sliders
MAX_GUIDANCE = 20.0
MAX_TEMPERATURE = 2.0
MAX_SEED = 2**32 - 1
MAX_TEMPLATE_CHARS = 200


@dataclass(frozen=True)
class WebLimits:
    """Bounds that keep one visitor from exhausting the machine."""

    max_images: int = 8  # images per request
    max_steps: int = 50  # denoising steps per request
    concurrency: int = 1  # requests served at once, batched into one pass on the one model copy
    max_queue: int = 16  # requests waiting; more are refused with a message
    max_upload_mb: int = 10  # an uploaded image's file size
    max_upload_pixels: int = 16_000_000  # and its pixel count (a decompression bomb is refused)

    def __post_init__(self) -> None:
        for name in ("max_images", "max_steps", "concurrency", "max_queue", "max_upload_mb", "max_upload_pixels"):
            if getattr(self, name) < 1:
                raise CoEmoGenError(f"web limit {name} must be at least 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class GenerationRequest:
    """One validated request: the arguments `CoEmoGenPipeline.__call__` receives."""

    emotion: str | None  # a name or a mix spec "fear:0.7,sadness:0.3"; None with a valence/arousal point
    template: str | None  # None: the run's own
    seed: int
    num_inference_steps: int
    guidance_scale: float
    cluster_temperature: float
    num_images: int
    va: tuple[float, float] | None = None  # a point of the circumplex instead of an emotion

    @classmethod
    def from_form(
        cls,
        limits: WebLimits,
        taxonomy: Taxonomy,
        emotion: object,
        mix_weights: list[object],
        template: object,
        seed: object,
        steps: object,
        guidance: object,
        temperature: object,
        num_images: object,
        va: tuple[object, object] | None = None,
    ) -> GenerationRequest:
        """Check every form value against the limits and the run's taxonomy (a valence/arousal point:
        each in [-3, 3], and the taxonomy must place its emotions)."""
        point = None
        if emotion == VA_CHOICE:
            if va is None or len(va) != 2:
                raise CoEmoGenError("a valence/arousal request needs both values")
            point = (_real("valence", va[0], -3.0, 3.0), _real("arousal", va[1], -3.0, 3.0))
            taxonomy.va_mixes([point])  # a taxonomy without anchors: its clear message
        return cls(
            emotion=None if point is not None else _emotion(taxonomy, emotion, mix_weights),
            va=point,
            template=_template(template),
            seed=_whole("seed", seed, 0, MAX_SEED),
            num_inference_steps=_whole("steps", steps, 1, limits.max_steps),
            guidance_scale=_real("guidance", guidance, 0.0, MAX_GUIDANCE),
            cluster_temperature=_real("cluster temperature", temperature, 0.0, MAX_TEMPERATURE),
            num_images=_whole("number of images", num_images, 1, limits.max_images),
        )

    def pipeline_kwargs(self) -> dict:
        return {
            "emotion": self.emotion,
            **({} if self.va is None else {"va": self.va}),
            "num_images": self.num_images,
            "seed": self.seed,
            "template": self.template,
            "num_inference_steps": self.num_inference_steps,
            "guidance_scale": self.guidance_scale,
            "cluster_temperature": self.cluster_temperature,
        }


def _emotion(taxonomy: Taxonomy, emotion: object, mix_weights: list[object]) -> str:
    if emotion != MIX_CHOICE:
        if not isinstance(emotion, str) or emotion not in taxonomy.emotions:
            raise CoEmoGenError(f"unknown emotion {emotion!r}; choose one of {', '.join(taxonomy.emotions)}")
        return emotion
    if len(mix_weights) != taxonomy.num_emotions:
        raise CoEmoGenError(f"a mix needs {taxonomy.num_emotions} weights, got {len(mix_weights)}")
    weights = {e: _real(f"weight of {e}", w, 0.0, 1.0) for e, w in zip(taxonomy.emotions, mix_weights)}
    if not any(weights.values()):
        raise CoEmoGenError("the mix is empty: move at least one emotion's slider above 0")
    return ",".join(f"{e}:{w:g}" for e, w in weights.items() if w)


def _template(template: object) -> str | None:
    if template is None or (isinstance(template, str) and not template.strip()):
        return None
    if not isinstance(template, str) or len(template) > MAX_TEMPLATE_CHARS:
        raise CoEmoGenError(f"the prompt template must be text of at most {MAX_TEMPLATE_CHARS} characters")
    return check_template(template.strip())


def _real(name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CoEmoGenError(f"{name} must be a number, got {value!r}")
    if not low <= value <= high:
        raise CoEmoGenError(f"{name} must be between {low:g} and {high:g}, got {value:g}")
    return float(value)


def _whole(name: str, value: object, low: int, high: int) -> int:
    number = _real(name, value, low, high)
    if number != int(number):
        raise CoEmoGenError(f"{name} must be a whole number, got {value!r}")
    return int(number)


@dataclass(frozen=True)
class EditRequest:
    """One validated edit: the uploaded image (read and converted to RGB here) and the arguments
    `CoEmoGenEditPipeline.__call__` receives."""

    image: object  # PIL.Image.Image
    emotion: str
    method: str
    strength: float
    seed: int
    num_inference_steps: int
    guidance_scale: float

    @classmethod
    def from_form(
        cls,
        limits: WebLimits,
        taxonomy: Taxonomy,
        upload: object,
        emotion: object,
        mix_weights: list[object],
        method: object,
        strength: object,
        seed: object,
        steps: object,
        guidance: object,
    ) -> EditRequest:
        """Check the upload (a path Gradio saved) and every form value on the server."""
        if method not in EDIT_METHODS:
            raise CoEmoGenError(f"unknown edit method {method!r}; choose one of {', '.join(EDIT_METHODS)}")
        return cls(
            image=read_upload(upload, limits),
            emotion=_emotion(taxonomy, emotion, mix_weights),
            method=method,
            strength=_real("strength", strength, 0.0, 1.0),
            seed=_whole("seed", seed, 0, MAX_SEED),
            num_inference_steps=_whole("steps", steps, 1, limits.max_steps),
            guidance_scale=_real("guidance", guidance, 0.0, MAX_GUIDANCE),
        )

    def pipeline_kwargs(self) -> dict:
        return {
            "image": self.image,
            "emotion": self.emotion,
            "method": self.method,
            "strength": self.strength,
            "seed": self.seed,
            "num_inference_steps": self.num_inference_steps,
            "guidance_scale": self.guidance_scale,
        }


def read_upload(upload: object, limits: WebLimits):
    """An uploaded file as an RGB image, untrusted: PNG, JPEG or WebP only, within the size and
    pixel limits (a decompression bomb is refused before it is decoded), EXIF orientation applied,
    alpha, palette, CMYK, greyscale and 16-bit images converted."""
    from pathlib import Path

    from ..data.images import ImageLoadError, load_rgb

    if not isinstance(upload, str) or not upload:
        raise CoEmoGenError("upload an image to edit (PNG, JPEG or WebP)")
    path = Path(upload)
    if not path.is_file():
        raise CoEmoGenError("the upload did not arrive; upload the image again")
    if path.stat().st_size > limits.max_upload_mb * 1_000_000:
        raise CoEmoGenError(f"the image file is larger than {limits.max_upload_mb} MB")
    try:  # the header is checked (format, pixel count) before anything is decoded
        return load_rgb(path, max_pixels=limits.max_upload_pixels, formats=EDIT_FORMATS)
    except ImageLoadError as err:
        raise CoEmoGenError(f"the image cannot be used: {err}") from None
