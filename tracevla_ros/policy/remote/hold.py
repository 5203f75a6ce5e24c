"""A backend that commands no motion: for checking the robot <-> server link.

``tracevla-serve --backend tracevla_ros.policy.remote.hold:make_hold_policy``
answers every request with zero end-effector deltas and the gripper where the
observation's proprioception says it is (open when unknown).
"""

from __future__ import annotations

import numpy as np

from tracevla_ros.policy.base import EE_DELTA_7D, ActionChunk, Observation
from tracevla_ros.policy.config import PolicyNodeConfig

__all__ = ["HoldPolicy", "make_hold_policy"]


class HoldPolicy:
    name = "hold"

    def infer(self, obs: Observation) -> ActionChunk:
        grip = float(np.clip(obs.proprio[-1], 0.0, 1.0)) if obs.proprio.size else 1.0
        values = np.array([[0, 0, 0, 0, 0, 0, grip]], np.float32)
        return ActionChunk(values=values, action_space=EE_DELTA_7D, trace_used=obs.overlay is not None)

    def reset(self) -> None:
        """No state."""


def make_hold_policy(cfg: PolicyNodeConfig) -> HoldPolicy:
    return HoldPolicy()
