"""sensor_msgs/Image and CameraInfo conversions without cv_bridge."""

from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from tracevla_ros.camera import CameraIntrinsics
from tracevla_ros.ros_image import (
    SUPPORTED_ENCODINGS,
    ImageEncodingError,
    ImageSizeError,
    camera_info_msg,
    image_to_numpy,
    image_to_rgb,
    intrinsics_from_camera_info,
    numpy_to_image,
)

rng = np.random.default_rng(0)
ARRAYS: dict[str, np.ndarray] = {
    "rgb8": rng.integers(0, 256, (5, 7, 3), dtype=np.uint8),
    "bgr8": rng.integers(0, 256, (5, 7, 3), dtype=np.uint8),
    "mono8": rng.integers(0, 256, (5, 7), dtype=np.uint8),
    "16UC1": rng.integers(0, 65536, (5, 7), dtype=np.uint16),
    "32FC1": rng.standard_normal((5, 7)).astype(np.float32),
}


@pytest.mark.parametrize("encoding", SUPPORTED_ENCODINGS)
def test_round_trip(encoding: str) -> None:
    arr = ARRAYS[encoding]
    header = Header(frame_id="cam")
    header.stamp.sec = 12
    msg = numpy_to_image(arr, encoding, header)
    assert (msg.height, msg.width, msg.encoding) == (5, 7, encoding)
    assert msg.step == 7 * arr.itemsize * (3 if arr.ndim == 3 else 1)
    assert msg.header.frame_id == "cam" and msg.header.stamp.sec == 12
    back = image_to_numpy(msg)
    assert back.dtype == arr.dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)


def _raw(encoding: str, rows: list[bytes], h: int, w: int, step: int, big: bool = False) -> Image:
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=big, step=step)
    msg.data = b"".join(rows)
    return msg


@pytest.mark.parametrize("encoding", SUPPORTED_ENCODINGS)
def test_padded_step(encoding: str) -> None:
    arr = ARRAYS[encoding]
    pad = 5  # odd padding per row
    rows = [arr[r].tobytes() + b"\xab" * pad for r in range(arr.shape[0])]
    row_bytes = len(arr[0].tobytes())
    msg = _raw(encoding, rows, arr.shape[0], arr.shape[1], row_bytes + pad)
    np.testing.assert_array_equal(image_to_numpy(msg), arr)


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_big_endian(encoding: str) -> None:
    arr = ARRAYS[encoding]
    big = arr.astype(arr.dtype.newbyteorder(">"))
    msg = _raw(encoding, [big.tobytes()], arr.shape[0], arr.shape[1], arr.shape[1] * arr.itemsize,
               big=True)
    out = image_to_numpy(msg)
    assert out.dtype == arr.dtype  # native order again
    np.testing.assert_array_equal(out, arr)


def test_to_rgb_from_each_colour_encoding() -> None:
    rgb = ARRAYS["rgb8"]
    np.testing.assert_array_equal(image_to_rgb(numpy_to_image(rgb, "rgb8")), rgb)
    np.testing.assert_array_equal(image_to_rgb(numpy_to_image(rgb[:, :, ::-1].copy(), "bgr8")), rgb)
    mono = ARRAYS["mono8"]
    np.testing.assert_array_equal(image_to_rgb(numpy_to_image(mono, "mono8")), np.stack([mono] * 3, -1))
    with pytest.raises(ImageEncodingError, match="not a colour encoding"):
        image_to_rgb(numpy_to_image(ARRAYS["16UC1"], "16UC1"))


def test_unsupported_encoding_and_wrong_array() -> None:
    msg = Image(height=1, width=1, encoding="yuv422", step=2)
    msg.data = b"\x00\x00"
    with pytest.raises(ImageEncodingError, match=r"'yuv422' is not supported; supported: \['rgb8'"):
        image_to_numpy(msg)
    with pytest.raises(ImageEncodingError, match="bayer_rggb8"):
        numpy_to_image(np.zeros((2, 2), np.uint8), "bayer_rggb8")
    with pytest.raises(ImageEncodingError, match=r"needs a \(H, W\) uint16"):
        numpy_to_image(np.zeros((2, 2), np.float32), "16UC1")
    with pytest.raises(ImageEncodingError, match=r"needs a \(H, W, 3\) uint8"):
        numpy_to_image(np.zeros((2, 2), np.uint8), "rgb8")


def test_size_mismatch() -> None:
    msg = numpy_to_image(ARRAYS["rgb8"], "rgb8")
    msg.data = bytes(msg.data)[:-1]
    with pytest.raises(ImageSizeError, match=r"104 bytes, height\*step = 5\*21 = 105"):
        image_to_numpy(msg)
    short_step = numpy_to_image(ARRAYS["16UC1"], "16UC1")
    short_step.step = 7
    with pytest.raises(ImageSizeError, match="step 7 < width"):
        image_to_numpy(short_step)


def test_camera_info_round_trip() -> None:
    intr = CameraIntrinsics(640, 480, fx=600.5, fy=601.5, cx=320.25, cy=240.75,
                            distortion_model="plumb_bob", coeffs=(0.1, -0.05, 0.001, 0.002, 0.0))
    header = Header(frame_id="camera_color_optical_frame")
    msg = camera_info_msg(intr, header)
    assert isinstance(msg, CameraInfo)
    assert msg.header.frame_id == "camera_color_optical_frame"
    assert (msg.width, msg.height, msg.distortion_model) == (640, 480, "plumb_bob")
    np.testing.assert_array_equal(np.reshape(msg.k, (3, 3)), intr.k)
    np.testing.assert_array_equal(np.reshape(msg.r, (3, 3)), np.eye(3))
    np.testing.assert_array_equal(np.reshape(msg.p, (3, 4)), np.hstack([intr.k, np.zeros((3, 1))]))
    assert intrinsics_from_camera_info(msg) == intr

    plain = CameraIntrinsics(64, 48, fx=50.0, fy=50.0, cx=31.5, cy=23.5)
    pm = camera_info_msg(plain)
    assert pm.distortion_model == "plumb_bob" and list(pm.d) == [0.0] * 5
    assert intrinsics_from_camera_info(pm) == plain

    unk = camera_info_msg(None, width=320, height=240)
    assert (unk.width, unk.height) == (320, 240) and not any(unk.k)
    assert intrinsics_from_camera_info(unk) is None
