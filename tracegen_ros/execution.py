"""From a predicted 3D trace to end-effector waypoints and gripper events (no rclpy).

TraceGen predicts how the scene moves; the robot executes the motion of its own gripper:

0. :func:`anchor_to_sensor`: each trace's depth is scaled so its step 0 has the sensor's
   depth at its keypoint (exact where the model's smoothed depth rescaling is not: at the
   gripper's silhouette).
1. :func:`select_gripper_keypoints`: the keypoints on the gripper are those nearest to the
   end effector's projection in the reference frame (within ``gripper_radius_px``), whose
   depth at step 0 is within ``gripper_depth_tol_m`` of the end effector's (so the table
   seen between the fingers is not taken), preferring ones whose trace moves and is known to
   its end (TraceForge marks a lost track's tail invalid), then the nearest.
2. :func:`gripper_path`: their traces, unprojected to metres in the camera frame, give the
   gripper's displacement from the reference frame at each step (mean over the keypoints);
   rotated into the robot base frame with the configured extrinsic ``T_base_cam`` and added
   to the end effector's current position, they are the end-effector waypoints. The
   orientation is kept (top-down grasps: TraceGen's trace carries no orientation).
3. :func:`gripper_events`: the trace has no gripper channel either, so the gripper follows
   the path's height profile in the base frame: where the path comes down from above to a
   low point (below ``grasp_height_m``) the gripper is opened before and closed there; if
   the path then rises by ``lift_m`` (a pick) it opens again at the first low point after
   the highest point (the place) when that point is ``place_above_m`` above the grasp. A
   path that stays low after the grasp, or comes back down to the table (a pusher moving
   round the object), is a push: the gripper stays closed, as the scripted pushing expert's.

The waypoints then go through the controller's IK and safety layer
(``ArmController.plan_waypoints`` / ``franka_controller_node``'s ``ee_waypoints``).

Any trace source plugs in through :class:`TracePredictor` (the learned model, the oracle
traces of the evaluation, the no-motion baseline).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from tracegen_ros.traceforge.geometry import invert_pose, transform_points, uvz_to_xyz, xyz_to_uvz

__all__ = ["anchor_to_sensor", "TracePredictor", "ExecutionConfig", "ExecutionError", "Segment", "ExecutionPlan",
           "select_gripper_keypoints", "gripper_path", "gripper_events", "plan_execution",
           "ee_pixel", "NoMotionPredictor", "FixedTracePredictor"]

log = logging.getLogger(__name__)


class ExecutionError(ValueError):
    """A trace cannot be turned into robot motion; the message says why."""


@runtime_checkable
class TracePredictor(Protocol):
    """What the execution path needs from a trace model (TraceGenPredictor fits it)."""

    def predict(self, rgb: np.ndarray, depth_m: np.ndarray, K: np.ndarray, instruction: str,
                steps: int = 100, guidance: float | None = None, seed: int = 0) -> np.ndarray:
        """(400, 32, 3) float32 screen-aligned (u px, v px, z m) traces in this camera's frame,
        for the grid of ``tracegen_ros.data.grid_keypoints``; -inf/NaN = unknown.

        rgb: (H, W, 3) uint8; depth_m: (H, W) float32 metres (0 = invalid); K: (3, 3)."""
        ...


@dataclass(frozen=True)
class ExecutionConfig:
    """How a trace becomes waypoints (defaults for the FR3 sim cell, in metres / pixels)."""

    gripper_radius_px: float = 30.0  # px around the ee projection where gripper keypoints are searched
    gripper_depth_tol_m: float = 0.10  # m: step-0 depth within this of the ee's = on the gripper
    gripper_points: int = 3  # keypoints averaged
    min_motion_m: float = 0.02  # m: a keypoint whose trace moves less is preferred last
    min_known_fraction: float = 0.8  # traces known for fewer steps than this x the longest come
    # after the others (a tracker lost them: their path stops early); 0 = nearest only
    min_waypoint_step_m: float = 0.005  # m: closer waypoints are merged
    grasp_height_m: float = 0.06  # m (base z): a low point below this is a grasp / push contact
    approach_drop_m: float = 0.03  # m: the path must come down this much to that low point
    lift_m: float = 0.03  # m: rise after the grasp that makes it a pick (else a push)
    place_above_m: float = 0.02  # m: a place (release) point is this much above the grasp point;
    # lower, the path went back to the table: a pusher re-approaching, the gripper stays closed
    z_min_m: float = 0.022  # m: waypoints are kept at least this high (the controllers' box z >= 0.02)
    execute_steps: int = 0  # receding horizon: execute the trace up to this step only (the caller
    # predicts again from the new frame); gripper events are found on the whole trace and kept
    # where they fall inside; 0 = the whole trace

    def __post_init__(self) -> None:
        if self.gripper_radius_px <= 0 or self.gripper_points < 1 or self.gripper_depth_tol_m <= 0:
            raise ValueError("gripper_radius_px and gripper_depth_tol_m must be > 0, "
                             "gripper_points >= 1")
        if self.execute_steps < 0:
            raise ValueError(f"execute_steps must be >= 0 (0 = the whole trace), got {self.execute_steps}")


@dataclass(frozen=True)
class Segment:
    """Move through ``positions`` (n, 3) m (base frame), then set the gripper (None = unchanged)."""

    positions: np.ndarray
    gripper_open_after: bool | None


@dataclass(frozen=True)
class ExecutionPlan:
    keypoints: np.ndarray  # (n,) indices of the gripper keypoints used
    path: np.ndarray  # (P, 3) end-effector waypoints, base frame, m
    gripper_before: bool | None  # gripper command before moving (None = unchanged)
    segments: list[Segment] = field(default_factory=list)
    grasp_index: int | None = None  # waypoint where the gripper closes
    release_index: int | None = None  # waypoint where it opens again


def ee_pixel(ee_pos_base: np.ndarray, T_base_cam: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(3,) screen-aligned (u, v, z) of the end-effector position in the camera."""
    p = transform_points(invert_pose(T_base_cam), np.asarray(ee_pos_base, np.float64).reshape(1, 3))
    return xyz_to_uvz(p, K)[0]


