"""tracevla-bench tracegen-sim: Wilson intervals, path error, and a one-episode run's report."""

from __future__ import annotations

import numpy as np
import pytest

from tracegen_ros.bench.tracegen_sim import main, path_error, wilson


def test_wilson() -> None:
    lo, hi = wilson(47, 50)
    assert (lo, hi) == pytest.approx((0.8378, 0.9794), abs=1e-4)
    assert wilson(0, 50)[0] == 0.0 and wilson(50, 50)[1] == 1.0
    assert wilson(0, 0) == (0.0, 1.0)


def test_path_error() -> None:
    ref = np.array([[0.0, 0, 0], [0.1, 0, 0]])
    mean, end = path_error(ref + [0, 0.01, 0], ref)
    assert mean == pytest.approx(0.01) and end == pytest.approx(0.01)
    mean, end = path_error(ref[:1], ref)  # standing still: half the path is missed
    assert end == pytest.approx(0.1) and mean > 0.02


def test_one_episode_report(tmp_path) -> None:  # type: ignore[no-untyped-def]
    png = tmp_path / "paths.png"
    out = main(["--tasks", "put_ball_in_box", "--episodes", "1", "--seed-offset", "100002",
                "--rounds", "2", "--execute-steps", "8",  # receding horizon: no_motion only
                "--plot", str(png)])
    assert png.stat().st_size > 10_000
    t = out["tasks"]["put_ball_in_box"]
    assert t["oracle"]["successes"] == 1 and t["no_motion"]["successes"] == 0
    assert t["expert_success_rate"] == 1.0
    assert t["no_motion"]["path_vs_oracle_end_m"] > 0.2  # the oracle goes to the ball, then the box
    assert out["pooled"]["oracle"]["episodes"] == 1 and out["seeds"] == [100002, 100002]
    assert (out["rounds"], out["execute_steps"]) == (2, 8)
    assert t["no_motion"]["grasps_planned"] == 0  # nothing comes down: no grasp to compare
