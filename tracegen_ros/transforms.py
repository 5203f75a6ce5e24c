"""Transforms shared by training and prediction (numpy, no torch).

Coordinates
-----------
A trace ``traj`` (K, L, 3) float32 is screen-aligned: (u px, v px, z m) in
the reference camera (OpenCV pixel convention: x right / y down, pixel
centres at integer coordinates; z = depth along the optical axis), step 0 =
the reference frame. The model works on normalised image coordinates
``(u + 0.5) / W``, ``(v + 0.5) / H`` (so one model serves any image size) and
generates increments::

    inc[:, 0] = (0, 0, z0)                         (step 0 relative to the keypoint)
    inc[:, t] = T(t) - T(t-1)          t >= 1

so that ``T = (kp_u, kp_v, 0) + cumsum(inc)`` ("the trace is the cumulative
sum of the increments from the grid").

Invalid steps (``valid`` False: off-image, no depth) are filled before
differencing: linearly between valid steps, held constant before the first
and after the last valid step; the loss mask keeps increments between two
steps inside [first valid, last valid] (interior gaps count as observed
through the interpolation, the held ends do not).
"""

from __future__ import annotations

import cv2
import numpy as np

from tracegen_ros.data import grid_keypoints  # the one grid definition (TraceForge's)

__all__ = [
    "grid_keypoints",
    "to_normalised",
    "from_normalised",
    "trace_to_increments",
    "increments_to_trace",
    "increment_stats",
    "resize_rgb",
    "resize_depth",
    "depth_ratio_rescale",
    "sensor_depth_at",
    "unproject",
]


