"""``CameraConfig``: the camera_node parameters, validated once (no rclpy).

One flat dataclass for every backend; each backend reads the fields it
needs in its ``from_config`` and ignores the rest (documented per field).
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING

from tracevla_ros.config import check, param

if TYPE_CHECKING:
    from tracevla_ros.camera.base import CameraIntrinsics

__all__ = ["CameraConfig", "DEPTH_ENCODINGS", "config_intrinsics"]

DEPTH_ENCODINGS = ("32FC1", "16UC1")


@dataclasses.dataclass(frozen=True)
class CameraConfig:
    """What to open and how to publish it."""

    backend: str = param("usb", "camera backend: usb | realsense | video | folder (a file in "
                         "tracevla_ros/camera/)", read_only=True)
    device: str = param("/dev/video0", "usb: V4L2 index ('0') or /dev/videoN path; realsense: "
                        "serial number ('' = the only connected device)", read_only=True)
    path: str = param("", "video: file path; folder: directory of PNG/JPG images", read_only=True)
    width: int = param(640, "requested image width (usb, realsense); 640x480 is the TraceVLA "
                       "input aspect and every RealSense/UVC camera supports it", unit="px",
                       read_only=True)
    height: int = param(480, "requested image height (usb, realsense)", unit="px", read_only=True)
    fps: float = param(30.0, "usb/realsense: requested rate; video/folder: playback rate "
                       "(video: <= 0 uses the file's own rate)", unit="Hz", read_only=True)
    loop: bool = param(True, "video/folder: restart at the end instead of stopping", read_only=True)
    realtime: bool = param(True, "video/folder: pace frames at 'fps' (false: as fast as read)",
                           read_only=True)
    enable_depth: bool = param(True, "realsense: also stream depth aligned to colour",
                               read_only=True)
    frame_id: str = param("camera_color_optical_frame", "header.frame_id of image_raw and "
                          "camera_info (REP 103 optical frame: z forward, x right, y down)",
                          read_only=True)
    depth_frame_id: str = param("camera_color_optical_frame", "header.frame_id of depth/*; "
                                "depth is aligned to colour, so the colour optical frame",
                                read_only=True)
    depth_encoding: str = param("32FC1", "depth/image_raw encoding: 32FC1 metres or 16UC1 "
                                "millimetres", read_only=True)
    intrinsics: tuple[float, ...] = param((), "fx, fy, cx, cy in px at width x height, for "
                                          "backends that do not know theirs (usb/video/folder); "
                                          "empty = uncalibrated (zero K in camera_info)",
                                          unit="px", read_only=True)
    distortion: tuple[float, ...] = param((), "plumb_bob k1, k2, p1, p2, k3 for 'intrinsics' "
                                          "(empty = none)", read_only=True)
    open_timeout_s: float = param(5.0, "longest a device may take to open before it is an "
                                  "error (UVC cameras open in < 1 s)", unit="s", read_only=True)
    read_timeout_s: float = param(2.0, "longest a read may block before it is an error "
                                  "(many frame periods at >= 5 Hz)", unit="s", read_only=True)
    reconnect_period_s: float = param(1.0, "after a read error, retry opening the device this "
                                      "often", unit="s", read_only=True)

    def __post_init__(self) -> None:
        from tracevla_ros.camera import available_backends

        names = available_backends()
        check(self.backend in names, "backend", f"must be one of {names}, got '{self.backend}'")
        check(self.width > 0 and self.height > 0, "width/height",
              f"must be > 0, got {self.width}x{self.height}")
        check(self.fps > 0 or self.backend == "video", "fps",
              f"must be > 0 for backend '{self.backend}', got {self.fps}")
        check(self.depth_encoding in DEPTH_ENCODINGS, "depth_encoding",
              f"must be one of {list(DEPTH_ENCODINGS)}, got '{self.depth_encoding}'")
        check(bool(self.frame_id), "frame_id", "must not be empty")
        check(bool(self.depth_frame_id), "depth_frame_id", "must not be empty")
        check(len(self.intrinsics) in (0, 4), "intrinsics",
              f"must be empty or [fx, fy, cx, cy], got {list(self.intrinsics)}")
        check(len(self.intrinsics) == 0 or (self.intrinsics[0] > 0 and self.intrinsics[1] > 0),
              "intrinsics", f"fx and fy must be > 0, got {list(self.intrinsics)}")
        check(len(self.distortion) in (0, 5), "distortion",
              f"must be empty or 5 plumb_bob coefficients, got {list(self.distortion)}")
        check(self.open_timeout_s > 0, "open_timeout_s", f"must be > 0, got {self.open_timeout_s}")
        check(self.read_timeout_s > 0, "read_timeout_s", f"must be > 0, got {self.read_timeout_s}")
        check(self.reconnect_period_s > 0, "reconnect_period_s",
              f"must be > 0, got {self.reconnect_period_s}")
        if self.backend == "usb":
            check(bool(re.fullmatch(r"\d+|/.+", self.device)), "device",
                  f"for backend 'usb' must be a V4L2 index like '0' or a path like "
                  f"'/dev/video0', got '{self.device}'")
        if self.backend in ("video", "folder"):
            check(bool(self.path), "path", f"must be set for backend '{self.backend}'")


def config_intrinsics(cfg: CameraConfig, width: int, height: int) -> "CameraIntrinsics | None":
    """``cfg.intrinsics`` (given at ``cfg.width x cfg.height``) for a ``width x height`` image.

    None when the config has no intrinsics (uncalibrated).
    """
    from tracevla_ros.camera.base import CameraIntrinsics  # noqa: F811  (runtime import)

    if not cfg.intrinsics:
        return None
    fx, fy, cx, cy = cfg.intrinsics
    intr = CameraIntrinsics(
        width=cfg.width, height=cfg.height, fx=fx, fy=fy, cx=cx, cy=cy,
        distortion_model="plumb_bob" if cfg.distortion else "none",
        coeffs=tuple(cfg.distortion),
    )
    if (width, height) != (cfg.width, cfg.height):
        intr = intr.scaled(width, height)
    return intr
