"""The policy interface shared by every backend, the node, and (later) the trainers.

Action space ``ee_delta_7d`` (TraceVLA / OpenVLA bridge_orig convention):
``[dx, dy, dz, droll, dpitch, dyaw, gripper]`` per policy step, translations in
metres and rotations in radians in the robot base frame (REP 103), gripper in
[0, 1] with 1 = open.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from tracevla_ros.policy.prompt import VisualPrompt

EE_DELTA_7D = "ee_delta_7d"
ACTION_DIMS = {EE_DELTA_7D: 7}


class PolicyError(RuntimeError):
    """A policy cannot produce a usable action; the message says why."""


@dataclass(frozen=True)
class Observation:
    """What a policy sees at one policy step.

    image:       (H, W, 3) uint8 RGB, the current camera frame.
    overlay:     (H, W, 3) uint8 RGB, the same frame with the visual trace drawn,
                 or None when no valid trace exists (the policy then uses its
                 no-trace form).
    instruction: the language instruction (non-empty).
    proprio:     (P,) float32 proprioception (joint positions in rad, then the
                 gripper opening in [0, 1]); may be empty.
    stamp:       the camera frame's stamp (s).
    prompt:      the active pixel-level visual prompt (PixelVLA: points, lines, boxes,
                 mask; ``tracevla_ros.policy.prompt``), or None. Backends that do not
                 take prompts ignore it.
    """

    image: np.ndarray
    overlay: np.ndarray | None
    instruction: str
    proprio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    stamp: float = 0.0
    prompt: VisualPrompt | None = None

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise PolicyError(f"observation image must be (H, W, 3) uint8 RGB, got "
                              f"{self.image.shape} {self.image.dtype}")
        if self.overlay is not None and self.overlay.shape != self.image.shape:
            raise PolicyError(f"overlay shape {self.overlay.shape} != image shape {self.image.shape}")
        if not self.instruction.strip():
            raise PolicyError("the instruction is empty")


@dataclass(frozen=True)
class ActionChunk:
    """H consecutive actions: ``values`` (H, D) float32 in ``action_space``."""

    values: np.ndarray
    action_space: str = EE_DELTA_7D
    trace_used: bool = False


@runtime_checkable
class Policy(Protocol):
    """One small interface for every backend (scripted, local, remote, VLA)."""

    name: str

    def infer(self, obs: Observation) -> ActionChunk:
        """Return the action chunk for ``obs``; raise PolicyError if impossible."""
        ...

    def reset(self) -> None:
        """Forget any episode state (new instruction or episode)."""
        ...


def validate_chunk(chunk: ActionChunk) -> ActionChunk:
    """Reject malformed model output: wrong shape, NaN/inf, gripper outside [0, 1]."""
    v = np.asarray(chunk.values, dtype=np.float32)
    if v.ndim == 1:
        v = v[None, :]
    dim = ACTION_DIMS.get(chunk.action_space)
    if dim is None:
        raise PolicyError(f"unknown action space '{chunk.action_space}' (known: {sorted(ACTION_DIMS)})")
    if v.ndim != 2 or v.shape[0] < 1 or v.shape[1] != dim:
        raise PolicyError(f"action chunk must be (H>=1, {dim}) for {chunk.action_space}, got {v.shape}")
    if not np.all(np.isfinite(v)):
        bad = np.argwhere(~np.isfinite(v))[0]
        raise PolicyError(f"policy output has a non-finite value at step {bad[0]}, dim {bad[1]}: "
                          f"{v[bad[0], bad[1]]}; no action is sent")
    g = v[:, -1]
    if np.any((g < 0.0) | (g > 1.0)):
        raise PolicyError(f"gripper values must be in [0, 1] (1 = open), got {g.tolist()}")
    return ActionChunk(values=v, action_space=chunk.action_space, trace_used=chunk.trace_used)
