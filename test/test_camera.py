"""Camera library: interface, config, and the usb / video / folder / sim backends (no ROS)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tracevla_ros.camera import (
    CameraConfig,
    CameraError,
    CameraIntrinsics,
    CameraNotFoundError,
    CameraOpenError,
    CameraTimeoutError,
    EndOfStreamError,
    NoFrameError,
    available_backends,
    depth_to_mm16,
    make_camera,
    mm16_to_depth,
)
from tracevla_ros.camera.folder import FolderCamera
from tracevla_ros.camera.sim import SimCamera
from tracevla_ros.camera.usb import UsbCamera, resolve_device
from tracevla_ros.camera.video import VideoFileCamera
from tracevla_ros.config import ConfigError


def _frames(n: int, h: int = 48, w: int = 64) -> list[np.ndarray]:
    """n distinct RGB images: flat colours far apart, so lossy codecs keep them apart."""
    out = []
    for i in range(n):
        img = np.zeros((h, w, 3), np.uint8)
        img[:] = (40 * i % 256, 255 - 40 * i % 256, 128)
        img[: h // 2, : w // 2] = (255, 0, 0)  # red top-left quadrant: checks RGB order
        out.append(img)
    return out


# -- interface helpers --------------------------------------------------------------
def test_depth_mm16_round_trip_and_invalid() -> None:
    d = np.array([[0.0, 0.0004, 0.0006, 1.2344], [np.nan, -1.0, 65.535, 70.0]], np.float32)
    mm = depth_to_mm16(d)
    assert mm.dtype == np.uint16
    assert mm.tolist() == [[0, 0, 1, 1234], [0, 0, 65535, 0]]
    back = mm16_to_depth(np.array([[0, 1, 1500]], np.uint16))
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, [[0.0, 0.001, 1.5]], rtol=1e-6)


def test_intrinsics_scaled_keeps_pixel_centres() -> None:
    i = CameraIntrinsics(640, 480, fx=600.0, fy=610.0, cx=319.5, cy=239.5)
    s = i.scaled(320, 240)
    assert (s.fx, s.fy, s.cx, s.cy) == (300.0, 305.0, 159.5, 119.5)
    np.testing.assert_array_equal(i.k, [[600, 0, 319.5], [0, 610, 239.5], [0, 0, 1]])
    with pytest.raises(ValueError, match="fx, fy"):
        CameraIntrinsics(640, 480, fx=0.0, fy=1.0, cx=0.0, cy=0.0)


# -- config and registry --------------------------------------------------------------
def test_backends_are_files_and_unknown_is_a_config_error() -> None:
    assert {"usb", "realsense", "video", "folder", "sim"} <= set(available_backends())
    with pytest.raises(ConfigError, match="backend.*must be one of"):
        CameraConfig(backend="kinect")
    with pytest.raises(ConfigError, match="depth_encoding"):
        CameraConfig(depth_encoding="16UC3")
    with pytest.raises(ConfigError, match="device"):
        CameraConfig(backend="usb", device="video0")
    with pytest.raises(ConfigError, match="path"):
        CameraConfig(backend="folder", path="")
    with pytest.raises(ConfigError, match="intrinsics"):
        CameraConfig(intrinsics=(1.0, 2.0))
    with pytest.raises(ConfigError, match="renderer"):
        make_camera(CameraConfig(backend="sim"))


# -- usb: every wrong device is one clear, fast error ------------------------------------
@pytest.mark.parametrize("device", ["/dev/video99", 99, "99"])
def test_usb_missing_device_fails_fast(device: int | str) -> None:
    with pytest.raises(CameraNotFoundError, match=r"/dev/video99: no such device"):
        UsbCamera(device=device).connect()


def test_usb_regular_file_is_not_a_camera(tmp_path: Path) -> None:
    f = tmp_path / "video0"
    f.write_bytes(b"not a camera")
    cam = make_camera(CameraConfig(backend="usb", device=str(f)))
    with pytest.raises(CameraOpenError, match="not a character device"):
        cam.connect()
    assert not cam.is_connected


def test_usb_char_device_that_is_not_a_camera() -> None:
    # /dev/null exists and is a character device, but V4L2 cannot capture from it
    if not os.path.exists("/dev/null"):
        pytest.skip("no /dev/null")
    assert resolve_device("/dev/null") == "/dev/null"
    with pytest.raises(CameraError, match="/dev/null"):
        UsbCamera(device="/dev/null", open_timeout_s=3.0).connect()


class _FakeCapture:
    """cv2.VideoCapture stand-in: BGR frames of a fixed size, optional slow open."""

    open_delay_s = 0.0
    opened = True

    def __init__(self, path: str, api: int) -> None:
        time.sleep(self.open_delay_s)
        self.path, self.api, self.released = path, api, False
        self.props: dict[int, float] = {}

    def isOpened(self) -> bool:
        return self.opened

    def set(self, prop: int, value: float) -> bool:
        self.props[prop] = value
        return True

    def get(self, prop: int) -> float:
        return {cv2.CAP_PROP_FRAME_WIDTH: 32.0, cv2.CAP_PROP_FRAME_HEIGHT: 24.0}.get(prop, 0.0)

    def read(self) -> tuple[bool, np.ndarray]:
        bgr = np.zeros((24, 32, 3), np.uint8)
        bgr[..., 0] = 255  # blue in BGR
        return True, bgr

    def release(self) -> None:
        self.released = True


def _fake_v4l2(monkeypatch: pytest.MonkeyPatch, cls: type) -> None:
    import tracevla_ros.camera.usb as usb

    monkeypatch.setattr(usb, "resolve_device", lambda device: "/dev/video42")
    monkeypatch.setattr(usb.cv2, "VideoCapture", cls)


def test_usb_reads_rgb_through_v4l2(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_v4l2(monkeypatch, _FakeCapture)
    cfg = CameraConfig(backend="usb", device="42", width=64, height=48, fps=15.0,
                       intrinsics=(60.0, 60.0, 31.5, 23.5))
    with make_camera(cfg) as cam:
        cap = cam._cap  # type: ignore[attr-defined]
        assert cap.api == cv2.CAP_V4L2 and cap.props[cv2.CAP_PROP_FPS] == 15.0
        f = cam.read()
    assert cap.released
    assert f.rgb.shape == (24, 32, 3) and f.rgb[0, 0].tolist() == [0, 0, 255]  # BGR -> RGB
    # intrinsics given at 64x48 are rescaled to the 32x24 the device really delivers
    assert f.intrinsics == CameraIntrinsics(32, 24, 30.0, 30.0, 15.5, 11.5)


def test_usb_open_is_time_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    class Slow(_FakeCapture):
        open_delay_s = 3.0

    class Refused(_FakeCapture):
        opened = False

    _fake_v4l2(monkeypatch, Slow)
    with pytest.raises(CameraTimeoutError, match="/dev/video42: opening took longer than 0.2 s"):
        UsbCamera(device="42", open_timeout_s=0.2).connect()
    _fake_v4l2(monkeypatch, Refused)
    with pytest.raises(CameraOpenError, match="V4L2 could not open it"):
        UsbCamera(device="42").connect()


# -- video ------------------------------------------------------------------------------
def _write_video(path: Path, frames: list[np.ndarray], fps: float = 20.0) -> None:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()


def test_video_reads_in_order_then_ends(tmp_path: Path) -> None:
    frames = _frames(5)
    path = tmp_path / "clip.mp4"
    _write_video(path, frames)
    with VideoFileCamera(str(path), loop=False, realtime=False) as cam:
        assert cam.file_fps == pytest.approx(20.0)
        got = [cam.read() for _ in range(5)]
        with pytest.raises(EndOfStreamError, match="loop is off"):
            cam.read()
    assert [f.seq for f in got] == [0, 1, 2, 3, 4]
    for want, f in zip(frames, got):
        assert f.rgb.shape == (48, 64, 3) and f.rgb.dtype == np.uint8
        assert np.abs(f.rgb.astype(int) - want).mean() < 6  # lossy codec, colours far apart
    assert all(b.stamp >= a.stamp for a, b in zip(got, got[1:]))


def test_video_loops_and_paces(tmp_path: Path) -> None:
    frames = _frames(3)
    path = tmp_path / "clip.mp4"
    _write_video(path, frames, fps=20.0)
    with VideoFileCamera(str(path), loop=True, realtime=True, fps=50.0) as cam:
        got = [cam.read() for _ in range(7)]
    for i, f in enumerate(got):
        assert np.abs(f.rgb.astype(int) - frames[i % 3]).mean() < 6
    # paced at 50 Hz: 7 frames span at least 6 periods (a lower bound, not a timing claim)
    assert got[-1].stamp - got[0].stamp >= 6 * 0.02 - 0.005


def test_video_missing_and_corrupt(tmp_path: Path) -> None:
    with pytest.raises(CameraNotFoundError, match="no such file"):
        make_camera(CameraConfig(backend="video", path=str(tmp_path / "nope.mp4"))).connect()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(os.urandom(2048))
    with pytest.raises(CameraOpenError, match="bad.mp4"):
        VideoFileCamera(str(bad)).connect()


# -- folder -----------------------------------------------------------------------------
def test_folder_sorted_loop_and_exact_pixels(tmp_path: Path) -> None:
    frames = _frames(3)
    for i, img in enumerate(frames):  # written out of order: reading must sort by name
        cv2.imwrite(str(tmp_path / f"img_{2 - i:03d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    (tmp_path / "notes.txt").write_text("ignored")
    cfg = CameraConfig(backend="folder", path=str(tmp_path), realtime=False, loop=True,
                       intrinsics=(100.0, 100.0, 31.5, 23.5), width=64, height=48)
    with make_camera(cfg) as cam:
        got = [cam.read() for _ in range(4)]
        assert cam.read_latest().seq == 3
    order = [frames[2], frames[1], frames[0], frames[2]]
    for want, f in zip(order, got):
        np.testing.assert_array_equal(f.rgb, want)  # PNG is lossless
        assert f.intrinsics == CameraIntrinsics(64, 48, 100.0, 100.0, 31.5, 23.5)


def test_folder_no_loop_ends_and_empty_folder(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((8, 8, 3), np.uint8))
    with FolderCamera(str(tmp_path), loop=False, realtime=False) as cam:
        cam.read()
        with pytest.raises(EndOfStreamError):
            cam.read()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CameraOpenError, match="no .*images"):
        FolderCamera(str(empty)).connect()
    with pytest.raises(CameraNotFoundError, match="not a directory"):
        FolderCamera(str(tmp_path / "missing")).connect()


def test_read_latest_before_read_and_stale(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    cam = FolderCamera(str(tmp_path), realtime=False)
    with pytest.raises(CameraError, match="before connect"):
        cam.read()
    with cam:
        with pytest.raises(NoFrameError, match="no frame read yet"):
            cam.read_latest()
        frame = cam.read()
        assert cam.read_latest(max_age_s=60.0) is frame
        time.sleep(0.02)
        with pytest.raises(NoFrameError, match="old"):
            cam.read_latest(max_age_s=0.001)
    assert not cam.is_connected


# -- sim --------------------------------------------------------------------------------
class _FakeSim:
    def __init__(self) -> None:
        self.t = 0

    def render(self) -> np.ndarray:
        self.t += 1
        return np.full((6, 8, 3), self.t, np.uint8)

    def render_depth(self) -> np.ndarray:
        return np.full((6, 8), 0.5 * self.t, np.float64)

    def camera_intrinsics(self) -> CameraIntrinsics:
        return CameraIntrinsics(8, 6, 10.0, 10.0, 3.5, 2.5)


def test_sim_adapter_rgb_depth_intrinsics() -> None:
    sim = _FakeSim()
    with make_camera(CameraConfig(backend="sim", realtime=False), renderer=sim) as cam:
        assert cam.has_depth
        f1, f2 = cam.read(), cam.read()
    assert f1.rgb[0, 0, 0] == 1 and f2.rgb[0, 0, 0] == 2
    assert f2.depth is not None and f2.depth.dtype == np.float32
    np.testing.assert_array_equal(f2.depth, np.full((6, 8), 1.0, np.float32))
    assert f2.intrinsics == sim.camera_intrinsics()

    class RgbOnly:
        def render(self) -> np.ndarray:
            return np.zeros((4, 4), np.uint8)  # wrong shape

    with SimCamera(RgbOnly()) as cam:
        assert not cam.has_depth
        with pytest.raises(CameraError, match=r"\(H, W, 3\) uint8"):
            cam.read()
    with pytest.raises(TypeError, match="render"):
        SimCamera(object())


@pytest.mark.parametrize("robot", ["widowx", "fr3"])
def test_robot_yaml_camera_section_is_valid(robot: str, repo_root: Path) -> None:
    from tracevla_ros.config import load_node_config

    cfg = load_node_config(CameraConfig, repo_root / "config" / f"{robot}.yaml", "camera_node")
    assert cfg.frame_id == "camera_color_optical_frame"
    assert cfg.backend == {"widowx": "usb", "fr3": "realsense"}[robot]
