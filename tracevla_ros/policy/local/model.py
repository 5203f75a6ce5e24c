"""``TracePolicyNet``: a compact trace-prompted policy in the TraceVLA design (torch).

Token sequence (width ``D``)::

    [image tokens (G*G)] [SEP] [overlay tokens (G*G)] [word tokens (L)] [proprio] [ACT]

* one small conv encoder shared by both images (a 4x4 stride-4 patch conv, then
  two 3x3 stride-2 convs, each with GroupNorm and ReLU) -> a G x G grid of D-dim
  tokens per image (G = S / 16), plus a learned
  position embedding (shared) and a learned embedding per image slot;
* a learned separator token between the two images' tokens (as TraceVLA
  inserts one between the original and the overlaid image);
* the instruction as word embeddings + positions (padding masked out);
* one proprio token (linear projection of the standardised joint positions);
* a learned ``ACT`` readout token; a pre-norm transformer encoder over all
  tokens; the ACT output -> 7 x 256 logits (one 256-bin distribution per
  action dimension, see ``transforms.py``).

Images enter as uint8 (B, 2, S, S, 3) RGB and are scaled to [-1, 1] inside the
model, so no caller can normalise them differently.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from tracetrain.config import from_dict

__all__ = ["ModelConfig", "TracePolicyNet"]


def check_backbone(cfg: Any, more_positive: tuple[str, ...] = ()) -> None:
    """The checks every config of this backbone (conv patches + transformer) needs:
    sizes >= 1 (plus ``more_positive``), image side a multiple of 16, width divisible by
    the heads. ValueError naming the field."""
    small = [k for k in ("image_size", "width", "depth", "heads", "mlp_ratio", "vocab_size",
                         "max_words", "proprio_dim", *more_positive) if getattr(cfg, k) < 1]
    if small or min(cfg.channels) < 1:
        raise ValueError(f"{small or ['channels']} must be >= 1")
    if cfg.image_size % 16 != 0:
        raise ValueError(f"image_size must be a multiple of 16, got {cfg.image_size}")
    if cfg.width % cfg.heads != 0:
        raise ValueError(f"width {cfg.width} must be divisible by heads {cfg.heads}")


@dataclass(frozen=True)
class ModelConfig:
    """Network hyper-parameters; saved as ``config.json["model"]``."""

    image_size: int = 96  # S: input images are S x S (multiple of 16)
    width: int = 96  # D: token width
    depth: int = 2  # transformer layers
    heads: int = 4  # attention heads
    mlp_ratio: int = 2  # transformer feed-forward width = mlp_ratio * D
    channels: tuple[int, int] = (32, 64)  # widths of the patch conv and the next conv
    vocab_size: int = 16
    max_words: int = 12
    proprio_dim: int = 8
    action_dim: int = 7
    action_bins: int = 256
    dropout: float = 0.0  # transformer dropout (0: the data augmentation regularises)

    def __post_init__(self) -> None:
        check_backbone(self, ("action_dim", "action_bins"))
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def grid(self) -> int:
        return self.image_size // 16

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any, where: str = "model config") -> "ModelConfig":
        """Strict (every key, its type; ``tracetrain.config.from_dict``): FieldError."""
        return from_dict(cls, d, where, require_all=True)


def _conv(cin: int, cout: int, k: int, stride: int) -> nn.Sequential:
    groups = 8 if cout % 8 == 0 else 1
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride=stride, padding=(k - 1) // 2),
                         nn.GroupNorm(groups, cout), nn.ReLU(inplace=True))


class TracePolicyNet(nn.Module):
    """See the module docstring. ``forward`` returns (B, 7, action_bins) logits."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.width
        c1, c2 = cfg.channels
        self.encoder = nn.Sequential(_conv(3, c1, 4, 4), _conv(c1, c2, 3, 2), _conv(c2, d, 3, 2))
        g2 = cfg.grid * cfg.grid
        self.pos_image = nn.Parameter(torch.randn(1, g2, d) * 0.02)
        self.slot = nn.Parameter(torch.randn(2, 1, d) * 0.02)  # original / overlay slot
        self.sep = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.word = nn.Embedding(cfg.vocab_size, d, padding_idx=0)
        self.pos_word = nn.Parameter(torch.randn(1, cfg.max_words, d) * 0.02)
        self.proprio = nn.Linear(cfg.proprio_dim, d)
        self.act = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, cfg.heads, cfg.mlp_ratio * d, cfg.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, cfg.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.action_dim * cfg.action_bins)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 2, S, S, 3) uint8 -> (B, 2, G*G, D) tokens."""
        b = images.shape[0]
        s = self.cfg.image_size
        x = images.reshape(b * 2, s, s, 3).permute(0, 3, 1, 2).float() * (2.0 / 255.0) - 1.0
        f = self.encoder(x)  # (2B, D, G, G)
        tokens = f.flatten(2).transpose(1, 2) + self.pos_image  # (2B, G*G, D)
        return tokens.reshape(b, 2, -1, self.cfg.width)

    def forward(self, images: torch.Tensor, words: torch.Tensor,
                proprio: torch.Tensor) -> torch.Tensor:
        """images (B, 2, S, S, 3) uint8, words (B, L) int64, proprio (B, P) float32
        -> (B, action_dim, action_bins) logits."""
        b = images.shape[0]
        img = self.encode_images(images)
        first = img[:, 0] + self.slot[0]
        second = img[:, 1] + self.slot[1]
        w = self.word(words) + self.pos_word[:, : words.shape[1]]
        p = self.proprio(proprio).unsqueeze(1)
        seq = torch.cat([first, self.sep.expand(b, -1, -1), second, w, p,
                         self.act.expand(b, -1, -1)], dim=1)
        n_img = first.shape[1] * 2 + 1
        pad = torch.zeros(b, seq.shape[1], dtype=torch.bool, device=seq.device)
        pad[:, n_img:n_img + words.shape[1]] = words == 0
        out = self.transformer(seq, src_key_padding_mask=pad)
        z = self.head(self.norm(out[:, -1]))
        return z.reshape(b, self.cfg.action_dim, self.cfg.action_bins)
