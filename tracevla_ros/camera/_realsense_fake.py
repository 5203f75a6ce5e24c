"""A software RealSense (``rs.software_device``) for tests: inject frames, get framesets.

Not a backend (leading underscore). No hardware, no ``pipeline.start()``::

    fake = SoftwareRealSense(width=64, height=48, fx=50.0, fy=50.0, cx=31.5, cy=23.5)
    frames = fake.inject(rgb, depth_z16, timestamp_ms=1.7e12)
    rgb, depth_m, stamp, intr = RealSenseFrameProcessor(fake.depth_units).process(frames)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tracevla_ros.camera.realsense import import_rs


class SoftwareRealSense:
    """Colour (rgb8) and optionally depth (z16) streams of one software device.

    Both streams share intrinsics and an identity extrinsic, so depth
    aligned to colour equals the injected depth.
    """

    def __init__(self, width: int = 64, height: int = 48, fx: float = 50.0, fy: float = 50.0,
                 cx: float = 31.5, cy: float = 23.5, coeffs: tuple[float, ...] = (0, 0, 0, 0, 0),
                 model: str = "none", depth_units: float = 0.001, with_depth: bool = True,
                 serial: str = "000000000001", fps: int = 30,
                 start_ms: float = 1.7e12) -> None:
        rs = self.rs = import_rs()
        self.width, self.height, self.depth_units = width, height, depth_units
        self.device = rs.software_device()
        self.device.register_info(rs.camera_info.serial_number, serial)
        self.device.register_info(rs.camera_info.name, "Software RealSense")
        intr = rs.intrinsics()
        intr.width, intr.height, intr.fx, intr.fy, intr.ppx, intr.ppy = width, height, fx, fy, cx, cy
        intr.model = getattr(rs.distortion, model)
        intr.coeffs = list(coeffs)
        self.syncer = rs.syncer()
        self.depth_sensor: Any = None
        self.depth_profile: Any = None
        if with_depth:
            self.depth_sensor = self.device.add_sensor("Depth")
            vs = self._stream(rs.stream.depth, 0, rs.format.z16, 2, intr, fps)
            self.depth_profile = self.depth_sensor.add_video_stream(vs)
            self.depth_sensor.add_read_only_option(rs.option.depth_units, depth_units)
        self.color_sensor = self.device.add_sensor("Color")
        vs = self._stream(rs.stream.color, 1, rs.format.rgb8, 3, intr, fps)
        self.color_profile = self.color_sensor.add_video_stream(vs)
        self.device.create_matcher(rs.matchers.default)
        if with_depth:
            ext = rs.extrinsics()
            ext.rotation = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
            ext.translation = [0.0, 0.0, 0.0]
            self.depth_profile.register_extrinsics_to(self.color_profile, ext)
            self.depth_sensor.open(self.depth_profile)
            self.depth_sensor.start(self.syncer)
        self.color_sensor.open(self.color_profile)
        self.color_sensor.start(self.syncer)
        self._n = 0
        self.period_ms = 1000.0 / fps
        self._prime(start_ms - self.period_ms)

    def _stream(self, kind: Any, uid: int, fmt: Any, bpp: int, intr: Any, fps: int) -> Any:
        vs = self.rs.video_stream()
        vs.type, vs.index, vs.uid = kind, 0, uid
        vs.width, vs.height, vs.fps, vs.bpp, vs.fmt = self.width, self.height, fps, bpp, fmt
        vs.intrinsics = intr
        return vs

    def _frame(self, data: np.ndarray, bpp: int, profile: Any, timestamp_ms: float, domain: Any) -> Any:
        f = self.rs.software_video_frame()
        f.pixels = np.ascontiguousarray(data).tobytes()
        f.bpp, f.stride = bpp, self.width * bpp
        f.timestamp, f.domain, f.frame_number = timestamp_ms, domain, self._n
        f.profile = profile.as_video_stream_profile()
        return f

    def inject(self, rgb: np.ndarray, depth_z16: np.ndarray | None = None,
               timestamp_ms: float = 0.0, domain: str = "system_time",
               timeout_ms: int = 2000) -> Any:
        """Push one colour (+depth) frame; return the matched frameset.

        Timestamps (ms since the epoch for ``system_time``) should start at
        ``start_ms`` and increase by about one frame period per call.

        ``rgb``: (H, W, 3) uint8; ``depth_z16``: (H, W) uint16 in ``depth_units``.
        """
        fs = self._inject_once(rgb, depth_z16, timestamp_ms, domain, timeout_ms)
        want = 2 if (self.depth_sensor is not None and depth_z16 is not None) else 1
        if fs.size() != want:
            raise RuntimeError(f"software RealSense: the syncer returned {fs.size()} of {want} "
                               f"frames (timestamps must increase by about one period)")
        return fs

    def _inject_once(self, rgb: np.ndarray, depth_z16: np.ndarray | None, timestamp_ms: float,
                     domain: str, timeout_ms: int) -> Any:
        dom = getattr(self.rs.timestamp_domain, domain)
        if self.depth_sensor is not None and depth_z16 is not None:
            f = self._frame(np.asarray(depth_z16).astype(np.uint16), 2, self.depth_profile,
                            timestamp_ms, dom)
            f.depth_units = self.depth_units
            self.depth_sensor.on_video_frame(f)
        self.color_sensor.on_video_frame(self._frame(rgb, 3, self.color_profile, timestamp_ms, dom))
        self._n += 1
        return self.syncer.wait_for_frames(timeout_ms)

    def _prime(self, timestamp_ms: float) -> None:
        """The syncer's first set after start is colour alone: burn it."""
        if self.depth_sensor is None:
            return
        self._inject_once(np.zeros((self.height, self.width, 3), np.uint8),
                          np.zeros((self.height, self.width), np.uint16), timestamp_ms,
                          "system_time", 2000)

    def close(self) -> None:
        for s in (self.color_sensor, self.depth_sensor):
            if s is not None:
                s.stop()
                s.close()
