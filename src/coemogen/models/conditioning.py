"""Condition injection: a visual embedding e^v replaces a placeholder token's input embedding
inside a prompt template and goes through the frozen CLIP text encoder (as textual inversion
and EmoGen inject vectors). Gradients flow through the frozen encoder back to e^v.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from contextlib import contextmanager
from contextvars import ContextVar
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


class EmotionConditioner:
    """Encode placeholder templates ("{}", "a photo of {} bag") and plain captions with one text encoder."""

    def __init__(self, tokenizer, text_encoder) -> None:
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.max_length = min(int(tokenizer.model_max_length), text_encoder.config.max_position_embeddings)

    def template_ids(self, template: str, batch_size: int) -> tuple[torch.Tensor, int]:
        """Token ids of the template (placeholder slot holds BOS, overwritten later) and the slot index."""
        prefix, suffix = check_template(template).split(PLACEHOLDER)
        tok = self.tokenizer
        pre = tok(prefix, add_special_tokens=False).input_ids if prefix.strip() else []
        post = tok(suffix, add_special_tokens=False).input_ids if suffix.strip() else []
        ids = [tok.bos_token_id, *pre, tok.bos_token_id, *post][: self.max_length - 1] + [tok.eos_token_id]
        if len(pre) + 2 >= self.max_length:
            raise CoEmoGenError(f"prompt template is too long for the text encoder: '{template}'")
        ids += [tok.pad_token_id] * (self.max_length - len(ids))
        return torch.tensor([ids] * batch_size), 1 + len(pre)

    @contextmanager
    def _inject(self, embeds: torch.Tensor, slot: int):
        """Replace the slot's input embedding for the calls inside the block, for the calling thread
        only (threads sharing one text encoder never see each other's embeddings)."""
        embedding = self.text_encoder.get_input_embeddings()
        if embedding not in _HOOKED:
            embedding.register_forward_hook(_replace_slot)
            _HOOKED.add(embedding)
        token = _INJECTIONS.set({**_INJECTIONS.get(), embedding: (embeds, slot)})
        try:
            yield
        finally:
            _INJECTIONS.reset(token)

    def encode_embeddings(self, embeds: torch.Tensor, template: str = PLACEHOLDER) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, d0) placeholder embeddings -> (hidden states for the U-Net, pooled output)."""
        ids, slot = self.template_ids(template, embeds.shape[0])
        ids = ids.to(embeds.device)
        with self._inject(embeds, slot):
            out = self.text_encoder(input_ids=ids)
        return out.last_hidden_state, out.pooler_output

    def encode_text(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Plain prompts (captions, the empty prompt for guidance) -> (hidden states, pooled)."""
        ids = self.tokenizer(
            texts, padding="max_length", max_length=self.max_length, truncation=True, return_tensors="pt"
        ).input_ids.to(self.text_encoder.device)
        out = self.text_encoder(input_ids=ids)
        return out.last_hidden_state, out.pooler_output
