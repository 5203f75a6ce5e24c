"""Pluggable image and text encoders for TraceGen's conditioning.

Interface (one per modality, implemented by small CPU encoders and by the
published pretrained ones):

* ``ImageEncoder``: ``forward(images)`` with ``images`` (B, 3, H, W) float in
  [0, 1] (the encoder applies its own mean/std) -> feature map
  (B, C, h, w), ``C == out_channels``. ``pretrained`` encoders keep their
  weights outside the TraceGen checkpoint and are always frozen.
* ``TextEncoder``: ``tokenize(texts)`` -> ``Tokens`` (ids (B, N) int64,
  mask (B, N) bool, which texts were truncated), ``forward(ids, mask)`` ->
  (B, N, out_channels).

Small encoders (no download, no extra package):

* ``ConvImageEncoder`` ("conv"): stride-2 3x3 conv + GroupNorm + GELU stages;
  trainable from random init by default.
* ``WordTextEncoder`` ("words"): lower-cased word vocabulary (built from the
  dataset instructions, stored in the checkpoint config), embedding + learned
  positions + a small transformer encoder; trainable.

Published encoders (``transformers`` imported lazily, local directories only,
``local_files_only=True``): ``HFImageEncoder`` for DINOv3 ViT-L/16 and SigLIP
base-patch16-384 (patch tokens as a feature map; class/register tokens
dropped) and ``T5TextEncoder`` for T5-base. A missing directory or a missing
``transformers`` raises ``EncoderUnavailableError`` saying what to provide.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "EncoderUnavailableError",
    "ImageEncoder",
    "ConvImageEncoder",
    "HFImageEncoder",
    "TextEncoder",
    "Tokens",
    "WordTextEncoder",
    "T5TextEncoder",
    "build_vocab",
    "split_words",
    "make_image_encoder",
]

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)

PAD, UNK = "<pad>", "<unk>"


class EncoderUnavailableError(RuntimeError):
    """A pretrained encoder's local checkpoint or Python package is missing."""


# --------------------------------------------------------------------------- images
class ImageEncoder(nn.Module):
    """(B, 3, H, W) float [0, 1] -> (B, out_channels, h, w)."""

    out_channels: int
    pretrained: bool = False
    pix_mean: torch.Tensor  # (1, 3, 1, 1)
    pix_std: torch.Tensor  # (1, 3, 1, 1)

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("pix_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pix_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.pix_mean) / self.pix_std


class ConvImageEncoder(ImageEncoder):
    """Compact conv net: one stride-2 stage per entry of ``channels``."""

    def __init__(self, channels: Sequence[int], trainable: bool = True) -> None:
        super().__init__(IMAGENET_MEAN, IMAGENET_STD)
        layers: list[nn.Module] = []
        c_in = 3
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1),
                       nn.GroupNorm(min(8, c), c), nn.GELU(),
                       nn.Conv2d(c, c, 3, padding=1), nn.GroupNorm(min(8, c), c), nn.GELU()]
            c_in = c
        self.net = nn.Sequential(*layers)
        self.out_channels = int(channels[-1])
        if not trainable:
            self.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(self.normalise(images))
        return out


def _require_transformers(what: str) -> Any:
    try:
        import transformers
    except ImportError:
        raise EncoderUnavailableError(
            f"{what} needs the 'transformers' package, which is not installed; install it "
            "(pip install transformers) or use the 'small' TraceGen preset") from None
    return transformers


def _require_dir(path: str, what: str, config_key: str) -> None:
    if not path or not os.path.isdir(path):
        raise EncoderUnavailableError(
            f"{what}: local checkpoint directory not found at '{path}'; put the Hugging Face "
            f"model directory (config.json + weights) on disk and set '{config_key}' to it "
            "(or pass encoder_paths=...); weights are never downloaded")


class HFImageEncoder(ImageEncoder):
    """A frozen pretrained ViT (DINOv3 or SigLIP vision tower) from a local directory.

    Patch tokens are returned as a (B, C, h, w) map: the class token and any
    register tokens are dropped (DINOv3 ViT-L/16: 1 + 4 prefix tokens).
    """

    pretrained = True

    def __init__(self, kind: str, path: str, expected_dim: int, config_key: str) -> None:
        if kind not in ("dinov3", "siglip"):
            raise ValueError(f"unknown pretrained image encoder '{kind}'")
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if kind == "dinov3" else (SIGLIP_MEAN, SIGLIP_STD)
        super().__init__(mean, std)
        what = f"image encoder '{kind}'"
        _require_dir(path, what, config_key)
        transformers = _require_transformers(what)
        if kind == "siglip":
            model = transformers.SiglipVisionModel.from_pretrained(path, local_files_only=True)
            self.prefix_tokens = 0
        else:
            model = transformers.AutoModel.from_pretrained(path, local_files_only=True)
            self.prefix_tokens = 1 + int(getattr(model.config, "num_register_tokens", 0))
        hidden = int(model.config.hidden_size)
        if hidden != expected_dim:
            raise EncoderUnavailableError(
                f"{what} at '{path}' has hidden size {hidden}, the config expects {expected_dim}; "
                "point the path at the right model or fix the *_encoder_dims entry")
        self.kind = kind
        self.model = model.eval().requires_grad_(False)
        self.out_channels = hidden

    def train(self, mode: bool = True) -> "HFImageEncoder":
        super().train(mode)
        self.model.eval()  # frozen: dropout etc. stay off
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = self.model(pixel_values=self.normalise(images))
            tokens = out.last_hidden_state[:, self.prefix_tokens:]  # (B, h*w, C)
        b, n, c = tokens.shape
        side = int(round(n ** 0.5))
        if side * side != n:
            raise EncoderUnavailableError(
                f"image encoder '{self.kind}' returned {n} patch tokens, not a square grid")
        return tokens.transpose(1, 2).reshape(b, c, side, side)


