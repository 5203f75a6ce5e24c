"""Trace3D / PoseArray / PolicyAction messages for tracegen_node (message types only, no rclpy node API)."""

from __future__ import annotations

from typing import Any

import numpy as np
from geometry_msgs.msg import Pose, PoseArray

from tracevla_ros.msg import PolicyAction, Trace3D

__all__ = ["trace3d_msg", "trace_from_msg", "waypoints_msg", "gripper_action_msg"]


def trace3d_msg(traj: np.ndarray, header: Any, width: int, height: int, instruction: str) -> Trace3D:
    """Trace3D (COORDS_PIXEL_DEPTH) from ``traj`` (K, L, 3) (u px, v px, z m); non-finite = invalid."""
    t = np.asarray(traj, np.float32)
    k, n = t.shape[:2]
    valid = np.all(np.isfinite(t), axis=2)
    msg = Trace3D(header=header, coordinates=Trace3D.COORDS_PIXEL_DEPTH, num_keypoints=k, length=n,
                  image_width=int(width), image_height=int(height), instruction=instruction)
    msg.points = np.where(valid[..., None], t, 0.0).astype(np.float32).reshape(-1)
    msg.valid = [bool(v) for v in valid.reshape(-1)]
    return msg


def trace_from_msg(msg: Trace3D) -> np.ndarray:
    """(K, L, 3) float32 from a Trace3D, -inf where not valid."""
    k, n = int(msg.num_keypoints), int(msg.length)
    t = np.asarray(msg.points, np.float32).reshape(k, n, 3).copy()
    t[~np.asarray(msg.valid, bool).reshape(k, n)] = -np.inf
    return t


def waypoints_msg(positions: np.ndarray, quat_xyzw: np.ndarray, header: Any) -> PoseArray:
    """PoseArray of end-effector waypoints (n, 3) m, all with orientation ``quat_xyzw``."""
    msg = PoseArray(header=header)
    x, y, z, w = (float(v) for v in quat_xyzw)
    for p in np.asarray(positions, np.float64).reshape(-1, 3):
        pose = Pose()
        pose.position.x, pose.position.y, pose.position.z = (float(v) for v in p)
        pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = x, y, z, w
        msg.poses.append(pose)
    return msg


def gripper_action_msg(is_open: bool, header: Any) -> PolicyAction:
    """One ``ee_delta_7d`` step with no motion and the gripper set (1 = open)."""
    return PolicyAction(header=header, action_space="ee_delta_7d", chunk_length=1, action_dim=7,
                        values=[0.0] * 6 + [1.0 if is_open else 0.0], trace_used=True)
