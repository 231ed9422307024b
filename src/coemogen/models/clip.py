"""CLIP helpers shared by training, filtering and metrics.

Features are computed from the towers directly (projection of the pooled output) so the
result is a tensor whatever transformers version wraps `get_*_features` outputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class ClipImagePreprocessor:
    """Resize + centre-crop + normalise a float image batch in [0, 1] on the tensor's device.

    Reads the same fields as CLIPImageProcessor (size, crop size, mean, std) but stays in torch,
    so it is batched and differentiable.
    """

    def __init__(self, image_size: int, mean: list[float], std: list[float]) -> None:
        self.image_size = image_size
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)

    @classmethod
    def from_clip(cls, clip_model, processor=None) -> ClipImagePreprocessor:
        size = clip_model.config.vision_config.image_size
        mean = getattr(processor, "image_mean", None) or [0.48145466, 0.4578275, 0.40821073]
        std = getattr(processor, "image_std", None) or [0.26862954, 0.26130258, 0.27577711]
        return cls(size, list(mean), list(std))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        if (h, w) != (self.image_size, self.image_size):
            scale = self.image_size / min(h, w)
            images = F.interpolate(
                images,
                size=(max(self.image_size, round(h * scale)), max(self.image_size, round(w * scale))),
                mode="bicubic",
                align_corners=False,
                antialias=True,
            )
            top = (images.shape[-2] - self.image_size) // 2
            left = (images.shape[-1] - self.image_size) // 2
            images = images[..., top : top + self.image_size, left : left + self.image_size]
        mean, std = self.mean.to(images), self.std.to(images)
        return (images - mean) / std


def image_embeds(clip_model, pixel_values: torch.Tensor) -> torch.Tensor:
    """Projected CLIP image embedding (the space of CLIP scores), not normalised."""
    pooled = clip_model.vision_model(pixel_values=pixel_values).pooler_output
    return clip_model.visual_projection(pooled)


def text_embeds(clip_model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Projected CLIP text embedding, not normalised."""
    pooled = clip_model.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output
    return clip_model.text_projection(pooled)


def image_tokens(clip_model, pixel_values: torch.Tensor, layer: int = -1) -> torch.Tensor:
    """Token features of the vision tower (CLS + patches) at hidden-state `layer`."""
    out = clip_model.vision_model(pixel_values=pixel_values, output_hidden_states=layer != -1)
    return out.last_hidden_state if layer == -1 else out.hidden_states[layer]
