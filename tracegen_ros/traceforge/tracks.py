"""Grid tracks in 2D, lifted to 3D, retargeted to L steps (no rclpy).

The three steps of a TraceForge sample after its reference frame is chosen:

1. :func:`track_2d`: follow the keypoints from the reference frame through the chunk with
   the project's point tracker (``tracevla_ros.tracking``, LK by default; a lost point
   stays lost).
2. :func:`lift_tracks`: read each tracked pixel's depth and unproject it with the
   intrinsics; with a moving camera, express every frame's points in the reference
   camera's frame using the camera poses. A depth jump between consecutive frames larger
   than ``max_depth_jump_m`` (the point slid off its object onto another surface) ends the
   track there.
3. :func:`retarget`: resample each 3D track to L points equally spaced in arc length and
   project back to screen-aligned (u, v, z) in the reference camera. A track lost before
   the chunk ends keeps ``round(L * observed_fraction)`` valid steps (its known part of
   the path), the rest is -inf.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from tracegen_ros.traceforge.geometry import (
    invert_pose,
    sample_depth,
    transform_points,
    unproject,
    xyz_to_uvz,
)
from tracegen_ros.traceforge.resample import resample_by_arc_length
from tracevla_ros.tracking.backend import PointTrackerBackend, make_backend
from tracevla_ros.tracking.config import TrackerConfig
from tracevla_ros.tracking.frames import Frame, make_frame

__all__ = ["TrackOptions", "track_2d", "lift_tracks", "retarget", "make_frames"]


@dataclass(frozen=True)
class TrackOptions:
    """How tracks are made and cleaned (defaults measured on the FR3 sim, see tests)."""

    backend: str = "lk"  # tracevla_ros.tracking backend
    # Measured on FR3 sim episodes against the simulator's ground truth (hand points, 6
    # episodes): window 15 / 3 levels / residual 8 kept the rotating hand tracked over 3-21 %
    # of a push episode, window 21 / 4 levels / no residual check / fb 2 px over 43-69 % at a
    # median 3D error of 0.6-1.4 cm. Offline, the larger window is affordable.
    lk_window: int = 21  # px
    lk_levels: int = 4  # pyramid levels: FR3 sim motion reaches ~10 px per 5 Hz frame
    fb_threshold_px: float = 2.0  # px, forward-backward consistency
    lk_max_residual: float = 0.0  # grey levels; 0 = off (the hand's shading changes as it turns)
    max_depth_jump_m: float = 0.05  # m between consecutive frames: larger = slid off its surface
    min_path_m: float = 0.003  # m: a shorter 3D path is noise on a static point

    def tracker_config(self) -> TrackerConfig:
        return TrackerConfig(backend=self.backend, lk_window=self.lk_window, lk_levels=self.lk_levels,
                             fb_threshold_px=self.fb_threshold_px,
                             lk_max_residual=self.lk_max_residual, prefilter_gray=0.0)


def make_frames(rgb: Sequence[np.ndarray] | np.ndarray) -> list[Frame]:
    """Tracker frames from RGB images (H, W, 3) uint8 (stamps = indices)."""
    return [make_frame(np.asarray(im), float(i), keep_color=False) for i, im in enumerate(rgb)]


def track_2d(frames: Sequence[Frame], keypoints: np.ndarray,
             backend: PointTrackerBackend | None = None,
             options: TrackOptions = TrackOptions()) -> tuple[np.ndarray, np.ndarray]:
    """Track ``keypoints`` (K, 2) px from ``frames[0]`` on.

    Returns tracks (T, K, 2) float32 px and visible (T, K) bool; once lost, a point stays
    not visible (``visible[t]`` implies ``visible[:t]``).
    """
    be = backend if backend is not None else make_backend(options.tracker_config())
    tracks, visible = be.track(list(frames), np.asarray(keypoints, np.float32))
    visible = np.logical_and.accumulate(visible, axis=0)
    return tracks, visible


def lift_tracks(tracks: np.ndarray, visible: np.ndarray, depths: Sequence[np.ndarray] | np.ndarray,
                K: np.ndarray, T_ref_cam: np.ndarray | None = None,
                max_depth_jump_m: float = 0.05) -> np.ndarray:
    """3D tracks (T, K, 3) metres in the reference camera's optical frame, NaN where unknown.

    tracks: (T, K, 2) px; visible: (T, K) bool; depths: T depth images (H, W) metres
    (0 = invalid); K: (3, 3) intrinsics (the same camera in every frame);
    T_ref_cam: (T, 4, 4) pose of frame t's camera in the reference camera (None = static).
    A track ends (NaN from there) when it is lost, or when its depth jumps by more than
    ``max_depth_jump_m`` between consecutive frames where it has depth.
    """
    tr = np.asarray(tracks, np.float64)
    n_t, n_k = tr.shape[:2]
    out = np.full((n_t, n_k, 3), np.nan)
    alive = np.ones(n_k, bool)
    last_z = np.full(n_k, np.nan)
    for t in range(n_t):
        alive &= np.asarray(visible[t], bool)
        z = sample_depth(depths[t], tr[t])
        jump = np.isfinite(z) & np.isfinite(last_z) & (np.abs(z - last_z) > max_depth_jump_m)
        alive &= ~jump
        ok = alive & np.isfinite(z)
        p = unproject(tr[t, ok], z[ok], K)
        if T_ref_cam is not None:
            p = transform_points(T_ref_cam[t], p)
        out[t, ok] = p
        last_z = np.where(ok, z, last_z)
    return out


def retarget(xyz: np.ndarray, K: np.ndarray, length: int,
             min_path_m: float = 0.003) -> tuple[np.ndarray, np.ndarray]:
    """Speed-retarget 3D tracks to ``length`` steps, screen-aligned in the reference camera.

    xyz: (T, K, 3) metres in the reference optical frame, NaN where unknown (from
    :func:`lift_tracks`). Returns traj (K, length, 3) float32 (u px, v px, z m), -inf where
    invalid, and valid (K, length) bool. Step 0 is the track's position at the reference
    frame; a track without depth there is invalid throughout.
    """
    p = np.asarray(xyz, np.float64)
    n_t, n_k = p.shape[:2]
    traj = np.full((n_k, length, 3), -np.inf, np.float32)
    valid = np.zeros((n_k, length), bool)
    fin = np.all(np.isfinite(p), axis=2)  # (T, K)
    for k in range(n_k):
        if not fin[0, k]:
            continue
        times = np.flatnonzero(fin[:, k])
        last = int(times[-1])
        # known part of the chunk -> that share of the L steps
        n_valid = length if n_t <= 1 or last == n_t - 1 else \
            int(np.clip(round(length * last / (n_t - 1)), 1, length))
        path = p[times, k]
        pts = path[:1] if n_valid == 1 else resample_by_arc_length(path, n_valid, min_path_m)
        traj[k, :n_valid] = xyz_to_uvz(pts, K).astype(np.float32)
        valid[k, :n_valid] = True
    return traj, valid


def ee_trace(ee_base: np.ndarray, T_base_cam: np.ndarray, K: np.ndarray, length: int,
             min_path_m: float = 0.003) -> np.ndarray:
    """(length, 3) float32 screen-aligned trace of an end effector's positions (T, 3) in the
    base frame, seen from a fixed camera at ``T_base_cam``, retargeted like the keypoints."""
    p_cam = transform_points(invert_pose(T_base_cam), np.asarray(ee_base, np.float64))
    pts = resample_by_arc_length(p_cam, length, min_path_m)
    return xyz_to_uvz(pts, K).astype(np.float32)
