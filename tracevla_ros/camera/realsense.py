"""``realsense``: Intel RealSense RGB-D through ``pyrealsense2``.

Colour (rgb8) plus depth (z16) aligned to colour (``rs.align(rs.stream.color)``);
depth is returned as float32 metres using the depth sensor's depth scale;
intrinsics come from the colour stream profile (aligned depth shares them).

Split so tests never touch hardware:

* ``select_device(devices, serial)`` / ``depth_scale_of(device)``: discovery,
  from ``rs.context().query_devices()``, erroring immediately ("no RealSense
  device found") instead of calling ``pipeline.start()`` (which blocks ~15 s
  with no camera).
* ``RealSenseFrameProcessor``: frameset -> (rgb, depth m, stamp, intrinsics);
  tests drive it with ``rs.software_device`` (``_realsense_fake.py``).
* ``RealSenseCamera``: the pipeline around both.
"""

from __future__ import annotations

import logging
import time
from types import ModuleType
from typing import Any, Callable, Iterable

import numpy as np

from tracevla_ros.camera import register_camera
from tracevla_ros.camera.base import (
    Camera,
    CameraError,
    CameraIntrinsics,
    CameraNotFoundError,
    CameraOpenError,
    CameraTimeoutError,
)
from tracevla_ros.camera.config import CameraConfig

log = logging.getLogger(__name__)

_CHECK = "check the USB3 cable, `rs-enumerate-devices`, and udev rules (99-realsense-libusb.rules)"


def import_rs() -> ModuleType:
    """``pyrealsense2``, or a CameraError saying how to install it."""
    try:
        import pyrealsense2 as rs
    except ImportError as exc:
        raise CameraOpenError(
            f"realsense backend needs pyrealsense2 (pip install pyrealsense2==2.59.1.11053; "
            f"apt-get install libusb-1.0-0): {exc}") from None
    return rs


def _info(device: Any, key: str) -> str:
    rs = import_rs()
    info = getattr(rs.camera_info, key)
    return str(device.get_info(info)) if device.supports(info) else "?"


def select_device(devices: Iterable[Any], serial: str = "") -> Any:
    """The device with ``serial`` ('' = the only one). Raises CameraNotFoundError at once."""
    devs = list(devices)
    serials = [_info(d, "serial_number") for d in devs]
    if serial:
        for d, s in zip(devs, serials):
            if s == serial:
                return d
        raise CameraNotFoundError(f"no RealSense device found (serial={serial}); connected: "
                                  f"{serials or 'none'}; {_CHECK}")
    if not devs:
        raise CameraNotFoundError(f"no RealSense device found (serial=any); {_CHECK}")
    if len(devs) > 1:
        log.warning("several RealSense devices %s; using %s (set 'device' to a serial)",
                    serials, serials[0])
    return devs[0]


def depth_scale_of(device: Any) -> float:
    """Metres per z16 unit of ``device``'s depth sensor; CameraOpenError if it has none."""
    for sensor in device.query_sensors():
        if sensor.is_depth_sensor():
            return float(sensor.as_depth_sensor().get_depth_scale())
    raise CameraOpenError(
        f"RealSense {_info(device, 'name')} (serial={_info(device, 'serial_number')}) has no "
        f"depth stream; use a depth camera or set enable_depth: false")


_DISTORTION = {
    "none": "none",
    "brown_conrady": "plumb_bob",
    "modified_brown_conrady": "plumb_bob",
    "inverse_brown_conrady": "plumb_bob",
    "kannala_brandt4": "equidistant",
    "ftheta": "equidistant",
}


def intrinsics_from_rs(intr: Any) -> CameraIntrinsics:
    """``rs.intrinsics`` -> CameraIntrinsics (RealSense models mapped to ROS names)."""
    model = str(intr.model).split(".")[-1]
    ros_model = _DISTORTION.get(model, model)
    coeffs = tuple(float(c) for c in intr.coeffs)
    if ros_model == "none":
        coeffs = ()
    elif ros_model == "equidistant":
        coeffs = coeffs[:4]
    return CameraIntrinsics(width=int(intr.width), height=int(intr.height), fx=float(intr.fx),
                            fy=float(intr.fy), cx=float(intr.ppx), cy=float(intr.ppy),
                            distortion_model=ros_model, coeffs=coeffs)


