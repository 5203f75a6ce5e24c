"""Traces in 3D for rviz: 2D traces lifted with depth (or onto the table), 3D traces as metres.

Conventions: pixels (u, v) are OpenCV's (x right, y down, pixel centres at
integers); 3D points are in the camera's optical frame (x right, y down, z
forward, metres) unless named ``*_base`` (robot base frame, REP 103).

How a 2D trace point becomes 3D:

* with a depth image of the same frame: ``depth`` = median of the valid (> 0,
  finite) depths in a (2w+1)^2 window around the rounded pixel (robust at
  object edges), then back-projected through the intrinsics; no valid depth ->
  the step is invalid;
* without depth (the WidowX camera is RGB only) and ``no_depth="plane"``: the
  pixel's ray is intersected with the table plane ``z = table_height`` of the
  base frame, using the camera extrinsic; a ray that misses it (parallel, or
  the plane behind the camera) -> invalid. Points on objects above the table
  are drawn on the table below their line of sight (said in the node's docs);
* ``no_depth="skip"``: nothing is drawn without depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracevla_ros.camera.base import CameraIntrinsics

__all__ = ["CameraExtrinsic", "backproject", "lift_trace", "quat_xyzw_to_matrix", "ray_plane",
           "sample_depth", "trace3d_to_xyz"]

COORDS_PIXEL_DEPTH = 0  # tracevla_ros/msg/Trace3D constants
COORDS_METRIC_XYZ = 1


def quat_xyzw_to_matrix(q: np.ndarray) -> np.ndarray:
    """(4,) x y z w (ROS order, normalised here) -> (3, 3) rotation matrix."""
    x, y, z, w = np.asarray(q, np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


@dataclass(frozen=True)
class CameraExtrinsic:
    """Pose of the camera optical frame in the robot base frame: p_base = R @ p_cam + t."""

    rotation: np.ndarray  # (3, 3) columns = optical axes in the base frame
    translation: np.ndarray  # (3,) metres

    @classmethod
    def from_xyz_quat(cls, xyz: tuple[float, ...], quat_xyzw: tuple[float, ...]) -> "CameraExtrinsic":
        return cls(quat_xyzw_to_matrix(np.asarray(quat_xyzw)), np.asarray(xyz, np.float64))


def backproject(uv: np.ndarray, depth: np.ndarray, intr: CameraIntrinsics) -> np.ndarray:
    """uv (..., 2) px and depth (...,) m along the optical axis -> (..., 3) optical-frame points."""
    uv = np.asarray(uv, np.float64)
    d = np.asarray(depth, np.float64)
    x = (uv[..., 0] - intr.cx) / intr.fx * d
    y = (uv[..., 1] - intr.cy) / intr.fy * d
    return np.stack([x, y, d], axis=-1)


def sample_depth(depth_image: np.ndarray, uv: np.ndarray, window: int = 1) -> np.ndarray:
    """Median valid depth (m) around each pixel; 0 where none. depth_image: (H, W) metres,
    0 / NaN / inf = no data; uv: (P, 2) px; window: half-size w of the (2w+1)^2 window."""
    img = np.asarray(depth_image, np.float64)
    h, w = img.shape
    pts = np.rint(np.asarray(uv, np.float64).reshape(-1, 2)).astype(int)
    out = np.zeros(len(pts))
    for i, (u, v) in enumerate(pts):
        if not (0 <= u < w and 0 <= v < h):
            continue
        patch = img[max(0, v - window): v + window + 1, max(0, u - window): u + window + 1]
        good = patch[np.isfinite(patch) & (patch > 0)]
        if good.size:
            out[i] = float(np.median(good))
    return out


def ray_plane(uv: np.ndarray, intr: CameraIntrinsics, extrinsic: CameraExtrinsic,
              plane_z: float) -> tuple[np.ndarray, np.ndarray]:
    """Intersect the pixels' rays with the base-frame plane z = plane_z.

    Returns ((P, 3) optical-frame points, (P,) bool hit in front of the camera).
    """
    uv = np.asarray(uv, np.float64).reshape(-1, 2)
    rays = backproject(uv, np.ones(len(uv)), intr)  # z = 1 in the optical frame
    dirs = rays @ extrinsic.rotation.T  # base-frame directions
    t0 = extrinsic.translation
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (plane_z - t0[2]) / dirs[:, 2]  # depth along the optical axis (z of rays is 1)
    hit = np.isfinite(s) & (s > 0)
    return rays * np.where(hit, s, 0.0)[:, None], hit


def lift_trace(points: np.ndarray, visible: np.ndarray, intr: CameraIntrinsics,
               depth_image: np.ndarray | None = None, extrinsic: CameraExtrinsic | None = None,
               plane_z: float = 0.0, depth_window: int = 1) -> tuple[np.ndarray, np.ndarray, str]:
    """A 2D trace in 3D (see the module docstring for how).

    points: (M, N, 2) px; visible: (M, N) bool. ``intr`` must be of the trace's image
    (scale it with ``CameraIntrinsics.scaled`` first if sizes differ).
    Returns ((M, N, 3) optical-frame metres, (M, N) bool valid, method) with
    method 'depth', 'plane' or 'none' (no depth and no extrinsic: nothing valid).
    """
    pts = np.asarray(points, np.float64)
    vis = np.asarray(visible, bool)
    flat = pts.reshape(-1, 2)
    if depth_image is not None:
        d = sample_depth(depth_image, flat, depth_window)
        xyz = backproject(flat, d, intr)
        ok = d > 0
        method = "depth"
    elif extrinsic is not None:
        xyz, ok = ray_plane(flat, intr, extrinsic, plane_z)
        method = "plane"
    else:
        return np.zeros(pts.shape[:2] + (3,)), np.zeros(vis.shape, bool), "none"
    return xyz.reshape(pts.shape[:2] + (3,)), ok.reshape(vis.shape) & vis, method


def trace3d_to_xyz(points: np.ndarray, valid: np.ndarray, coordinates: int,
                   intr: CameraIntrinsics | None) -> tuple[np.ndarray, np.ndarray]:
    """Trace3D points (K, L, 3) -> metres in the message's frame, and validity (K, L).

    COORDS_PIXEL_DEPTH (u px, v px, depth m) needs ``intr`` of the reference image;
    COORDS_METRIC_XYZ is returned as is. Non-positive depth -> invalid.
    """
    p = np.asarray(points, np.float64)
    ok = np.asarray(valid, bool) & np.all(np.isfinite(p), axis=-1)
    if coordinates == COORDS_METRIC_XYZ:
        return p, ok
    if coordinates != COORDS_PIXEL_DEPTH:
        raise ValueError(f"unknown Trace3D coordinates {coordinates} (0 = pixel+depth, 1 = metric)")
    if intr is None:
        raise ValueError("pixel+depth Trace3D points need the camera intrinsics (camera_info)")
    return backproject(p[..., :2], p[..., 2], intr), ok & (p[..., 2] > 0)
