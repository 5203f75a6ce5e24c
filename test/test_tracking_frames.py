"""Image encodings and frame validation (the node's Image <-> numpy path, no ROS)."""

from __future__ import annotations

import numpy as np
import pytest

from tracevla_ros.tracking.frames import (
    EmptyFrameError,
    TrackerInputError,
    UnsupportedEncodingError,
    decode_image,
    encode_image,
    make_frame,
)


def _rgb(h: int = 5, w: int = 7) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_rgb8_roundtrip() -> None:
    img = _rgb()
    data, enc, step = encode_image(img)
    assert (enc, step) == ("rgb8", 21)
    np.testing.assert_array_equal(decode_image(data, 7, 5, enc, step), img)


def test_bgr8_is_converted_to_rgb() -> None:
    img = _rgb()
    bgr = np.ascontiguousarray(img[:, :, ::-1])
    np.testing.assert_array_equal(decode_image(bgr.tobytes(), 7, 5, "bgr8", 21), img)


def test_mono8_with_row_padding() -> None:
    gray = _rgb()[:, :, 0]
    padded = np.zeros((5, 8), np.uint8)
    padded[:, :7] = gray
    out = decode_image(padded.tobytes(), 7, 5, "mono8", 8)
    np.testing.assert_array_equal(out, gray)
    assert encode_image(gray)[1:] == ("mono8", 7)


def test_unsupported_encoding_names_what_to_publish() -> None:
    with pytest.raises(UnsupportedEncodingError, match="rgb8"):
        decode_image(b"\0" * 16, 2, 2, "yuv422", 4)


def test_empty_and_short_images() -> None:
    with pytest.raises(EmptyFrameError):
        decode_image(b"", 0, 0, "rgb8", 0)
    with pytest.raises(TrackerInputError, match="bytes"):
        decode_image(b"\0" * 10, 4, 4, "mono8", 4)
    with pytest.raises(EmptyFrameError):
        make_frame(np.zeros((0, 4, 3), np.uint8), 0.0, False)
    with pytest.raises(TrackerInputError, match="uint8"):
        make_frame(np.zeros((4, 4), np.float32), 0.0, False)
    with pytest.raises(TrackerInputError, match="shape"):
        make_frame(np.zeros((4, 4, 2), np.uint8), 0.0, False)


def test_frame_copies_the_callers_buffer() -> None:
    gray = np.full((4, 4), 7, np.uint8)
    frame = make_frame(gray, 1.0, keep_color=True)
    gray[:] = 0
    assert frame.gray.max() == 7 and frame.color is not None and frame.color.shape == (4, 4, 3)
