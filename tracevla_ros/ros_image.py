"""sensor_msgs/Image <-> numpy and CameraInfo <-> CameraIntrinsics, without cv_bridge.

Imports ROS message types only (no rclpy node API), so tools and tests can
use it. Supported encodings and their arrays:

=========  =====================  ==========================================
encoding   array                  meaning
=========  =====================  ==========================================
rgb8       (H, W, 3) uint8        colour, R G B
bgr8       (H, W, 3) uint8        colour, B G R (as stored; not swapped)
mono8      (H, W) uint8           grey
16UC1      (H, W) uint16          depth in millimetres (REP 118)
32FC1      (H, W) float32         depth in metres (REP 118)
=========  =====================  ==========================================

``image_to_numpy`` honours ``step`` (row padding) and ``is_bigendian``;
``numpy_to_image`` writes tightly packed rows in native (little) endianness.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from sensor_msgs.msg import CameraInfo, Image

from tracevla_ros.camera.base import CameraIntrinsics

__all__ = [
    "ImageConversionError",
    "ImageEncodingError",
    "ImageSizeError",
    "SUPPORTED_ENCODINGS",
    "image_to_numpy",
    "image_to_rgb",
    "numpy_to_image",
    "camera_info_msg",
    "intrinsics_from_camera_info",
]

# encoding -> (dtype, channels)
_ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "mono8": (np.dtype(np.uint8), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_ENCODINGS)


class ImageConversionError(ValueError):
    """An Image message or array cannot be converted."""


class ImageEncodingError(ImageConversionError):
    """The encoding is not one of SUPPORTED_ENCODINGS, or the array does not fit it."""


class ImageSizeError(ImageConversionError):
    """width/height/step and the data length disagree."""


def _spec(encoding: str) -> tuple[np.dtype, int]:
    try:
        return _ENCODINGS[encoding]
    except KeyError:
        raise ImageEncodingError(
            f"image encoding '{encoding}' is not supported; supported: {list(SUPPORTED_ENCODINGS)}"
        ) from None


def image_to_numpy(msg: Any) -> np.ndarray:
    """Image -> array shaped as in the module table (a copy, native byte order)."""
    dtype, channels = _spec(msg.encoding)
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = w * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageSizeError(f"image {w}x{h} {msg.encoding}: step {step} < width*channels*bytes "
                             f"= {row_bytes}")
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if buf.size != h * step:
        raise ImageSizeError(f"image {w}x{h} {msg.encoding}: data has {buf.size} bytes, "
                             f"height*step = {h}*{step} = {h * step}")
    rows = buf.reshape(h, step)[:, :row_bytes]
    src = dtype.newbyteorder(">" if msg.is_bigendian else "<") if dtype.itemsize > 1 else dtype
    arr = np.ascontiguousarray(rows).view(src).reshape((h, w, channels) if channels > 1 else (h, w))
    return arr.astype(dtype, copy=True)  # native order, owns its memory


def image_to_rgb(msg: Any) -> np.ndarray:
    """rgb8 / bgr8 / mono8 Image -> (H, W, 3) uint8 RGB."""
    arr = image_to_numpy(msg)
    if msg.encoding == "rgb8":
        return arr
    if msg.encoding == "bgr8":
        return np.ascontiguousarray(arr[:, :, ::-1])
    if msg.encoding == "mono8":
        return np.repeat(arr[:, :, None], 3, axis=2)
    raise ImageEncodingError(f"image encoding '{msg.encoding}' is not a colour encoding; "
                             f"use rgb8, bgr8 or mono8")


def numpy_to_image(arr: np.ndarray, encoding: str, header: Any = None) -> Image:
    """Array (see module table) -> Image with tightly packed rows."""
    dtype, channels = _spec(encoding)
    a = np.asarray(arr)
    want = "(H, W, 3)" if channels == 3 else "(H, W)"
    ok_shape = (a.ndim == 3 and a.shape[2] == 3) if channels == 3 else a.ndim == 2
    if not ok_shape or a.dtype != dtype:
        raise ImageEncodingError(f"encoding '{encoding}' needs a {want} {dtype} array, got "
                                 f"shape {a.shape} dtype {a.dtype}")
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(a.shape[0]), int(a.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = sys.byteorder == "big"
    msg.step = msg.width * channels * dtype.itemsize
    msg.data = np.ascontiguousarray(a).tobytes()
    return msg


def camera_info_msg(intrinsics: CameraIntrinsics | None, header: Any = None,
                    width: int = 0, height: int = 0) -> CameraInfo:
    """CameraIntrinsics -> CameraInfo (K, P = [K | 0], R = I, D, distortion model).

    ``None`` (uncalibrated) gives the ROS convention: K, P, R all zero, with
    ``width``/``height`` filled in. Model ``none`` is written as plumb_bob
    with zero coefficients.
    """
    msg = CameraInfo()
    if header is not None:
        msg.header = header
    if intrinsics is None:
        msg.width, msg.height = int(width), int(height)
        msg.distortion_model = "plumb_bob"
        msg.d = [0.0] * 5
        return msg
    i = intrinsics
    msg.width, msg.height = i.width, i.height
    if i.distortion_model == "none":
        msg.distortion_model, msg.d = "plumb_bob", [0.0] * 5
    else:
        msg.distortion_model, msg.d = i.distortion_model, [float(c) for c in i.coeffs]
    msg.k = [i.fx, 0.0, i.cx, 0.0, i.fy, i.cy, 0.0, 0.0, 1.0]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [i.fx, 0.0, i.cx, 0.0, 0.0, i.fy, i.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


def intrinsics_from_camera_info(msg: Any) -> CameraIntrinsics | None:
    """CameraInfo -> CameraIntrinsics from K and D; None if uncalibrated (K[0] == 0).

    All-zero plumb_bob coefficients read back as model ``none``.
    """
    k = [float(v) for v in msg.k]
    if k[0] == 0.0:
        return None
    coeffs = tuple(float(c) for c in msg.d)
    model = str(msg.distortion_model) or "none"
    if model == "plumb_bob" and not any(coeffs):
        model, coeffs = "none", ()
    return CameraIntrinsics(width=int(msg.width), height=int(msg.height), fx=k[0], fy=k[4],
                            cx=k[2], cy=k[5], distortion_model=model, coeffs=coeffs)
