"""Observation -> model inputs and model outputs -> action chunk for the small PixelVLA.

Shared by the trainer (``train.py``) and the backend (``backend.py``). The image,
instruction, proprio and action normalisation are the local policy's
(``tracevla_ros.policy.local.transforms``: ``TransformConfig`` with ``use_trace=False``);
this module adds what PixelVLA needs:

* the **prompt channel**: a :class:`VisualPrompt` rasterised at the model's S x S
  (uint8, 255 on the prompt, 0 elsewhere): points as filled discs of radius
  ``point_radius`` px, lines and box outlines ``line_px`` wide, the mask resized with
  :func:`mask_to_size` and filled. No prompt = an all-zero channel (the "no prompt"
  form, which prompt dropout trains);
* **chunk labels**: the actions of steps t .. t+H-1 of the episode (H = ``chunk``,
  padded with the episode's last action), normalised to [-1, 1] for the continuous
  L1 head or binned (256 bins) for the discrete head;
* **decoding**: continuous (H, 7) in [-1, 1] -> actions, or (H, 7, bins) logits ->
  the arg-max bin centres; the gripper is clipped to [0, 1].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from tracevla_ros.policy.base import PolicyError
from tracevla_ros.policy.local.transforms import (
    ACTION_DIM,
    GRIPPER,
    TransformConfig,
    bins_to_action,
    check_frame,
    encode_instruction,
    normalize_proprio,
    resize_image,
    unnormalize_action,
)
from tracevla_ros.policy.prompt import PROMPT_KINDS, VisualPrompt

__all__ = ["PixelConfig", "PixelInputs", "chunk_labels", "decode_output", "mask_to_size",
           "observation_to_inputs", "rasterize_prompt", "DECODERS"]

DECODERS = ("continuous", "discrete")


@dataclass(frozen=True)
class PixelConfig:
    """The PixelVLA-specific settings; saved as ``config.json["pixel"]``."""

    chunk: int = 8  # H: actions predicted per step
    decoder: str = "continuous"  # continuous (L1 on [-1, 1] actions) | discrete (256 bins)
    point_radius: int = 2  # px at the model size
    line_px: int = 2  # px at the model size
    prompt_kinds: tuple[str, ...] = PROMPT_KINDS  # kinds sampled in training

    def __post_init__(self) -> None:
        if self.chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {self.chunk}")
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.point_radius < 1 or self.line_px < 1:
            raise ValueError("point_radius and line_px must be >= 1 px")
        bad = [k for k in self.prompt_kinds if k not in PROMPT_KINDS]
        if bad or not self.prompt_kinds:
            raise ValueError(f"prompt_kinds must be a non-empty subset of {PROMPT_KINDS}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any, where: str = "pixel config") -> "PixelConfig":
        from tracetrain.config import from_dict

        return from_dict(cls, d, where, require_all=True)


@dataclass(frozen=True)
class PixelInputs:
    """One sample as the model takes it (numpy)."""

    image: np.ndarray  # (S, S, 3) uint8 RGB
    prompt: np.ndarray  # (S, S) uint8 prompt channel, all 0 = no prompt
    words: np.ndarray  # (max_words,) int64
    proprio: np.ndarray  # (P,) float32 standardised


def mask_to_size(mask: np.ndarray, size: int) -> np.ndarray:
    """(H, W) bool -> (size, size) bool: area-resized, a pixel is in when >= half covered
    (and the single most covered pixel when a small mask would vanish)."""
    m = np.asarray(mask, bool)
    if m.shape == (size, size):
        return m.copy()
    cover = cv2.resize(m.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    out = cover >= 0.5
    if m.any() and not out.any():
        out.flat[int(cover.argmax())] = True
    return out


def rasterize_prompt(prompt: VisualPrompt | None, size: int, cfg: PixelConfig) -> np.ndarray:
    """(size, size) uint8 channel with ``prompt`` drawn (255); zeros for None."""
    out = np.zeros((size, size), np.uint8)
    if prompt is None:
        return out
    if prompt.mask is not None:
        out[mask_to_size(prompt.mask, size)] = 255
    for x, y in prompt.pixel_points(size, size):
        cv2.circle(out, (int(round(x)), int(round(y))), cfg.point_radius, 255, -1)
    for x0, y0, x1, y1 in prompt.pixel_lines(size, size):
        cv2.line(out, (int(round(x0)), int(round(y0))), (int(round(x1)), int(round(y1))), 255,
                 cfg.line_px)
    for x0, y0, x1, y1 in prompt.pixel_boxes(size, size):
        cv2.rectangle(out, (int(round(x0)), int(round(y0))), (int(round(x1)), int(round(y1))),
                      255, cfg.line_px)
    return out


def chunk_labels(actions: np.ndarray, chunk: int) -> np.ndarray:
    """(T, 7) episode actions -> (T, chunk, 7): step t's actions t .. t+chunk-1, the last
    action repeated past the episode's end."""
    a = np.asarray(actions)
    idx = np.minimum(np.arange(a.shape[0])[:, None] + np.arange(chunk)[None, :], a.shape[0] - 1)
    return a[idx]


def observation_to_inputs(image: np.ndarray, prompt: VisualPrompt | None, instruction: str,
                          proprio: Any, tcfg: TransformConfig, pcfg: PixelConfig) -> PixelInputs:
    """Validate and transform one observation (the backend's path)."""
    image = check_frame(image, tcfg, "image")
    s = tcfg.image_size
    return PixelInputs(image=resize_image(image, s), prompt=rasterize_prompt(prompt, s, pcfg),
                       words=encode_instruction(instruction, tcfg),
                       proprio=normalize_proprio(np.asarray(proprio), tcfg))


def decode_output(out: np.ndarray, tcfg: TransformConfig, pcfg: PixelConfig) -> np.ndarray:
    """One sample's model output -> (chunk, 7) float32 actions; PolicyError on NaN/inf or a
    wrong shape. Continuous: (chunk, 7) in [-1, 1]; discrete: (chunk, 7, bins) logits."""
    z = np.asarray(out)
    want = (pcfg.chunk, ACTION_DIM) + ((tcfg.action_bins,) if pcfg.decoder == "discrete" else ())
    if z.shape != want:
        raise PolicyError(f"model output shape {z.shape}, expected {want}")
    if not np.all(np.isfinite(z)):
        raise PolicyError("model output has NaN/inf; no action is sent (a corrupt checkpoint?)")
    if pcfg.decoder == "discrete":
        actions = bins_to_action(z.argmax(axis=-1), tcfg)
    else:
        actions = unnormalize_action(np.clip(z, -1.0, 1.0), tcfg).astype(np.float32)
    actions[:, GRIPPER] = np.clip(actions[:, GRIPPER], 0.0, 1.0)
    return actions.astype(np.float32)
