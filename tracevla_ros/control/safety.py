"""Safety filters on the command path: pure functions, every change reported (no rclpy).

Each filter returns the (possibly changed) command plus :class:`Intervention` records
saying what changed and why, so a node can log and count them. The composed filters:

* :func:`filter_ee_target` -- before IK: NaN/inf rejection (hold the reference pose),
  per-step and per-second limits on translation and rotation, then the workspace box
  (the box always wins: the output position is inside it).
* :func:`filter_joint_command` -- after IK, last line of defence: stale joint state ->
  send nothing; e-stop latched, watchdog expired (no fresh action for
  ``watchdog_timeout_s``) or a non-finite / wrongly sized target -> hold the measured
  position; otherwise per-step and per-second joint motion limits relative to the
  reference (the last command or the measured state), then joint position limits.
  Guarantee (property-tested): whatever the inputs, a command that is sent is finite and
  within ``[lower + margin, upper - margin]``; unless it is a hold, its step from the
  in-limit reference is within ``min(max_step, max_velocity * dt)``.

"Per second" limits are speed limits: allowed motion = speed * dt, dt = time since the
previous command clipped to ``[0, max_dt]`` (a long pause does not allow a huge jump).

``dry_run``: the decision is computed exactly as for a real command; the node publishes
it to ``~/would_send`` instead of the robot (``JointCommand.dry_run`` carries the flag).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from tracevla_ros.control.kinematics import rotation_error

__all__ = [
    "Intervention",
    "JointSafetyConfig",
    "CartesianSafetyConfig",
    "TimingConfig",
    "SafetyConfig",
    "JointCommand",
    "EStopLatch",
    "check_finite",
    "clamp_joint_positions",
    "limit_joint_motion",
    "clamp_workspace",
    "limit_cartesian_motion",
    "watchdog_expired",
    "state_is_stale",
    "filter_joint_command",
    "filter_ee_target",
    "axis_angle_to_matrix",
]


@dataclasses.dataclass(frozen=True)
class Intervention:
    """One change a safety filter made to a command.

    Attributes:
        check: which rule fired: "nonfinite", "shape", "joint_limit", "joint_step",
            "workspace", "cartesian_step", "rotation_step", "watchdog", "estop",
            "stale_state".
        reason: human-readable cause with the numbers.
        before: the offending values (may be empty).
        after: what was used instead (empty when nothing is sent).
    """

    check: str
    reason: str
    before: tuple[float, ...] = ()
    after: tuple[float, ...] = ()


def _t(x: np.ndarray | Sequence[float]) -> tuple[float, ...]:
    return tuple(float(v) for v in np.asarray(x, dtype=np.float64).ravel())


@dataclasses.dataclass(frozen=True)
class JointSafetyConfig:
    """Joint-space limits (arm joints in controller order).

    Attributes:
        lower, upper: joint position limits [rad].
        margin: keep this far inside the limits [rad].
        max_step: largest change per command per joint [rad].
        max_velocity: per-joint speed limits [rad/s] (the per-second limit).
        max_dt: dt used for the speed limit is clipped to this [s].
    """

    lower: tuple[float, ...]
    upper: tuple[float, ...]
    margin: float = 0.01
    max_step: float = 0.1
    max_velocity: tuple[float, ...] = ()
    max_dt: float = 0.2

    def __post_init__(self) -> None:
        n = len(self.lower)
        if n == 0 or len(self.upper) != n:
            raise ValueError("JointSafetyConfig: lower and upper need the same, non-zero length")
        if self.max_velocity and len(self.max_velocity) != n:
            raise ValueError(f"JointSafetyConfig: max_velocity needs {n} values")
        lo = np.asarray(self.lower) + self.margin
        hi = np.asarray(self.upper) - self.margin
        if not np.all(np.isfinite(lo)) or not np.all(np.isfinite(hi)) or np.any(lo > hi):
            raise ValueError("JointSafetyConfig: limits must be finite and lower + margin <= upper - margin")
        if not (self.max_step > 0 and self.max_dt > 0 and self.margin >= 0):
            raise ValueError("JointSafetyConfig: need max_step > 0, max_dt > 0, margin >= 0")
        if any(not (v > 0) for v in self.max_velocity):
            raise ValueError("JointSafetyConfig: max_velocity values must be > 0")

    @property
    def lo(self) -> np.ndarray:
        return np.asarray(self.lower, dtype=np.float64) + self.margin

    @property
    def hi(self) -> np.ndarray:
        return np.asarray(self.upper, dtype=np.float64) - self.margin

    def step_bound(self, dt: float) -> np.ndarray:
        """(n,) largest allowed per-joint change for a command ``dt`` seconds after the last."""
        n = len(self.lower)
        bound = np.full(n, self.max_step)
        if self.max_velocity:
            d = min(max(dt, 0.0), self.max_dt) if math.isfinite(dt) else self.max_dt
            bound = np.minimum(bound, np.asarray(self.max_velocity) * d)
        return bound


@dataclasses.dataclass(frozen=True)
class CartesianSafetyConfig:
    """End-effector limits in the robot base frame.

    Attributes:
        workspace_lower, workspace_upper: axis-aligned box for the ee position [m].
        max_step: largest translation per command [m].
        max_speed: translation speed limit [m/s].
        max_rot_step: largest rotation per command [rad].
        max_rot_speed: rotation speed limit [rad/s].
        max_dt: dt for the speed limits is clipped to this [s].
    """

    workspace_lower: tuple[float, float, float]
    workspace_upper: tuple[float, float, float]
    max_step: float = 0.05
    max_speed: float = 0.25
    max_rot_step: float = 0.3
    max_rot_speed: float = 1.5
    max_dt: float = 0.5

    def __post_init__(self) -> None:
        lo, hi = np.asarray(self.workspace_lower), np.asarray(self.workspace_upper)
        if lo.shape != (3,) or hi.shape != (3,) or not np.all(np.isfinite(lo)) \
                or not np.all(np.isfinite(hi)) or np.any(lo >= hi):
            raise ValueError("CartesianSafetyConfig: workspace bounds must be finite (3,) with lower < upper")
        for key in ("max_step", "max_speed", "max_rot_step", "max_rot_speed", "max_dt"):
            if not getattr(self, key) > 0:
                raise ValueError(f"CartesianSafetyConfig: {key} must be > 0")

    def _dt(self, dt: float) -> float:
        return min(max(dt, 0.0), self.max_dt) if math.isfinite(dt) else self.max_dt


@dataclasses.dataclass(frozen=True)
class TimingConfig:
    """Freshness rules.

    Attributes:
        watchdog_timeout_s: no fresh action for this long -> hold position [s].
        state_timeout_s: no joint state for this long -> send nothing [s].
    """

    watchdog_timeout_s: float = 0.5
    state_timeout_s: float = 0.25

    def __post_init__(self) -> None:
        if not (self.watchdog_timeout_s > 0 and self.state_timeout_s > 0):
            raise ValueError("TimingConfig: timeouts must be > 0")


@dataclasses.dataclass(frozen=True)
class SafetyConfig:
    """All safety settings of one arm controller."""

    joints: JointSafetyConfig
    cartesian: CartesianSafetyConfig
    timing: TimingConfig = TimingConfig()
    dry_run: bool = False


@dataclasses.dataclass(frozen=True)
class JointCommand:
    """Result of :func:`filter_joint_command`.

    Attributes:
        q: (n,) joint positions to command [rad], or None when nothing may be sent.
        send: False when nothing may be sent (no fresh, finite joint state).
        hold: True when ``q`` is the held measured position instead of the target.
        dry_run: publish to ``~/would_send`` instead of the robot.
        interventions: what the filters changed, in order.
    """

    q: np.ndarray | None
    send: bool
    hold: bool
    dry_run: bool
    interventions: tuple[Intervention, ...]


class EStopLatch:
    """Emergency stop: once triggered, holds until :meth:`reset` is called explicitly."""

    def __init__(self) -> None:
        self.latched = False
        self.reason = ""
        self.count = 0

    def trigger(self, reason: str) -> Intervention:
        """Latch (idempotent); returns the record to log."""
        if not self.latched:
            self.count += 1
        self.latched = True
        self.reason = reason
        return Intervention("estop", f"e-stop triggered: {reason}")

    def reset(self) -> bool:
        """Release the latch; returns whether it was latched."""
        was = self.latched
        self.latched = False
        self.reason = ""
        return was


# --- single rules ---------------------------------------------------------------------

def check_finite(name: str, values: np.ndarray | Sequence[float] | None,
                 size: int | None = None) -> Intervention | None:
    """None if ``values`` is a finite array (of ``size`` entries), else the record."""
    if values is None:
        return Intervention("nonfinite", f"{name} missing")
    arr = np.asarray(values, dtype=np.float64).ravel()
    if size is not None and arr.size != size:
        return Intervention("shape", f"{name} has {arr.size} values, expected {size}", _t(arr))
    if not np.all(np.isfinite(arr)):
        return Intervention("nonfinite", f"{name} has NaN/inf", _t(arr))
    return None


def clamp_joint_positions(q: np.ndarray, cfg: JointSafetyConfig
                          ) -> tuple[np.ndarray, Intervention | None]:
    """Clip finite ``q`` (n,) into ``[lower + margin, upper - margin]``."""
    out = np.minimum(np.maximum(q, cfg.lo), cfg.hi)
    if np.array_equal(out, q):
        return out, None
    idx = np.flatnonzero(out != q).tolist()
    return out, Intervention("joint_limit", f"joints {idx} clipped to limits", _t(q), _t(out))


def limit_joint_motion(q_target: np.ndarray, q_ref: np.ndarray, dt: float,
                       cfg: JointSafetyConfig) -> tuple[np.ndarray, Intervention | None]:
    """Limit each joint's change from ``q_ref`` to ``cfg.step_bound(dt)``.

    The whole step is scaled by one factor (the direction in joint space is kept).
    """
    bound = cfg.step_bound(dt)
    delta = q_target - q_ref
    ratio = np.max(np.abs(delta) / np.maximum(bound, 1e-12))
    if ratio <= 1.0:
        return q_target, None
    out = q_ref + delta / ratio
    # scaling by the max ratio already meets every bound; clip for float round-off
    out = np.minimum(np.maximum(out, q_ref - bound), q_ref + bound)
    return out, Intervention(
        "joint_step", f"joint step {np.max(np.abs(delta)):.4f} rad scaled by 1/{ratio:.2f} "
        f"(bound {float(np.min(bound)):.4f}..{float(np.max(bound)):.4f} rad, dt {dt:.3f} s)",
        _t(q_target), _t(out))


def clamp_workspace(pos: np.ndarray, cfg: CartesianSafetyConfig
                    ) -> tuple[np.ndarray, Intervention | None]:
    """Clip a finite (3,) position into the workspace box."""
    lo, hi = np.asarray(cfg.workspace_lower), np.asarray(cfg.workspace_upper)
    out = np.minimum(np.maximum(pos, lo), hi)
    if np.array_equal(out, pos):
        return out, None
    return out, Intervention("workspace", "ee target outside the workspace box", _t(pos), _t(out))


def axis_angle_to_matrix(v: np.ndarray) -> np.ndarray:
    """(3, 3) rotation for the rotation vector ``v`` (axis * angle) [rad]."""
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return np.eye(3)
    k = np.asarray(v) / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * kx + (1 - math.cos(angle)) * (kx @ kx)


def limit_cartesian_motion(pos: np.ndarray, rot: np.ndarray, ref_pos: np.ndarray,
                           ref_rot: np.ndarray, dt: float, cfg: CartesianSafetyConfig
                           ) -> tuple[np.ndarray, np.ndarray, list[Intervention]]:
    """Limit translation and rotation from the reference pose (per step and per second)."""
    out: list[Intervention] = []
    d = cfg._dt(dt)
    t_bound = min(cfg.max_step, cfg.max_speed * d)
    r_bound = min(cfg.max_rot_step, cfg.max_rot_speed * d)
    dp = pos - ref_pos
    big = float(np.max(np.abs(dp)))
    unit = dp / big if big > 0 else dp  # scaled first: no overflow for huge targets
    n = big * float(np.linalg.norm(unit))
    if n > t_bound:
        new = ref_pos + unit * (t_bound / float(np.linalg.norm(unit)))
        out.append(Intervention("cartesian_step", f"translation {n:.4f} m > {t_bound:.4f} m",
                                _t(pos), _t(new)))
        pos = new
    rv = rotation_error(rot, ref_rot)
    a = float(np.linalg.norm(rv))
    if a > r_bound:
        new_rot = axis_angle_to_matrix(rv * (r_bound / a)) @ ref_rot
        out.append(Intervention("rotation_step", f"rotation {a:.4f} rad > {r_bound:.4f} rad",
                                _t(rv), _t(rv * (r_bound / a))))
        rot = new_rot
    return pos, rot, out


def watchdog_expired(now: float, last_action_time: float | None, timeout: float
                     ) -> Intervention | None:
    """The record when no action arrived within ``timeout`` seconds (or ever)."""
    if last_action_time is None:
        return Intervention("watchdog", "no action received yet")
    age = now - last_action_time
    if not math.isfinite(age) or age > timeout:
        return Intervention("watchdog", f"last action {age:.3f} s ago > {timeout:.3f} s")
    return None


def state_is_stale(now: float, last_state_time: float | None, timeout: float
                   ) -> Intervention | None:
    """The record when the joint state is missing or older than ``timeout`` seconds."""
    if last_state_time is None:
        return Intervention("stale_state", "no joint state received yet")
    age = now - last_state_time
    if not math.isfinite(age) or age > timeout or age < -timeout:
        return Intervention("stale_state", f"joint state {age:.3f} s old > {timeout:.3f} s")
    return None


# --- composed filters ------------------------------------------------------------------

def filter_joint_command(
    q_target: np.ndarray | Sequence[float] | None,
    q_state: np.ndarray | Sequence[float] | None,
    *,
    now: float,
    last_state_time: float | None,
    last_action_time: float | None,
    cfg: SafetyConfig,
    q_ref: np.ndarray | Sequence[float] | None = None,
    dt: float = math.inf,
    estop_latched: bool = False,
) -> JointCommand:
    """The joint command that may be sent for ``q_target`` (see the module docstring).

    Args:
        q_target: (n,) desired joint positions [rad] (IK output), or None.
        q_state: (n,) measured joint positions [rad], or None.
        now: current time [s] (same clock as the other times).
        last_state_time: receive time of ``q_state`` [s].
        last_action_time: receive time of the newest policy action [s].
        cfg: safety settings.
        q_ref: reference for the motion limits (the last command); default ``q_state``.
        dt: time since the last command [s] (speed limits; clipped to ``max_dt``).
        estop_latched: the e-stop latch state.
    """
    jc = cfg.joints
    n = len(jc.lower)
    recs: list[Intervention] = []
    bad_state = check_finite("joint state", q_state, n)
    stale = state_is_stale(now, last_state_time, cfg.timing.state_timeout_s)
    if bad_state is not None or stale is not None:
        recs += [r for r in (bad_state, stale) if r is not None]
        return JointCommand(None, False, False, cfg.dry_run, tuple(recs))
    qs = np.asarray(q_state, dtype=np.float64).ravel()
    hold_q, rec = clamp_joint_positions(qs, jc)

    def hold(*why: Intervention | None) -> JointCommand:
        recs.extend(r for r in why if r is not None)
        if rec is not None:
            recs.append(rec)
        return JointCommand(hold_q, True, True, cfg.dry_run, tuple(recs))

    if estop_latched:
        return hold(Intervention("estop", "e-stop latched: holding position"))
    wd = watchdog_expired(now, last_action_time, cfg.timing.watchdog_timeout_s)
    if wd is not None:
        return hold(wd)
    bad_target = check_finite("joint target", q_target, n)
    if bad_target is not None:
        return hold(bad_target)
    qt = np.asarray(q_target, dtype=np.float64).ravel()
    ref = hold_q
    if q_ref is not None and check_finite("q_ref", q_ref, n) is None:
        ref, _ = clamp_joint_positions(np.asarray(q_ref, dtype=np.float64).ravel(), jc)
    q, r1 = clamp_joint_positions(qt, jc)
    q, r2 = limit_joint_motion(q, ref, dt, jc)
    recs += [r for r in (r1, r2) if r is not None]
    return JointCommand(q, True, False, cfg.dry_run, tuple(recs))


def filter_ee_target(pos: np.ndarray | Sequence[float] | None, rot: np.ndarray | None,
                     ref_pos: np.ndarray, ref_rot: np.ndarray, dt: float,
                     cfg: CartesianSafetyConfig
                     ) -> tuple[np.ndarray, np.ndarray, list[Intervention]]:
    """Safe end-effector target: (3,) position inside the box, (3, 3) rotation, records.

    Non-finite input holds the reference pose (clipped into the box).
    """
    recs: list[Intervention] = []
    ref_p = np.asarray(ref_pos, dtype=np.float64)
    ref_r = np.asarray(ref_rot, dtype=np.float64)
    bad = check_finite("ee position", pos, 3)
    if bad is None and rot is not None:
        bad = check_finite("ee rotation", rot, 9)
    if bad is not None:
        recs.append(bad)
        p, r = ref_p, ref_r
    else:
        p = np.asarray(pos, dtype=np.float64).ravel()
        r = ref_r if rot is None else np.asarray(rot, dtype=np.float64).reshape(3, 3)
        p, r, more = limit_cartesian_motion(p, r, ref_p, ref_r, dt, cfg)
        recs += more
    p, rec = clamp_workspace(p, cfg)
    if rec is not None:
        recs.append(rec)
    return p, r, recs


def default_safety_config(spec: object, workspace_lower: Sequence[float],
                          workspace_upper: Sequence[float], **joint_kw: float) -> SafetyConfig:
    """A SafetyConfig from a RobotSpec's limits and a workspace box (helper for nodes/tests)."""
    from tracevla_ros.robots import RobotSpec

    if not isinstance(spec, RobotSpec):
        raise TypeError("spec must be a RobotSpec")
    return SafetyConfig(
        joints=JointSafetyConfig(spec.joint_lower, spec.joint_upper,
                                 max_velocity=spec.velocity_limits, **joint_kw),  # type: ignore[arg-type]
        cartesian=CartesianSafetyConfig(tuple(workspace_lower), tuple(workspace_upper)),  # type: ignore[arg-type]
    )
