"""Visual-perception encoder: e_i^v = Softmax(e_i W_q (v_i W_k)^T / sqrt(d0)) v_i W_v.

The query is the emotion descriptor e_i (one token); keys and values are CLIP image-encoder
token features v_i. A softmax over one key is always 1, so v_i is a token sequence: by default
the vision tower's last hidden states, CLS plus every patch (`image_token_layer` picks another
hidden layer). The output lives in the text encoder's token-embedding space.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class VisualPerceptionEncoder(nn.Module):
    """Single-query cross-attention, exactly the paper's equation (no residual, no heads)."""

    def __init__(self, embed_dim: int, image_dim: int) -> None:
        super().__init__()
        self.to_q = nn.Linear(embed_dim, embed_dim, bias=False)
        self.to_k = nn.Linear(image_dim, embed_dim, bias=False)
        self.to_v = nn.Linear(image_dim, embed_dim, bias=False)
        self.scale = 1.0 / math.sqrt(embed_dim)

    def forward(self, descriptor: torch.Tensor, image_tokens: torch.Tensor) -> torch.Tensor:
        """(batch, d0) descriptor, (batch, tokens, image_dim) features -> (batch, d0)."""
        q = self.to_q(descriptor).unsqueeze(1)  # (b, 1, d0)
        k, v = self.to_k(image_tokens), self.to_v(image_tokens)  # (b, n, d0)
        attn = torch.softmax(q @ k.transpose(1, 2) * self.scale, dim=-1)  # (b, 1, n)
        return (attn @ v).squeeze(1)
