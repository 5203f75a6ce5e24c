"""Pixel-level visual prompts (PixelVLA) as plain Python (no rclpy).

One :class:`VisualPrompt` holds what ``tracevla_ros/msg/VisualPrompt`` carries:
points, line segments, boxes and an optional region mask, all for one image, in
normalized image coordinates (x = column / width, y = row / height, both in
[0, 1], origin top-left, x right, y down). Policies receive it in
``Observation.prompt``; the ROS conversion lives in the node layer.

    p = VisualPrompt(points=np.array([[0.4, 0.6]]), image_size=(640, 480), stamp=12.5)
    p.kinds()          # ("point",)
    p.pixel_points()   # (1, 2) float pixel coordinates for a (640, 480) image

Construction validates once: shapes, finiteness, coordinates inside [0, 1],
ordered boxes, a boolean mask of the image's size. A prompt with nothing in it
is refused (say "no prompt" with ``None``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["VisualPrompt", "PromptError", "PROMPT_KINDS"]

PROMPT_KINDS = ("point", "line", "box", "mask")


class PromptError(ValueError):
    """A visual prompt is malformed; the message names the part and the fix."""


def _coords(name: str, value: object, width: int) -> np.ndarray:
    arr = np.asarray(value if value is not None else np.zeros((0, width)), dtype=np.float32)
    if arr.size == 0:
        return np.zeros((0, width), np.float32)
    if arr.ndim == 1 and arr.size % width == 0:
        arr = arr.reshape(-1, width)
    if arr.ndim != 2 or arr.shape[1] != width:
        raise PromptError(f"prompt {name}: expected (N, {width}) normalized coordinates, "
                          f"got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise PromptError(f"prompt {name}: non-finite coordinate; give values in [0, 1]")
    if np.any((arr < 0.0) | (arr > 1.0)):
        raise PromptError(f"prompt {name}: coordinates must be normalized to [0, 1] "
                          f"(x = column / width, y = row / height), got min {arr.min():.3g} "
                          f"max {arr.max():.3g}")
    return arr


@dataclass(frozen=True, eq=False)
class VisualPrompt:
    """Points (P, 2), lines (L, 4), boxes (B, 4: x_min, y_min, x_max, y_max), an optional
    (H, W) bool mask, optional labels (points, lines, boxes order), the size in pixels of
    the image they were made on, and that image's stamp (s)."""

    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    lines: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    mask: np.ndarray | None = None
    image_size: tuple[int, int] = (0, 0)  # (width, height) in pixels; (0, 0) = unknown
    labels: tuple[str, ...] = ()
    stamp: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", _coords("points", self.points, 2))
        object.__setattr__(self, "lines", _coords("lines", self.lines, 4))
        boxes = _coords("boxes", self.boxes, 4)
        if np.any(boxes[:, 2] < boxes[:, 0]) or np.any(boxes[:, 3] < boxes[:, 1]):
            raise PromptError("prompt boxes: each box is (x_min, y_min, x_max, y_max) with "
                              "x_max >= x_min and y_max >= y_min")
        object.__setattr__(self, "boxes", boxes)
        w, h = (int(v) for v in self.image_size)
        if w < 0 or h < 0:
            raise PromptError(f"prompt image_size {self.image_size}: must be (width, height) >= 0")
        object.__setattr__(self, "image_size", (w, h))
        if self.mask is not None:
            m = np.asarray(self.mask)
            if m.ndim != 2 or m.size == 0:
                raise PromptError(f"prompt mask: expected an (H, W) array, got shape {m.shape}")
            if (w, h) != (0, 0) and m.shape != (h, w):
                raise PromptError(f"prompt mask is {m.shape[1]}x{m.shape[0]} but the image is "
                                  f"{w}x{h}; give a mask of the image's size")
            object.__setattr__(self, "mask", m.astype(bool))
            if (w, h) == (0, 0):
                object.__setattr__(self, "image_size", (m.shape[1], m.shape[0]))
        n_labels = len(self.points) + len(self.lines) + len(self.boxes)
        if self.labels and len(self.labels) != n_labels:
            raise PromptError(f"prompt labels: {len(self.labels)} given for {n_labels} "
                              "points + lines + boxes (give one each, or none)")
        object.__setattr__(self, "labels", tuple(str(s) for s in self.labels))
        if not self.kinds():
            raise PromptError("the prompt is empty: give at least one point, line, box or mask")
        if not np.isfinite(self.stamp):
            raise PromptError("prompt stamp must be finite")

    def kinds(self) -> tuple[str, ...]:
        """Which prompt types are present, in ``PROMPT_KINDS`` order."""
        have = (len(self.points) > 0, len(self.lines) > 0, len(self.boxes) > 0,
                self.mask is not None and bool(self.mask.any()))
        return tuple(k for k, h in zip(PROMPT_KINDS, have) if h)

    def _scale(self, width: int | None, height: int | None) -> np.ndarray:
        w = width if width is not None else self.image_size[0]
        h = height if height is not None else self.image_size[1]
        if w <= 0 or h <= 0:
            raise PromptError("pixel coordinates need the image size (width, height)")
        return np.array([w, h], np.float32)

    def pixel_points(self, width: int | None = None, height: int | None = None) -> np.ndarray:
        """(P, 2) points in pixels of a ``width`` x ``height`` image (default: its own size)."""
        return self.points * self._scale(width, height)

    def pixel_lines(self, width: int | None = None, height: int | None = None) -> np.ndarray:
        return self.lines * np.tile(self._scale(width, height), 2)

    def pixel_boxes(self, width: int | None = None, height: int | None = None) -> np.ndarray:
        return self.boxes * np.tile(self._scale(width, height), 2)

    def age(self, now: float) -> float:
        """Seconds between the prompt's image stamp and ``now``."""
        return float(now) - self.stamp
