"""``tracegen_ros.bench.tracker_gt``: tracker accuracy against the simulator's true tracks."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("mujoco", reason="mujoco not installed: no simulator ground truth")


def test_lk_against_sim_ground_truth() -> None:
    from tracegen_ros.bench.tracker_gt import main

    out = main(["--episodes", "1", "--pairs", "lk:lk", "--max-steps", "14", "--grid-size", "20"])
    res = out["results"]["lk+lk"]
    assert res["valid_steps"] > 0 and res["positions"] > 0 and res["points_drawn"] >= 5
    assert math.isfinite(res["median_error_px"]) and res["median_error_px"] < 10.0
    assert 0.0 <= res["active_correct_fraction"] <= 1.0
