"""tracevla_ros.loopstats: rates, dropped frames and stage latencies from observed messages."""

from __future__ import annotations

import pytest

from tracevla_ros.loopstats import Stage, percentiles, stage_latencies, topic_rates


def test_rates_and_dropped_frames() -> None:
    stamps = [k * 0.1 for k in range(21) if k not in (5, 6, 12)]  # 3 frames missing
    samples = [(1000.0 + s + 0.01, 1000.0 + s) for s in stamps]
    r = topic_rates(samples, 10.0, (0.0, 2000.0))
    assert r["received"] == 18 and r["dropped"] == 3
    assert r["achieved_hz"] == pytest.approx(17 / 2.0, rel=1e-6)
    assert r["ratio"] == pytest.approx(0.85, rel=1e-6)
    unconfigured = topic_rates(samples, None, (0.0, 2000.0))
    assert unconfigured["dropped"] is None and unconfigured["ratio"] is None
    assert topic_rates([], 5.0, (0.0, 1.0))["achieved_hz"] == 0.0


def _loop(sim_time: bool) -> dict[str, list[tuple[float, float]]]:
    wall = 1.8e9  # the observer's clock (s since 1970)
    base = 0.0 if sim_time else wall  # stamps: sim time from 0, or the same wall clock
    cam, trace, act, cmd = [], [], [], []
    for k in range(10):
        s = 0.2 * k
        cam.append((wall + s + 0.005, base + s))
        trace.append((wall + s + 0.015, base + s))
        act.append((wall + s + 0.025, base + s))
        cmd.append((wall + s + 0.027, 0.0))
    return {"/camera/image_raw": cam, "/trace": trace, "/policy/action": act, "/cmd": cmd}


STAGES = (Stage("camera_to_tracker", "/trace", "/trace", "stamp"),
          Stage("tracker_to_policy", "/trace", "/policy/action", "same_stamp"),
          Stage("policy_to_command", "/policy/action", "/cmd", "next"),
          Stage("end_to_end", "/policy/action", "/cmd", "next_stamp"))


def test_stage_latencies_with_wall_clock_stamps() -> None:
    lat = stage_latencies(_loop(False), STAGES, (0.0, 2e9))
    assert lat["camera_to_tracker"]["p50_ms"] == pytest.approx(15.0, abs=1e-6)
    assert lat["tracker_to_policy"]["p50_ms"] == pytest.approx(10.0, abs=1e-6)
    assert lat["policy_to_command"]["p50_ms"] == pytest.approx(2.0, abs=1e-6)
    assert lat["end_to_end"] == {"n": 10, "p50_ms": pytest.approx(27.0), "p95_ms": pytest.approx(27.0),
                                 "max_ms": pytest.approx(27.0)}


def test_stage_latencies_with_sim_time_stamps_count_from_the_camera_frame() -> None:
    lat = stage_latencies(_loop(True), STAGES, (0.0, 2e9))
    assert lat["camera_to_tracker"]["p50_ms"] == pytest.approx(10.0, abs=1e-6)
    assert lat["end_to_end"]["p50_ms"] == pytest.approx(22.0, abs=1e-6)
    assert lat["tracker_to_policy"]["p50_ms"] == pytest.approx(10.0, abs=1e-6)


def test_percentiles_never_nan() -> None:
    assert percentiles([]) == {"n": 0}
    assert percentiles([float("nan")]) == {"n": 0}
    assert percentiles([0.001, 0.002, 0.003])["p50_ms"] == pytest.approx(2.0)
