"""Observation -> model inputs and model output -> action, shared by the trainer and the backend.

Training (``tracevla_ros.policy.local.train``) and serving (``backend.py``) call
these functions and nothing else to turn data into tensors and logits into
actions, so the two cannot drift apart. Every number they need (vocabulary,
normalisation statistics, image sizes) lives in ``TransformConfig``, which is
stored in the checkpoint's ``config.json``.

Inputs (TraceVLA design, compact):

* two images, both resized (``cv2.INTER_AREA``) from the camera frame
  (``source_size``, e.g. 256 x 256) to ``image_size`` x ``image_size``:
  first the original frame, second the frame with the visual trace drawn
  (``tracevla_ros.tracking.draw_trace``). The *no-trace form* (no valid trace,
  trace dropout, or the ``use_trace=False`` baseline) puts the original frame in
  both slots, as TraceVLA does;
* the instruction as word ids: lower-cased ``[a-z0-9]+`` words, index 0 =
  ``<pad>``, 1 = ``<unk>``, the vocabulary is built from the training
  instructions; at most ``max_words`` words (longer ones are cut);
* proprioception: the robot's ``JointState.position`` (WidowX sim: 6 arm joints
  [rad], then the 2 finger joints [m]; dataset key ``observation.joint_positions``),
  standardised with the training mean/std.

Outputs: 7-DoF ``ee_delta_7d`` actions, **discretised into 256 bins per
dimension** (as OpenVLA/TraceVLA): each dimension is mapped linearly from
``[action_low, action_high]`` (the training 1st/99th percentiles; the gripper
is fixed to [0, 1]) to [-1, 1], clipped, and cut into 256 equal bins. The model
predicts 256 logits per dimension; the action is the centre of the arg-max bin,
mapped back. One action per step (chunk length 1).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

import cv2
import numpy as np

from tracevla_ros.policy.base import PolicyError

__all__ = [
    "ACTION_DIM",
    "PAD",
    "UNK",
    "ModelInputs",
    "TransformConfig",
    "action_to_bins",
    "bins_to_action",
    "build_vocab",
    "check_frame",
    "action_stats",
    "decode_logits",
    "encode_instruction",
    "normalize_action",
    "normalize_proprio",
    "observation_to_inputs",
    "proprio_stats",
    "resize_image",
    "tokenize",
    "trace_dropout",
    "trace_dropout_mask",
    "trace_pair",
    "unnormalize_action",
]

ACTION_DIM = 7  # ee_delta_7d
GRIPPER = 6  # index of the gripper dimension (openness, 1 = open)
PAD, UNK = "<pad>", "<unk>"
_WORD = re.compile(r"[a-z0-9]+")
_MIN_RANGE = 1e-6  # a dimension that never varies still gets a non-zero bin width


@dataclass(frozen=True)
class TransformConfig:
    """Everything the transforms need; saved as ``config.json["transforms"]``."""

    source_size: tuple[int, int]  # (width, height) px of the camera frames accepted
    image_size: int  # S: both model images are S x S
    vocab: tuple[str, ...]  # word list; index = id; vocab[0] = <pad>, vocab[1] = <unk>
    max_words: int  # instruction length in words (pad / cut)
    proprio_mean: tuple[float, ...]  # (P,) training mean of JointState.position
    proprio_std: tuple[float, ...]  # (P,) training std (floored at 1e-3)
    action_low: tuple[float, ...]  # (7,) value mapped to -1 (q01; gripper 0)
    action_high: tuple[float, ...]  # (7,) value mapped to +1 (q99; gripper 1)
    action_bins: int = 256
    use_trace: bool = True  # False: the no-trace baseline, both images = the original

    def __post_init__(self) -> None:
        if len(self.vocab) < 2 or self.vocab[0] != PAD or self.vocab[1] != UNK:
            raise ValueError(f"vocab must start with {PAD!r}, {UNK!r}")
        if len(self.proprio_mean) != len(self.proprio_std):
            raise ValueError("proprio_mean and proprio_std differ in length")
        stats = (*self.proprio_mean, *self.proprio_std, *self.action_low, *self.action_high)
        if not all(math.isfinite(v) for v in stats):
            raise ValueError("the statistics (proprio_mean/std, action_low/high) hold NaN/inf")
        if min(self.proprio_std, default=1.0) <= 0:
            raise ValueError("proprio_std must be > 0")
        if len(self.action_low) != ACTION_DIM or len(self.action_high) != ACTION_DIM:
            raise ValueError(f"action_low/high must have {ACTION_DIM} values")
        if self.image_size < 16 or self.max_words < 1 or self.action_bins < 2:
            raise ValueError("image_size >= 16, max_words >= 1 and action_bins >= 2 are required")

    @property
    def proprio_dim(self) -> int:
        return len(self.proprio_mean)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any, where: str = "transforms config") -> "TransformConfig":
        """Strict (every key, its type, finite statistics; ``tracetrain.config.from_dict``):
        FieldError."""
        from tracetrain.config import from_dict

        return from_dict(cls, d, where, require_all=True)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


@dataclass(frozen=True)
class ModelInputs:
    """One sample as the model takes it (numpy; the model batches them)."""

    images: np.ndarray  # (2, S, S, 3) uint8 RGB: [original, overlay-or-original]
    words: np.ndarray  # (max_words,) int64 word ids, 0 = padding
    proprio: np.ndarray  # (P,) float32, standardised


# --- language -----------------------------------------------------------------------
def tokenize(text: str) -> list[str]:
    """Lower-cased alphanumeric words of ``text``."""
    return _WORD.findall(text.lower())


def build_vocab(instructions: Iterable[str]) -> tuple[str, ...]:
    """``(<pad>, <unk>, sorted words)`` of the training instructions."""
    words = sorted({w for text in instructions for w in tokenize(text)})
    return (PAD, UNK, *words)


def encode_instruction(text: str, cfg: TransformConfig) -> np.ndarray:
    """(max_words,) int64 ids; unknown words -> 1 (<unk>). Raises PolicyError when empty."""
    words = tokenize(text)
    if not words:
        raise PolicyError(f"the instruction {text!r} has no words; send a task instruction "
                          f"such as 'put the carrot on the plate'")
    index = {w: i for i, w in enumerate(cfg.vocab)}
    ids = np.zeros(cfg.max_words, np.int64)
    for i, w in enumerate(words[: cfg.max_words]):
        ids[i] = index.get(w, 1)
    return ids


# --- images -------------------------------------------------------------------------
def check_frame(image: Any, cfg: TransformConfig, what: str = "image") -> np.ndarray:
    """The camera frame as (H, W, 3) uint8 RGB of ``source_size``, or PolicyError."""
    if not isinstance(image, np.ndarray):
        raise PolicyError(f"{what} must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise PolicyError(f"{what} must be (H, W, 3) uint8 RGB (encoding rgb8), got "
                          f"{image.shape} {image.dtype}")
    w, h = cfg.source_size
    if image.shape[:2] != (h, w):
        raise PolicyError(f"{what} is {image.shape[1]}x{image.shape[0]} px; this checkpoint was "
                          f"trained on {w}x{h} frames: use that camera resolution")
    return image


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """(size, size, 3) uint8, area interpolation (the trainer and the backend both call this)."""
    if image.shape[0] == size and image.shape[1] == size:
        return np.ascontiguousarray(image)
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def trace_pair(image: np.ndarray, overlay: np.ndarray | None, use_trace: bool) -> np.ndarray:
    """(2, H, W, 3) uint8: [image, overlay]; the no-trace form [image, image] when
    ``overlay`` is None or ``use_trace`` is False."""
    second = overlay if (use_trace and overlay is not None) else image
    return np.stack([image, second])


# --- proprio ------------------------------------------------------------------------
def normalize_proprio(proprio: np.ndarray, cfg: TransformConfig) -> np.ndarray:
    """(P,) float32 standardised joint positions; PolicyError on a wrong length or NaN."""
    p = np.asarray(proprio, dtype=np.float32).reshape(-1)
    if p.shape[0] != cfg.proprio_dim:
        raise PolicyError(f"proprio has {p.shape[0]} values; this checkpoint needs the "
                          f"{cfg.proprio_dim} JointState positions it was trained with "
                          f"(arm joints, then finger joints)")
    if not np.all(np.isfinite(p)):
        raise PolicyError("proprio (joint positions) contains NaN/inf")
    return ((p - np.asarray(cfg.proprio_mean, np.float32))
            / np.asarray(cfg.proprio_std, np.float32)).astype(np.float32)


# --- actions ------------------------------------------------------------------------
def _range(cfg: TransformConfig) -> tuple[np.ndarray, np.ndarray]:
    low = np.asarray(cfg.action_low, np.float64)
    high = np.asarray(cfg.action_high, np.float64)
    return low, np.maximum(high - low, _MIN_RANGE)


def normalize_action(action: np.ndarray, cfg: TransformConfig) -> np.ndarray:
    """(..., 7) actions -> [-1, 1] (clipped) float64."""
    low, width = _range(cfg)
    n = 2.0 * (np.asarray(action, np.float64) - low) / width - 1.0
    return np.clip(n, -1.0, 1.0)


def unnormalize_action(norm: np.ndarray, cfg: TransformConfig) -> np.ndarray:
    """(..., 7) values in [-1, 1] -> actions (float64)."""
    low, width = _range(cfg)
    return low + (np.asarray(norm, np.float64) + 1.0) * 0.5 * width


def action_to_bins(action: np.ndarray, cfg: TransformConfig) -> np.ndarray:
    """(..., 7) actions -> int64 bin indices in [0, action_bins)."""
    n = normalize_action(action, cfg)
    b = np.floor((n + 1.0) * 0.5 * cfg.action_bins).astype(np.int64)
    return np.clip(b, 0, cfg.action_bins - 1)


def bins_to_action(bins: np.ndarray, cfg: TransformConfig) -> np.ndarray:
    """(..., 7) bin indices -> float32 actions at the bin centres."""
    centre = -1.0 + (np.asarray(bins, np.float64) + 0.5) * (2.0 / cfg.action_bins)
    return unnormalize_action(centre, cfg).astype(np.float32)


def decode_logits(logits: np.ndarray, cfg: TransformConfig) -> np.ndarray:
    """(7, action_bins) logits of one step -> (1, 7) float32 action; PolicyError on NaN/inf."""
    z = np.asarray(logits)
    if z.shape != (ACTION_DIM, cfg.action_bins):
        raise PolicyError(f"model output shape {z.shape}, expected ({ACTION_DIM}, {cfg.action_bins})")
    if not np.all(np.isfinite(z)):
        dims = sorted({int(i) for i in np.argwhere(~np.isfinite(z))[:, 0]})
        raise PolicyError(f"model output has NaN/inf logits in action dims {dims}; no action "
                          f"is sent (a corrupt checkpoint or input?)")
    action = bins_to_action(z.argmax(axis=1), cfg).reshape(1, ACTION_DIM)
    action[:, GRIPPER] = np.clip(action[:, GRIPPER], 0.0, 1.0)
    return action


def action_stats(actions: np.ndarray, q: float = 0.01) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(action_low, action_high)``: per-dimension q / 1-q quantiles of (T, 7) training
    actions; the gripper is fixed to [0, 1]."""
    a = np.asarray(actions, np.float64).reshape(-1, ACTION_DIM)
    low = np.quantile(a, q, axis=0)
    high = np.quantile(a, 1.0 - q, axis=0)
    low[GRIPPER], high[GRIPPER] = 0.0, 1.0
    return tuple(float(v) for v in low), tuple(float(v) for v in high)


