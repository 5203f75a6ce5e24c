"""The TraceGen decoder: a transformer over patches of the keypoint grid per step.

Input ``x`` (B, K, L, 3): the (normalised) increments of K = G*G keypoints
(row-major grid) over L steps. A token is a ``patch_size`` x ``patch_size``
patch of the grid over ``patch_t`` consecutive steps, so there are
(G/p)^2 tokens per token-step and L/patch_t token-steps. Fixed sin-cos
positions (2-D over the patch grid, 1-D over token-steps) are added.

Every block is modulated by adaptive LayerNorm (shift, scale, gate; the
modulation layers start at zero, "adaLN-Zero") from ``c = MLP(sincos(tau)) +
Linear(mean of the conditioning tokens)`` (+ ``MLP(spatial-softmax positions)``
with ``spatial_keypoints``). The conditioning tokens (image and
text, already projected to ``cond_dim``) enter through attention:

* ``attention="factorised"`` (the small CPU preset): spatial self-attention
  within each token-step, temporal self-attention along each patch's
  token-steps, cross-attention from the trace tokens to the conditioning
  tokens, MLP.
* ``attention="joint"`` (the published preset, CogVideoX-style): one
  full self-attention over [conditioning tokens, all trace tokens], with
  separate adaLN modulation of the two groups (shared attention and MLP
  weights); the conditioning tokens are updated layer by layer.

The output head (adaLN + linear, zero-initialised) maps tokens back to the
(B, K, L, 3) velocity.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tracegen_ros.model.config import TraceGenConfig

__all__ = ["TraceDecoder", "sincos_1d", "sincos_2d", "patchify", "unpatchify"]


def sincos_1d(n: int, dim: int) -> torch.Tensor:
    """(n, dim) fixed sinusoidal positions."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / max(half, 1))
    ang = pos * freq[None]
    out = torch.zeros(n, dim)
    out[:, 0:2 * half:2] = torch.sin(ang)
    out[:, 1:2 * half:2] = torch.cos(ang)
    return out


def sincos_2d(h: int, w: int, dim: int) -> torch.Tensor:
    """(h*w, dim) fixed positions, row-major; half the channels per axis."""
    dh = dim // 2
    ph = sincos_1d(h, dh)[:, None, :].expand(h, w, dh)
    pw = sincos_1d(w, dim - dh)[None, :, :].expand(h, w, dim - dh)
    return torch.cat([ph, pw], dim=-1).reshape(h * w, dim)


def patchify(x: torch.Tensor, grid: int, p: int, pt: int) -> torch.Tensor:
    """(B, G*G, L, C) -> (B, L/pt, (G/p)^2, p*p*pt*C)."""
    b, k, length, c = x.shape
    gp, tt = grid // p, length // pt
    x = x.reshape(b, gp, p, gp, p, tt, pt, c).permute(0, 5, 1, 3, 2, 4, 6, 7)
    return x.reshape(b, tt, gp * gp, p * p * pt * c)


def unpatchify(x: torch.Tensor, grid: int, p: int, pt: int, c: int) -> torch.Tensor:
    """Inverse of ``patchify``: (B, L/pt, (G/p)^2, p*p*pt*C) -> (B, G*G, L, C)."""
    b, tt, _, _ = x.shape
    gp = grid // p
    x = x.reshape(b, tt, gp, gp, p, p, pt, c).permute(0, 2, 4, 3, 5, 1, 6, 7)
    return x.reshape(b, grid * grid, tt * pt, c)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: x (B, ..., D) with shift/scale (B, D)."""
    shape = (shift.shape[0],) + (1,) * (x.dim() - 2) + (shift.shape[1],)
    return x * (1 + scale.view(shape)) + shift.view(shape)


def _gate(g: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return g.view((g.shape[0],) + (1,) * (like.dim() - 2) + (g.shape[1],))


class Attention(nn.Module):
    """Multi-head attention; ``context`` defaults to ``x`` (self-attention)."""

    def __init__(self, dim: int, heads: int, qk_norm: bool) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.q_norm: nn.Module = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm: nn.Module = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, Nq, D), context (B, Nk, D), key_mask (B, Nk) bool (True = attend)."""
        ctx = x if context is None else context
        b, nq, d = x.shape
        nk = ctx.shape[1]
        q = self.q(x).view(b, nq, self.heads, self.head_dim).transpose(1, 2)
        k, v = self.kv(ctx).view(b, nk, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)
        mask = None if key_mask is None else key_mask[:, None, None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out: torch.Tensor = self.out(y.transpose(1, 2).reshape(b, nq, d))
        return out


def _mlp(dim: int, ratio: float) -> nn.Sequential:
    hidden = max(1, int(dim * ratio))
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))