class RealSenseFrameProcessor:
    """Frameset -> ``(rgb (H, W, 3) uint8, depth (H, W) float32 m | None, stamp s, intrinsics)``.

    ``depth_scale`` None: colour only. Stamps: the frame's host-mapped time
    (``global_time``/``system_time`` domains, ms since the epoch) / 1000,
    else ``time.time()`` on arrival.
    """

    def __init__(self, depth_scale: float | None, align: bool = True) -> None:
        self.rs = import_rs()
        self.depth_scale = depth_scale
        self._align = self.rs.align(self.rs.stream.color) if (align and depth_scale) else None
        self._intr_cache: dict[tuple[int, int, int], CameraIntrinsics] = {}

    def _intrinsics(self, frame: Any) -> CameraIntrinsics:
        vp = frame.get_profile().as_video_stream_profile()
        key = (int(vp.unique_id()), vp.width(), vp.height())
        if key not in self._intr_cache:
            self._intr_cache[key] = intrinsics_from_rs(vp.get_intrinsics())
        return self._intr_cache[key]

    def _stamp(self, frame: Any) -> float:
        domain = frame.get_frame_timestamp_domain()
        if domain in (self.rs.timestamp_domain.global_time, self.rs.timestamp_domain.system_time):
            return float(frame.get_timestamp()) / 1000.0
        return time.time()

    def process(self, frames: Any) -> tuple[np.ndarray, np.ndarray | None, float, CameraIntrinsics]:
        rs = self.rs
        if self._align is not None:
            frames = self._align.process(frames)
        color = frames.get_color_frame()
        if not color:
            raise CameraError("RealSense frameset has no colour frame")
        fmt = color.get_profile().format()
        data = np.asanyarray(color.get_data())
        if fmt == rs.format.rgb8:
            rgb = np.array(data, dtype=np.uint8, copy=True)
        elif fmt == rs.format.bgr8:
            rgb = np.ascontiguousarray(data[:, :, ::-1])
        else:
            raise CameraError(f"RealSense colour format {fmt} not supported (need rgb8 or bgr8)")
        depth = None
        if self.depth_scale is not None:
            dframe = frames.get_depth_frame()
            if not dframe:
                raise CameraError("RealSense frameset has no depth frame (depth stream stalled?)")
            z16 = np.asanyarray(dframe.get_data())
            depth = z16.astype(np.float32) * np.float32(self.depth_scale)
        return rgb, depth, self._stamp(color), self._intrinsics(color)


@register_camera("realsense")
class RealSenseCamera(Camera):
    """A RealSense through ``rs.pipeline``; depth aligned to colour when ``enable_depth``."""

    def __init__(self, serial: str = "", width: int = 640, height: int = 480, fps: float = 30.0,
                 enable_depth: bool = True, read_timeout_s: float = 2.0,
                 context_factory: Callable[[], Any] | None = None) -> None:
        super().__init__()
        self.serial, self.width, self.height, self.fps = serial, width, height, fps
        self.enable_depth, self.read_timeout_s = enable_depth, read_timeout_s
        self._context_factory = context_factory
        self._pipeline: Any = None
        self._processor: RealSenseFrameProcessor | None = None

    @classmethod
    def from_config(cls, cfg: CameraConfig, **_: Any) -> "RealSenseCamera":
        return cls(serial=cfg.device if cfg.device and not cfg.device.startswith("/dev/") else "",
                   width=cfg.width, height=cfg.height, fps=cfg.fps,
                   enable_depth=cfg.enable_depth, read_timeout_s=cfg.read_timeout_s)

    @property
    def description(self) -> str:
        return f"realsense:{self.serial or 'any'}"

    @property
    def has_depth(self) -> bool:
        return self.enable_depth

    def _open(self) -> None:
        rs = import_rs()
        ctx = self._context_factory() if self._context_factory else rs.context()
        device = select_device(ctx.query_devices(), self.serial)  # never start() without one
        serial = _info(device, "serial_number")
        scale = depth_scale_of(device) if self.enable_depth else None
        cfg = rs.config()
        cfg.enable_device(serial)
        fps = int(round(self.fps))
        cfg.enable_stream(rs.stream.color, self.width, self.height, rs.format.rgb8, fps)
        if scale is not None:
            cfg.enable_stream(rs.stream.depth, self.width, self.height, rs.format.z16, fps)
        pipeline = rs.pipeline(ctx)
        if not cfg.can_resolve(pipeline):
            raise CameraOpenError(
                f"RealSense serial={serial}: cannot stream {self.width}x{self.height} @ {fps} Hz "
                f"colour{' + depth' if scale is not None else ''}; pick a mode listed by "
                f"`rs-enumerate-devices`")
        try:
            pipeline.start(cfg)
        except RuntimeError as exc:
            raise CameraOpenError(f"RealSense serial={serial}: start failed: {exc}; {_CHECK}") from None
        self._pipeline = pipeline
        self._processor = RealSenseFrameProcessor(scale)
        self.serial = serial

    def _grab(self) -> tuple[np.ndarray, np.ndarray | None, float, CameraIntrinsics | None]:
        assert self._processor is not None  # set by _open (internal invariant)
        try:
            frames = self._pipeline.wait_for_frames(int(self.read_timeout_s * 1000))
        except RuntimeError as exc:
            raise CameraTimeoutError(f"RealSense serial={self.serial}: no frames within "
                                     f"{self.read_timeout_s} s ({exc}); {_CHECK}") from None
        return self._processor.process(frames)

    def _close(self) -> None:
        if self._pipeline is not None:
            try:
                self._pipeline.stop()
            except RuntimeError as exc:  # already stopped / device gone: nothing left to release
                log.warning("RealSense serial=%s: stop: %s", self.serial, exc)
            self._pipeline = None