def proprio_stats(proprio: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` of (T, P) training proprio; std floored at 1e-3."""
    p = np.asarray(proprio, np.float64)
    return (tuple(float(v) for v in p.mean(axis=0)),
            tuple(float(v) for v in np.maximum(p.std(axis=0), 1e-3)))


# --- one observation ---------------------------------------------------------------
def observation_to_inputs(image: np.ndarray, overlay: np.ndarray | None, instruction: str,
                          proprio: Sequence[float] | np.ndarray,
                          cfg: TransformConfig) -> ModelInputs:
    """Validate and transform one observation (the backend's path; the trainer calls the
    same pieces on recorded episodes)."""
    image = check_frame(image, cfg, "image")
    if overlay is not None:
        overlay = check_frame(overlay, cfg, "overlay")
    words = encode_instruction(instruction, cfg)
    prop = normalize_proprio(np.asarray(proprio), cfg)
    s = cfg.image_size
    small = resize_image(image, s)
    small_overlay = resize_image(overlay, s) if overlay is not None else None
    return ModelInputs(images=trace_pair(small, small_overlay, cfg.use_trace), words=words,
                       proprio=prop)


# --- training only ------------------------------------------------------------------
def trace_dropout(images: np.ndarray, alpha: float, rng: np.random.Generator) -> np.ndarray:
    """TraceVLA trace dropout on a batch: with probability ``alpha`` per sample the
    overlay slot is replaced by the original image (the no-trace form).

    images: (B, 2, S, S, 3) uint8 [original, overlay] pairs, modified in place and returned.
    Samples whose overlay slot already holds the original (no valid trace) are unchanged.
    """
    drop = trace_dropout_mask(images.shape[0], alpha, rng)
    images[drop, 1] = images[drop, 0]
    return images


def trace_dropout_mask(batch: int, alpha: float, rng: np.random.Generator) -> np.ndarray:
    """(batch,) bool: which samples take the no-trace form (probability ``alpha`` each)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"trace dropout alpha must be in [0, 1], got {alpha}")
    return rng.random(batch) < alpha
