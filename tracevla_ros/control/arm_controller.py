"""The arm controller's algorithm, shared by the WidowX and FR3 nodes (no rclpy).

Turns policy actions into safe joint commands:

    ee_delta_7d step -> target ee pose (from the *measured* ee pose, as bridge/OpenVLA do)
      -> Cartesian safety (NaN, per-step / per-second motion, workspace box)
      -> IK seeded with the measured joints -> joint safety (limits, motion, e-stop,
      watchdog, stale state) -> JointCommand + gripper open/closed (hysteresis)

Also end-effector waypoint sequences (FR3/TraceGen): each waypoint is solved by IK seeded
with the previous solution and checked by the same filters, giving a joint trajectory.

Time: every method takes ``now`` in seconds on one monotonic clock supplied by the
caller (the node's clock), so the class is deterministic under test.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
from typing import Sequence

import numpy as np

from tracevla_ros.control.action import (
    ActionError,
    GripperHysteresis,
    HysteresisConfig,
    integrate_ee_delta,
    parse_ee_delta_chunk,
)
from tracevla_ros.control.chunking import ChunkConfig, ChunkExecutor
from tracevla_ros.control.kinematics import ArmKinematics, IKOptions
from tracevla_ros.control.safety import (
    EStopLatch,
    Intervention,
    JointCommand,
    SafetyConfig,
    check_finite,
    filter_ee_target,
    filter_joint_command,
    state_is_stale,
)
from tracevla_ros.robots import RobotSpec

__all__ = ["ArmController", "StepOutput", "WaypointPlan"]

_LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class StepOutput:
    """One control decision.

    Attributes:
        command: the filtered joint command (``command.q`` is None when nothing may be sent).
        gripper_open: gripper state to command.
        gripper_position: actuated finger joint target [m] for that state.
        ee_target: (position (3,) [m], rotation (3, 3)) after the Cartesian filters, or None.
        ik_ok: IK reached the (filtered) target within tolerance.
        interventions: every change made (Cartesian, IK and joint filters).
    """

    command: JointCommand
    gripper_open: bool
    gripper_position: float
    ee_target: tuple[np.ndarray, np.ndarray] | None
    ik_ok: bool
    interventions: tuple[Intervention, ...]


@dataclasses.dataclass(frozen=True)
class WaypointPlan:
    """Joint waypoints for an ee waypoint sequence.

    Attributes:
        q: (K, n) joint positions [rad] for the K reachable waypoints, in order.
        times: (K,) time from start of each point [s].
        complete: all requested waypoints were solved (else the plan stops before the first failure).
        interventions: what the filters changed.
    """

    q: np.ndarray
    times: np.ndarray
    complete: bool
    interventions: tuple[Intervention, ...]


_ALL_STEPS = 1_000_000  # first_k with this k: every step of a chunk (until replaced)
FRESH_WAIT_S = 1.0  # s, first_k: how long a chunk planned before the last step was reached is skipped


class ArmController:
    """State + algorithm of one arm's command path.

    Args:
        spec: the robot (joint order, limits, model).
        safety: safety settings (its joint limits should come from ``spec``).
        hysteresis: gripper thresholds.
        ik_options: IK settings (few restarts: a controller must answer quickly).
        execution: how chunks run (``control.chunking``); default: every step of a chunk,
            a new chunk replacing the unexecuted ones.
    """

    def __init__(self, spec: RobotSpec, safety: SafetyConfig,
                 hysteresis: HysteresisConfig | None = None,
                 ik_options: IKOptions | None = None,
                 execution: ChunkConfig | None = None, settle_s: float = 0.0) -> None:
        self.spec = spec
        self.safety = safety
        self.kin = ArmKinematics(spec, ik_options or IKOptions(restarts=1))
        # IK stays inside the safety margin, so its solutions pass the joint-limit filter
        self.kin.lower = np.maximum(self.kin.lower, safety.joints.lo)
        self.kin.upper = np.minimum(self.kin.upper, safety.joints.hi)
        self.gripper = GripperHysteresis(hysteresis)
        self.estop = EStopLatch()
        self.counts: collections.Counter[str] = collections.Counter()
        self.q_state: np.ndarray | None = None
        self.state_time: float | None = None
        self.action_time: float | None = None
        self.last_command_time: float | None = None
        self.last_q: np.ndarray | None = None
        execution = execution or ChunkConfig(k=_ALL_STEPS)
        self._pending = ChunkExecutor(execution)
        self._commit = execution.mode == "first_k" and execution.k < _ALL_STEPS
        # first_k with k steps: a new chunk must be planned from a frame taken once the last
        # step of the previous one has been reached (its send time + settle_s), as the bench
        # plans after the step; an older one is skipped, for FRESH_WAIT_S at most
        self._settle_s = float(settle_s)
        self._settled_at: float | None = None
        self.steps_done = 0
        # reaction latency: frame stamp of each used action/chunk -> its first step [s]
        self.reaction_s: collections.deque[float] = collections.deque(maxlen=500)
        self._used_stamp: float | None = None

    # --- inputs ---------------------------------------------------------------
    def update_state(self, q: Sequence[float] | np.ndarray, now: float) -> None:
        """Latest measured arm joint positions (n,) [rad], controller order."""
        self.q_state = np.asarray(q, dtype=np.float64).ravel()
        self.state_time = now

    def push_action(self, values: Sequence[float] | np.ndarray, chunk_length: int,
                    action_dim: int, now: float, stamp: float | None = None) -> int:
        """Queue an ``ee_delta_7d`` chunk; returns its length, or 0 when it is not used.

        Default execution: it replaces any unexecuted steps. ``first_k`` with a step count
        k (``chunk_steps``): a chunk arriving while steps of the last one remain is not
        used (the k steps are executed open loop, then the next chunk is taken), nor a
        chunk of several steps whose frame (``stamp``, the clock of ``now``) was taken
        before the last step was reached, for up to ``FRESH_WAIT_S`` after that (a
        one-action policy's action is used at once); ``ensemble``: it joins the stored
        chunks.

        Raises ActionError for malformed chunks (the caller logs and counts it).
        """
        chunk = parse_ee_delta_chunk(values, chunk_length, action_dim)
        self.action_time = now
        if self._commit and not self._pending.needs_chunk():
            # first_k with chunk_steps k: the k steps of the current chunk run to the end
            # (as tracevla-bench policy --k runs them); the new chunk is not used
            self.counts["chunk_ignored"] += 1
            return 0
        if (self._commit and len(chunk) > 1 and stamp is not None and self._settled_at is not None
                and stamp < self._settled_at and now - self._settled_at < FRESH_WAIT_S):
            self.counts["chunk_stale"] += 1  # planned before the arm got where it is
            return 0
        self._pending.add(np.asarray(chunk))  # first_k: replaces the unexecuted steps
        self._used_stamp = stamp
        return len(chunk)

    @property
    def commits_chunks(self) -> bool:
        """first_k with a step count: each chunk's k steps run to the end, step_period_s apart."""
        return self._commit

    @property
    def pending(self) -> int:
        """Unexecuted steps of the current chunk (ensemble: steps still covered)."""
        return self._pending.pending

    # --- decisions --------------------------------------------------------------
    def _record(self, recs: Sequence[Intervention]) -> None:
        for r in recs:
            self.counts[r.check] += 1

    def step(self, now: float) -> StepOutput | None:
        """Execute the next queued action step; None when nothing is queued."""
        if not self._pending.has_action():
            return None
        delta = self._pending.next_action().astype(np.float64)
        recs: list[Intervention] = []
        gripper_open = self.gripper.is_open
        ee_target = None
        ik_ok = False
        q_target: np.ndarray | None = None
        dt = math.inf if self.last_command_time is None else now - self.last_command_time
        state_ok = self.q_state is not None and self.q_state.shape == (self.spec.dof,) \
            and bool(np.all(np.isfinite(self.q_state)))
        if state_ok and not self.estop.latched:
            assert self.q_state is not None
            q_seed = np.clip(self.q_state, self.kin.lower, self.kin.upper)
            pos, rot = self.kin.fk(q_seed)
            try:
                t_pos, t_rot = integrate_ee_delta(pos, rot, delta)
            except ActionError as exc:
                recs.append(Intervention("nonfinite", f"action step rejected: {exc}",
                                         tuple(float(v) for v in delta)))
                t_pos, t_rot = pos, rot
            else:
                gripper_open, _ = self.gripper.update(float(delta[6]))
            t_pos, t_rot, more = filter_ee_target(t_pos, t_rot, pos, rot, dt, self.safety.cartesian)
            recs += more
            ee_target = (t_pos, t_rot)
            res = self.kin.solve_ik(t_pos, t_rot, q_seed)
            ik_ok = res.success
            q_target = res.q
            if not res.success:
                recs.append(Intervention("ik", f"IK missed the target by {res.pos_err * 1e3:.1f} mm / "
                                         f"{res.rot_err:.3f} rad: best effort sent"))
        cmd = self._filter(q_target, now, dt)
        recs += cmd.interventions
        self._record(recs)
        self.steps_done += 1
        if self._used_stamp is not None:
            self.reaction_s.append(now - self._used_stamp)
            self._used_stamp = None
        if self._commit and not self._pending.has_action():
            self._settled_at = now + self._settle_s
        return StepOutput(cmd, gripper_open, self.spec.gripper_position(float(gripper_open)),
                          ee_target, ik_ok, tuple(recs))

    def _filter(self, q_target: np.ndarray | None, now: float, dt: float) -> JointCommand:
        cmd = filter_joint_command(
            q_target, self.q_state, now=now, last_state_time=self.state_time,
            last_action_time=self.action_time, cfg=self.safety, q_ref=self.q_state, dt=dt,
            estop_latched=self.estop.latched)
        if cmd.send:
            self.last_command_time = now
            self.last_q = cmd.q
        return cmd

    def hold(self, now: float, why: Intervention) -> StepOutput:
        """Hold the measured position (watchdog / e-stop); drops queued steps."""
        self._pending.reset()
        cmd = filter_joint_command(
            None, self.q_state, now=now, last_state_time=self.state_time,
            last_action_time=None, cfg=self.safety, estop_latched=True)
        # filter_joint_command reports its own reason ("estop"); keep the caller's instead
        recs = (why,) + tuple(r for r in cmd.interventions if r.check not in ("estop", "watchdog"))
        cmd = dataclasses.replace(cmd, interventions=recs)
        if cmd.send:
            self.last_command_time = now
            self.last_q = cmd.q
        self._record(recs)
        return StepOutput(cmd, self.gripper.is_open, self.spec.gripper_position(
            float(self.gripper.is_open)), None, False, recs)

    def watchdog_due(self, now: float) -> bool:
        """True when actions were flowing and none arrived for the watchdog timeout."""
        if self.action_time is None:
            return False
        return now - self.action_time > self.safety.timing.watchdog_timeout_s

    def plan_waypoints(self, positions: np.ndarray, rotations: np.ndarray | None,
                       now: float, speed: float, min_segment_s: float = 0.1) -> WaypointPlan:
        """IK for an ee waypoint sequence, timed by ``speed`` [m/s] along the path.

        Args:
            positions: (K, 3) ee positions in the base frame [m].
            rotations: (K, 3, 3) ee rotations, or None to keep the current orientation.
            now: current time [s] (state freshness, e-stop).
            speed: ee speed used to time the points [m/s].
            min_segment_s: shortest time between points [s].
        """
        recs: list[Intervention] = []
        empty = WaypointPlan(np.zeros((0, self.spec.dof)), np.zeros(0), False, ())
        why = [r for r in (
            check_finite("joint state", self.q_state, self.spec.dof),
            state_is_stale(now, self.state_time, self.safety.timing.state_timeout_s),
            Intervention("estop", "e-stop latched: waypoints ignored") if self.estop.latched else None,
        ) if r is not None]
        if why:
            self._record(why)
            return dataclasses.replace(empty, interventions=tuple(why))
        assert self.q_state is not None
        q_prev = np.clip(self.q_state, self.kin.lower, self.kin.upper)
        p_prev, r_prev = self.kin.fk(q_prev)
        r_keep = r_prev
        qs: list[np.ndarray] = []
        times: list[float] = []
        t = 0.0
        complete = True
        pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
        for k in range(pos.shape[0]):
            rot = r_keep if rotations is None else np.asarray(rotations[k], dtype=np.float64)
            # waypoints are far apart: only the workspace box and NaN checks apply here,
            # the joint filter below bounds the motion per point by its duration
            p, r, more = filter_ee_target(pos[k], rot, p_prev, r_prev, math.inf,
                                          dataclasses.replace(self.safety.cartesian,
                                                              max_step=1e3, max_rot_step=1e3,
                                                              max_speed=1e3, max_rot_speed=1e3))
            recs += more
            res = self.kin.solve_ik(p, r, q_prev)
            if not res.success:
                recs.append(Intervention("ik", f"waypoint {k} unreachable "
                                         f"({res.pos_err * 1e3:.1f} mm): plan stops before it"))
                complete = False
                break
            seg = max(min_segment_s, float(np.linalg.norm(p - p_prev)) / speed)
            # IK output is within the joint limits (clamped); the joint speed limits set a
            # lower bound on the segment time instead of cutting the path short
            if self.safety.joints.max_velocity:
                vmax = np.asarray(self.safety.joints.max_velocity)
                seg = max(seg, 1.05 * float(np.max(np.abs(res.q - q_prev) / vmax)))
            t += seg
            qs.append(res.q)
            times.append(t)
            q_prev, p_prev, r_prev = res.q, p, r
        self._record(recs)
        q_arr = np.asarray(qs).reshape(-1, self.spec.dof)
        return WaypointPlan(q_arr, np.asarray(times), complete, tuple(recs))
