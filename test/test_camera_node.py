"""camera_node over real DDS (loopback): folder and sim sources, and start-up failures."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from tracevla_ros.camera import CameraIntrinsics  # noqa: E402
from tracevla_ros.camera.sim import SimCamera  # noqa: E402
from tracevla_ros.nodes.camera_node import CameraNode  # noqa: E402
from tracevla_ros.nodes.common import SENSOR_QOS, stamp_to_sec  # noqa: E402
from tracevla_ros.ros_image import image_to_numpy, intrinsics_from_camera_info  # noqa: E402

pytestmark = pytest.mark.ros
REPO = Path(__file__).resolve().parent.parent


def _collect(params: dict[str, Any], topics: dict[str, type], done: Callable[[dict[str, list]], bool],
             camera: Any = None, timeout_s: float = 15.0) -> dict[str, list]:
    """Run camera_node + a listener until ``done(received)``; return what arrived per topic."""
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    got: dict[str, list] = {t: [] for t in topics}
    node = listener = None
    try:
        node = CameraNode(camera=camera, context=ctx,
                          parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        listener = rclpy.create_node("camera_listener", context=ctx)
        for topic, kind in topics.items():
            listener.create_subscription(kind, topic, got[topic].append, SENSOR_QOS)
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        ex.add_node(listener)
        deadline = time.monotonic() + timeout_s
        while not done(got) and time.monotonic() < deadline:
            ex.spin_once(timeout_sec=0.05)
        ex.shutdown()
    finally:
        if node is not None:
            node.close()
            node.destroy_node()
        if listener is not None:
            listener.destroy_node()
        rclpy.shutdown(context=ctx)
    return got


def test_folder_images_and_camera_info(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(3)]
    for i, f in enumerate(frames):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    t_start = time.time()
    got = _collect(
        {"backend": "folder", "path": str(tmp_path), "fps": 20.0, "width": 64, "height": 48,
         "intrinsics": [60.0, 61.0, 31.5, 23.5], "frame_id": "test_optical_frame"},
        {"image_raw": Image, "camera_info": CameraInfo},
        lambda g: len(g["image_raw"]) >= 6 and len(g["camera_info"]) >= 6,
    )
    images, infos = got["image_raw"], got["camera_info"]
    assert len(images) >= 6 and len(infos) >= 6, f"received {len(images)} images, {len(infos)} infos"
    info_stamps = {stamp_to_sec(m.header.stamp) for m in infos}
    indices = []
    for msg in images:
        assert msg.encoding == "rgb8" and msg.header.frame_id == "test_optical_frame"
        stamp = stamp_to_sec(msg.header.stamp)
        assert t_start - 1.0 < stamp < time.time() + 1.0  # capture time, time.time() timebase
        rgb = image_to_numpy(msg)
        match = [i for i, f in enumerate(frames) if np.array_equal(rgb, f)]
        assert len(match) == 1, "published pixels are not one of the PNGs, exactly"
        indices.append(match[0])
    # consecutive received frames follow the sorted file order (best effort may drop some)
    assert any((b - a) % 3 == 1 for a, b in zip(indices, indices[1:]))
    stamps = [stamp_to_sec(m.header.stamp) for m in images]
    assert stamps == sorted(stamps)
    # camera_info carries the image's capture stamp (best effort may drop either message early on)
    assert len(info_stamps & set(stamps)) >= 4
    intr = intrinsics_from_camera_info(infos[-1])
    assert intr == CameraIntrinsics(64, 48, 60.0, 61.0, 31.5, 23.5)
    assert infos[-1].header.frame_id == "test_optical_frame"


class _Sim:
    def render(self) -> np.ndarray:
        return np.full((6, 8, 3), 200, np.uint8)

    def render_depth(self) -> np.ndarray:
        d = np.full((6, 8), 1.25, np.float32)
        d[0, 0] = 0.0  # no measurement
        return d

    def camera_intrinsics(self) -> CameraIntrinsics:
        return CameraIntrinsics(8, 6, 10.0, 10.0, 3.5, 2.5)


@pytest.mark.parametrize("encoding", ["32FC1", "16UC1"])
def test_depth_topics(encoding: str) -> None:
    got = _collect(
        {"depth_encoding": encoding, "depth_frame_id": "test_depth_frame"},  # camera= replaces backend
        {"image_raw": Image, "depth/image_raw": Image, "depth/camera_info": CameraInfo},
        lambda g: all(len(v) >= 2 for v in g.values()),
        camera=SimCamera(_Sim(), fps=30.0),
    )
    depths, dinfos, images = got["depth/image_raw"], got["depth/camera_info"], got["image_raw"]
    assert len(depths) >= 2 and len(dinfos) >= 2
    d = depths[-1]
    assert d.encoding == encoding and d.header.frame_id == "test_depth_frame"
    arr = image_to_numpy(d)
    if encoding == "32FC1":
        assert arr.dtype == np.float32 and arr[1, 1] == np.float32(1.25)
    else:
        assert arr.dtype == np.uint16 and arr[1, 1] == 1250
    assert arr[0, 0] == 0
    assert dinfos[-1].header.frame_id == "test_depth_frame"
    assert intrinsics_from_camera_info(dinfos[-1]) == CameraIntrinsics(8, 6, 10.0, 10.0, 3.5, 2.5)
    image_stamps = {stamp_to_sec(m.header.stamp) for m in images}
    assert any(stamp_to_sec(m.header.stamp) in image_stamps for m in depths)


def _run_node(*ros_args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "tracevla_ros.nodes.camera_node", "--ros-args", *ros_args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=30)


def test_missing_device_exits_2_with_one_error_line(tmp_path: Path) -> None:
    r = _run_node("-p", "backend:=usb", "-p", "device:=/dev/video99")
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    assert len(errors) == 1 and "/dev/video99" in errors[0] and "no such device" in errors[0], lines
    (tmp_path / "empty").mkdir()
    r = _run_node("-p", "backend:=folder", "-p", f"path:={tmp_path / 'empty'}")
    assert r.returncode == 2
    assert "holds no" in r.stderr and str(tmp_path / "empty") in r.stderr


class _FlakySim(_Sim):
    """Fails reads 3..5 (an unplugged cable), then works again."""

    def __init__(self) -> None:
        self.calls = 0

    def render(self) -> np.ndarray:
        from tracevla_ros.camera import CameraError

        self.calls += 1
        if 3 <= self.calls <= 5:
            raise CameraError("sim camera unplugged")
        return super().render()


def test_read_errors_reconnect_and_keep_publishing(capfd: pytest.CaptureFixture[str]) -> None:
    sim = _FlakySim()
    got = _collect({"reconnect_period_s": 0.02}, {"image_raw": Image},
                   lambda g: len(g["image_raw"]) >= 6, camera=SimCamera(sim, with_depth=False, fps=50.0))
    assert len(got["image_raw"]) >= 6
    assert sim.calls >= 8  # reads went on after the failures
    err = capfd.readouterr().err
    assert err.count("sim camera unplugged") == 1, err  # one line per outage, not per retry
    assert err.count("recovered") == 1, err
