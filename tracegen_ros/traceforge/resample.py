"""Speed retargeting: resample a 3D path to L points equally spaced in arc length (no rclpy).

TraceGen traces are indexed by progress along the path, not by time: a trace that
pauses and then moves fast becomes L points evenly spread along where it went. This
removes the demonstrator's speed while keeping the path's shape (see the tests on a
circle and a helix).
"""

from __future__ import annotations

import numpy as np

__all__ = ["arc_length", "resample_by_arc_length"]


def arc_length(path: np.ndarray) -> np.ndarray:
    """(T,) cumulative Euclidean length along ``path`` (T, D), starting at 0."""
    p = np.asarray(path, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < 1:
        raise ValueError(f"path must be (T, D) with T >= 1, got {p.shape}")
    seg = np.linalg.norm(np.diff(p, axis=0), axis=1)
    return np.concatenate([[0.0], np.cumsum(seg)])


def resample_by_arc_length(path: np.ndarray, n: int, min_length: float = 0.0) -> np.ndarray:
    """``n`` points (n, D) along the polyline ``path`` (T, D), equally spaced in arc length.

    The first and last points are the path's ends; points in between are linear
    interpolations on the polyline. A path shorter than ``min_length`` (a static point;
    noise) is returned as ``n`` copies of its first point. Non-finite rows must be
    removed by the caller.
    """
    p = np.asarray(path, dtype=np.float64)
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    if p.ndim != 2 or p.shape[0] < 1 or not np.all(np.isfinite(p)):
        raise ValueError(f"path must be a finite (T, D) array with T >= 1, got {p.shape}")
    s = arc_length(p)
    total = s[-1]
    if p.shape[0] == 1 or total <= max(min_length, 0.0) or total == 0.0:
        return np.repeat(p[:1], n, axis=0)
    # Drop zero-length segments so the arc-length parameter is strictly increasing.
    keep = np.concatenate([[True], np.diff(s) > 0.0])
    s, p = s[keep], p[keep]
    targets = np.linspace(0.0, total, n)
    idx = np.clip(np.searchsorted(s, targets, side="right") - 1, 0, len(s) - 2)
    t = (targets - s[idx]) / (s[idx + 1] - s[idx])
    out = p[idx] + t[:, None] * (p[idx + 1] - p[idx])
    out[0], out[-1] = p[0], p[-1]
    return out