def _zero_linear(d_in: int, d_out: int) -> nn.Linear:
    """A linear layer initialised at zero (adaLN-Zero modulation, output head)."""
    lin = nn.Linear(d_in, d_out)
    nn.init.zeros_(lin.weight)
    nn.init.zeros_(lin.bias)
    return lin


def _norm(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)


class FactorisedBlock(nn.Module):
    """Spatial attn -> temporal attn -> cross-attn to conditioning -> MLP, each adaLN-gated."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, qk_norm: bool) -> None:
        super().__init__()
        self.norm_s, self.norm_t, self.norm_c, self.norm_m = _norm(dim), _norm(dim), _norm(dim), _norm(dim)
        self.attn_s = Attention(dim, heads, qk_norm)
        self.attn_t = Attention(dim, heads, qk_norm)
        self.attn_c = Attention(dim, heads, qk_norm)
        self.mlp = _mlp(dim, mlp_ratio)
        self.ada = nn.Sequential(nn.SiLU(), _zero_linear(dim, 12 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor, cond: torch.Tensor,
                cond_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, S, D); c (B, D); cond (B, N, D); cond_mask (B, N)."""
        b, t, s, d = x.shape
        (sh_s, sc_s, g_s, sh_t, sc_t, g_t,
         sh_c, sc_c, g_c, sh_m, sc_m, g_m) = self.ada(c).chunk(12, dim=-1)
        h = modulate(self.norm_s(x), sh_s, sc_s).reshape(b * t, s, d)
        x = x + _gate(g_s, x) * self.attn_s(h).view(b, t, s, d)
        h = modulate(self.norm_t(x), sh_t, sc_t).transpose(1, 2).reshape(b * s, t, d)
        x = x + _gate(g_t, x) * self.attn_t(h).view(b, s, t, d).transpose(1, 2)
        h = modulate(self.norm_c(x), sh_c, sc_c).reshape(b, t * s, d)
        x = x + _gate(g_c, x) * self.attn_c(h, cond, cond_mask).view(b, t, s, d)
        x = x + _gate(g_m, x) * self.mlp(modulate(self.norm_m(x), sh_m, sc_m))
        return x, cond


