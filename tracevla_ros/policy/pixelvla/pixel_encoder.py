"""The multiscale pixel-aware encoder (PixelVLA), torch only.

Input: the feature maps of several vision-encoder layers, each (B, C_l, h_l,
w_l) or a patch sequence (B, N_l, C_l) on a square row-major grid (ViT
patches, prefix tokens removed), and the pixel mask of the target, (B, S, S)
in [0, 1] on the model's image (normalized coordinates, like the prompts).

Per level: the mask is resized to that level's grid by area interpolation
(each cell's weight is the fraction of it the mask covers), the features are
averaged under those weights (``masked_average``), and a per-level MLP
projects the average to the LLM width, plus a learned level embedding. K =
number of levels pixel-aware tokens. A row without a pixel mask, or whose mask
covers no cell of a level, gets that token marked invalid (it is left out of
the LLM input).

The pixel mask comes from the prompt (``pixel_mask_of``): the prompt's mask,
else the union of its boxes; points and lines alone give no pixel mask.
Training and inference call the same function.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tracevla_ros.policy.pixelvla.prompt_encoder import resize_mask
from tracevla_ros.policy.prompt import VisualPrompt

__all__ = ["as_grid", "masked_average", "pixel_mask_of", "pixel_masks", "PixelEncoder"]


def as_grid(feat: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) as is, or (B, N, C) patches on a square row-major grid -> (B, C, s, s)."""
    if feat.ndim == 4:
        return feat
    if feat.ndim != 3:
        raise ValueError(f"expected (B, C, h, w) or (B, N, C) features, got {tuple(feat.shape)}")
    b, n, c = feat.shape
    s = math.isqrt(n)
    if s * s != n:
        raise ValueError(f"{n} patches are not a square grid; give (B, C, h, w) features")
    return feat.transpose(1, 2).reshape(b, c, s, s)


def masked_average(feat: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, h, w) features, (B, S, S) mask -> ((B, C) the weighted average of the features,
    (B,) total weight); the weights are the mask resized to (h, w) by area interpolation."""
    h, w = feat.shape[-2:]
    weight = F.interpolate(mask[:, None].to(feat.dtype), size=(h, w), mode="area")[:, 0]
    total = weight.flatten(1).sum(1)
    avg = torch.einsum("bchw,bhw->bc", feat, weight) / total.clamp_min(eps)[:, None]
    return avg, total


def pixel_mask_of(prompt: VisualPrompt | None, size: int) -> np.ndarray | None:
    """(size, size) float32 pixel mask of a prompt (its mask, else its boxes), or None."""
    if prompt is None:
        return None
    if prompt.mask is not None and prompt.mask.any():
        return resize_mask(prompt.mask, size)
    if len(prompt.boxes) == 0:
        return None
    out = np.zeros((size, size), np.float32)
    for x0, y0, x1, y1 in prompt.boxes:
        c0, r0 = int(np.floor(x0 * size)), int(np.floor(y0 * size))
        c1, r1 = max(c0 + 1, int(np.ceil(x1 * size))), max(r0 + 1, int(np.ceil(y1 * size)))
        out[min(r0, size - 1):r1, min(c0, size - 1):c1] = 1.0
    return out


def pixel_masks(prompts: Sequence[VisualPrompt | None], size: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """((B, size, size) float32 masks, (B,) bool present) of a batch of prompts."""
    masks = np.zeros((len(prompts), size, size), np.float32)
    present = np.zeros(len(prompts), bool)
    for i, p in enumerate(prompts):
        m = pixel_mask_of(p, size)
        if m is not None:
            masks[i], present[i] = m, True
    return torch.from_numpy(masks), torch.from_numpy(present)


class PixelEncoder(nn.Module):
    """``forward(feats, mask, present) -> (tokens (B, K, H), valid (B, K))``, K = levels."""

    def __init__(self, level_dims: Sequence[int], llm_dim: int) -> None:
        super().__init__()
        self.level_dims = tuple(int(c) for c in level_dims)
        self.proj = nn.ModuleList(nn.Sequential(nn.LayerNorm(c), nn.Linear(c, llm_dim), nn.GELU(),
                                                nn.Linear(llm_dim, llm_dim))
                                  for c in self.level_dims)
        self.level_embed = nn.Parameter(torch.zeros(len(self.level_dims), llm_dim))

    def forward(self, feats: Sequence[torch.Tensor], mask: torch.Tensor, present: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        if len(feats) != len(self.proj):
            raise ValueError(f"expected {len(self.proj)} feature levels, got {len(feats)}")
        tokens, valid = [], []
        for i, (f, proj) in enumerate(zip(feats, self.proj)):
            avg, total = masked_average(as_grid(f), mask)
            tokens.append(proj(avg) + self.level_embed[i])
            valid.append(present.to(torch.bool) & (total > 0))
        return torch.stack(tokens, 1), torch.stack(valid, 1)
