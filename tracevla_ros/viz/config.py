"""trace_viz_node parameters (one typed config, validated once)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracevla_ros.config import check, param


@dataclass(frozen=True)
class TraceVizConfig:
    base_frame: str = param("wx250s/base_link", "robot base frame: parent of the camera "
                            "extrinsic (the launch files publish it as a static transform)")
    camera_frame: str = param("camera_color_optical_frame", "camera optical frame; markers use "
                              "the trace's header frame_id, this one when that is empty")
    camera_xyz: tuple[float, ...] = param((0.0, -0.35, 0.45), "camera optical frame origin in "
                                          "base_frame (extrinsic calibration)", unit="m")
    camera_quat_xyzw: tuple[float, ...] = param(
        (-0.84426, 0.336414, -0.154431, 0.387558), "camera optical frame orientation in "
        "base_frame, quaternion x y z w (extrinsic calibration)")
    no_depth: str = param("plane", "2D trace without a depth image of its frame: 'plane' = "
                          "intersect each pixel's ray with the table plane, 'skip' = draw nothing")
    table_height: float = param(0.0, "z of the table plane in base_frame (no_depth: plane)", "m")
    depth_window_px: int = param(1, "depth = median of valid depths in a (2w+1)^2 window "
                                 "around the pixel (robust at edges)", "px")
    depth_tolerance_s: float = param(0.02, "a depth image is used for a trace when its stamp is "
                                     "this close to the trace's frame", "s")
    line_width: float = param(0.004, "LINE_STRIP width", "m")
    head_diameter: float = param(0.012, "sphere at each point's newest position", "m")
    trace3d_stride: int = param(4, "draw every k-th TraceGen keypoint (400 lines clutter rviz)")
    publish_rate_hz: float = param(10.0, "how often new traces are turned into markers", "Hz")
    publish_static_tf: bool = param(False, "publish base_frame -> camera_frame (camera_xyz, "
                                    "camera_quat_xyzw) on /tf_static itself; the launch files "
                                    "set it when tf2_ros is not installed")

    def __post_init__(self) -> None:
        check(bool(self.base_frame), "base_frame", "must name the robot base frame")
        check(bool(self.camera_frame), "camera_frame", "must name the camera optical frame")
        check(len(self.camera_xyz) == 3, "camera_xyz", f"needs 3 values [x, y, z] m, got "
              f"{len(self.camera_xyz)}")
        check(len(self.camera_quat_xyzw) == 4 and
              abs(float(np.linalg.norm(self.camera_quat_xyzw)) - 1.0) < 1e-3,
              "camera_quat_xyzw", "needs a unit quaternion [x, y, z, w]")
        check(self.no_depth in ("plane", "skip"), "no_depth", f"must be 'plane' or 'skip', got "
              f"'{self.no_depth}'")
        check(self.depth_window_px >= 0, "depth_window_px", "must be >= 0")
        check(self.depth_tolerance_s >= 0.0, "depth_tolerance_s", "must be >= 0 s")
        check(self.line_width > 0 and self.head_diameter > 0, "line_width",
              "line_width and head_diameter must be > 0 m")
        check(self.trace3d_stride >= 1, "trace3d_stride", "must be >= 1")
        check(0.1 <= self.publish_rate_hz <= 100.0, "publish_rate_hz", "must be in [0.1, 100] Hz")
