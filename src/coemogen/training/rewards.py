"""The rewards of `coemogen tune`: an emotion judge backpropagated into a generator.

`EmotionReward` is a CLIP image-feature emotion head (`coemogen emotion-head train`'s folder)
turned into a differentiable score of each image for its target emotion, shaped as EmoCtrl shapes
it, plus an optional quality term from a PickScore-style preference model (a CLIP-form model that
scores an image against its prompt). Both are frozen: only the generator learns from them.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .. import registry
from ..errors import CoEmoGenError
from ..evaluation.emotion_head import ClipEmotionHead
from ..taxonomy import Taxonomy

# EmoCtrl's polarity-aware shaping: most of the reward for the target, a share for its polarity.
TARGET_SHARE, POLARITY_SHARE = 0.8, 0.2


def shaped_reward(probabilities: torch.Tensor, targets: torch.Tensor, membership: torch.Tensor, shaping: str):
    """(N,) rewards from (N, emotions) probabilities. "target": p(target). "polarity" (EmoCtrl):
    0.8 p(target) + 0.2 (0.5 p(target's group) - 0.5 p(every other group)), the group's mass
    including the target's own.

    Examples:
        >>> p = torch.tensor([[0.5, 0.3, 0.1, 0.1]])
        >>> membership = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
        >>> round(float(shaped_reward(p, torch.tensor([0]), membership, "polarity")), 4)
        0.46
    """
    target = probabilities.gather(1, targets.view(-1, 1)).squeeze(1)
    if shaping == "target":
        return target
    group_mass = probabilities @ membership.to(probabilities)  # (N, groups)
    own = group_mass.gather(1, membership.to(targets.device).argmax(1)[targets].view(-1, 1)).squeeze(1)
    return TARGET_SHARE * target + POLARITY_SHARE * (0.5 * own - 0.5 * (1 - own))


class QualityModel(nn.Module):
    """A PickScore-style preference score: CLIP logit scale x the cosine of the image's and the
    prompt's features, from a local CLIP-form directory (PickScore's own is a CLIPModel)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        from transformers import CLIPModel, CLIPTokenizer

        from ..models.base import _load, load_pretrained
        from ..models.clip import ClipImagePreprocessor

        self.model = load_pretrained(CLIPModel.from_pretrained, str(path), "a quality (preference) model")
        self.model.requires_grad_(False).eval()
        self.tokenizer = _load(CLIPTokenizer.from_pretrained, str(path), "the quality model's tokenizer")
        self.preprocess = ClipImagePreprocessor.from_clip(self.model)
        self.name = str(path)

    def forward(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        from ..models.clip import image_embeds, text_embeds

        tokens = self.tokenizer(prompts, padding=True, truncation=True, return_tensors="pt").to(images.device)
        image = F.normalize(image_embeds(self.model, self.preprocess(images)), dim=-1)
        text = F.normalize(text_embeds(self.model, tokens.input_ids, tokens.attention_mask), dim=-1)
        return self.model.logit_scale.exp() * (image * text).sum(-1)


class EmotionReward(nn.Module):
    """reward(images in [0, 1], target emotion indices) -> per-image rewards and the head's verdicts,
    with the graph through the head's CLIP (frozen). `quality` adds `quality_weight` x the preference
    score of each image against its prompt."""

    def __init__(
        self,
        head: ClipEmotionHead,
        taxonomy: Taxonomy,
        shaping: str = "polarity",
        quality: QualityModel | None = None,
        quality_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.clip, self.linear = head.clip.model, head.linear
        self.head = head
        self.requires_grad_(False)
        self.register_buffer("membership", taxonomy.membership(), persistent=False)
        self.shaping, self.quality, self.quality_weight = shaping, quality, quality_weight
        self.name = head.name

    def forward(self, images: torch.Tensor, targets: torch.Tensor, prompts: list[str] | None = None) -> dict:
        logits = self.head.logits(images)
        emotion = shaped_reward(logits.float().softmax(1), targets, self.membership, self.shaping)
        out = {"reward": emotion, "emotion_reward": emotion, "correct": logits.argmax(1) == targets}
        if self.quality is not None and self.quality_weight > 0:
            quality = self.quality(images, prompts or [""] * len(images))
            out["quality"] = quality
            out["reward"] = emotion + self.quality_weight * quality
        return out


def load_reward(
    reward_model: str | Path | None,
    base_model: str,
    taxonomy: Taxonomy,
    shaping: str,
    quality_model: str | Path | None = None,
    quality_weight: float = 0.0,
) -> EmotionReward:
    """The reward for a run on `base_model`: `reward_model` (a head folder), else the one registered
    for that base model (the synthetic worlds' heads on their pocket CLIP)."""
    path = reward_model or registry.reward_model(base_model)
    if path is None:
        raise CoEmoGenError(
            f"no emotion reward is registered for runs on {base_model}: pass --reward_model, a head folder from "
            "`coemogen emotion-head train` (a different head from the one that judges Emo-A)"
        )
    head = ClipEmotionHead(path, taxonomy)
    quality = QualityModel(quality_model) if quality_model else None
    return EmotionReward(head, taxonomy, shaping, quality, quality_weight)