def to_normalised(uv: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel (..., 2) -> normalised [0, 1] image coordinates."""
    out = np.empty_like(uv, dtype=np.float32)
    out[..., 0] = (uv[..., 0] + 0.5) / width
    out[..., 1] = (uv[..., 1] + 0.5) / height
    return out


def from_normalised(uvn: np.ndarray, width: int, height: int) -> np.ndarray:
    out = np.empty_like(uvn, dtype=np.float32)
    out[..., 0] = uvn[..., 0] * width - 0.5
    out[..., 1] = uvn[..., 1] * height - 0.5
    return out


def _fill_invalid(traj: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate/hold invalid steps per keypoint; return (filled, inside) where
    ``inside`` (K, L) marks steps within [first valid, last valid]."""
    k, length, _ = traj.shape
    filled = np.where(valid[..., None], traj, 0.0).astype(np.float32)
    inside = np.zeros((k, length), dtype=bool)
    t = np.arange(length)
    for i in np.nonzero(~valid.all(axis=1))[0]:
        idx = np.nonzero(valid[i])[0]
        if idx.size == 0:
            continue
        for c in range(traj.shape[2]):
            filled[i, :, c] = np.interp(t, idx, traj[i, idx, c])
        inside[i, idx[0]: idx[-1] + 1] = True
    inside[valid.all(axis=1)] = True
    return filled, inside


def trace_to_increments(traj: np.ndarray, valid: np.ndarray, keypoints: np.ndarray,
                        width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Trace -> (increments (K, L, 3) float32, loss mask (K, L) bool).

    traj: (K, L, 3) (u px, v px, z m), -inf where invalid; valid: (K, L) bool;
    keypoints: (K, 2) pixels (= step 0 where valid).
    """
    traj = np.asarray(traj, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool) & np.isfinite(traj).all(axis=-1)
    filled, inside = _fill_invalid(np.where(np.isfinite(traj), traj, 0.0), valid)
    norm = filled.copy()
    norm[..., :2] = to_normalised(filled[..., :2], width, height)
    kp = to_normalised(np.asarray(keypoints, dtype=np.float32), width, height)
    inc = np.empty_like(norm, dtype=np.float32)
    inc[:, 0, :2] = norm[:, 0, :2] - kp
    inc[:, 0, 2] = norm[:, 0, 2]
    inc[:, 1:] = np.diff(norm, axis=1)
    mask = np.empty_like(inside)
    mask[:, 0] = valid[:, 0]
    mask[:, 1:] = inside[:, 1:] & inside[:, :-1]
    inc[~mask] = 0.0
    return inc, mask


def increments_to_trace(inc: np.ndarray, keypoints: np.ndarray, width: int,
                        height: int) -> np.ndarray:
    """(..., K, L, 3) increments -> (..., K, L, 3) float32 trace (u px, v px, z m)."""
    start = np.zeros(inc.shape[:-2] + (1, 3), dtype=np.float64)
    start[..., 0, :2] = to_normalised(np.asarray(keypoints, np.float32), width, height)
    norm = start + np.cumsum(inc.astype(np.float64), axis=-2)
    out: np.ndarray = norm.astype(np.float32)
    out[..., :2] = from_normalised(norm[..., :2], width, height)
    return out


def increment_stats(incs: list[np.ndarray], masks: list[np.ndarray],
                    min_std: tuple[float, float, float] = (1e-4, 1e-4, 1e-3),
                    moving_min: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-step mean/std (L, 3) for standardising increments.

    Step 0 gets its own statistics; steps >= 1 share one pooled set (motion
    increments are roughly stationary along the trace). ``min_std`` floors
    the std per channel (u, v normalised; z metres).

    ``moving_min`` > 0: the statistics of steps >= 1 are taken over the keypoints whose
    (u, v) leave a circle of that radius (normalised image units) round their start, not
    over the whole grid. On a mostly static scene the whole-grid std is a fraction of a
    pixel, so a moving hand's increments are many standard deviations: the flow's noise
    then hides them only at tau ~ 0, the model can read them off the noisy input at every
    other tau, and it never learns where the conditioning says they go. Scaled by the
    movers' std they are O(1), like the noise. Falls back to all keypoints when none move.
    """
    inc = np.stack(incs).astype(np.float64)  # (N, K, L, 3)
    m = np.stack(masks)[..., None].astype(np.float64)  # (N, K, L, 1)
    length = inc.shape[2]
    mean = np.zeros((length, 3))
    std = np.ones((length, 3))
    movers = np.ones(inc.shape[:2] + (1, 1))
    if moving_min > 0 and length > 1:
        disp = np.cumsum(inc[:, :, 1:, :2] * m[:, :, 1:], axis=2)  # (N, K, L-1, 2)
        moving = np.linalg.norm(disp, axis=-1).max(axis=2) > moving_min  # (N, K)
        if moving.any():
            movers = moving[:, :, None, None].astype(np.float64)
    for sl in (slice(0, 1), slice(1, length)):
        w = m[:, :, sl] * (movers if sl.start == 1 else 1.0)
        cnt = max(w.sum(), 1.0)
        mu = (inc[:, :, sl] * w).sum(axis=(0, 1, 2)) / cnt
        var = (((inc[:, :, sl] - mu) ** 2) * w).sum(axis=(0, 1, 2)) / cnt
        mean[sl] = mu
        std[sl] = np.maximum(np.sqrt(var), min_std)
    return mean.astype(np.float32), std.astype(np.float32)


def resize_rgb(rgb: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8 (area resampling; aspect not kept)."""
    interp = cv2.INTER_AREA if min(rgb.shape[:2]) > size else cv2.INTER_LINEAR
    return cv2.resize(rgb, (size, size), interpolation=interp)


def resize_depth(depth_m: np.ndarray, size: int) -> np.ndarray:
    """(H, W) metres (0 = missing) -> (size, size) float32, nearest (no mixing across edges)."""
    return cv2.resize(depth_m.astype(np.float32), (size, size), interpolation=cv2.INTER_NEAREST)


def sensor_depth_at(depth_m: np.ndarray, uv: np.ndarray, radius: int = 1) -> np.ndarray:
    """(K,) median of the valid sensor depths in a (2r+1)^2 window at each pixel (0 = none)."""
    h, w = depth_m.shape
    d = np.where(np.isfinite(depth_m) & (depth_m > 0), depth_m, np.nan).astype(np.float32)
    u = np.clip(np.rint(uv[:, 0]), 0, w - 1).astype(int)
    v = np.clip(np.rint(uv[:, 1]), 0, h - 1).astype(int)
    offs = np.arange(-radius, radius + 1)
    uu = np.clip(u[:, None, None] + offs[None, None, :], 0, w - 1)
    vv = np.clip(v[:, None, None] + offs[None, :, None], 0, h - 1)
    win = d[vv, uu].reshape(len(uv), -1)
    out = np.zeros(len(uv), np.float32)
    has = np.isfinite(win).any(axis=1)
    if has.any():
        out[has] = np.nanmedian(win[has], axis=1)
    return out


def depth_ratio_rescale(traj: np.ndarray, depth_m: np.ndarray, sigma_px: float,
                        sigma_m: float = 0.05) -> np.ndarray:
    """Rescale predicted depth to the sensor depth with a smoothed ratio map.

    traj: (K, L, 3) predicted trace (u px, v px, z m); depth_m: (H, W) sensor
    depth in metres (0 / non-finite = missing). At each keypoint's reference
    pixel the ratio r_k = sensor / predicted step-0 depth is formed (sensor =
    median of the valid pixels in a 3x3 window); the ratio map is smoothed with
    a Gaussian of ``sigma_px`` over the image plane whose weights are also
    Gaussian in the sensor-depth difference (``sigma_m``), so ratios do not
    bleed across depth edges (a gripper in front of the table), and keypoints
    without sensor depth take their neighbours' ratio (or the median ratio).
    Every step's z of keypoint k is multiplied by its smoothed ratio. Without
    any usable keypoint ``traj`` is returned unchanged.
    """
    uv0 = traj[:, 0, :2].astype(np.float64)
    z0 = traj[:, 0, 2].astype(np.float64)
    sensor = sensor_depth_at(depth_m, uv0).astype(np.float64)
    ok = (sensor > 0) & np.isfinite(z0) & (z0 > 1e-3)
    if not ok.any():
        return traj
    ratio = np.where(ok, sensor / np.where(ok, z0, 1.0), 0.0)
    if sigma_px > 0:
        d2 = ((uv0[:, None, :] - uv0[None, ok, :]) ** 2).sum(-1)
        w = np.exp(-0.5 * d2 / sigma_px ** 2)
        ref = np.where(sensor > 0, sensor, np.nan)
        dz = ref[:, None] - sensor[None, ok]
        w *= np.where(np.isfinite(dz), np.exp(-0.5 * (np.nan_to_num(dz) / sigma_m) ** 2), 1.0)
        wsum = w.sum(axis=1)
        smooth = np.where(wsum > 1e-6, (w * ratio[None, ok]).sum(axis=1) / np.maximum(wsum, 1e-12),
                          np.median(ratio[ok]))
    else:
        smooth = np.where(ok, ratio, np.median(ratio[ok]))
    out = traj.copy()
    out[..., 2] *= smooth[:, None].astype(np.float32)
    return out


def unproject(traj: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(..., 3) (u px, v px, z m) -> (..., 3) camera-frame (x, y, z) metres."""
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    z = traj[..., 2]
    return np.stack([(traj[..., 0] - cx) * z / fx, (traj[..., 1] - cy) * z / fy, z], axis=-1)