def _valid(traj: np.ndarray) -> np.ndarray:
    return np.all(np.isfinite(traj), axis=-1)


def anchor_to_sensor(traj: np.ndarray, depth_m: np.ndarray) -> np.ndarray:
    """Scale each trace's z so that step 0 has the sensor's depth at its keypoint.

    A predicted trace's depth is rescaled to the sensor with a *smoothed* ratio map; at the
    gripper's silhouette the smoothing mixes the hand's and the background's depths. The
    keypoint's own sensor depth is exact, so each trace (N, L, 3) is scaled by
    sensor(k) / z_k(0) where the sensor has a depth (unchanged elsewhere). Steps predicted
    at a depth <= 0 (behind the camera: not a point) become invalid (-inf).
    """
    from tracegen_ros.traceforge.geometry import sample_depth

    t = np.array(traj, np.float64)
    t[~(t[..., 2] > 0.0)] = -np.inf
    z_s = sample_depth(depth_m, t[:, 0, :2])
    ok = np.isfinite(z_s) & np.isfinite(t[:, 0, 2]) & (t[:, 0, 2] > 1e-3)
    t[ok, :, 2] *= (z_s[ok] / t[ok, 0, 2])[:, None]
    return t


def select_gripper_keypoints(traj: np.ndarray, ee_uvz: np.ndarray, K: np.ndarray,
                             cfg: ExecutionConfig = ExecutionConfig()) -> np.ndarray:
    """Indices (n,) of the keypoints on the gripper (see the module doc), nearest first.

    traj: (N, L, 3) screen-aligned traces of the reference frame (step-0 depth anchored to
    the sensor, :func:`anchor_to_sensor`); ee_uvz: (3,) the end effector's (u, v, z) there.
    Raises ExecutionError when none qualifies.
    """
    t = np.asarray(traj, np.float64)
    ok0 = _valid(t[:, 0])
    d_px = np.linalg.norm(t[:, 0, :2] - ee_uvz[:2], axis=1)
    near = ok0 & (d_px <= cfg.gripper_radius_px) & (np.abs(t[:, 0, 2] - ee_uvz[2]) <= cfg.gripper_depth_tol_m)
    cand = np.flatnonzero(near)
    if cand.size == 0:
        raise ExecutionError(
            f"no keypoint on the gripper: the end effector projects to pixel "
            f"({ee_uvz[0]:.0f}, {ee_uvz[1]:.0f}) at {ee_uvz[2]:.2f} m and no trace starts within "
            f"{cfg.gripper_radius_px:.0f} px and {cfg.gripper_depth_tol_m:.2f} m of it; is the "
            f"gripper in view and T_base_cam right?")
    xyz = uvz_to_xyz(np.where(np.isfinite(t[cand]), t[cand], np.nan), K)
    motion = np.nanmax(np.linalg.norm(xyz - xyz[:, :1], axis=2), axis=1)
    moving = np.nan_to_num(motion, nan=0.0) >= cfg.min_motion_m
    known = _valid(t[cand]).sum(axis=1)
    # moving first; then traces known (nearly) to the end, then the nearest
    short = known < cfg.min_known_fraction * known.max()
    order = np.lexsort((d_px[cand], short, ~moving))
    return cand[order][: cfg.gripper_points]


