"""``PixelVLANet``: a small pixel-prompted policy with a chunked action head (torch).

Token sequence (width ``D``)::

    [image tokens (G*G)] [prompt token] [word tokens (L)] [proprio] [ACT]

* the RGB frame and the prompt channel (``transforms.rasterize_prompt``) enter one conv
  encoder as a 4-channel image (early fusion: the prompt is aligned with the pixels it
  marks); the encoder is the local policy's (a 4x4 stride-4 patch conv, then two 3x3
  stride-2 convs, GroupNorm + ReLU: ``local.model._conv``) -> G x G tokens (G = S/16)
  plus a learned position embedding. PixelVLA proper encodes prompts as tokens of a
  SAM-style prompt encoder; at this size a raster channel is the simplest encoding that
  keeps the prompt's position exact (a point is a pixel, not a learned embedding);
* one **prompt token**, in the spirit of SAM's sparse prompt embeddings: the geometry of
  the raster (present or not, centroid, bounding box, spread; coordinates in [-1, 1]) ->
  a linear layer. It hands the transformer where the target is without the conv having to
  find it first (the raster alone was ignored in a first run: validation L1 with and
  without the prompt equal to 1e-3 after 3 epochs). No prompt = all zeros;
* the instruction as word embeddings + positions (padding masked out), one proprio token,
  a learned ``ACT`` readout token, a pre-norm transformer encoder;
* the head is a 2-layer MLP on [the ACT output, the prompt geometry, the proprio]: a
  short path from where the target is and where the arm is to the action (a first run
  with a linear head on the ACT output alone descended ~4 cm beside the cube: it had not
  learned to use the target's position in 8 epochs);
* the head's output -> ``chunk`` x 7 actions: ``continuous`` = values in [-1, 1] (tanh;
  trained with L1), ``discrete`` = chunk x 7 x 256 logits (soft cross-entropy, the local
  policy's decoding). Both heads sit on the same backbone.

Images and prompt enter as uint8 and are scaled inside the model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from tracetrain.config import from_dict

from tracevla_ros.policy.local.model import _conv, check_backbone

__all__ = ["PixelModelConfig", "PixelVLANet", "prompt_features", "PROMPT_FEATURES"]

PROMPT_FEATURES = 9  # present, centroid (x, y), box (x0, y0, x1, y1), spread (x, y)


def prompt_features(prompt: torch.Tensor) -> torch.Tensor:
    """(B, S, S) uint8 prompt raster -> (B, 9) geometry: present (0/1), centroid x, y, box
    x0, y0, x1, y1, standard deviation x, y; coordinates in [-1, 1] (x right, y down);
    all zeros for an empty raster."""
    b, s, _ = prompt.shape
    m = (prompt > 0).float()
    mass = m.sum(dim=(1, 2))
    present = (mass > 0).float()
    g = torch.linspace(-1.0, 1.0, s, device=prompt.device)
    gy, gx = g.view(1, s, 1).expand(b, s, s), g.view(1, 1, s).expand(b, s, s)
    den = mass.clamp(min=1.0)
    cx = (m * gx).sum(dim=(1, 2)) / den
    cy = (m * gy).sum(dim=(1, 2)) / den
    sx = ((m * (gx - cx.view(b, 1, 1)) ** 2).sum(dim=(1, 2)) / den).sqrt()
    sy = ((m * (gy - cy.view(b, 1, 1)) ** 2).sum(dim=(1, 2)) / den).sqrt()
    big = torch.full_like(gx, 2.0)
    on = m > 0
    x0 = torch.where(on, gx, big).amin(dim=(1, 2))
    y0 = torch.where(on, gy, big).amin(dim=(1, 2))
    x1 = torch.where(on, gx, -big).amax(dim=(1, 2))
    y1 = torch.where(on, gy, -big).amax(dim=(1, 2))
    f = torch.stack([present, cx, cy, x0, y0, x1, y1, sx, sy], dim=1)
    return f * present.unsqueeze(1)


@dataclass(frozen=True)
class PixelModelConfig:
    """Network hyper-parameters; saved as ``config.json["model"]``."""

    image_size: int = 96  # S (multiple of 16)
    width: int = 128  # D: token width
    depth: int = 3  # transformer layers
    heads: int = 4
    mlp_ratio: int = 2
    channels: tuple[int, int] = (32, 64)
    vocab_size: int = 16
    max_words: int = 12
    proprio_dim: int = 8
    action_dim: int = 7
    chunk: int = 8  # H
    decoder: str = "continuous"  # continuous | discrete
    action_bins: int = 256  # discrete only

    def __post_init__(self) -> None:
        check_backbone(self, ("action_dim", "chunk", "action_bins"))
        if self.decoder not in ("continuous", "discrete"):
            raise ValueError(f"decoder must be continuous or discrete, got {self.decoder!r}")

    @property
    def grid(self) -> int:
        return self.image_size // 16

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any, where: str = "model config") -> "PixelModelConfig":
        return from_dict(cls, d, where, require_all=True)


class PixelVLANet(nn.Module):
    """See the module docstring. ``forward`` returns (B, H, 7) values in [-1, 1]
    (continuous) or (B, H, 7, bins) logits (discrete)."""

    def __init__(self, cfg: PixelModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.width
        c1, c2 = cfg.channels
        self.encoder = nn.Sequential(_conv(4, c1, 4, 4), _conv(c1, c2, 3, 2), _conv(c2, d, 3, 2))
        self.pos_image = nn.Parameter(torch.randn(1, cfg.grid * cfg.grid, d) * 0.02)
        self.word = nn.Embedding(cfg.vocab_size, d, padding_idx=0)
        self.pos_word = nn.Parameter(torch.randn(1, cfg.max_words, d) * 0.02)
        self.proprio = nn.Linear(cfg.proprio_dim, d)
        self.prompt_token = nn.Linear(PROMPT_FEATURES, d)
        self.act = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, cfg.heads, cfg.mlp_ratio * d, 0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, cfg.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        out = cfg.chunk * cfg.action_dim * (cfg.action_bins if cfg.decoder == "discrete" else 1)
        hidden = 2 * d
        self.head = nn.Sequential(nn.Linear(d + PROMPT_FEATURES + cfg.proprio_dim, hidden),
                                  nn.GELU(), nn.Linear(hidden, out))

    def forward(self, images: torch.Tensor, prompt: torch.Tensor, words: torch.Tensor,
                proprio: torch.Tensor) -> torch.Tensor:
        """images (B, S, S, 3) uint8, prompt (B, S, S) uint8, words (B, L) int64,
        proprio (B, P) float32."""
        b = images.shape[0]
        x = torch.cat([images, prompt.unsqueeze(-1)], dim=-1).permute(0, 3, 1, 2).float()
        x = x * (2.0 / 255.0) - 1.0
        img = self.encoder(x).flatten(2).transpose(1, 2) + self.pos_image  # (B, G*G, D)
        w = self.word(words) + self.pos_word[:, : words.shape[1]]
        p = self.proprio(proprio).unsqueeze(1)
        geo = prompt_features(prompt)
        q = self.prompt_token(geo).unsqueeze(1)
        seq = torch.cat([img, q, w, p, self.act.expand(b, -1, -1)], dim=1)
        pad = torch.zeros(b, seq.shape[1], dtype=torch.bool, device=seq.device)
        pad[:, img.shape[1] + 1:img.shape[1] + 1 + words.shape[1]] = words == 0
        z = self.transformer(seq, src_key_padding_mask=pad)[:, -1]
        z = self.head(torch.cat([self.norm(z), geo, proprio], dim=1))
        c = self.cfg
        if c.decoder == "discrete":
            return z.reshape(b, c.chunk, c.action_dim, c.action_bins)
        return torch.tanh(z.reshape(b, c.chunk, c.action_dim))