def make_image_encoder(kind: str, dim: int, path: str, config_key: str,
                       conv_channels: Sequence[int], trainable: bool) -> ImageEncoder:
    if kind == "conv":
        return ConvImageEncoder(conv_channels, trainable=trainable)
    return HFImageEncoder(kind, path, dim, config_key)


# --------------------------------------------------------------------------- text
@dataclass
class Tokens:
    ids: torch.Tensor  # (B, N) int64
    mask: torch.Tensor  # (B, N) bool, True = real token
    truncated: list[bool]  # per text: longer than the limit, cut


class TextEncoder(nn.Module):
    out_channels: int
    max_tokens: int
    pretrained: bool = False

    def tokenize(self, texts: Sequence[str]) -> Tokens:
        raise NotImplementedError

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


_WORD = re.compile(r"[a-z0-9]+")


def split_words(text: str) -> list[str]:
    """Lower-cased alphanumeric words: 'Push the block.' -> ['push', 'the', 'block']."""
    return _WORD.findall(text.lower())


def build_vocab(texts: Sequence[str]) -> tuple[str, ...]:
    """Sorted unique words of ``texts`` (the special tokens are added by the encoder)."""
    return tuple(sorted({w for t in texts for w in split_words(t)}))


class WordTextEncoder(TextEncoder):
    """Word vocabulary -> embeddings -> small transformer encoder (trainable)."""

    def __init__(self, vocab: Sequence[str], dim: int, layers: int, max_tokens: int) -> None:
        super().__init__()
        self.words = (PAD, UNK) + tuple(vocab)
        self.index = {w: i for i, w in enumerate(self.words)}
        self.max_tokens = max_tokens
        self.out_channels = dim
        self.embed = nn.Embedding(len(self.words), dim, padding_idx=0)
        self.pos = nn.Parameter(torch.randn(1, max_tokens, dim) * 0.02)
        heads = 4 if dim % 4 == 0 else 1
        self.encoder: nn.Module
        if layers > 0:
            layer = nn.TransformerEncoderLayer(dim, heads, dim * 2, dropout=0.0,
                                               batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        else:
            self.encoder = nn.Identity()

    def tokenize(self, texts: Sequence[str]) -> Tokens:
        ids = torch.zeros(len(texts), self.max_tokens, dtype=torch.long)
        truncated = []
        for i, text in enumerate(texts):
            words = split_words(text)
            truncated.append(len(words) > self.max_tokens)
            idx = [self.index.get(w, 1) for w in words[: self.max_tokens]]
            if idx:
                ids[i, : len(idx)] = torch.tensor(idx)
        mask = ids != 0
        mask[:, 0] = True  # an empty text still has one (pad) token to attend to
        return Tokens(ids, mask, truncated)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids) + self.pos[:, : ids.shape[1]]
        if isinstance(self.encoder, nn.TransformerEncoder):
            x = self.encoder(x, src_key_padding_mask=~mask)
        out: torch.Tensor = x
        return out


class T5TextEncoder(TextEncoder):
    """Frozen T5 encoder + tokenizer from a local directory; first ``max_tokens`` tokens."""

    pretrained = True

    def __init__(self, path: str, expected_dim: int, max_tokens: int) -> None:
        super().__init__()
        what = "text encoder 't5'"
        _require_dir(path, what, "text_encoder_path")
        transformers = _require_transformers(what)
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = transformers.T5EncoderModel.from_pretrained(path, local_files_only=True)
        hidden = int(model.config.d_model)
        if hidden != expected_dim:
            raise EncoderUnavailableError(
                f"{what} at '{path}' has width {hidden}, the config expects {expected_dim} "
                "(text_encoder_dim)")
        self.model = model.eval().requires_grad_(False)
        self.out_channels = hidden
        self.max_tokens = max_tokens

    def train(self, mode: bool = True) -> "T5TextEncoder":
        super().train(mode)
        self.model.eval()
        return self

    def tokenize(self, texts: Sequence[str]) -> Tokens:
        full = self.tokenizer(list(texts), add_special_tokens=True)["input_ids"]
        truncated = [len(f) > self.max_tokens for f in full]
        enc = self.tokenizer(list(texts), max_length=self.max_tokens, truncation=True,
                             padding="max_length", return_tensors="pt")
        return Tokens(enc["input_ids"].long(), enc["attention_mask"].bool(), truncated)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out: torch.Tensor = self.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        return out


def resample_to(feature: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of a (B, C, h, w) map to ``size`` (no-op when equal)."""
    if tuple(feature.shape[-2:]) == size:
        return feature
    return F.interpolate(feature, size=size, mode="bilinear", align_corners=False)