def gripper_path(traj: np.ndarray, keypoints: np.ndarray, K: np.ndarray, T_base_cam: np.ndarray,
                 ee_pos_base: np.ndarray, cfg: ExecutionConfig = ExecutionConfig()) -> np.ndarray:
    """(P, 3) end-effector waypoints in the base frame from the gripper keypoints' traces.

    Step l's waypoint = ee position + R_base_cam @ mean_k(X_k(l) - X_k(0)) over the keypoints
    known at step l; the path ends at the first step none of them is known. Waypoints closer
    than ``min_waypoint_step_m`` to the previous one are merged; z >= ``z_min_m``.
    """
    return _gripper_path(traj, keypoints, K, T_base_cam, ee_pos_base, cfg)[0]


def _gripper_path(traj: np.ndarray, keypoints: np.ndarray, K: np.ndarray, T_base_cam: np.ndarray,
                  ee_pos_base: np.ndarray, cfg: ExecutionConfig) -> tuple[np.ndarray, np.ndarray]:
    """:func:`gripper_path` and the trace step (P,) of each waypoint."""
    t = np.asarray(traj, np.float64)[keypoints]
    xyz = uvz_to_xyz(np.where(np.isfinite(t), t, np.nan), K)  # (n, L, 3)
    disp = xyz - xyz[:, :1]
    known = np.all(np.isfinite(disp), axis=2)
    steps = int(np.argmin(known.any(axis=0))) if not known.any(axis=0).all() else known.shape[1]
    mean = np.array([disp[known[:, s], s].mean(axis=0) for s in range(steps)]).reshape(-1, 3)
    rot = np.asarray(T_base_cam, np.float64)[:3, :3]
    path = np.asarray(ee_pos_base, np.float64).reshape(1, 3) + mean @ rot.T
    path[:, 2] = np.maximum(path[:, 2], cfg.z_min_m)
    keep = [0]
    for i in range(1, len(path)):
        if np.linalg.norm(path[i] - path[keep[-1]]) >= cfg.min_waypoint_step_m:
            keep.append(i)
    if len(path) > 1 and keep[-1] != len(path) - 1:
        keep[-1] = len(path) - 1  # always end where the trace ends
    return path[keep], np.asarray(keep, int)


