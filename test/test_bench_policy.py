"""tracevla-bench policy: the closed-loop evaluation runs and reports what it promises."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("mujoco")

from support.local_policy import make_tiny_checkpoint  # noqa: E402

from tracevla_ros.bench.policy import main, wilson  # noqa: E402


def test_wilson_interval() -> None:
    lo, hi = wilson(25, 50)
    assert lo == pytest.approx(0.3664, abs=1e-4) and hi == pytest.approx(0.6336, abs=1e-4)
    assert wilson(0, 50)[0] == 0.0 and wilson(50, 50)[1] == 1.0
    assert wilson(0, 0) == (0.0, 1.0)


def test_one_episode_per_checkpoint(tmp_path: Path) -> None:
    # A tiny random network on sim-sized frames (256 px): it fails, but the loop runs.
    trace = make_tiny_checkpoint(tmp_path / "a", size=256)
    base = make_tiny_checkpoint(tmp_path / "b", no_trace=True, size=256)
    out = main(["--checkpoint", str(trace), "--baseline", str(base), "--episodes", "1",
                "--tasks", "lift_cube"])
    assert out["benchmark"] == "policy" and out["episodes_per_task"] == 1
    assert out["tracker"]["preset"] == "authors"  # config/widowx.yaml's tracker_node
    for name, use_trace in (("trace", True), ("baseline", False)):
        c = out["checkpoints"][name]
        assert c["use_trace"] is use_trace
        t = c["tasks"]["lift_cube"]
        assert t["episodes"] == 1 and t["successes"] in (0, 1) and not t["errors"]
        assert 1 <= t["mean_length"] <= t["max_steps"] == 40
        assert 0.0 <= t["trace_valid_ratio"] <= 1.0
        assert 0.0 <= t["wilson95"][0] <= t["success_rate"] <= t["wilson95"][1] <= 1.0
        lat = c["latency_ms"]["policy_infer"]
        assert lat["n"] == t["mean_length"] and 0 < lat["p50"] <= lat["p95"]
    assert set(out["trace_minus_baseline"]) == {"lift_cube", "overall"}


def test_refuses_training_seeds(tmp_path: Path) -> None:
    # the shipped checkpoint was trained on lift_cube seeds 0, 1, 2, ...; the tasks must be
    # real WidowX tasks (an unknown one is refused first, naming --tasks)
    with pytest.raises(SystemExit, match="were used to train"):
        main(["--checkpoint", "widowx_trace", "--baseline", "none", "--episodes", "2",
              "--seed-offset", "1", "--tasks", "lift_cube"])
    with pytest.raises(ValueError, match="--tasks 'task0'"):
        main(["--checkpoint", "widowx_trace", "--baseline", "none", "--tasks", "task0"])
