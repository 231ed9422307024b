"""Neuro-symbolic mapper: one-hot emotion -> emotion descriptor e_i (paper, Sec. 3.2)."""

from __future__ import annotations

import torch
from torch import nn


class NeuroSymbolicMapper(nn.Module):
    """Fully connected layers with non-linearities from the one-hot symbol to a token-space vector.

    Args:
        num_emotions: size of the one-hot input (the taxonomy's emotion count).
        embed_dim: width of the text encoder's token embeddings (d0 = 768 for CLIP ViT-L/14).
        hidden_dim: hidden width (512 in the paper).
        num_layers: number of linear layers (>= 2).
    """

    def __init__(self, num_emotions: int, embed_dim: int, hidden_dim: int = 512, num_layers: int = 2) -> None:
        super().__init__()
        dims = [num_emotions] + [hidden_dim] * (num_layers - 1) + [embed_dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b))
            if i < num_layers - 1:
                layers.append(nn.GELU())
        self.net = nn.Sequential(*layers)

    def forward(self, emotion_weights: torch.Tensor) -> torch.Tensor:
        """(batch, num_emotions) one-hot or mixing weights -> (batch, embed_dim)."""
        return self.net(emotion_weights)
