"""Ground truth from the MuJoCo sim: where every pixel's surface point really goes (no rclpy).

Used to check TraceForge (tracking + lifting) against the simulator and to build the
"oracle" traces of the evaluation. :func:`record_expert` runs a task's scripted expert and
keeps, per frame, RGB, depth, the end-effector position and every body's pose, plus a
segmentation (which body each pixel sees) of chosen frames. :func:`gt_points` then moves
the surface point under a pixel of frame ``ref`` rigidly with its body.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mujoco
import numpy as np

from tracegen_ros.traceforge.geometry import transform_points, unproject
from tracevla_ros.sim.env import SimEnv
from tracevla_ros.sim.experts import make_expert

__all__ = ["SimRecording", "record_expert", "gt_points", "camera_pose", "segment"]


@dataclass
class SimRecording:
    """One expert episode with privileged state (frame t = observation before action t)."""

    task: str
    instruction: str
    seed: int
    success: bool
    rgb: np.ndarray  # (T, H, W, 3) uint8
    depth: np.ndarray  # (T, H, W) float32 metres, 0 = no geometry
    ee_pos: np.ndarray  # (T, 3) end-effector site in the base frame, m
    body_pos: np.ndarray  # (T, nbody, 3) body positions, base frame, m
    body_rot: np.ndarray  # (T, nbody, 3, 3) body orientations
    K: np.ndarray  # (3, 3) intrinsics
    T_base_cam: np.ndarray  # (4, 4) optical frame in the base frame
    segmentation: dict[int, np.ndarray] = field(default_factory=dict)  # frame -> (H, W) body id, -1 none
    actions: np.ndarray = field(default_factory=lambda: np.zeros((0, 7)))  # (T, 7) ee_delta_7d


def camera_pose(env: SimEnv) -> np.ndarray:
    """(4, 4) pose of the scene camera's optical frame in the base (world) frame."""
    pos, rot = env.camera_pose()
    t = np.eye(4)
    t[:3, :3], t[:3, 3] = rot, pos
    return t


def segment(env: SimEnv, renderer: mujoco.Renderer) -> np.ndarray:
    """(H, W) int body id seen at each pixel of the scene camera (-1 = nothing)."""
    renderer.update_scene(env.data, env._cam_id)
    seg = renderer.render()
    gid, kind = seg[..., 0], seg[..., 1]
    out = np.full(gid.shape, -1, np.int64)
    is_geom = (kind == int(mujoco.mjtObj.mjOBJ_GEOM)) & (gid >= 0)
    out[is_geom] = env.model.geom_bodyid[gid[is_geom]]
    return out


def record_expert(env: SimEnv, seed: int, extra_steps: int = 2, max_steps: int | None = None,
                  segment_every: int = 0) -> SimRecording:
    """Reset ``env`` to ``seed`` and record its expert until success (+ ``extra_steps``).

    ``segment_every``: also keep the segmentation of every n-th frame (0 = frame 0 only).
    The recording ends like ``tracevla-collect`` episodes: the frame after the last action
    is not kept.
    """
    env.reset(seed)
    expert = make_expert(env)
    limit = env.task.max_steps if max_steps is None else max_steps
    seg_r = mujoco.Renderer(env.model, env.camera_info().height, env.camera_info().width)
    seg_r.enable_segmentation_rendering()
    rgb, depth, ee, bpos, brot, acts = [], [], [], [], [], []
    segs: dict[int, np.ndarray] = {}
    after = -1
    try:
        for t in range(limit):
            rgb.append(env.render())
            depth.append(env.render_depth())
            ee.append(env.ee_pose()[0])
            bpos.append(env.data.xpos.copy())
            brot.append(env.data.xmat.reshape(-1, 3, 3).copy())
            if t == 0 or (segment_every > 0 and t % segment_every == 0):
                segs[t] = segment(env, seg_r)
            if env.success() and after < 0:
                after = 0
            if after >= 0:
                if after >= extra_steps:
                    break
                after += 1
            a = expert.act()
            acts.append(a)
            env.step_ee_delta(a)
    finally:
        seg_r.close()
    n = len(acts)
    return SimRecording(
        task=env.task.name, instruction=env.instruction, seed=seed, success=env.success(),
        rgb=np.stack(rgb[:n]), depth=np.stack(depth[:n]), ee_pos=np.stack(ee[:n]),
        body_pos=np.stack(bpos[:n]), body_rot=np.stack(brot[:n]), K=env.camera_info().K,
        T_base_cam=camera_pose(env), segmentation={k: v for k, v in segs.items() if k < n},
        actions=np.asarray(acts))


def gt_points(rec: SimRecording, ref: int, keypoints: np.ndarray) -> np.ndarray:
    """(T - ref, N, 3) true positions, in the reference camera's optical frame (m), of the
    surface points under ``keypoints`` (N, 2) px of frame ``ref``, moved rigidly with the
    body each one lies on; NaN for pixels without depth or body. Needs ``rec.segmentation[ref]``.
    """
    if ref not in rec.segmentation:
        raise KeyError(f"no segmentation of frame {ref}; record with segment_every")
    kp = np.asarray(keypoints, np.float64).reshape(-1, 2)
    h, w = rec.depth.shape[1:]
    ui = np.clip(np.round(kp[:, 0]).astype(int), 0, w - 1)
    vi = np.clip(np.round(kp[:, 1]).astype(int), 0, h - 1)
    z = rec.depth[ref, vi, ui].astype(np.float64)
    body = rec.segmentation[ref][vi, ui]
    ok = (z > 0) & (body >= 0)
    p_cam = unproject(np.stack([ui, vi], 1).astype(np.float64), z, rec.K)
    p_base = transform_points(rec.T_base_cam, p_cam)
    b = np.where(ok, body, 0)
    local = np.einsum("nji,nj->ni", rec.body_rot[ref, b], p_base - rec.body_pos[ref, b])
    out = np.full((rec.rgb.shape[0] - ref, kp.shape[0], 3), np.nan)
    t_cam_base = np.linalg.inv(rec.T_base_cam)
    for i, t in enumerate(range(ref, rec.rgb.shape[0])):
        world = np.einsum("nij,nj->ni", rec.body_rot[t, b], local) + rec.body_pos[t, b]
        out[i, ok] = transform_points(t_cam_base, world[ok])
    return out