class JointBlock(nn.Module):
    """Full attention over [cond, trace] with separate adaLN modulation per group."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, qk_norm: bool) -> None:
        super().__init__()
        self.norm1, self.norm1_c, self.norm2, self.norm2_c = _norm(dim), _norm(dim), _norm(dim), _norm(dim)
        self.attn = Attention(dim, heads, qk_norm)
        self.mlp = _mlp(dim, mlp_ratio)
        self.ada = nn.Sequential(nn.SiLU(), _zero_linear(dim, 12 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor, cond: torch.Tensor,
                cond_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, s, d = x.shape
        n = cond.shape[1]
        (sh1, sc1, g1, sh2, sc2, g2,
         sh1c, sc1c, g1c, sh2c, sc2c, g2c) = self.ada(c).chunk(12, dim=-1)
        xs = x.reshape(b, t * s, d)
        h = torch.cat([modulate(self.norm1_c(cond), sh1c, sc1c),
                       modulate(self.norm1(xs), sh1, sc1)], dim=1)
        mask = torch.cat([cond_mask, torch.ones(b, t * s, dtype=torch.bool, device=x.device)], dim=1)
        h = self.attn(h, key_mask=mask)
        cond = cond + _gate(g1c, cond) * h[:, :n]
        xs = xs + _gate(g1, xs) * h[:, n:]
        cond = cond + _gate(g2c, cond) * self.mlp(modulate(self.norm2_c(cond), sh2c, sc2c))
        xs = xs + _gate(g2, xs) * self.mlp(modulate(self.norm2(xs), sh2, sc2))
        return xs.view(b, t, s, d), cond


class TraceDecoder(nn.Module):
    """Velocity field v(x_tau, tau | cond) over the keypoint-grid increments."""

    pos_s: torch.Tensor  # ((G/p)^2, d_model) fixed spatial positions
    pos_t: torch.Tensor  # (L/patch_t, d_model) fixed temporal positions

    def __init__(self, cfg: TraceGenConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.patch_dim = cfg.patch_size * cfg.patch_size * cfg.patch_t * 3
        self.in_proj = nn.Linear(self.patch_dim, d)
        self.local_dim = cfg.cond_dim + 1  # image features + sensor depth per keypoint
        self.local_proj: nn.Module | None = (
            nn.Linear(cfg.patch_size * cfg.patch_size * self.local_dim, d)
            if cfg.local_features else None)
        self.cond_proj = nn.Linear(cfg.cond_dim, d)
        gp = cfg.grid_size // cfg.patch_size
        self.register_buffer("pos_s", sincos_2d(gp, gp, d), persistent=False)
        self.register_buffer("pos_t", sincos_1d(cfg.token_steps, d), persistent=False)
        self.time_freq = 256
        self.time_mlp = nn.Sequential(nn.Linear(self.time_freq, d), nn.SiLU(), nn.Linear(d, d))
        self.pool_proj = nn.Linear(d, d)
        self.spatial_proj: nn.Module | None = (
            nn.Sequential(nn.Linear(2 * cfg.cond_dim, d), nn.SiLU(), nn.Linear(d, d))
            if cfg.spatial_keypoints else None)
        block = FactorisedBlock if cfg.attention == "factorised" else JointBlock
        self.blocks = nn.ModuleList(block(d, cfg.num_heads, cfg.mlp_ratio, cfg.qk_norm)
                                    for _ in range(cfg.num_layers))
        self.norm_out = _norm(d)
        self.ada_out = nn.Sequential(nn.SiLU(), _zero_linear(d, 2 * d))
        self.out = _zero_linear(d, self.patch_dim)
        self.skip: nn.Module | None = None
        if cfg.input_skip:
            skip = _zero_linear(d, self.patch_dim)
            nn.init.constant_(skip.bias, -1.0)  # v = -x at init: X1_hat = 0, the mean
            self.skip = nn.Sequential(nn.SiLU(), skip)

    def time_embedding(self, tau: torch.Tensor) -> torch.Tensor:
        """tau (B,) in [0, 1] -> (B, time_freq) sinusoidal features of 1000 * tau."""
        half = self.time_freq // 2
        freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=tau.device) / half)
        ang = 1000.0 * tau.float()[:, None] * freq[None]
        return torch.cat([torch.cos(ang), torch.sin(ang)], dim=-1)

    def forward(self, x: torch.Tensor, tau: torch.Tensor, cond: torch.Tensor,
                cond_mask: torch.Tensor, local: torch.Tensor | None = None,
                spatial: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, K, L, 3), tau (B,), cond (B, N, cond_dim), cond_mask (B, N),
        local (B, K, cond_dim + 1) per-keypoint features (``local_features``),
        spatial (B, 2 * cond_dim) spatial-softmax positions (``spatial_keypoints``)
        -> (B, K, L, 3)."""
        cfg = self.cfg
        xp = patchify(x, cfg.grid_size, cfg.patch_size, cfg.patch_t)
        tokens = self.in_proj(xp)
        tokens = tokens + self.pos_t[None, :, None] + self.pos_s[None, None]
        if self.local_proj is not None:
            if local is None:
                raise ValueError("this decoder needs per-keypoint local features (local_features)")
            loc = patchify(local[:, :, None, :], cfg.grid_size, cfg.patch_size, 1)  # (B, 1, S, .)
            tokens = tokens + self.local_proj(loc)
        cond_t = self.cond_proj(cond)
        w = cond_mask.to(cond_t.dtype)[..., None]
        pooled = (cond_t * w).sum(1) / w.sum(1).clamp(min=1.0)
        c = self.time_mlp(self.time_embedding(tau)) + self.pool_proj(pooled)
        if self.spatial_proj is not None:
            if spatial is None:
                raise ValueError("this decoder needs spatial-softmax positions (spatial_keypoints)")
            c = c + self.spatial_proj(spatial)
        for blk in self.blocks:
            tokens, cond_t = blk(tokens, c, cond_t, cond_mask)
        shift, scale = self.ada_out(c).chunk(2, dim=-1)
        out = self.out(modulate(self.norm_out(tokens), shift, scale))
        if self.skip is not None:
            out = out + self.skip(c)[:, None, None, :] * xp
        return unpatchify(out, cfg.grid_size, cfg.patch_size, cfg.patch_t, 3)
