"""Image preparation for the OpenVLA-family checkpoints (numpy + Pillow, no torch).

The training data (RLDS) stored JPEG frames resized to the model's input size
with TF ``resize(method="lanczos3", antialias=True)``; the authors' inference
repeats that: JPEG encode/decode, then an antialiased Lanczos-3 resize. Here
the same steps use Pillow (JPEG quality 95 with 4:2:0 chroma as TF's default,
``Image.LANCZOS``, which widens its kernel when shrinking, as TF's antialias
does); results match TF to a few grey levels, not bit for bit.

Per model (all arrays (S, S, 3) uint8 RGB):

- TraceVLA-7B: image -> 256 x 256; the overlay (the same frame with the trace
  drawn) is taken as is when already 256 x 256, else resized to 256; without a
  valid trace the second image is the first one. The processor then goes to 224.
- TraceVLA-Phi3V: as above at 256, then both -> 336 (JPEG + Lanczos again).
- OpenVLA: image -> 224 x 224, one image.

Non-square frames are squashed, not cropped, as in the training data.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from tracevla_ros.policy.base import PolicyError

__all__ = [
    "TRACE_SIZE",
    "MIN_SIDE",
    "check_rgb",
    "jpeg_roundtrip",
    "resize_lanczos",
    "rlds_resize",
    "prepare_pair",
]

TRACE_SIZE = 256  # px, the resolution the authors resize to and draw the trace at
MIN_SIDE = 32  # px, smaller frames carry too little to resize up from
JPEG_QUALITY = 95  # TF encode_jpeg's default


def check_rgb(image: np.ndarray, what: str = "image") -> np.ndarray:
    """Return ``image`` if it is (H, W, 3) uint8 with both sides >= MIN_SIDE, else PolicyError."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 \
            or image.dtype != np.uint8:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise PolicyError(f"{what} must be (H, W, 3) uint8 RGB, got {shape} {dtype}")
    if min(image.shape[:2]) < MIN_SIDE:
        raise PolicyError(f"{what} is {image.shape[1]}x{image.shape[0]} px; the VLA backends need "
                          f">= {MIN_SIDE} px per side")
    return image


def jpeg_roundtrip(image: np.ndarray, quality: int = JPEG_QUALITY) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> the same after JPEG encode + decode."""
    buf = io.BytesIO()
    Image.fromarray(check_rgb(image)).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def resize_lanczos(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8, antialiased Lanczos-3 (unchanged if already that size)."""
    image = check_rgb(image)
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS),
                      dtype=np.uint8)


def rlds_resize(image: np.ndarray, size: int) -> np.ndarray:
    """The training-data pipeline: JPEG round trip, then Lanczos to (size, size)."""
    out = jpeg_roundtrip(image)
    if out.shape[:2] == (size, size):
        return out
    return np.asarray(Image.fromarray(out).resize((size, size), Image.Resampling.LANCZOS),
                      dtype=np.uint8)


def prepare_pair(image: np.ndarray, overlay: np.ndarray | None,
                 size: int = TRACE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """The two images of a trace model at ``size``: (frame, frame with trace or frame again).

    image:   (H, W, 3) uint8 RGB camera frame.
    overlay: (H', W', 3) uint8 RGB, the trace drawn on that frame, or None (no valid trace).
    """
    first = rlds_resize(image, size)
    if overlay is None:
        return first, first
    return first, resize_lanczos(check_rgb(overlay, "overlay"), size)
