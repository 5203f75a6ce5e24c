"""TraceVLA/OpenVLA ``ee_delta_7d`` actions -> end-effector targets, and gripper hysteresis.

Action space (msg/PolicyAction.msg, bridge_orig convention):
``[dx, dy, dz, droll, dpitch, dyaw, gripper]`` per step, translations [m] and rotation
angles [rad] in the robot base frame (REP 103), gripper in [0, 1] with 1 = open.

Rotation convention (checked against bridge_data_robot ``widowx_envs/utils/
transformation_utils.py``: ``action2transform_local`` builds the delta with
``eulerAnglesToRotationMatrix`` = Rz @ Ry @ Rx and applies it about the end-effector
position with base-frame axes, then left-multiplies the current pose)::

    R_delta  = Rz(dyaw) @ Ry(dpitch) @ Rx(droll)   # extrinsic x-y-z about base axes
    R_target = R_delta @ R_current
    p_target = p_current + [dx, dy, dz]

The gripper value is a continuous policy output; :class:`GripperHysteresis` turns it into
an open/closed command that only flips past a threshold: close when the value drops
below ``close_below`` while open, open when it rises above ``open_above`` while closed.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

__all__ = [
    "ActionError",
    "rpy_to_matrix",
    "integrate_ee_delta",
    "parse_ee_delta_chunk",
    "GripperHysteresis",
    "HysteresisConfig",
]


class ActionError(ValueError):
    """A policy action cannot be used (wrong size, non-finite); the message says which."""


def rpy_to_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """(3, 3) Rz(yaw) @ Ry(pitch) @ Rx(roll): extrinsic rotations about base x, then y, then z."""
    cr, sr = math.cos(roll), math.sin(roll)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    return np.array([
        [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
        [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
        [-sp, cp * sr, cp * cr],
    ])


def integrate_ee_delta(pos: np.ndarray, rot: np.ndarray, delta: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Apply one ``[dx, dy, dz, droll, dpitch, dyaw]`` step to the pose (pos, rot).

    Args:
        pos: (3,) current end-effector position in the base frame [m].
        rot: (3, 3) current rotation base <- end effector.
        delta: (6,) or (7,) action; a 7th (gripper) value is ignored here.
    Returns:
        (3,) target position [m], (3, 3) target rotation (``R_delta @ rot``).
    Raises:
        ActionError if ``delta`` is shorter than 6 or has NaN/inf in its first 6 values.
    """
    d = np.asarray(delta, dtype=np.float64).ravel()
    if d.size < 6:
        raise ActionError(f"ee_delta action needs >= 6 values, got {d.size}")
    if not np.all(np.isfinite(d[:6])):
        raise ActionError(f"ee_delta action has NaN/inf: {d[:6]}")
    r_delta = rpy_to_matrix(float(d[3]), float(d[4]), float(d[5]))
    return np.asarray(pos, dtype=np.float64) + d[:3], r_delta @ np.asarray(rot, dtype=np.float64)


def parse_ee_delta_chunk(values: np.ndarray | Sequence[float], chunk_length: int,
                         action_dim: int) -> np.ndarray:
    """PolicyAction ``values`` (H*D row-major) -> (H, 7) float64 array for ``ee_delta_7d``.

    Raises ActionError when the sizes do not match or D != 7.
    """
    if action_dim != 7:
        raise ActionError(f"ee_delta_7d needs action_dim 7, got {action_dim}")
    if chunk_length < 1:
        raise ActionError(f"chunk_length must be >= 1, got {chunk_length}")
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size != chunk_length * action_dim:
        raise ActionError(
            f"values has {arr.size} entries, expected chunk_length*action_dim = "
            f"{chunk_length}*{action_dim}")
    return arr.reshape(chunk_length, action_dim)


@dataclasses.dataclass(frozen=True)
class HysteresisConfig:
    """Gripper thresholds on the policy's [0, 1] value (1 = open).

    Attributes:
        close_below: an open gripper closes when the value drops below this.
        open_above: a closed gripper opens when the value rises above this.
    """

    close_below: float = 0.05
    open_above: float = 0.95

    def __post_init__(self) -> None:
        if not (0.0 <= self.close_below < self.open_above <= 1.0):
            raise ValueError(
                f"need 0 <= close_below < open_above <= 1, got {self.close_below}, {self.open_above}")


class GripperHysteresis:
    """Open/closed gripper state driven by a noisy [0, 1] value, with hysteresis.

    Non-finite values keep the current state (and are reported by :meth:`update`).
    """

    def __init__(self, config: HysteresisConfig | None = None, is_open: bool = True) -> None:
        self.config = config or HysteresisConfig()
        self.is_open = is_open

    def update(self, value: float) -> tuple[bool, bool]:
        """Feed one policy value; returns (is_open, changed)."""
        v = float(value)
        if not math.isfinite(v):
            return self.is_open, False
        if self.is_open and v < self.config.close_below:
            self.is_open = False
            return False, True
        if not self.is_open and v > self.config.open_above:
            self.is_open = True
            return True, True
        return self.is_open, False

    @property
    def openness(self) -> float:
        """1.0 when open, 0.0 when closed (for ``RobotSpec.gripper_position``)."""
        return 1.0 if self.is_open else 0.0
