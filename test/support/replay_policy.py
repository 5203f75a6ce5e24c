"""A small deterministic policy for the replay tests (backend ``replay_policy:make_policy``
with test/support on the Python path).

Its action is a fixed function of everything a policy sees -- image, overlay (or
its absence), instruction, joint positions -- and of how many calls happened
since the last reset, so a replay reproduces the recorded actions only when it
feeds exactly the same observations in the same order.
"""

from __future__ import annotations

import zlib

import numpy as np

from tracevla_ros.policy.base import EE_DELTA_7D, ActionChunk, Observation
from tracevla_ros.policy.config import PolicyNodeConfig


class ReplayTestPolicy:
    name = "replay_test_policy"

    def __init__(self) -> None:
        self.calls = 0

    def infer(self, obs: Observation) -> ActionChunk:
        self.calls += 1
        img = obs.image.astype(np.float64)
        ov = obs.overlay.astype(np.float64) if obs.overlay is not None else None
        text = zlib.crc32(obs.instruction.encode()) % 1000 / 1000.0
        v = np.array([
            img[..., 0].mean() / 255.0 * 0.01,
            img[::7, ::5, 1].std() / 255.0 * 0.01,
            (float(np.abs(ov - img).mean()) if ov is not None else -1.0) * 0.001,
            float(np.sum(obs.proprio)) * 0.001,
            text * 0.01,
            (self.calls % 7) * 0.001,
            0.5 + 0.4 * np.sin(img[::3, ::3].sum() * 1e-6),
        ], np.float32)
        return ActionChunk(values=v.reshape(1, 7), action_space=EE_DELTA_7D,
                           trace_used=obs.overlay is not None)

    def reset(self) -> None:
        self.calls = 0


def make_policy(cfg: PolicyNodeConfig) -> ReplayTestPolicy:
    return ReplayTestPolicy()


class FailingTestPolicy(ReplayTestPolicy):
    """Every call fails the way a broken backend does (PolicyError)."""

    name = "failing_test_policy"

    def infer(self, obs: Observation) -> ActionChunk:
        from tracevla_ros.policy.base import PolicyError

        self.calls += 1
        raise PolicyError("the test backend always fails")


def make_failing_policy(cfg: PolicyNodeConfig) -> FailingTestPolicy:
    return FailingTestPolicy()
