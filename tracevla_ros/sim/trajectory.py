"""Joint trajectory playback for the simulated controllers (no rclpy).

A ``trajectory_msgs/JointTrajectory`` is turned into a :class:`JointTrajectoryPlan`
(joint names, times from start, positions) and sampled by linear interpolation,
as a position-controlled ``joint_trajectory_controller`` does. Joints the
trajectory does not name keep their current target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["JointTrajectoryPlan", "TrajectoryError", "plan_from_points", "CommandArbiter"]


class TrajectoryError(ValueError):
    """Malformed trajectory (unknown joint, unsorted times, wrong lengths)."""


@dataclass(frozen=True)
class JointTrajectoryPlan:
    """Trajectory over ``indices`` of the robot's joint vector.

    indices: (k,) positions in the simulator's command vector (arm joints, then gripper).
    times: (P,) seconds from the start, strictly increasing, times[0] >= 0.
    positions: (P, k) joint positions [rad / m].
    start: (k,) command at the moment the trajectory was received (interpolated to points[0]).
    t0: sim time the trajectory starts at [s].
    """

    indices: np.ndarray
    times: np.ndarray
    positions: np.ndarray
    start: np.ndarray
    t0: float

    def sample(self, t: float) -> np.ndarray:
        """(k,) positions at sim time ``t`` (held at the last point after the end)."""
        dt = t - self.t0
        times = np.concatenate([[0.0], self.times])
        pts = np.vstack([self.start, self.positions])
        return np.array([np.interp(dt, times, pts[:, j]) for j in range(pts.shape[1])])

    def without(self, index: int) -> "JointTrajectoryPlan | None":
        """This plan minus command ``index`` (a newer command took that joint); None if empty."""
        keep = self.indices != index
        if not np.any(keep):
            return None
        return JointTrajectoryPlan(self.indices[keep], self.times, self.positions[:, keep],
                                   self.start[keep], self.t0)

    def finished(self, t: float) -> bool:
        return t - self.t0 >= float(self.times[-1])


def plan_from_points(joint_names: list[str], known: list[str], times: list[float],
                     positions: list[list[float]], current: np.ndarray, t0: float) -> JointTrajectoryPlan:
    """Validate a trajectory against the ``known`` joint names and build a plan.

    current: (len(known),) the present command vector; t0: sim time now.
    """
    unknown = [n for n in joint_names if n not in known]
    if unknown:
        raise TrajectoryError(f"unknown joint(s) {unknown}; this robot has {known}")
    if not times:
        raise TrajectoryError("trajectory has no points")
    t = np.asarray(times, dtype=np.float64)
    if t[0] < 0 or np.any(np.diff(t) <= 0):
        raise TrajectoryError(f"time_from_start must be >= 0 and strictly increasing, got {t.tolist()}")
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 2 or pos.shape != (len(t), len(joint_names)):
        raise TrajectoryError(f"each point needs {len(joint_names)} positions; got shape {pos.shape}")
    if not np.all(np.isfinite(pos)):
        raise TrajectoryError("positions must be finite")
    idx = np.array([known.index(n) for n in joint_names], dtype=int)
    if t[0] == 0.0:  # a point at t=0 replaces the current command
        return JointTrajectoryPlan(idx, t[1:] if len(t) > 1 else np.array([1e-9]),
                                   pos[1:] if len(t) > 1 else pos, pos[0], t0)
    return JointTrajectoryPlan(idx, t, pos, np.asarray(current, dtype=np.float64)[idx], t0)


class CommandArbiter:
    """Joint-trajectory plans from several controllers; the newest command owns a joint.

    The command vector is the robot's joints in ``names`` order (arm joints [rad], then the
    actuated finger joint [m]). A new trajectory, direct arm target or gripper command takes
    its joints away from older plans, as separate ros2_control controllers would.
    """

    def __init__(self, names: list[str]) -> None:
        self.names = list(names)
        self.plans: dict[str, JointTrajectoryPlan] = {}

    def clear(self) -> None:
        self.plans.clear()

    def add_trajectory(self, source: str, joint_names: list[str], times: list[float],
                       positions: list[list[float]], current: np.ndarray, t: float) -> JointTrajectoryPlan:
        """Start a plan for ``source`` and return it; raises TrajectoryError (older plans
        then stay untouched)."""
        plan = plan_from_points(joint_names, self.names, times, positions, current, t)
        self.plans[source] = plan
        self.take_over(plan.indices, keep=source)
        return plan

    def take_over(self, indices: np.ndarray, keep: str = "") -> None:
        """A newer command owns ``indices``: drop them from every plan except ``keep``'s."""
        for source in list(self.plans):
            if source == keep:
                continue
            plan: JointTrajectoryPlan | None = self.plans[source]
            for i in np.asarray(indices).reshape(-1):
                plan = plan.without(int(i)) if plan is not None else None
            if plan is None:
                del self.plans[source]
            else:
                self.plans[source] = plan

    def sample(self, current: np.ndarray, t: float) -> np.ndarray | None:
        """The command vector at sim time ``t`` (``current`` where no plan applies); None if idle.

        Finished plans are dropped after their last sample.
        """
        if not self.plans:
            return None
        cmd = np.asarray(current, dtype=np.float64).copy()
        for source, plan in list(self.plans.items()):
            cmd[plan.indices] = plan.sample(t)
            if plan.finished(t):
                del self.plans[source]
        return cmd
