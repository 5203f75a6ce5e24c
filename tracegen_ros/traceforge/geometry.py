"""Pinhole geometry of the screen-aligned trace space (no rclpy).

Conventions: pixels ``(u, v)`` with u right, v down and pixel centres at integer
coordinates (OpenCV, ``sensor_msgs/CameraInfo``); camera optical frame x right, y down,
z forward; depth = z in metres (not the ray length). A *screen-aligned* point is
``(u, v, z)``: its pixel in a camera plus its depth in that camera. ``T_a_b`` is the
(4, 4) pose of frame b in frame a (``p_a = T_a_b @ p_b``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["GeometryError", "check_intrinsics", "unproject", "project", "transform_points",
           "uvz_to_xyz", "xyz_to_uvz", "sample_depth", "check_rgbd", "invert_pose"]


class GeometryError(ValueError):
    """Bad camera or depth input; the message says what to pass."""


def check_intrinsics(K: np.ndarray) -> np.ndarray:
    """(3, 3) float64 pinhole matrix with positive focal lengths, or GeometryError."""
    k = np.asarray(K, dtype=np.float64)
    if k.shape != (3, 3) or not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise GeometryError(f"intrinsics must be a finite (3, 3) matrix with fx, fy > 0, got {k.tolist()}")
    return k


def check_rgbd(rgb: np.ndarray, depth_m: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Validate one RGB-D pair: (H, W, 3) uint8 and (H, W) float metres with some valid depth.

    Raises GeometryError for missing depth, all-zero/invalid depth or mismatched sizes.
    """
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise GeometryError(f"RGB must be (H, W, 3) uint8, got {getattr(rgb, 'shape', None)} "
                            f"{getattr(rgb, 'dtype', type(rgb).__name__)}")
    if depth_m is None:
        raise GeometryError("depth is missing: TraceGen needs an aligned depth image (RGB-D)")
    d = np.asarray(depth_m)
    if d.ndim != 2:
        raise GeometryError(f"depth must be (H, W) metres, got shape {d.shape}")
    if d.shape != rgb.shape[:2]:
        raise GeometryError(f"RGB {rgb.shape[1]}x{rgb.shape[0]} and depth {d.shape[1]}x{d.shape[0]} "
                            "differ in size: align depth to the colour image first")
    d = d.astype(np.float32, copy=False)
    if not np.any(np.isfinite(d) & (d > 0.0)):
        raise GeometryError("depth is all zero/invalid: check the depth stream (units, alignment)")
    return rgb, d


def unproject(uv: np.ndarray, z: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pixels (..., 2) with depths (...) -> optical-frame points (..., 3) metres."""
    k = check_intrinsics(K)
    uv = np.asarray(uv, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    x = (uv[..., 0] - k[0, 2]) / k[0, 0] * z
    y = (uv[..., 1] - k[1, 2]) / k[1, 1] * z
    return np.stack([x, y, z], axis=-1)


def project(xyz: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Optical-frame points (..., 3) -> pixels (..., 2) (NaN/inf where z <= 0)."""
    k = check_intrinsics(K)
    p = np.asarray(xyz, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(p[..., 2] > 0.0, p[..., 2], np.nan)
        u = k[0, 0] * p[..., 0] / z + k[0, 2]
        v = k[1, 1] * p[..., 1] / z + k[1, 2]
    return np.stack([u, v], axis=-1)


def uvz_to_xyz(uvz: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Screen-aligned (..., 3) (u px, v px, z m) -> optical-frame (..., 3) metres."""
    a = np.asarray(uvz, dtype=np.float64)
    return unproject(a[..., :2], a[..., 2], K)


def xyz_to_uvz(xyz: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Optical-frame (..., 3) metres -> screen-aligned (..., 3) (u px, v px, z m)."""
    p = np.asarray(xyz, dtype=np.float64)
    return np.concatenate([project(p, K), p[..., 2:3]], axis=-1)


def transform_points(T: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Apply the (4, 4) rigid transform ``T`` to points (..., 3)."""
    t = np.asarray(T, dtype=np.float64)
    if t.shape != (4, 4):
        raise GeometryError(f"a pose must be (4, 4), got {t.shape}")
    p = np.asarray(p, dtype=np.float64)
    return p @ t[:3, :3].T + t[:3, 3]


def invert_pose(T: np.ndarray) -> np.ndarray:
    """Inverse of a (4, 4) rigid transform."""
    t = np.asarray(T, dtype=np.float64)
    out = np.eye(4)
    out[:3, :3] = t[:3, :3].T
    out[:3, 3] = -t[:3, :3].T @ t[:3, 3]
    return out


def sample_depth(depth_m: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Depth (metres) at pixels ``uv`` (N, 2), nearest pixel; NaN outside or where invalid.

    Nearest, not bilinear: at an object's silhouette bilinear mixes the object's and the
    background's depth into a point that exists on neither.
    """
    d = np.asarray(depth_m)
    h, w = d.shape
    uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
    out = np.full(uv.shape[0], np.nan)
    fin = np.all(np.isfinite(uv), axis=1)
    ui = np.full(uv.shape[0], -1, np.int64)
    vi = np.full(uv.shape[0], -1, np.int64)
    ui[fin] = np.round(uv[fin, 0]).astype(np.int64)
    vi[fin] = np.round(uv[fin, 1]).astype(np.int64)
    inside = fin & (ui >= 0) & (ui < w) & (vi >= 0) & (vi < h)
    z = d[vi[inside], ui[inside]].astype(np.float64)
    z[~(np.isfinite(z) & (z > 0.0))] = np.nan
    out[inside] = z
    return out
