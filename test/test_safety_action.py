"""ee_delta_7d integration (bridge/OpenVLA convention) and gripper hysteresis."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tracevla_ros.control.action import (
    ActionError,
    GripperHysteresis,
    HysteresisConfig,
    integrate_ee_delta,
    parse_ee_delta_chunk,
    rpy_to_matrix,
)


def _rx(a: float) -> np.ndarray:
    return np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])


def _ry(a: float) -> np.ndarray:
    return np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])


def _rz(a: float) -> np.ndarray:
    return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])


def test_rpy_is_extrinsic_xyz() -> None:
    r, p, y = 0.3, -0.2, 0.7
    np.testing.assert_allclose(rpy_to_matrix(r, p, y), _rz(y) @ _ry(p) @ _rx(r), atol=1e-12)
    scipy = pytest.importorskip("scipy.spatial.transform")
    np.testing.assert_allclose(rpy_to_matrix(r, p, y),
                               scipy.Rotation.from_euler("xyz", [r, p, y]).as_matrix(), atol=1e-12)


def test_delta_rotation_is_applied_in_base_frame() -> None:
    # gripper pointing down (ee x axis = -z of the base)
    r_cur = _ry(math.pi / 2)
    pos = np.array([0.3, 0.0, 0.2])
    p, r = integrate_ee_delta(pos, r_cur, np.array([0.01, -0.02, 0.03, 0.0, 0.0, 0.5, 1.0]))
    np.testing.assert_allclose(p, pos + [0.01, -0.02, 0.03])
    # a base-frame yaw turns the gripper about the base z axis: R_delta @ R_current
    np.testing.assert_allclose(r, _rz(0.5) @ r_cur, atol=1e-12)
    # ... and is not the same as rotating about the gripper's own z (R_current @ R_delta)
    assert not np.allclose(r, r_cur @ _rz(0.5), atol=1e-3)


def test_zero_delta_is_identity() -> None:
    r0 = rpy_to_matrix(0.1, 0.2, 0.3)
    p, r = integrate_ee_delta(np.zeros(3), r0, np.zeros(7))
    np.testing.assert_allclose(p, 0)
    np.testing.assert_allclose(r, r0)


@pytest.mark.parametrize("bad", [np.zeros(5), np.array([np.nan, 0, 0, 0, 0, 0, 1.0])])
def test_bad_actions_raise(bad: np.ndarray) -> None:
    with pytest.raises(ActionError):
        integrate_ee_delta(np.zeros(3), np.eye(3), bad)


def test_parse_chunk() -> None:
    arr = parse_ee_delta_chunk(list(range(14)), 2, 7)
    assert arr.shape == (2, 7) and arr[1, 0] == 7
    with pytest.raises(ActionError):
        parse_ee_delta_chunk(list(range(13)), 2, 7)
    with pytest.raises(ActionError):
        parse_ee_delta_chunk(list(range(12)), 2, 6)


def test_gripper_hysteresis() -> None:
    g = GripperHysteresis()
    assert g.is_open
    seq = [0.5, 0.06, 0.04, 0.5, 0.94, 0.96, 0.5, float("nan"), 0.01]
    states = [g.update(v) for v in seq]
    assert [s[0] for s in states] == [True, True, False, False, False, True, True, True, False]
    assert [s[1] for s in states] == [False, False, True, False, False, True, False, False, True]
    g2 = GripperHysteresis(HysteresisConfig(close_below=0.5, open_above=0.5 + 1e-9))
    assert g2.update(0.4) == (False, True)
    with pytest.raises(ValueError):
        HysteresisConfig(close_below=0.9, open_above=0.1)
