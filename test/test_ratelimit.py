"""StampRateLimiter (policy/tracker rate by frame stamp), StopRequest, the demo's timing report."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from tracevla_ros.ratelimit import StampRateLimiter
from tracevla_ros.stopping import StopRequest, ignore_stop_signals, install_stop_signals
from tracevla_ros.tools.demo_stats import timing_report


def _due(rate: float, stamps: np.ndarray) -> np.ndarray:
    lim = StampRateLimiter(rate)
    return np.array([lim.due(float(t)) for t in stamps])


def test_camera_twice_the_rate_takes_every_other_frame() -> None:
    assert _due(5.0, 0.1 * np.arange(6)).tolist() == [True, False, True, False, True, False]


@pytest.mark.parametrize("camera_hz", [10.0, 15.0, 30.0, 29.97, 60.0])
def test_long_run_rate_is_the_configured_one(camera_hz: float) -> None:
    rng = np.random.default_rng(0)
    n = int(60.0 * camera_hz)
    stamps = np.arange(n) / camera_hz + rng.uniform(-0.002, 0.002, n)  # 60 s with jitter
    due = _due(5.0, stamps)
    assert due.sum() == pytest.approx(5.0 * 60.0, abs=1)
    gaps = np.diff(stamps[due])
    # every step is the frame nearest its period: gaps within one camera period of 0.2 s
    assert gaps.min() >= 0.2 - 1.0 / camera_hz - 0.005 and gaps.max() <= 0.2 + 1.0 / camera_hz + 0.005


def test_slower_input_passes_every_frame_and_gaps_reanchor() -> None:
    assert _due(5.0, 0.25 * np.arange(8)).all()  # 4 Hz camera, 5 Hz policy: all used
    lim = StampRateLimiter(5.0)
    assert [lim.due(t) for t in (0.0, 0.1, 0.2)] == [True, False, True]
    assert lim.due(5.0)  # a paused camera: the next frame is due at once
    assert [lim.due(t) for t in (5.1, 5.2)] == [False, True]


def test_old_or_repeated_stamps_are_never_due() -> None:
    lim = StampRateLimiter(5.0)
    assert lim.due(1.0) and not lim.due(1.0) and not lim.due(0.5)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_rate_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="rate_hz"):
        StampRateLimiter(bad)


def test_stop_request_first_signal_wins_and_later_ones_are_ignored() -> None:
    stop = StopRequest()
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        install_stop_signals(stop)
        assert not stop
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt
        assert stop and stop.reason == "SIGTERM" and stop.exit_code == 143
        ignore_stop_signals()
        os.kill(os.getpid(), signal.SIGINT)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    other = StopRequest()
    other.request("parent process 1 exited")
    assert other.exit_code == 1


def test_timing_report_flags_rates_below_ninety_percent() -> None:
    topics = {"/camera/image_raw": {"rate_hz": 9.98}, "/policy/action": {"rate_hz": 1.05}}
    lat = {"camera_to_tracker": {"n": 3, "p95_ms": 400.0}, "end_to_end": {"n": 3, "p95_ms": 900.0}}
    rep = timing_report(topics, {"/camera/image_raw": 10.0, "/policy/action": 5.0}, lat)
    assert rep["rates"]["/camera/image_raw"]["ok"] and not rep["rates"]["/policy/action"]["ok"]
    assert rep["real_time"] is False and len(rep["warnings"]) == 1
    assert "/policy/action ran at 1.05 Hz, 21 %" in rep["warnings"][0]
    assert "camera_to_tracker p95 400.0 ms" in rep["warnings"][0]
    ok = timing_report({"/policy/action": {"rate_hz": 5.0}}, {"/policy/action": 5.0}, {})
    assert ok["real_time"] and ok["warnings"] == []


def test_wake_worker_coalesces_wakes_reports_errors_and_stops() -> None:
    import threading

    from tracevla_ros.worker import WakeWorker

    seen: list[int] = []
    errors: list[str] = []
    gate = threading.Event()
    value = [0]

    def step() -> None:
        gate.wait(5.0)  # hold the first step while more wakes arrive
        seen.append(value[0])
        if value[0] == 99:
            raise RuntimeError("bad frame")

    worker = WakeWorker(step, "test_worker", on_error=lambda e: errors.append(str(e)))
    worker.start()
    worker.wake()
    for v in range(1, 6):  # five wakes during one step: one more step, on the newest value
        value[0] = v
        worker.wake()
    gate.set()
    for _ in range(200):
        if len(seen) >= 2:
            break
        threading.Event().wait(0.01)
    assert seen[-1] == 5 and len(seen) <= 2 + 1
    value[0] = 99
    worker.wake()
    for _ in range(200):
        if errors:
            break
        threading.Event().wait(0.01)
    assert errors == ["bad frame"]  # reported, and the worker lives on
    worker.close()
    assert worker.stopping.is_set()
