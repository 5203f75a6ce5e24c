"""``TraceGenModel``: conditioning encoders + trace decoder + increment normalisation.

Conditioning (one code path for every preset):

* RGB (B, 3, S, S) float [0, 1] through each ``rgb_encoders`` entry; depth
  (B, 1, S, S) metres, clipped to [0, depth_max_m] and scaled to [0, 1],
  through a learnable 1x1-conv stem to 3 channels and then each
  ``depth_encoders`` entry. All feature maps are resized to the first one's
  grid, concatenated along channels and linearly projected to ``cond_dim``
  (+ 2-D sin-cos positions + an "image" type embedding).
* Text tokens from the text encoder, linearly projected to ``cond_dim``
  (+ a "text" type embedding). For classifier-free guidance the text is
  replaced by one learned null token (``Condition.without_text``).
* ``spatial_keypoints`` (small preset): a spatial soft-argmax over the fused
  map gives each channel's expected image position; the decoder adds their
  projection to its adaLN vector, so every trace token knows where things are.

Increments are standardised with per-step statistics stored as buffers
(``inc_mean``, ``inc_std``: (L, 3)) so they travel with the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from tracegen_ros.flow import data_to_velocity, guided, integrate
from tracegen_ros.model.config import TraceGenConfig
from tracegen_ros.model.decoder import TraceDecoder, sincos_2d
from tracegen_ros.model.encoders import (
    ImageEncoder,
    T5TextEncoder,
    TextEncoder,
    Tokens,
    WordTextEncoder,
    make_image_encoder,
    resample_to,
)

__all__ = ["TraceGenModel", "Condition", "spatial_softmax"]


@dataclass
class Condition:
    """Projected conditioning tokens of a batch."""

    image: torch.Tensor  # (B, Ni, cond_dim)
    text: torch.Tensor  # (B, Nt, cond_dim)
    text_mask: torch.Tensor  # (B, Nt) bool
    null_text: torch.Tensor  # (cond_dim,) the learned null token
    local: torch.Tensor | None = None  # (B, K, cond_dim + 1) per-keypoint features, or None
    spatial: torch.Tensor | None = None  # (B, 2 * cond_dim) spatial-softmax positions, or None

    def tokens(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, Ni + Nt, cond_dim) tokens and their (B, Ni + Nt) mask."""
        b, ni, _ = self.image.shape
        img_mask = torch.ones(b, ni, dtype=torch.bool, device=self.image.device)
        return torch.cat([self.image, self.text], 1), torch.cat([img_mask, self.text_mask], 1)

    def without_text(self, drop: torch.Tensor | None = None) -> "Condition":
        """Replace the text of the rows where ``drop`` (B,) is True (all rows if None)
        by the null token (first position, the rest masked out)."""
        b, nt, c = self.text.shape
        if drop is None:
            drop = torch.ones(b, dtype=torch.bool, device=self.text.device)
        null = torch.zeros_like(self.text)
        null[:, 0] = self.null_text
        null_mask = torch.zeros_like(self.text_mask)
        null_mask[:, 0] = True
        d = drop.view(b, 1, 1)
        return Condition(self.image, torch.where(d, null, self.text),
                         torch.where(drop.view(b, 1), null_mask, self.text_mask), self.null_text,
                         self.local, self.spatial)

    def concat(self, other: "Condition") -> "Condition":
        """The batch of ``self`` followed by ``other``'s."""
        def cat(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
            return None if a is None or b is None else torch.cat([a, b])

        return Condition(torch.cat([self.image, other.image]), torch.cat([self.text, other.text]),
                         torch.cat([self.text_mask, other.text_mask]), self.null_text,
                         cat(self.local, other.local), cat(self.spatial, other.spatial))


def spatial_softmax(fused: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(B, h*w, C) feature tokens (row-major map) -> (B, 2C): per channel, the expected
    (x, y) in [-1, 1] under the softmax of that channel over the map (Levine et al.'s
    spatial soft-argmax): a differentiable object position per channel."""
    h, w = hw
    att = torch.softmax(fused, dim=1)  # over positions, per channel
    ys = torch.linspace(-1.0, 1.0, h, device=fused.device, dtype=fused.dtype)
    xs = torch.linspace(-1.0, 1.0, w, device=fused.device, dtype=fused.dtype)
    gx = xs.repeat(h)[None, :, None]  # (1, h*w, 1)
    gy = ys.repeat_interleave(w)[None, :, None]
    return torch.cat([(att * gx).sum(1), (att * gy).sum(1)], dim=-1)


class TraceGenModel(nn.Module):
    inc_mean: torch.Tensor  # (L, 3) mean of the raw increments
    inc_std: torch.Tensor  # (L, 3) std of the raw increments

    def __init__(self, cfg: TraceGenConfig) -> None:
        super().__init__()
        self.cfg = cfg
        trainable = not cfg.freeze_image_encoders
        shared: dict[tuple[str, str], ImageEncoder] = {}

        def image_encoder(kind: str, dim: int, path: str, key: str) -> ImageEncoder:
            if kind != "conv" and (kind, path) in shared:  # frozen pretrained: one copy
                return shared[(kind, path)]
            enc = make_image_encoder(kind, dim, path, key, cfg.conv_channels, trainable)
            if kind != "conv":
                shared[(kind, path)] = enc
            return enc

        self.rgb_encoders = nn.ModuleList(
            image_encoder(k, d, p, "rgb_encoder_paths")
            for k, d, p in zip(cfg.rgb_encoders, cfg.rgb_encoder_dims, cfg.rgb_encoder_paths))
        self.depth_stem = nn.Conv2d(1, 3, kernel_size=1)
        nn.init.ones_(self.depth_stem.weight)
        if self.depth_stem.bias is not None:
            nn.init.zeros_(self.depth_stem.bias)
        self.depth_encoders = nn.ModuleList(
            image_encoder(k, d, p, "depth_encoder_paths")
            for k, d, p in zip(cfg.depth_encoders, cfg.depth_encoder_dims, cfg.depth_encoder_paths))
        fused = sum(cfg.rgb_encoder_dims) + sum(cfg.depth_encoder_dims)
        self.fusion = nn.Linear(fused, cfg.cond_dim)
        self.text_encoder: TextEncoder
        if cfg.text_encoder == "words":
            self.text_encoder = WordTextEncoder(cfg.vocab, cfg.text_encoder_dim, cfg.text_layers,
                                                cfg.max_text_tokens)
        else:
            self.text_encoder = T5TextEncoder(cfg.text_encoder_path, cfg.text_encoder_dim,
                                              cfg.max_text_tokens)
        self.text_proj = nn.Linear(cfg.text_encoder_dim, cfg.cond_dim)
        self.image_type = nn.Parameter(torch.zeros(cfg.cond_dim))
        self.text_type = nn.Parameter(torch.zeros(cfg.cond_dim))
        self.null_text = nn.Parameter(torch.randn(cfg.cond_dim) * 0.02)
        self.decoder = TraceDecoder(cfg)
        self.register_buffer("inc_mean", torch.zeros(cfg.horizon, 3))
        self.register_buffer("inc_std", torch.ones(cfg.horizon, 3))

    # --- bookkeeping -----------------------------------------------------------
    def external_prefixes(self) -> list[str]:
        """state_dict key prefixes of pretrained (frozen, external) weights, not saved."""
        out = []
        for name, mod in self.named_modules():
            if getattr(mod, "pretrained", False) and isinstance(mod, (ImageEncoder, TextEncoder)):
                out.append(name + ".")
        return out

    def own_state_dict(self) -> dict[str, torch.Tensor]:
        """What a checkpoint stores: everything but the pretrained encoders' weights."""
        prefixes = tuple(self.external_prefixes())
        return {k: v for k, v in self.state_dict().items() if not k.startswith(prefixes)}

    def parameter_counts(self) -> dict[str, int]:
        params = {id(p): p for p in self.parameters()}.values()
        return {
            "total": sum(p.numel() for p in params),
            "trainable": sum(p.numel() for p in params if p.requires_grad),
            "decoder": sum(p.numel() for p in self.decoder.parameters()),
        }

    def set_normalisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """mean, std: (L, 3) statistics of the raw increments."""
        self.inc_mean.copy_(mean)
        self.inc_std.copy_(std)

    def normalise(self, inc: torch.Tensor) -> torch.Tensor:
        """(B, K, L, 3) raw increments -> standardised."""
        out: torch.Tensor = (inc - self.inc_mean) / self.inc_std
        return out

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x * self.inc_std + self.inc_mean
        return out

    # --- conditioning ------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> Tokens:
        return self.text_encoder.tokenize(texts)

    def encode(self, rgb: torch.Tensor, depth: torch.Tensor, tokens: Tokens) -> Condition:
        """rgb (B, 3, S, S) float [0, 1]; depth (B, 1, S, S) metres (0 = missing)."""
        cfg = self.cfg
        maps = [enc(rgb) for enc in self.rgb_encoders]
        d = depth.clamp(0.0, cfg.depth_max_m) / cfg.depth_max_m
        d3 = self.depth_stem(d)
        maps += [enc(d3) for enc in self.depth_encoders]
        h, w = maps[0].shape[-2:]
        feat = torch.cat([resample_to(m, (h, w)) for m in maps], dim=1)  # (B, C, h, w)
        fused = self.fusion(feat.flatten(2).transpose(1, 2))  # (B, h*w, cond_dim)
        img = fused + sincos_2d(h, w, cfg.cond_dim).to(fused) + self.image_type
        ids = tokens.ids.to(rgb.device)
        mask = tokens.mask.to(rgb.device)
        text = self.text_proj(self.text_encoder(ids, mask)) + self.text_type
        local = self._local_features(fused, (h, w), d) if cfg.local_features else None
        spatial = spatial_softmax(fused, (h, w)) if cfg.spatial_keypoints else None
        return Condition(img, text, mask, self.null_text, local, spatial)

    def _local_features(self, fused: torch.Tensor, hw: tuple[int, int],
                        depth01: torch.Tensor) -> torch.Tensor:
        """(B, K, cond_dim + 1): fused image features bilinearly resampled at the keypoint
        grid (cell centres) and the normalised sensor depth at each keypoint's pixel."""
        g = self.cfg.grid_size
        b = fused.shape[0]
        fmap = fused.transpose(1, 2).reshape(b, -1, hw[0], hw[1])
        at_grid = resample_to(fmap, (g, g)).flatten(2).transpose(1, 2)  # (B, K, cond_dim)
        s = depth01.shape[-1]
        idx = torch.round((torch.arange(g, device=depth01.device) + 0.5) * s / g - 0.5).long()
        dep = depth01[:, 0][:, idx][:, :, idx].reshape(b, g * g, 1)
        return torch.cat([at_grid, dep], dim=-1)

    # --- velocity and sampling -------------------------------------------------------
    def velocity(self, x: torch.Tensor, tau: torch.Tensor, cond: Condition,
                 t_eps: float = 0.0) -> torch.Tensor:
        """x (B, K, L, 3) standardised increments at time tau (B,) -> velocity.

        With ``prediction == "data"`` the decoder's output is an estimate of X1 and
        the velocity is ``(out - x) / max(1 - tau, t_eps)``.
        """
        if self.cfg.prediction == "data":
            return data_to_velocity(self.estimate_x1(x, tau, cond), x, tau, t_eps)
        tokens, mask = cond.tokens()
        out: torch.Tensor = self.decoder(x, tau, tokens, mask, cond.local, cond.spatial)
        return out

    def estimate_x1(self, x: torch.Tensor, tau: torch.Tensor, cond: Condition) -> torch.Tensor:
        """The decoder's estimate of X1 (``prediction == "data"`` models).

        The network never sees tau above 1 - t_eps (the training range); closer to the data
        it is asked to clean an input that is already almost clean."""
        tokens, mask = cond.tokens()
        out: torch.Tensor = self.decoder(x, tau.clamp(max=1.0 - self.cfg.t_eps), tokens, mask,
                                         cond.local, cond.spatial)
        return out

    def guided_velocity(self, x: torch.Tensor, tau: torch.Tensor, cond: Condition,
                        guidance: float) -> torch.Tensor:
        if guidance == 1.0:
            return self.velocity(x, tau, cond)
        b = x.shape[0]
        both = cond.concat(cond.without_text())
        v = self.velocity(torch.cat([x, x]), torch.cat([tau, tau]), both)
        return guided(v[:b], v[b:], guidance)

    @torch.no_grad()
    def sample(self, cond: Condition, steps: int, guidance: float = 1.0,
               generator: torch.Generator | None = None, method: str = "euler",
               temperature: float = 1.0) -> torch.Tensor:
        """Standardised increments (B, K, L, 3) by integrating the ODE from noise.

        ``temperature`` scales the initial noise X0 (1 = the trained prior; 0 = start
        from its mean, a deterministic trace close to the conditional mean)."""
        cfg = self.cfg
        b = cond.image.shape[0]
        x0 = temperature * torch.randn(b, cfg.num_keypoints, cfg.horizon, 3, generator=generator,
                                       device=cond.image.device)
        return integrate(lambda x, tau: self.guided_velocity(x, tau, cond, guidance),
                         x0, steps, method)
