"""Pinhole intrinsics and frame conventions for MuJoCo cameras (no rclpy).

MuJoCo cameras look along their local -z with +y up and +x right. ROS optical
frames (REP 103 / camera_info) use x right, y down, z forward. So
``R_world_optical = R_world_mjcam @ diag(1, -1, -1)``.

Intrinsics follow OpenCV / sensor_msgs/CameraInfo: pixel centres at integer
coordinates, ``u = fx * x / z + cx``, ``v = fy * y / z + cy`` for a point
``(x, y, z)`` in the optical frame. MuJoCo renders a symmetric frustum whose
vertical field of view is ``fovy``; pixels are square, so ``fx == fy`` and the
principal point is the image centre ``((W - 1) / 2, (H - 1) / 2)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["CameraIntrinsics", "intrinsics_from_fovy", "MJCAM_TO_OPTICAL", "project_points"]

# Rotation from the MuJoCo camera frame to the optical frame (columns: optical axes in mj cam).
MJCAM_TO_OPTICAL: np.ndarray = np.diag([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics of one rendered camera.

    ``frame_id`` is the optical frame (x right, y down, z forward).
    """

    width: int  # pixels
    height: int  # pixels
    fx: float  # pixels
    fy: float  # pixels
    cx: float  # pixels, OpenCV convention (pixel centres at integers)
    cy: float  # pixels
    frame_id: str

    @property
    def K(self) -> np.ndarray:
        """(3, 3) float64 camera matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def P(self) -> np.ndarray:
        """(3, 4) float64 projection matrix (monocular: no baseline)."""
        return np.hstack([self.K, np.zeros((3, 1))])


def intrinsics_from_fovy(fovy_deg: float, width: int, height: int, frame_id: str) -> CameraIntrinsics:
    """Intrinsics of a MuJoCo camera with vertical field of view ``fovy_deg`` degrees."""
    if not 0.0 < fovy_deg < 180.0:
        raise ValueError(f"fovy must be in (0, 180) degrees, got {fovy_deg}")
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    f = 0.5 * height / math.tan(math.radians(fovy_deg) / 2.0)
    return CameraIntrinsics(width, height, f, f, (width - 1) / 2.0, (height - 1) / 2.0, frame_id)


def project_points(points_world: np.ndarray, cam_pos: np.ndarray, cam_xmat: np.ndarray,
                   intr: CameraIntrinsics) -> np.ndarray:
    """Project world points to pixels.

    points_world: (N, 3) metres, world frame.
    cam_pos: (3,) camera position; cam_xmat: (3, 3) MuJoCo camera orientation (``data.cam_xmat``).
    Returns (N, 3): u, v in pixels (x right / y down) and depth z in metres along the optical axis.
    """
    pts = np.asarray(points_world, dtype=np.float64).reshape(-1, 3)
    r_world_opt = np.asarray(cam_xmat, dtype=np.float64).reshape(3, 3) @ MJCAM_TO_OPTICAL
    p_opt = (pts - np.asarray(cam_pos, dtype=np.float64)) @ r_world_opt
    z = p_opt[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = intr.fx * p_opt[:, 0] / z + intr.cx
        v = intr.fy * p_opt[:, 1] / z + intr.cy
    return np.stack([u, v, z], axis=1)
