"""FK / IK on the same MJCF models the simulator uses (pinocchio), no ROS."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("pinocchio")
mujoco = pytest.importorskip("mujoco")

from tracevla_ros.control.kinematics import (  # noqa: E402
    ArmKinematics,
    IKOptions,
    load_kinematics,
    rotation_error,
)
from tracevla_ros.robots import get_robot  # noqa: E402

ROBOTS = ["widowx250s", "fr3"]


def _rot_angle(a: np.ndarray, b: np.ndarray) -> float:
    return float(math.acos(min(1.0, max(-1.0, (np.trace(a.T @ b) - 1) / 2))))


@pytest.mark.parametrize("name", ROBOTS)
def test_fk_matches_mujoco(name: str) -> None:
    spec = get_robot(name)
    kin = load_kinematics(name)
    model = mujoco.MjModel.from_xml_path(str(spec.model_path))
    data = mujoco.MjData(model)
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.uniform(spec.lower, spec.upper)
        for jn, v in zip(spec.arm_joints, q):
            data.qpos[model.joint(jn).qposadr[0]] = v
        mujoco.mj_kinematics(model, data)
        p, r = kin.fk(q)
        np.testing.assert_allclose(p, data.site(spec.ee_site).xpos, atol=1e-9)
        np.testing.assert_allclose(r, data.site(spec.ee_site).xmat.reshape(3, 3), atol=1e-9)


@pytest.mark.parametrize("name", ROBOTS)
def test_jacobian_matches_finite_differences(name: str) -> None:
    kin = load_kinematics(name)
    q = kin.spec.home_q + 0.1
    q = np.clip(q, kin.lower, kin.upper)
    jac = kin.jacobian(q)
    p0, r0 = kin.fk(q)
    eps = 1e-6
    for i in range(kin.dof):
        dq = np.zeros(kin.dof)
        dq[i] = eps
        p1, r1 = kin.fk(q + dq)
        np.testing.assert_allclose((p1 - p0) / eps, jac[:3, i], atol=1e-5)
        np.testing.assert_allclose(rotation_error(r1, r0) / eps, jac[3:, i], atol=1e-5)


def _backends() -> list[str]:
    try:
        import numba  # noqa: F401
    except ImportError:
        return ["pinocchio"]
    return ["pinocchio", "numba"]


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("name", ROBOTS)
def test_ik_reaches_random_targets_from_near_seed(name: str, backend: str) -> None:
    kin = ArmKinematics(get_robot(name), backend=backend)
    assert kin.backend == backend
    rng = np.random.default_rng(1)
    n, ok = 200, 0
    for _ in range(n):
        q = rng.uniform(kin.lower, kin.upper)
        p, r = kin.fk(q)
        seed = np.clip(q + rng.normal(0, 0.1, kin.dof), kin.lower, kin.upper)
        res = kin.solve_ik(p, r, seed)
        assert np.all(res.q >= kin.lower) and np.all(res.q <= kin.upper)
        if res.success:
            ok += 1
            p2, r2 = kin.fk(res.q)  # the reported errors are the real ones
            assert np.linalg.norm(p2 - p) <= 1e-3
            assert _rot_angle(r2, r) <= 0.01
            assert res.pos_err == pytest.approx(np.linalg.norm(p2 - p), abs=1e-9)
    assert ok / n >= 0.99


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("name", ROBOTS)
def test_ik_from_home_seed_uses_restarts(name: str, backend: str) -> None:
    kin = ArmKinematics(get_robot(name), backend=backend)
    rng = np.random.default_rng(2)
    n, ok = 60, 0
    for _ in range(n):
        q = rng.uniform(kin.lower, kin.upper)
        p, r = kin.fk(q)
        ok += kin.solve_ik(p, r, None).success
    assert ok / n >= 0.95


@pytest.mark.parametrize("backend", _backends())
def test_position_only_ik(backend: str) -> None:
    kin = ArmKinematics(get_robot("fr3"), backend=backend)
    p0, r0 = kin.fk(kin.spec.home_q)
    res = kin.solve_ik(p0 + np.array([0.05, -0.05, 0.05]), None, kin.spec.home_q)
    assert res.success and res.rot_err == 0.0
    p, _ = kin.fk(res.q)
    np.testing.assert_allclose(p, p0 + [0.05, -0.05, 0.05], atol=2e-4)


@pytest.mark.parametrize("backend", _backends())
def test_unreachable_target_returns_best_effort_within_limits(backend: str) -> None:
    kin = ArmKinematics(get_robot("widowx250s"), IKOptions(restarts=1), backend=backend)
    res = kin.solve_ik(np.array([2.0, 0.0, 0.3]), None, kin.spec.home_q)
    assert not res.success
    assert np.all(res.q >= kin.lower) and np.all(res.q <= kin.upper)
    assert res.pos_err > 1.0  # reach is ~0.65 m


@pytest.mark.parametrize("bad", [np.array([np.nan, 0, 0]), np.array([0.1, 0.2]), np.array([np.inf, 0, 0])])
def test_bad_targets_raise(bad: np.ndarray) -> None:
    kin = load_kinematics("fr3")
    with pytest.raises(ValueError):
        kin.solve_ik(bad, None)


def test_bad_q_raises() -> None:
    kin = load_kinematics("widowx250s")
    with pytest.raises(ValueError, match="shape"):
        kin.fk(np.zeros(7))
    with pytest.raises(ValueError, match="NaN"):
        kin.fk(np.full(6, np.nan))


def test_rotation_error_near_pi() -> None:
    r = np.diag([1.0, -1.0, -1.0])  # 180 deg about x
    v = rotation_error(r, np.eye(3))
    np.testing.assert_allclose(np.abs(v), [math.pi, 0, 0], atol=1e-6)


def test_ik_bench_runs() -> None:
    from tracevla_ros.bench import BENCHMARKS
    from tracevla_ros.bench import ik as ik_bench

    assert BENCHMARKS["ik"] == "ik"
    out = ik_bench.main(["--robot", "widowx", "--n", "30", "--modes", "near"])
    assert out["robot"] == "widowx250s"
    assert 0.0 <= out["seed_near"]["success_rate"] <= 1.0
    assert out["seed_near"]["solve_time_ms"]["p50"] > 0


def test_numba_chain_matches_pinocchio() -> None:
    pytest.importorskip("numba")
    from tracevla_ros.control._ik_numba import chain_from_mjcf, fk_jac

    rng = np.random.default_rng(5)
    for name in ROBOTS:
        kin = load_kinematics(name)
        pre, axes, post = chain_from_mjcf(kin.spec)
        for _ in range(20):
            q = rng.uniform(kin.lower, kin.upper)
            t, jac = fk_jac(pre, axes, post, q)
            p, r = kin.fk(q)
            np.testing.assert_allclose(t[:3, 3], p, atol=1e-9)
            np.testing.assert_allclose(t[:3, :3], r, atol=1e-9)
            np.testing.assert_allclose(jac, kin.jacobian(q), atol=1e-9)


def test_unknown_backend_raises() -> None:
    with pytest.raises(ValueError, match="backend"):
        ArmKinematics(get_robot("fr3"), backend="cuda")
