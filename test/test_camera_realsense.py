"""RealSense backend driven by rs.software_device: no hardware, never pipeline.start()."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

rs = pytest.importorskip("pyrealsense2", reason="pip install pyrealsense2==2.59.1.11053")

from tracevla_ros.camera import CameraConfig, CameraNotFoundError, CameraOpenError, make_camera  # noqa: E402
from tracevla_ros.camera._realsense_fake import SoftwareRealSense  # noqa: E402
from tracevla_ros.camera.realsense import (  # noqa: E402
    RealSenseCamera,
    RealSenseFrameProcessor,
    depth_scale_of,
    intrinsics_from_rs,
    select_device,
)

H, W = 48, 64


@pytest.fixture
def fake() -> Any:
    dev = SoftwareRealSense(width=W, height=H, fx=52.0, fy=53.0, cx=31.25, cy=23.75,
                            depth_units=0.0001, serial="123456789012")
    yield dev
    dev.close()


def _images(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
            rng.integers(1, 60000, (H, W), dtype=np.uint16))


def test_unaligned_frames_are_byte_exact_and_scaled(fake: SoftwareRealSense) -> None:
    scale = depth_scale_of(fake.device)
    assert scale == pytest.approx(1e-4)
    proc = RealSenseFrameProcessor(scale, align=False)
    for i in range(3):
        rgb, z16 = _images(i)
        t_ms = 1.7e12 + 33.0 * i
        out_rgb, depth, stamp, intr = proc.process(fake.inject(rgb, z16, timestamp_ms=t_ms))
        np.testing.assert_array_equal(out_rgb, rgb)
        assert depth is not None and depth.dtype == np.float32 and depth.shape == (H, W)
        np.testing.assert_allclose(depth, z16.astype(np.float64) * scale, rtol=1e-6)
        assert stamp == pytest.approx(t_ms / 1000.0, abs=1e-6)  # system_time domain: epoch ms
    assert (intr.width, intr.height, intr.fx, intr.fy, intr.cx, intr.cy) == (W, H, 52.0, 53.0, 31.25, 23.75)
    assert intr.distortion_model == "none"


def test_aligned_depth_matches_injected(fake: SoftwareRealSense) -> None:
    """Identity extrinsics and equal intrinsics: rs.align keeps each depth where it was.

    rs.align splats pixel footprints, so a few pixels take a neighbour's value or stay
    empty (0); every filled pixel must be the true value or a direct neighbour's.
    """
    proc = RealSenseFrameProcessor(depth_scale_of(fake.device), align=True)
    yy, xx = np.mgrid[0:H, 0:W]
    z16 = (8000 + 30 * xx + 20 * yy).astype(np.uint16)  # a tilted plane, 0.8 m .. 1.07 m
    rgb, _ = _images(7)
    out_rgb, depth, _, _ = proc.process(fake.inject(rgb, z16, timestamp_ms=1.7e12))
    np.testing.assert_array_equal(out_rgb, rgb)
    assert depth is not None
    units = np.rint(depth / 1e-4).astype(np.int64)
    filled = units > 0
    assert filled.mean() > 0.85
    assert np.abs(units[filled] - z16[filled]).max() <= 30 + 20


def test_colour_only_device() -> None:
    only = SoftwareRealSense(width=W, height=H, with_depth=False)
    try:
        with pytest.raises(CameraOpenError, match="has no depth stream"):
            depth_scale_of(only.device)
        rgb, _ = _images(3)
        out_rgb, depth, _, _ = RealSenseFrameProcessor(None).process(only.inject(rgb, timestamp_ms=5.0))
        np.testing.assert_array_equal(out_rgb, rgb)
        assert depth is None
    finally:
        only.close()


def test_intrinsics_distortion_mapping() -> None:
    i = rs.intrinsics()
    i.width, i.height, i.fx, i.fy, i.ppx, i.ppy = 640, 480, 600.0, 601.0, 320.0, 240.0
    i.model, i.coeffs = rs.distortion.inverse_brown_conrady, [0.1, -0.2, 0.001, 0.002, 0.03]
    c = intrinsics_from_rs(i)
    assert c.distortion_model == "plumb_bob"
    assert c.coeffs == pytest.approx((0.1, -0.2, 0.001, 0.002, 0.03))


class _Context:
    """rs.context stand-in: query_devices() returns the given devices."""

    def __init__(self, devices: list[Any]) -> None:
        self.devices = devices

    def query_devices(self) -> list[Any]:
        return self.devices


def test_discovery_errors_are_immediate(fake: SoftwareRealSense) -> None:
    with pytest.raises(CameraNotFoundError, match=r"no RealSense device found \(serial=any\)"):
        RealSenseCamera(context_factory=lambda: _Context([])).connect()
    with pytest.raises(CameraNotFoundError, match=r"serial=999.*connected: \['123456789012'\]"):
        RealSenseCamera(serial="999", context_factory=lambda: _Context([fake.device])).connect()
    only = SoftwareRealSense(width=W, height=H, with_depth=False)
    try:
        with pytest.raises(CameraOpenError, match="has no depth stream"):
            RealSenseCamera(context_factory=lambda: _Context([only.device])).connect()
    finally:
        only.close()
    assert select_device([fake.device], "123456789012") is fake.device


def test_real_context_without_camera_fails_fast() -> None:
    if len(rs.context().query_devices()) > 0:
        pytest.skip("a RealSense is connected; this test checks the no-device path")
    with pytest.raises(CameraNotFoundError, match="no RealSense device found"):
        make_camera(CameraConfig(backend="realsense", device="")).connect()