def gripper_events(z: np.ndarray, gripper_open: bool, cfg: ExecutionConfig = ExecutionConfig()
                   ) -> tuple[bool | None, int | None, int | None]:
    """(command before moving, grasp index, release index) from the path heights ``z`` (P,) m.

    See the module doc for the rule; ``gripper_open`` is the gripper's current state.
    """
    z = np.asarray(z, np.float64)
    n = len(z)
    grasp = None
    for i in range(n):
        settled = i == n - 1 or z[i + 1] >= z[i] - 0.003
        if z[i] < cfg.grasp_height_m and settled and np.max(z[: i + 1]) - z[i] >= cfg.approach_drop_m:
            grasp = i
            break
    if grasp is not None:
        before: bool | None = None if gripper_open else True  # open before coming down on it
        start = grasp
    elif not gripper_open:
        before, start = None, 0  # already holding something: maybe place it
    else:
        return None, None, None
    after = z[start:]
    peak = start + int(np.argmax(after))
    if z[peak] - z[start] < cfg.lift_m:
        return before, grasp, None  # stays low: a push with the closed gripper
    release = None
    for i in range(peak + 1, n):
        settled = i == n - 1 or z[i + 1] >= z[i] - 0.002
        if settled and z[i] < z[peak] - 0.02:
            release = i
            break
    if release is None:
        release = n - 1  # still carrying at the end of the trace: put it down there
    elif z[release] < z[start] + cfg.place_above_m:
        return before, grasp, None  # came back down to the table: a new push, not a place
    return before, grasp, release


def plan_execution(traj: np.ndarray, K: np.ndarray, T_base_cam: np.ndarray, ee_pos_base: np.ndarray,
                   gripper_open: bool, cfg: ExecutionConfig = ExecutionConfig(),
                   depth_m: np.ndarray | None = None) -> ExecutionPlan:
    """The whole execution path for one predicted trace (N, L, 3) of the current frame.

    ``depth_m``: (H, W) sensor depth of that frame; when given, traces are anchored to it
    (:func:`anchor_to_sensor`) before the gripper keypoints are chosen.
    """
    t = np.asarray(traj, np.float64)
    if t.ndim != 3 or t.shape[2] != 3:
        raise ExecutionError(f"trace must be (N, L, 3) screen-aligned (u, v, z), got {t.shape}")
    if depth_m is not None:
        t = anchor_to_sensor(t, depth_m)
    ee = ee_pixel(ee_pos_base, T_base_cam, K)
    kp = select_gripper_keypoints(t, ee, K, cfg)
    path, steps = _gripper_path(t, kp, K, T_base_cam, ee_pos_base, cfg)
    before, grasp, release = gripper_events(path[:, 2], gripper_open, cfg)
    if cfg.execute_steps > 0:  # receding horizon: the events are those of the whole trace
        n = max(1, int(np.searchsorted(steps, cfg.execute_steps, side="right")))
        path = path[:n]
        grasp = grasp if grasp is not None and grasp < n else None
        release = release if release is not None and release < n else None
    cuts: list[tuple[int, bool]] = []
    if grasp is not None:
        cuts.append((grasp, False))
    if release is not None:
        cuts.append((release, True))
    segments, start = [], 0
    for idx, is_open in cuts:
        segments.append(Segment(path[start: idx + 1], is_open))
        start = idx + 1
    if start < len(path):
        segments.append(Segment(path[start:], None))
    return ExecutionPlan(kp, path, before, segments, grasp, release)


class NoMotionPredictor:
    """Baseline: nothing moves (every keypoint stays at its pixel and sensor depth)."""

    def predict(self, rgb: np.ndarray, depth_m: np.ndarray, K: np.ndarray, instruction: str,
                steps: int = 100, guidance: float | None = None, seed: int = 0) -> np.ndarray:
        from tracegen_ros.data import TRACE_LEN, grid_keypoints
        from tracegen_ros.traceforge.geometry import check_rgbd, sample_depth

        rgb, depth = check_rgbd(rgb, depth_m)
        kp = grid_keypoints(*depth.shape)
        z = sample_depth(depth, kp)
        uvz = np.concatenate([kp, z[:, None]], axis=1).astype(np.float32)
        uvz[~np.isfinite(z)] = -np.inf
        return np.repeat(uvz[:, None, :], TRACE_LEN, axis=1)


class FixedTracePredictor:
    """Returns a given trace (the oracle: TraceForge run on the expert's own episode)."""

    def __init__(self, traj: np.ndarray) -> None:
        self.traj = np.asarray(traj, np.float32)

    def predict(self, rgb: np.ndarray, depth_m: np.ndarray, K: np.ndarray, instruction: str,
                steps: int = 100, guidance: float | None = None, seed: int = 0) -> np.ndarray:
        return self.traj
