"""Safety filters: unit tests and property tests (hypothesis): nothing gets past the limits."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracevla_ros.control.safety import (
    CartesianSafetyConfig,
    EStopLatch,
    JointSafetyConfig,
    SafetyConfig,
    TimingConfig,
    clamp_workspace,
    filter_ee_target,
    filter_joint_command,
    limit_cartesian_motion,
    limit_joint_motion,
)
from tracevla_ros.control.kinematics import rotation_error
from tracevla_ros.robots import get_robot

SPEC = get_robot("widowx250s")
JOINTS = JointSafetyConfig(SPEC.joint_lower, SPEC.joint_upper, margin=0.01, max_step=0.1,
                           max_velocity=SPEC.velocity_limits, max_dt=0.2)
CART = CartesianSafetyConfig((0.1, -0.3, 0.02), (0.5, 0.3, 0.5), max_step=0.05, max_speed=0.25,
                             max_rot_step=0.3, max_rot_speed=1.5)
CFG = SafetyConfig(JOINTS, CART, TimingConfig(watchdog_timeout_s=0.5, state_timeout_s=0.25))
N = SPEC.dof
EPS = 1e-9

wild = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-1e6, 1e6),
    st.floats(-10, 10),
)
vec = st.lists(wild, min_size=N, max_size=N)
maybe_vec = st.one_of(st.none(), vec, st.lists(wild, min_size=0, max_size=9))
times = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.floats(-2, 2))


@settings(max_examples=400, deadline=None)
@given(q_target=maybe_vec, q_state=maybe_vec, q_ref=maybe_vec, t_state=times, t_action=times,
       dt=st.floats(allow_nan=True, allow_infinity=True), estop=st.booleans())
def test_no_joint_command_outside_limits(q_target, q_state, q_ref, t_state, t_action, dt, estop) -> None:
    now = 0.0
    out = filter_joint_command(q_target, q_state, now=now, last_state_time=t_state,
                               last_action_time=t_action, cfg=CFG, q_ref=q_ref, dt=dt,
                               estop_latched=estop)
    if not out.send:
        assert out.q is None
        assert out.interventions  # a refusal is always explained
        return
    q = out.q
    assert q is not None and q.shape == (N,)
    assert np.all(np.isfinite(q))
    assert np.all(q >= JOINTS.lo - EPS) and np.all(q <= JOINTS.hi + EPS)
    if out.hold:
        assert out.interventions
        np.testing.assert_allclose(q, np.clip(np.asarray(q_state, float), JOINTS.lo, JOINTS.hi))
    else:
        # motion bound from the (in-limit) reference
        ref_src = q_ref if (q_ref is not None and len(q_ref) == N and np.all(np.isfinite(q_ref))) else q_state
        ref = np.clip(np.asarray(ref_src, float), JOINTS.lo, JOINTS.hi)
        assert np.all(np.abs(q - ref) <= JOINTS.step_bound(dt) + 1e-9)


@settings(max_examples=400, deadline=None)
@given(pos=st.one_of(st.none(), st.lists(wild, min_size=3, max_size=3)),
       ref=st.lists(st.floats(-2, 2), min_size=3, max_size=3),
       rv=st.lists(st.floats(-4, 4), min_size=3, max_size=3),
       dt=st.floats(allow_nan=True, allow_infinity=True))
def test_no_ee_target_outside_workspace(pos, ref, rv, dt) -> None:
    from tracevla_ros.control.safety import axis_angle_to_matrix

    ref_rot = np.eye(3)
    rot = axis_angle_to_matrix(np.asarray(rv))
    p, r, recs = filter_ee_target(pos, rot, np.asarray(ref), ref_rot, dt, CART)
    assert np.all(np.isfinite(p)) and np.all(np.isfinite(r))
    assert np.all(p >= np.asarray(CART.workspace_lower) - EPS)
    assert np.all(p <= np.asarray(CART.workspace_upper) + EPS)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-9)
    d = min(max(dt, 0.0), CART.max_dt) if math.isfinite(dt) else CART.max_dt
    assert np.linalg.norm(rotation_error(r, ref_rot)) <= min(CART.max_rot_step, CART.max_rot_speed * d) + 1e-6


def _ok_call(**kw):
    base = dict(now=10.0, last_state_time=9.95, last_action_time=9.9, cfg=CFG, dt=0.1)
    base.update(kw)
    return base


def test_valid_command_passes_unchanged() -> None:
    q = SPEC.home_q
    out = filter_joint_command(q + 0.01, q, **_ok_call())
    assert out.send and not out.hold and out.interventions == ()
    np.testing.assert_allclose(out.q, q + 0.01)


def test_stale_state_sends_nothing() -> None:
    q = SPEC.home_q
    out = filter_joint_command(q, q, **_ok_call(last_state_time=9.0))
    assert not out.send and out.q is None
    assert out.interventions[0].check == "stale_state"
    out = filter_joint_command(q, q, **_ok_call(last_state_time=None))
    assert not out.send


def test_watchdog_holds_current_position() -> None:
    q = SPEC.home_q
    out = filter_joint_command(q + 0.05, q, **_ok_call(last_action_time=9.0))
    assert out.send and out.hold
    np.testing.assert_allclose(out.q, q)
    assert out.interventions[0].check == "watchdog"


def test_estop_holds_until_reset() -> None:
    latch = EStopLatch()
    q = SPEC.home_q
    rec = latch.trigger("operator")
    assert rec.check == "estop" and latch.latched
    for _ in range(3):  # stays latched however many fresh actions arrive
        out = filter_joint_command(q + 0.05, q, **_ok_call(estop_latched=latch.latched))
        assert out.hold and out.interventions[0].check == "estop"
    assert latch.reset()
    out = filter_joint_command(q + 0.05, q, **_ok_call(estop_latched=latch.latched))
    assert not out.hold
    assert latch.count == 1


def test_nan_target_holds() -> None:
    q = SPEC.home_q
    t = q.copy()
    t[2] = np.nan
    out = filter_joint_command(t, q, **_ok_call())
    assert out.hold and out.interventions[0].check == "nonfinite"
    out = filter_joint_command(q[:3], q, **_ok_call())
    assert out.hold and out.interventions[0].check == "shape"


def test_joint_limit_and_step_records() -> None:
    q = SPEC.home_q
    t = q.copy()
    t[1] = 100.0
    out = filter_joint_command(t, q, **_ok_call())
    checks = [r.check for r in out.interventions]
    assert checks == ["joint_limit", "joint_step"]
    assert abs(out.q[1] - q[1]) <= 0.1 + 1e-12


def test_per_second_limit_scales_with_dt() -> None:
    q = np.zeros(N)
    big = np.full(N, 1.0)
    out, rec = limit_joint_motion(big, q, 0.01, JOINTS)  # pi rad/s * 0.01 s
    assert rec is not None
    np.testing.assert_allclose(np.abs(out), math.pi * 0.01)
    out, _ = limit_joint_motion(big, q, 10.0, JOINTS)  # dt clipped to max_dt, step cap 0.1
    np.testing.assert_allclose(np.abs(out), 0.1)


def test_dry_run_flag_passes_through() -> None:
    cfg = SafetyConfig(JOINTS, CART, dry_run=True)
    q = SPEC.home_q
    out = filter_joint_command(q, q, **_ok_call(cfg=cfg))
    assert out.dry_run and out.send


def test_workspace_and_cartesian_step() -> None:
    p, rec = clamp_workspace(np.array([1.0, 0.0, -1.0]), CART)
    np.testing.assert_allclose(p, [0.5, 0.0, 0.02])
    assert rec is not None and rec.check == "workspace"
    ref = np.array([0.3, 0.0, 0.2])
    p2, r2, recs = limit_cartesian_motion(ref + [0.2, 0, 0], np.eye(3), ref, np.eye(3), 0.1, CART)
    np.testing.assert_allclose(p2, ref + [0.025, 0, 0])  # 0.25 m/s * 0.1 s
    assert [r.check for r in recs] == ["cartesian_step"]


def test_nan_ee_target_holds_reference() -> None:
    ref = np.array([0.3, 0.0, 0.2])
    p, r, recs = filter_ee_target([np.nan, 0, 0], np.eye(3), ref, np.eye(3), 0.1, CART)
    np.testing.assert_allclose(p, ref)
    assert recs[0].check == "nonfinite"


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        JointSafetyConfig((0.0,), (1.0, 2.0))
    with pytest.raises(ValueError):
        JointSafetyConfig((0.0,), (0.01,), margin=0.1)
    with pytest.raises(ValueError):
        CartesianSafetyConfig((0, 0, 0), (0, 1, 1))
    with pytest.raises(ValueError):
        TimingConfig(watchdog_timeout_s=0)
