"""A small deterministic backend for the remote tests (served by a real tracevla-serve).

``make_policy`` is given to the server as ``vla_test_backend:make_policy`` (with
test/support on PYTHONPATH). The action encodes what the server received, so a
round trip can be checked value by value:

    [image[0, 0, 0] / 1000, image mean / 1000, overlay[0, 0, 1] / 1000 (0 without),
     len(instruction) / 1000, sum(proprio), resets / 100, 1.0]

Instructions starting with a keyword change the behaviour: ``sleep S`` sleeps S
seconds first, ``nan`` returns NaN in dim 2, ``fail`` raises PolicyError,
``crash`` raises ZeroDivisionError.
"""

from __future__ import annotations

import time

import numpy as np

from tracevla_ros.policy.base import ActionChunk, Observation, PolicyError
from tracevla_ros.policy.config import PolicyNodeConfig


class EncodingPolicy:
    name = "test-encoder"

    def __init__(self) -> None:
        self.resets = 0

    def infer(self, obs: Observation) -> ActionChunk:
        words = obs.instruction.split()
        if words[0] == "sleep":
            time.sleep(float(words[1]))
        if words[0] == "fail":
            raise PolicyError("test backend refuses this instruction")
        if words[0] == "crash":
            raise ZeroDivisionError("division by zero in the test backend")
        ovl = 0.0 if obs.overlay is None else float(obs.overlay[0, 0, 1]) / 1000.0
        v = np.array([[float(obs.image[0, 0, 0]) / 1000.0, float(obs.image.mean()) / 1000.0, ovl,
                       len(obs.instruction) / 1000.0, float(np.sum(obs.proprio)),
                       self.resets / 100.0, 1.0]], np.float32)
        if words[0] == "nan":
            v[0, 2] = np.nan
        return ActionChunk(values=v, trace_used=obs.overlay is not None)

    def reset(self) -> None:
        self.resets += 1


def make_policy(cfg: PolicyNodeConfig) -> EncodingPolicy:
    return EncodingPolicy()
