"""The continuous action decoder (PixelVLA), torch only.

Choice: learned action queries. ``chunk`` (8) query embeddings in the LLM width
are appended to the end of every sequence, after the last real text token;
the LLM's last hidden state at each query (final norm applied) is decoded by
a shared residual MLP into that step's 7 action values. The queries attend to
the whole input (causal attention), so no position of the prompt has to be
picked, and right-padded batches need no per-row search for the "last"
token. The queries are the head's parameters (trained in both stages).

Output (B, chunk, 7) in the normalized action space of the training data:
dims 0-5 (motion) are raw regression values trained against targets in
[-1, 1] (q01/q99 normalisation, clipped; ``actions.normalize``) and clipped
to [-1, 1] at inference before unnormalising; dim 6 (gripper, 1 = open) goes
through a sigmoid, so it is always in [0, 1] (the data's gripper is not
normalised). Loss: L1 over the valid steps of the chunk (steps past the end
of an episode are masked out).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ActionHead", "action_l1_loss", "CHUNK", "ACTION_DIM"]

CHUNK = 8  # action steps predicted per inference
ACTION_DIM = 7  # ee_delta_7d


class _Residual(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(),
                                 nn.Linear(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(x)


class ActionHead(nn.Module):
    """``queries`` (chunk, H) for the LLM input; ``forward(hidden (B, chunk, H)) -> (B, chunk,
    action_dim)``."""

    def __init__(self, llm_dim: int, chunk: int = CHUNK, action_dim: int = ACTION_DIM,
                 width: int = 1024, blocks: int = 2) -> None:
        super().__init__()
        self.chunk, self.action_dim = chunk, action_dim
        self.queries = nn.Parameter(torch.randn(chunk, llm_dim) * 0.02)
        self.step_embed = nn.Parameter(torch.zeros(chunk, width))
        self.inp = nn.Sequential(nn.LayerNorm(llm_dim), nn.Linear(llm_dim, width))
        self.blocks = nn.Sequential(*[_Residual(width) for _ in range(blocks)])
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, action_dim))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = self.inp(hidden.to(self.queries.dtype)) + self.step_embed
        y = self.out(self.blocks(x))
        return torch.cat([y[..., :-1], torch.sigmoid(y[..., -1:])], dim=-1)


def action_l1_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean |pred - target| over the valid steps: pred/target (B, chunk, D), valid (B, chunk)."""
    w = valid.to(pred.dtype)[..., None]
    n = (w.sum() * pred.shape[-1]).clamp_min(1.0)
    return ((pred.float() - target.float()).abs() * w).sum() / n
