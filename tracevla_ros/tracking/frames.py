"""Camera frames for the tracker: validation, encodings, a per-frame cache.

Images are numpy arrays, OpenCV pixel convention (x right, y down, centre of
the top-left pixel at (0, 0)): colour ``(H, W, 3) uint8`` in RGB order, or
grey ``(H, W) uint8``. ``decode_image``/``encode_image`` translate raw
``sensor_msgs/Image`` fields (rgb8, bgr8, mono8) without cv_bridge or rclpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

__all__ = [
    "TrackerInputError",
    "UnsupportedEncodingError",
    "EmptyFrameError",
    "Frame",
    "make_frame",
    "decode_image",
    "encode_image",
    "SUPPORTED_ENCODINGS",
]

SUPPORTED_ENCODINGS = ("rgb8", "bgr8", "mono8")


class TrackerInputError(ValueError):
    """A frame the tracker cannot use; the message says what was wrong."""


class UnsupportedEncodingError(TrackerInputError):
    """An image encoding other than rgb8, bgr8 or mono8."""


class EmptyFrameError(TrackerInputError):
    """A zero-sized image."""


@dataclass
class Frame:
    """One camera frame as the tracker keeps it.

    ``gray`` is what tracking uses; ``color`` (RGB) is kept only when the
    backend needs it. ``cache`` holds backend data computed once per frame
    (e.g. the LK image pyramid), so a frame tracked at camera rate and later
    reused in the dense re-query is not processed twice.
    """

    gray: np.ndarray  # (H, W) uint8
    color: np.ndarray | None  # (H, W, 3) uint8 RGB, or None
    stamp: float  # seconds, camera clock
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.gray.shape[1]), int(self.gray.shape[0])


def check_image(image: Any) -> np.ndarray:
    """Validate a tracker input image; returns it as an ndarray or raises TrackerInputError."""
    if not isinstance(image, np.ndarray):
        raise TrackerInputError(f"frame must be a numpy array, got {type(image).__name__}")
    if image.size == 0:
        raise EmptyFrameError(f"empty frame of shape {image.shape}; skip it at the source")
    if image.dtype != np.uint8:
        raise TrackerInputError(f"frame dtype must be uint8, got {image.dtype}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3)):
        return image
    raise TrackerInputError(
        f"frame must be (H, W) grey or (H, W, 3) RGB, got shape {image.shape}")


def make_frame(image: np.ndarray, stamp: float, keep_color: bool) -> Frame:
    """A validated ``Frame`` (grey conversion done once here)."""
    image = check_image(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    # Copies: the tracker keeps frames, the caller may reuse its buffer.
    if image.ndim == 2:
        gray = image.copy()
        color = cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB) if keep_color else None
    else:
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        color = image.copy() if keep_color else None
    return Frame(gray=gray, color=color, stamp=float(stamp))


def decode_image(data: bytes | bytearray | memoryview | np.ndarray, width: int, height: int,
                 encoding: str, step: int) -> np.ndarray:
    """Raw ``sensor_msgs/Image`` fields -> ``(H, W, 3)`` RGB or ``(H, W)`` grey uint8.

    Copies the data (the result never aliases the message). Raises
    UnsupportedEncodingError for encodings other than rgb8/bgr8/mono8,
    EmptyFrameError for a 0 x 0 image, TrackerInputError for a short buffer.
    """
    if encoding not in SUPPORTED_ENCODINGS:
        raise UnsupportedEncodingError(
            f"image encoding '{encoding}' is not supported; publish one of "
            f"{list(SUPPORTED_ENCODINGS)} (e.g. set the camera driver's pixel format)")
    if width <= 0 or height <= 0:
        raise EmptyFrameError(f"empty image {width}x{height}")
    channels = 1 if encoding == "mono8" else 3
    row = width * channels
    if step < row:
        raise TrackerInputError(f"image step {step} < width*channels = {row}")
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) \
        else data.reshape(-1).view(np.uint8)
    if buf.size < step * height:
        raise TrackerInputError(
            f"image data has {buf.size} bytes, expected step*height = {step * height}")
    rows = buf[: step * height].reshape(height, step)[:, :row]
    if channels == 1:
        return np.ascontiguousarray(rows).reshape(height, width)
    img = rows.reshape(height, width, 3)
    if encoding == "bgr8":
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(img)


def encode_image(image: np.ndarray) -> tuple[bytes, str, int]:
    """``(H, W, 3)`` RGB or ``(H, W)`` grey uint8 -> (data, encoding, step) for sensor_msgs/Image."""
    image = check_image(image)
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image).tobytes(), "rgb8", int(image.shape[1]) * 3
    gray = image.reshape(image.shape[0], image.shape[1])
    return np.ascontiguousarray(gray).tobytes(), "mono8", int(gray.shape[1])
