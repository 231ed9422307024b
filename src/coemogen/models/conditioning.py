"""Condition injection: a visual embedding e^v replaces a placeholder token's input embedding
inside a prompt template and goes through the frozen text encoders (as textual inversion and
EmoGen inject vectors). Gradients flow through the frozen encoders back to e^v. With several text
encoders (SDXL) e^v is their widths side by side, each encoder receiving its own part; the base
model's family (`models/families/`) turns the encoders' outputs into the U-Net's condition.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, fields, replace
from types import MappingProxyType

import torch

from ..errors import CoEmoGenError

PLACEHOLDER = "{}"
# embedding module -> (embeddings, slot) of the calling thread's injection; replaced, never mutated
_INJECTIONS: ContextVar[Mapping] = ContextVar("placeholder_injections", default=MappingProxyType({}))
_HOOKED: weakref.WeakSet = weakref.WeakSet()  # embedding modules that carry the one `_replace_slot` hook


def _replace_slot(module, _inputs, output):
    injection = _INJECTIONS.get().get(module)
    if injection is None:
        return output
    embeds, slot = injection
    mask = torch.zeros(output.shape[:2], dtype=torch.bool, device=output.device)
    mask[:, slot] = True
    return torch.where(mask[..., None], embeds[:, None, :].to(output.dtype), output)


def check_template(template: str) -> str:
    if template.count(PLACEHOLDER) != 1:
        raise CoEmoGenError(f"prompt template must contain exactly one '{{}}' placeholder, got '{template}'")
    return template


@dataclass
class TextCondition:
    """What the text encoders give: `hidden_states`, the U-Net's cross-attention context; `pooled`,
    the first encoder's pooled output (CLIP-width: L_SEM and EmoGen's L_attr project it with CLIP's
    text projection); `text_embeds`, SDXL's second encoder's projected pooled output, an added U-Net
    input (None for a family without it)."""

    hidden_states: torch.Tensor
    pooled: torch.Tensor
    text_embeds: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.hidden_states.shape[0]

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> TextCondition:
        present = [f.name for f in fields(self) if getattr(self, f.name) is not None]
        return replace(self, **{name: fn(getattr(self, name)) for name in present})

    def to(self, device, dtype: torch.dtype | None = None) -> TextCondition:
        return self.map(lambda t: t.to(device, dtype))

    def expand(self, batch: int) -> TextCondition:
        """A one-row condition (the empty prompt) repeated for a batch."""
        return self.map(lambda t: t.expand(batch, *t.shape[1:]))

    def zeros_like(self) -> TextCondition:
        return self.map(torch.zeros_like)

    @staticmethod
    def cat(conditions: list[TextCondition]) -> TextCondition:
        first = conditions[0]
        return replace(
            first,
            **{
                f.name: torch.cat([getattr(c, f.name) for c in conditions])
                for f in fields(first)
                if getattr(first, f.name) is not None
            },
        )


def max_length(tokenizer, text_encoder) -> int:
    return min(int(tokenizer.model_max_length), text_encoder.config.max_position_embeddings)


def template_ids(tokenizer, length: int, template: str, batch_size: int) -> tuple[torch.Tensor, int]:
    """Token ids of the template (placeholder slot holds BOS, overwritten later) and the slot index."""
    prefix, suffix = check_template(template).split(PLACEHOLDER)
    tok = tokenizer
    pre = tok(prefix, add_special_tokens=False).input_ids if prefix.strip() else []
    post = tok(suffix, add_special_tokens=False).input_ids if suffix.strip() else []
    ids = [tok.bos_token_id, *pre, tok.bos_token_id, *post][: length - 1] + [tok.eos_token_id]
    if len(pre) + 2 >= length:
        raise CoEmoGenError(f"prompt template is too long for the text encoder: '{template}'")
    ids += [tok.pad_token_id] * (length - len(ids))
    return torch.tensor([ids] * batch_size), 1 + len(pre)


class EmotionConditioner:
    """Encode placeholder templates ("{}", "a photo of {} bag") and plain captions with a base
    model's text encoders (`BaseModels`: its tokenizers, text encoders and family)."""

    def __init__(self, base) -> None:
        self.family = base.family
        self.encoders = list(zip(base.tokenizers, base.text_encoders))
        self.widths = [encoder.config.hidden_size for encoder in base.text_encoders]

    @staticmethod
    @contextmanager
    def _inject(text_encoder, embeds: torch.Tensor, slot: int):
        """Replace the slot's input embedding for the calls inside the block, for the calling thread
        only (threads sharing one text encoder never see each other's embeddings)."""
        embedding = text_encoder.get_input_embeddings()
        if embedding not in _HOOKED:
            embedding.register_forward_hook(_replace_slot)
            _HOOKED.add(embedding)
        token = _INJECTIONS.set({**_INJECTIONS.get(), embedding: (embeds, slot)})
        try:
            yield
        finally:
            _INJECTIONS.reset(token)

    def encode_embeddings(self, embeds: torch.Tensor, template: str = PLACEHOLDER) -> TextCondition:
        """(batch, sum of encoder widths) placeholder embeddings -> the condition; encoder k reads
        its own slice of each embedding."""
        if embeds.shape[-1] != sum(self.widths):
            raise CoEmoGenError(
                f"placeholder embeddings are {embeds.shape[-1]} wide; these text encoders take {sum(self.widths)}"
            )
        outputs = []
        for (tokenizer, encoder), part in zip(self.encoders, embeds.split(self.widths, dim=-1)):
            ids, slot = template_ids(tokenizer, max_length(tokenizer, encoder), template, embeds.shape[0])
            with self._inject(encoder, part, slot):
                outputs.append(encoder(input_ids=ids.to(embeds.device), **self.family.encoder_call_kwargs()))
        return self.family.text_condition(outputs)

    def encode_text(self, texts: list[str]) -> TextCondition:
        """Plain prompts (captions, the empty prompt for guidance) -> the condition."""
        outputs = []
        for tokenizer, encoder in self.encoders:
            ids = tokenizer(
                texts, padding="max_length", max_length=max_length(tokenizer, encoder), truncation=True,
                return_tensors="pt",
            ).input_ids.to(encoder.device)  # fmt: skip
            outputs.append(encoder(input_ids=ids, **self.family.encoder_call_kwargs()))
        return self.family.text_condition(outputs)
