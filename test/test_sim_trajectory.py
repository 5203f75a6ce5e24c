"""Joint trajectory playback used by sim_node (pure, no ROS)."""

from __future__ import annotations

import numpy as np
import pytest

from tracevla_ros.sim.trajectory import TrajectoryError, plan_from_points

KNOWN = ["a", "b", "c"]


def test_interpolates_from_current_command() -> None:
    plan = plan_from_points(["b"], KNOWN, [1.0, 2.0], [[1.0], [3.0]], np.array([0.0, -1.0, 0.0]), t0=10.0)
    assert plan.indices.tolist() == [1]
    assert plan.sample(10.0) == pytest.approx([-1.0])
    assert plan.sample(10.5) == pytest.approx([0.0])
    assert plan.sample(11.5) == pytest.approx([2.0])
    assert plan.sample(99.0) == pytest.approx([3.0])
    assert not plan.finished(11.9) and plan.finished(12.0)


def test_point_at_time_zero_replaces_current() -> None:
    plan = plan_from_points(["a", "c"], KNOWN, [0.0, 1.0], [[1.0, 2.0], [3.0, 4.0]], np.zeros(3), t0=0.0)
    assert plan.sample(0.0) == pytest.approx([1.0, 2.0])
    assert plan.sample(0.5) == pytest.approx([2.0, 3.0])
    rest = plan.without(0)
    assert rest is not None and rest.indices.tolist() == [2] and rest.sample(1.0) == pytest.approx([4.0])
    assert rest.without(2) is None


@pytest.mark.parametrize("names,times,pos,match", [
    (["x"], [1.0], [[0.0]], "unknown joint"),
    (["a"], [], [], "no points"),
    (["a"], [1.0, 1.0], [[0.0], [1.0]], "increasing"),
    (["a"], [-1.0], [[0.0]], ">= 0"),
    (["a", "b"], [1.0], [[0.0]], "positions"),
    (["a"], [1.0], [[float("nan")]], "finite"),
])
def test_rejects_malformed(names: list[str], times: list[float], pos: list[list[float]], match: str) -> None:
    with pytest.raises(TrajectoryError, match=match):
        plan_from_points(names, KNOWN, times, pos, np.zeros(3), t0=0.0)


def test_arbiter_newest_command_owns_each_joint() -> None:
    from tracevla_ros.sim.trajectory import CommandArbiter

    arb = CommandArbiter(KNOWN)
    cur = np.zeros(3)
    assert arb.sample(cur, 0.0) is None
    arb.add_trajectory("arm", ["a", "b"], [1.0], [[1.0, 1.0]], cur, 0.0)
    arb.add_trajectory("grip", ["c"], [1.0], [[2.0]], cur, 0.0)  # disjoint: both stay
    assert arb.sample(cur, 0.5) == pytest.approx([0.5, 0.5, 1.0])
    arb.add_trajectory("other", ["b"], [1.0], [[-1.0]], cur, 0.0)  # takes b from "arm"
    assert arb.sample(cur, 1.0) == pytest.approx([1.0, -1.0, 2.0])
    assert arb.plans == {}  # all finished at t = 1
    arb.add_trajectory("arm", ["a"], [1.0], [[1.0]], cur, 0.0)
    arb.take_over(np.array([0]))  # a direct command on joint a
    assert arb.sample(cur, 0.5) is None
    with pytest.raises(TrajectoryError):
        arb.add_trajectory("arm", ["zz"], [1.0], [[1.0]], cur, 0.0)
