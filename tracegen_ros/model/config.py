"""``TraceGenConfig``: every size and choice of the TraceGen model, validated once.

Two presets share one decoder and one conditioner code path (``PRESETS``):

* ``"small"`` -- trains on a CPU. RGB and depth each go through a compact
  conv net (``"conv"``) that is TRAINABLE from random init (set
  ``freeze_image_encoders=True`` for a frozen random-init variant); text goes
  through a word-level encoder whose vocabulary is built from the training
  instructions and stored in the checkpoint (``"words"``, trainable). The
  decoder uses factorised space/time attention plus cross-attention to the
  conditioning tokens, over 4x4 spatial x 4-step temporal patches (5x5 tokens
  x 8 token-steps = 200 tokens): measured on this 2-core machine, one training
  step at batch 16 takes ~1.1 s, against ~3.8 s with 2x2 x 4-step patches
  (100 x 8 tokens); joint attention over 10x10x32 tokens would be ~16x more
  tokens again. Each trace token also receives the conditioning features at its
  own keypoints (``local_features``: the fused image features resampled to the
  20x20 grid and the sensor depth there), which a 200-token model needs to tell
  the keypoints on the arm from the background within a 4x4 patch.
* ``"published"`` -- the released TraceGen sizes: DINOv3 ViT-L/16 and SigLIP
  base-patch16-384 on RGB, SigLIP on depth (1x1-conv stem to 3 channels),
  all frozen, at 384 px; T5-base text encoder, first 64 tokens; a 4-layer
  decoder, 8 heads x 64, joint attention over [conditioning, trace] tokens
  with separate adaptive-LayerNorm modulation for each (CogVideoX-style),
  2x2 spatial patches. The released code groups 2 consecutive steps into
  channels ("put_frames_in_channels: 2"), i.e. ``patch_t=2`` (10x10 tokens x
  16 token-steps); ``patch_t=1`` gives the 10x10x32 layout of the method
  description. Encoder weights load from local directories
  (``*_encoder_paths``, ``text_encoder_path``) and are never downloaded.

Trace representation: a ``grid_size`` x ``grid_size`` grid of keypoints
(row-major, rows = image v), each followed for ``horizon`` steps, step 0 =
the reference frame. The model generates per-step increments
``X[:, 0] = (0, 0, z0)`` and ``X[:, t] = T(t) - T(t-1)`` (t >= 1) of
(u / W, v / H, z metres); the trace is their cumulative sum from the grid
(``tracegen_ros.transforms``).

Example::

    cfg = TraceGenConfig.from_preset("small", d_model=96)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from tracevla_ros.config import ConfigError, check, config_from_params, param

__all__ = ["TraceGenConfig", "PRESETS", "IMAGE_ENCODER_KINDS", "TEXT_ENCODER_KINDS", "ConfigError"]

IMAGE_ENCODER_KINDS = ("conv", "dinov3", "siglip")
TEXT_ENCODER_KINDS = ("words", "t5")
ATTENTION_KINDS = ("factorised", "joint")
TAU_SAMPLING = ("uniform", "logit_normal")
PREDICTIONS = ("velocity", "data")


@dataclass(frozen=True)
class TraceGenConfig:
    # --- trace space -------------------------------------------------------
    grid_size: int = param(20, "keypoint grid is grid_size x grid_size on the reference frame",
                           unit="points")
    horizon: int = param(32, "steps per keypoint including step 0 (the reference frame)",
                         unit="steps")
    # --- image conditioning ------------------------------------------------
    image_size: int = param(128, "square size the RGB and depth images are resized to",
                            unit="px")
    rgb_encoders: tuple[str, ...] = param(("conv",), "image encoders applied to RGB "
                                          f"(any of {IMAGE_ENCODER_KINDS})")
    rgb_encoder_dims: tuple[int, ...] = param((128,), "feature channels of each RGB encoder",
                                              unit="channels")
    rgb_encoder_paths: tuple[str, ...] = param(("",), "local checkpoint directory of each "
                                               "pretrained RGB encoder ('' for conv)")
    depth_encoders: tuple[str, ...] = param(("conv",), "image encoders applied to the depth "
                                            "image after the learnable 1x1-conv stem")
    depth_encoder_dims: tuple[int, ...] = param((128,), "feature channels of each depth encoder",
                                                unit="channels")
    depth_encoder_paths: tuple[str, ...] = param(("",), "local checkpoint directory of each "
                                                 "pretrained depth encoder ('' for conv)")
    freeze_image_encoders: bool = param(False, "freeze the image encoders (pretrained ones are "
                                        "always frozen; conv ones then stay at random init)")
    conv_channels: tuple[int, ...] = param((16, 32, 64, 128), "channels of each stride-2 stage "
                                           "of the 'conv' image encoder", unit="channels")
    depth_max_m: float = param(4.0, "depth is clipped to [0, depth_max_m] and divided by it "
                               "before the stem", unit="m")
    # --- text conditioning -------------------------------------------------
    text_encoder: str = param("words", f"text encoder ({TEXT_ENCODER_KINDS})")
    text_encoder_path: str = param("", "local checkpoint directory of a pretrained text encoder")
    text_encoder_dim: int = param(64, "feature channels of the text encoder", unit="channels")
    text_layers: int = param(1, "transformer layers of the 'words' text encoder")
    max_text_tokens: int = param(16, "instructions longer than this are truncated (warning)",
                                 unit="tokens")
    vocab: tuple[str, ...] = param((), "word vocabulary of the 'words' text encoder "
                                   "(built from the training instructions)")
    # --- conditioning tokens ----------------------------------------------
    cond_dim: int = param(128, "width of the projected conditioning tokens (image + text)",
                          unit="channels")
    local_features: bool = param(True, "add to every trace token the conditioning features "
                                 "at its own keypoints: the fused image features resampled to the "
                                 "keypoint grid plus the sensor depth there")
    spatial_keypoints: bool = param(False, "spatial softmax over the fused image feature map: "
                                    "each channel's expected (x, y) image position, projected "
                                    "into the decoder's adaLN vector (object positions for "
                                    "every token, as in visuomotor policies)")
    # --- decoder -----------------------------------------------------------
    d_model: int = param(128, "decoder token width", unit="channels")
    num_heads: int = param(4, "attention heads of the decoder")
    num_layers: int = param(4, "decoder blocks")
    mlp_ratio: float = param(4.0, "decoder MLP hidden width / d_model")
    patch_size: int = param(4, "keypoint-grid patch side (tokens = (grid/patch)^2 per step)",
                            unit="points")
    patch_t: int = param(4, "consecutive steps grouped into one token", unit="steps")
    attention: str = param("factorised", f"decoder attention layout {ATTENTION_KINDS}")
    qk_norm: bool = param(True, "LayerNorm on queries and keys in the decoder attention")
    input_skip: bool = param(False, "add s(tau) * x to the decoder output, a per-channel scale of "
                             "the token's own input set from the adaLN vector (starts at -1): "
                             "the noise needs no path through the transformer")
    # --- flow matching -----------------------------------------------------
    prediction: str = param("data", f"what the decoder outputs {PREDICTIONS}: the velocity "
                            "X1 - X0 directly, or an estimate of X1 turned into the velocity "
                            "(X1_hat - X_tau) / (1 - tau); the loss is the velocity MSE either way")
    t_eps: float = param(0.05, "training clamps 1 - tau at this value in the 'data' "
                         "parametrisation (prediction and target alike)")
    cond_dropout: float = param(0.1, "probability of replacing the instruction by the null "
                                "text during training (classifier-free guidance)")
    tau_sampling: str = param("logit_normal", f"training distribution of tau {TAU_SAMPLING}")
    tau_mean: float = param(0.0, "logit_normal: tau = sigmoid(N(tau_mean, tau_std^2)); < 0 "
                            "favours the noisy end, where the 'data' parametrisation's velocity "
                            "loss is not inflated by 1 / (1 - tau)^2")
    tau_std: float = param(1.0, "logit_normal: standard deviation of the logit")
    default_steps: int = param(100, "ODE steps when the caller gives none", unit="steps")
    default_guidance: float = param(1.0, "classifier-free guidance scale when the caller gives "
                                    "none (1 = no guidance)")
    default_temperature: float = param(0.5, "scale of the initial noise when the caller gives "
                                       "none (1 = samples of the learned distribution, 0 = a "
                                       "deterministic trace near its mean)")
    depth_ratio_sigma_px: float = param(2.0, "Gaussian sigma (image plane) of the depth ratio map "
                                        "that rescales predicted depth to the sensor depth",
                                        unit="px")
    depth_ratio_sigma_m: float = param(0.05, "Gaussian sigma in sensor depth of the same "
                                       "smoothing (keeps ratios from bleeding across depth edges)",
                                       unit="m")

    def __post_init__(self) -> None:
        check(self.grid_size >= 2, "grid_size", "must be >= 2")
        check(self.horizon >= 2, "horizon", "must be >= 2")
        check(self.patch_size >= 1 and self.grid_size % self.patch_size == 0, "patch_size",
              f"must divide grid_size ({self.grid_size}), got {self.patch_size}")
        check(self.patch_t >= 1 and self.horizon % self.patch_t == 0, "patch_t",
              f"must divide horizon ({self.horizon}), got {self.patch_t}")
        check(self.image_size >= 16, "image_size", "must be >= 16")
        for name in ("rgb", "depth"):
            kinds = getattr(self, f"{name}_encoders")
            dims = getattr(self, f"{name}_encoder_dims")
            paths = getattr(self, f"{name}_encoder_paths")
            check(len(kinds) >= 1, f"{name}_encoders", "needs at least one encoder")
            check(all(k in IMAGE_ENCODER_KINDS for k in kinds), f"{name}_encoders",
                  f"must be from {IMAGE_ENCODER_KINDS}, got {kinds}")
            check(len(dims) == len(kinds) and all(d >= 1 for d in dims), f"{name}_encoder_dims",
                  f"needs one positive entry per encoder ({len(kinds)}), got {dims}")
            check(len(paths) == len(kinds), f"{name}_encoder_paths",
                  f"needs one entry per encoder ({len(kinds)}); use '' for conv")
            for k, d in zip(kinds, dims):
                if k == "conv":
                    check(d == self.conv_channels[-1], f"{name}_encoder_dims",
                          f"conv encoder gives conv_channels[-1] = {self.conv_channels[-1]} "
                          f"channels, not {d}")
        check(len(self.conv_channels) >= 1 and all(c >= 1 for c in self.conv_channels),
              "conv_channels", "must be non-empty and positive")
        check(self.depth_max_m > 0, "depth_max_m", "must be > 0")
        check(self.text_encoder in TEXT_ENCODER_KINDS, "text_encoder",
              f"must be one of {TEXT_ENCODER_KINDS}, got '{self.text_encoder}'")
        check(self.text_encoder_dim >= 1, "text_encoder_dim", "must be >= 1")
        check(self.text_layers >= 0, "text_layers", "must be >= 0")
        check(self.max_text_tokens >= 1, "max_text_tokens", "must be >= 1")
        check(len(set(self.vocab)) == len(self.vocab), "vocab", "has duplicate words")
        check(self.cond_dim >= 1, "cond_dim", "must be >= 1")
        check(self.d_model >= 8 and self.num_heads >= 1 and self.d_model % self.num_heads == 0,
              "d_model", f"must be >= 8 and divisible by num_heads ({self.num_heads})")
        check(self.num_layers >= 1, "num_layers", "must be >= 1")
        check(self.mlp_ratio > 0, "mlp_ratio", "must be > 0")
        check(self.attention in ATTENTION_KINDS, "attention",
              f"must be one of {ATTENTION_KINDS}, got '{self.attention}'")
        check(0.0 <= self.cond_dropout < 1.0, "cond_dropout", "must be in [0, 1)")
        check(self.prediction in PREDICTIONS, "prediction", f"must be one of {PREDICTIONS}")
        check(0.0 < self.t_eps < 1.0, "t_eps", "must be in (0, 1)")
        check(self.tau_sampling in TAU_SAMPLING, "tau_sampling", f"must be one of {TAU_SAMPLING}")
        check(self.tau_std > 0, "tau_std", "must be > 0")
        check(self.default_steps >= 1, "default_steps", "must be >= 1")
        check(self.default_guidance >= 0, "default_guidance", "must be >= 0")
        check(self.default_temperature >= 0, "default_temperature", "must be >= 0")
        check(self.depth_ratio_sigma_px >= 0, "depth_ratio_sigma_px", "must be >= 0")
        check(self.depth_ratio_sigma_m > 0, "depth_ratio_sigma_m", "must be > 0")

    # --- derived sizes -------------------------------------------------------
    @property
    def num_keypoints(self) -> int:
        return self.grid_size * self.grid_size

    @property
    def tokens_per_step(self) -> int:
        return (self.grid_size // self.patch_size) ** 2

    @property
    def token_steps(self) -> int:
        return self.horizon // self.patch_t

    @property
    def pretrained_encoders(self) -> bool:
        """True when some encoder loads pretrained weights from a local path."""
        kinds = self.rgb_encoders + self.depth_encoders
        return any(k != "conv" for k in kinds) or self.text_encoder != "words"

    # --- (de)serialisation ---------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "TraceGen config",
                  require_all: bool = False) -> "TraceGenConfig":
        """Strict (``tracetrain.config.from_dict``): unknown keys (a config written by other
        code), wrong types or non-finite numbers are a ConfigError naming ``where`` and the
        key; ``require_all``: a missing key is one too (a checkpoint stores them all)."""
        from tracetrain.config import from_dict
        from tracetrain.errors import FieldError

        try:
            return from_dict(cls, data, where, require_all=require_all)
        except FieldError as exc:
            raise ConfigError(str(exc)) from None

    @classmethod
    def from_preset(cls, preset: str, **overrides: Any) -> "TraceGenConfig":
        if preset not in PRESETS:
            raise ConfigError(f"unknown TraceGen preset '{preset}'; known: {sorted(PRESETS)}")
        values = dict(PRESETS[preset])
        values.update(overrides)
        return config_from_params(cls, values, where=f"preset '{preset}'")

    def replace(self, **changes: Any) -> "TraceGenConfig":
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, dict[str, Any]] = {
    # otherwise the dataclass defaults; tau_mean: see TRACEGEN.md, "Why the first models failed"
    "small": {"spatial_keypoints": True, "tau_mean": -4.0},
    "published": {
        "image_size": 384,
        "rgb_encoders": ("dinov3", "siglip"),
        "rgb_encoder_dims": (1024, 768),  # ViT-L/16, SigLIP base
        "rgb_encoder_paths": ("", ""),
        "depth_encoders": ("siglip",),
        "depth_encoder_dims": (768,),
        "depth_encoder_paths": ("",),
        "freeze_image_encoders": True,
        "text_encoder": "t5",
        "text_encoder_dim": 768,  # T5-base
        "max_text_tokens": 64,
        "cond_dim": 768,
        "d_model": 512,  # 8 heads x 64
        "num_heads": 8,
        "num_layers": 4,
        "patch_size": 2,
        "patch_t": 2,
        "attention": "joint",
        "local_features": False,  # conditioning only through joint attention
        "prediction": "velocity",  # the released model regresses the velocity directly
        "tau_sampling": "uniform",
        "default_temperature": 1.0,
        "default_guidance": 1.0,
    },
}
