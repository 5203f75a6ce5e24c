"""The scripted expert as a policy: privileged simulator state, no learning.

Only possible where the policy runs in the simulator's process (tracevla-demo);
the demo's summary says so. Proves the loop (camera -> tracker -> policy ->
controller -> arm) with a policy that is known to solve the task.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from tracevla_ros.policy.base import EE_DELTA_7D, ActionChunk, Observation


class _Expert(Protocol):
    def act(self) -> np.ndarray: ...

    def reset(self) -> None: ...


class ScriptedPolicy:
    """Wraps a ``tracevla_ros.sim.experts`` expert (reads the sim state directly)."""

    name = "scripted"

    def __init__(self, expert: _Expert) -> None:
        self._expert = expert

    def infer(self, obs: Observation) -> ActionChunk:
        action = np.asarray(self._expert.act(), dtype=np.float32).reshape(1, 7)
        return ActionChunk(values=action, action_space=EE_DELTA_7D, trace_used=obs.overlay is not None)

    def reset(self) -> None:
        self._expert.reset()
