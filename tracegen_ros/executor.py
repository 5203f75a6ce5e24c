"""Sequencing an :class:`~tracegen_ros.execution.ExecutionPlan` over the controller's topics (no rclpy).

``franka_controller_node`` takes a waypoint sequence (``ee_waypoints``, PoseArray) as one
joint trajectory, and the gripper through ``PolicyAction`` (``ee_delta_7d`` with zero
motion: it holds the measured pose and sets the gripper). A plan with gripper events is
therefore sent one segment at a time: waypoints -> wait until the end effector is at the
segment's last waypoint (or the segment's expected time plus a margin passed) -> gripper
command -> wait ``gripper_wait_s`` -> next segment. :class:`TraceExecutor` decides when;
the node only publishes what :meth:`TraceExecutor.tick` returns.

Time is the caller's monotonic clock in seconds (deterministic under test).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Union

import numpy as np

from tracegen_ros.execution import ExecutionPlan

__all__ = ["SendWaypoints", "SendGripper", "ExecutorConfig", "TraceExecutor"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SendWaypoints:
    positions: np.ndarray  # (n, 3) m, base frame


@dataclass(frozen=True)
class SendGripper:
    open: bool


Command = Union[SendWaypoints, SendGripper]


@dataclass(frozen=True)
class ExecutorConfig:
    speed: float = 0.1  # m/s, the controller's waypoint_speed (to expect a segment's duration)
    min_segment_s: float = 0.1  # s per waypoint at least (ArmController.plan_waypoints)
    reach_tol_m: float = 0.01  # m: the segment is done when the ee is this close to its end ...
    settle_s: float = 0.3  # s ... and has been for this long, after the expected duration (a
    # gripper command holds the *measured* pose: sent early, it would cut the motion short)
    timeout_margin_s: float = 3.0  # s beyond the expected duration before moving on anyway
    gripper_wait_s: float = 1.0  # s for the hand to open/close

    def expected_s(self, start: np.ndarray, positions: np.ndarray) -> float:
        pts = np.vstack([np.asarray(start, float).reshape(1, 3), positions])
        seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        return float(np.sum(np.maximum(seg / self.speed, self.min_segment_s)))


class TraceExecutor:
    """State machine: idle -> [gripper] -> (segment -> [gripper])* -> idle."""

    def __init__(self, cfg: ExecutorConfig = ExecutorConfig()) -> None:
        self.cfg = cfg
        self._queue: list[Command] = []
        self._waiting: Command | None = None
        self._deadline = 0.0
        self._target: np.ndarray | None = None
        self._expected_end = 0.0
        self._reached_at: float | None = None
        self.timeouts = 0

    @property
    def busy(self) -> bool:
        return self._waiting is not None or bool(self._queue)

    def start(self, plan: ExecutionPlan) -> None:
        """Replace whatever runs with ``plan`` (the next tick sends its first command)."""
        q: list[Command] = []
        if plan.gripper_before is not None:
            q.append(SendGripper(plan.gripper_before))
        for seg in plan.segments:
            if len(seg.positions):
                q.append(SendWaypoints(np.asarray(seg.positions, float)))
            if seg.gripper_open_after is not None:
                q.append(SendGripper(seg.gripper_open_after))
        self._queue, self._waiting = q, None

    def cancel(self) -> None:
        self._queue, self._waiting = [], None

    def tick(self, now: float, ee_pos: np.ndarray | None) -> list[Command]:
        """Commands to publish now; ``ee_pos`` (3,) m = the measured end effector (or None)."""
        if self._waiting is not None:
            if isinstance(self._waiting, SendWaypoints):
                near = ee_pos is not None and self._target is not None and \
                    float(np.linalg.norm(np.asarray(ee_pos) - self._target)) <= self.cfg.reach_tol_m
                if not near:
                    self._reached_at = None
                elif self._reached_at is None:
                    self._reached_at = now
                reached = self._reached_at is not None and now >= self._expected_end and \
                    now - self._reached_at >= self.cfg.settle_s
                if not reached and now < self._deadline:
                    return []
                if not reached:
                    self.timeouts += 1
                    miss = "unknown" if ee_pos is None or self._target is None else \
                        f"{float(np.linalg.norm(np.asarray(ee_pos) - self._target)) * 100:.1f} cm"
                    log.warning("segment end not reached within its expected time (ee %s away): "
                                "continuing", miss)
            elif now < self._deadline:
                return []
            self._waiting = None
        if not self._queue:
            return []
        cmd = self._queue.pop(0)
        self._waiting = cmd
        if isinstance(cmd, SendWaypoints):
            self._target = cmd.positions[-1]
            start = cmd.positions[0] if ee_pos is None else ee_pos
            self._expected_end = now + self.cfg.expected_s(start, cmd.positions)
            self._deadline = self._expected_end + self.cfg.timeout_margin_s
            self._reached_at = None
        else:
            self._deadline = now + self.cfg.gripper_wait_s
        return [cmd]
