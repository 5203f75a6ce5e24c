"""tracevla-bench loop --launch and tracevla-bench estop, short runs: the deployed layout
(one process per node) runs the loop, stops cleanly on SIGINT, and the e-stop holds.

Figures are printed, never asserted (timing depends on the machine's load)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("mujoco")
pytest.importorskip("rclpy")

from tracevla_ros.bench import estop, loop  # noqa: E402

pytestmark = pytest.mark.ros


def test_loop_bench_one_process_per_node_runs_and_stops_cleanly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may be written to the working directory
    keep = tmp_path / "keep"
    res = loop.main(["--robot", "widowx", "--launch", "--seconds", "4", "--warmup", "1",
                     "--keep", str(keep)])
    print(res)
    assert (keep / "bag" / "metadata.yaml").is_file()  # the recorder wrote where it was told
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep"]
    assert res["layout"].startswith("one process per node")
    names = set(res["processes"])
    assert {"sim_node", "tracker_node", "policy_node", "widowx_controller_node",
            "recorder_node", "trace_viz_node"} <= names
    for name, p in res["processes"].items():
        assert p["exit_code"] == 0, (name, p)  # SIGINT as from a terminal: clean exit
        assert not p["traceback"], name
        assert p["rss_mb"] and p["rss_mb"] > 0
    for topic in ("/camera/image_raw", "/trace", "/policy/action", "/arm_controller/joint_trajectory"):
        assert res["topics"][topic]["received"] > 0, topic
    e2e = res["latency"]["end_to_end"]
    assert e2e["n"] > 0 and e2e["p50_ms"] > 0
    assert set(res["real_time"]) == {"camera", "policy", "tolerance"}


def test_loop_bench_refuses_bad_arguments(tmp_path, capsys) -> None:  # noqa: ANN001
    from tracevla_ros.tools.bench import main as bench_main

    assert bench_main(["loop", "--seconds", "0"]) == 2
    assert "--seconds" in capsys.readouterr().err
    assert bench_main(["loop", "--keep", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_estop_bench_every_request_holds_the_arm() -> None:
    res = estop.main(["--robot", "widowx", "--trials", "3", "--watchdog-trials", "1"])
    print(res)
    assert res["estop_holds_seen"] == 3
    assert res["estop_request_to_hold_command"]["n"] == 3
    assert res["watchdog_hold_after_timeout"]["n"] == 1
    assert res["controller_exit_code"] == 0
