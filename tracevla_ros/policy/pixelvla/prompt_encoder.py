"""The visual-prompt encoder (PixelVLA; SAM-prompt-encoder style), torch only.

Sparse prompts become one token per coordinate pair: a point is one token, a
line its two endpoints, a box its two corners (top-left, bottom-right). A
token is the random-Fourier encoding of the normalized coordinate plus a
learned embedding of its type (``TOKEN_TYPES``). A dense mask goes through
a small strided conv stack, is average-pooled to a ``mask_grid`` x
``mask_grid`` grid of tokens, and each gets the Fourier encoding of its cell
centre plus the mask type embedding. Every token is then projected to the
LLM width by a 2-layer MLP.

Coordinates: normalized image coordinates as in ``VisualPrompt`` (x = column /
width, y = row / height, in [0, 1], origin top-left). The image is resized,
never cropped, to the model's 224 x 224 input, so they hold for it too.

Batches hold a variable number of prompts per row: the sparse tokens are
right-padded, ``valid`` marks the real ones; the mask tokens of a row without
a mask are invalid. Tokens never mix across prompts (no attention inside the
encoder), so a padded batch gives the real prompts exactly the tokens they
get alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tracevla_ros.policy.prompt import VisualPrompt

__all__ = ["TOKEN_TYPES", "POINT", "LINE_START", "LINE_END", "BOX_TL", "BOX_BR", "PromptBatch",
           "collate_prompts", "resize_mask", "FourierEncoding", "PromptEncoder"]

TOKEN_TYPES = ("point", "line_start", "line_end", "box_top_left", "box_bottom_right", "mask")
POINT, LINE_START, LINE_END, BOX_TL, BOX_BR, MASK = range(len(TOKEN_TYPES))


@dataclass
class PromptBatch:
    """The prompts of B rows, padded.

    coords:   (B, T, 2) float32 normalized (x, y) of the sparse tokens (0 on padding).
    types:    (B, T) int64 token type (``TOKEN_TYPES`` index; 0 on padding).
    valid:    (B, T) bool, a real token.
    masks:    (B, 1, S, S) float32 region masks in [0, 1] (zeros when a row has none).
    has_mask: (B,) bool.
    """

    coords: torch.Tensor
    types: torch.Tensor
    valid: torch.Tensor
    masks: torch.Tensor
    has_mask: torch.Tensor

    def to(self, device: torch.device | str) -> PromptBatch:
        return PromptBatch(*(t.to(device) for t in (self.coords, self.types, self.valid,
                                                    self.masks, self.has_mask)))

    def __len__(self) -> int:
        return int(self.coords.shape[0])


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """(H, W) bool -> (size, size) float32: the fraction of each output cell the mask covers
    (area interpolation; exact block averages when H and W are multiples of ``size``)."""
    m = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
    return F.interpolate(m, size=(size, size), mode="area")[0, 0].numpy()


def _sparse(p: VisualPrompt) -> tuple[np.ndarray, np.ndarray]:
    """(T, 2) coords and (T,) types of one prompt: points, line endpoints, box corners."""
    coords = [p.points.reshape(-1, 2), p.lines.reshape(-1, 2), p.boxes.reshape(-1, 2)]
    types = [np.full(len(p.points), POINT),
             np.tile([LINE_START, LINE_END], len(p.lines)),
             np.tile([BOX_TL, BOX_BR], len(p.boxes))]
    return (np.concatenate(coords).astype(np.float32),
            np.concatenate(types).astype(np.int64))


def collate_prompts(prompts: Sequence[VisualPrompt | None], mask_size: int,
                    min_tokens: int = 0) -> PromptBatch:
    """The batch of ``prompts`` (None = no prompt in that row); at least ``min_tokens``
    sparse slots (extra padding, e.g. to test that padding changes nothing)."""
    rows = [_sparse(p) if p is not None else (np.zeros((0, 2), np.float32),
                                              np.zeros(0, np.int64)) for p in prompts]
    n = max([min_tokens] + [len(t) for _, t in rows])
    b = len(prompts)
    coords = np.zeros((b, n, 2), np.float32)
    types = np.zeros((b, n), np.int64)
    valid = np.zeros((b, n), bool)
    masks = np.zeros((b, 1, mask_size, mask_size), np.float32)
    has_mask = np.zeros(b, bool)
    for i, ((c, t), p) in enumerate(zip(rows, prompts)):
        coords[i, :len(t)], types[i, :len(t)], valid[i, :len(t)] = c, t, True
        if p is not None and p.mask is not None and p.mask.any():
            masks[i, 0] = resize_mask(p.mask, mask_size)
            has_mask[i] = True
    return PromptBatch(*(torch.from_numpy(a) for a in (coords, types, valid, masks, has_mask)))


class FourierEncoding(nn.Module):
    gaussian: torch.Tensor

    """Random Fourier features of normalized 2-D coordinates (SAM's positional encoding):
    ``[sin(2 pi (2c - 1) G), cos(2 pi (2c - 1) G)]`` with a fixed Gaussian ``G`` (2, dim/2)
    stored as a buffer (saved with the weights)."""

    def __init__(self, dim: int, scale: float = 1.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"the Fourier encoding needs an even width, got {dim}")
        self.register_buffer("gaussian", scale * torch.randn(2, dim // 2))

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """(..., 2) in [0, 1] -> (..., dim)."""
        x = (2.0 * coords.to(self.gaussian.dtype) - 1.0) @ self.gaussian * (2.0 * math.pi)
        return torch.cat([torch.sin(x), torch.cos(x)], dim=-1)


class PromptEncoder(nn.Module):
    """Prompt tokens in the LLM width: ``forward(batch) -> (tokens (B, T + G*G, H),
    valid (B, T + G*G))``, the T sparse tokens first, then the G*G mask tokens."""

    def __init__(self, llm_dim: int, dim: int = 256, mask_size: int = 64,
                 mask_grid: int = 4) -> None:
        super().__init__()
        if mask_size % 8 or mask_size // 8 < mask_grid:
            raise ValueError(f"mask_size must be a multiple of 8 with mask_size / 8 >= mask_grid, "
                             f"got {mask_size} and {mask_grid}")
        self.dim, self.mask_size, self.mask_grid = dim, mask_size, mask_grid
        self.pe = FourierEncoding(dim)
        self.type_embed = nn.Embedding(len(TOKEN_TYPES), dim)
        c1, c2 = max(1, dim // 16), max(1, dim // 4)
        self.mask_convs = nn.Sequential(  # S -> S/8, as SAM's mask downscaling (one more stage)
            nn.Conv2d(1, c1, 2, 2), nn.GroupNorm(1, c1), nn.GELU(),
            nn.Conv2d(c1, c2, 2, 2), nn.GroupNorm(1, c2), nn.GELU(),
            nn.Conv2d(c2, dim, 2, 2))
        self.proj = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, llm_dim), nn.GELU(),
                                  nn.Linear(llm_dim, llm_dim))
        g = (torch.arange(mask_grid, dtype=torch.float32) + 0.5) / mask_grid
        yy, xx = torch.meshgrid(g, g, indexing="ij")
        self.register_buffer("cell_centres", torch.stack([xx, yy], -1).reshape(-1, 2),
                             persistent=False)

    @property
    def mask_tokens(self) -> int:
        return self.mask_grid * self.mask_grid

    def forward(self, batch: PromptBatch) -> tuple[torch.Tensor, torch.Tensor]:
        sparse = self.pe(batch.coords) + self.type_embed(batch.types)  # (B, T, dim)
        b = batch.coords.shape[0]
        dense = self.mask_convs(batch.masks.to(sparse.dtype))
        dense = F.adaptive_avg_pool2d(dense, self.mask_grid).flatten(2).transpose(1, 2)
        dense = dense + self.pe(self.cell_centres) + self.type_embed.weight[MASK]
        tokens = self.proj(torch.cat([sparse, dense], dim=1))
        valid = torch.cat([batch.valid, batch.has_mask[:, None].expand(b, self.mask_tokens)], 1)
        return tokens, valid
