"""Latency and rate bookkeeping for tracevla-demo (no rclpy).

Stages, all measured on one clock (the demo runs every node in one process):
  camera->tracker   trace received   - camera stamp of its frame
  tracker->policy   action received  - trace received (same frame stamp)
  policy->command   arm command received - the newest action received before it
  end_to_end        arm command received - camera stamp of the action's frame
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any


from tracevla_ros.loopstats import percentiles


@dataclass
class StageClock:
    """Thread-safe record of when each frame's products were received."""

    trace_rx: dict[float, float] = field(default_factory=dict)
    action_rx: list[tuple[float, float]] = field(default_factory=list)  # (frame stamp, rx time)
    latencies: dict[str, list[float]] = field(default_factory=lambda: {
        "camera_to_tracker": [], "tracker_to_policy": [], "policy_to_command": [], "end_to_end": []})
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def on_trace(self, frame_stamp: float, rx: float) -> None:
        with self._lock:
            self.trace_rx[frame_stamp] = rx
            self.latencies["camera_to_tracker"].append(rx - frame_stamp)
            if len(self.trace_rx) > 256:
                self.trace_rx.pop(next(iter(self.trace_rx)))

    def on_action(self, frame_stamp: float, rx: float) -> None:
        with self._lock:
            t_trace = self.trace_rx.get(frame_stamp)
            if t_trace is not None:
                self.latencies["tracker_to_policy"].append(rx - t_trace)
            self.action_rx.append((frame_stamp, rx))

    def on_command(self, rx: float) -> None:
        with self._lock:
            if not self.action_rx:
                return
            frame_stamp, t_action = self.action_rx[-1]
            self.latencies["policy_to_command"].append(rx - t_action)
            self.latencies["end_to_end"].append(rx - frame_stamp)
            self.action_rx.clear()  # one command per action counts

    def summary(self) -> dict[str, dict[str, float | int]]:
        with self._lock:
            return {k: percentiles(v) for k, v in self.latencies.items()}


def shutdown_nodes(executor: Any, spin: Any, sim_stop: Any, nodes: list[Any], sim_thread: Any,
                   ctx: Any) -> None:
    """Stop the demo's executor, close and destroy its nodes, join the sim thread, shut rclpy down."""
    import rclpy

    executor.shutdown(timeout_sec=2.0)
    if spin.is_alive():
        spin.join(timeout=5.0)
    sim_stop.set()
    for n in reversed(nodes):
        close = getattr(n, "close", None)
        if callable(close):
            close()
        n.destroy_node()
    if sim_thread.is_alive():
        sim_thread.join(timeout=10.0)
    rclpy.try_shutdown(context=ctx)


# Achieved rates below this fraction of the configured ones are reported as a failure to
# keep real time (the demo's summary and stderr say so, and why).
RATE_OK_FRACTION = 0.9


def timing_report(topics: dict[str, dict[str, Any]], configured_hz: dict[str, float],
                  latency: dict[str, dict[str, float | int]]) -> dict[str, Any]:
    """Configured vs achieved rate per topic, and a warning with the likely cause for each
    topic below ``RATE_OK_FRACTION`` of its rate (the machine's load, the slowest stage)."""
    rates: dict[str, Any] = {}
    warnings: list[str] = []
    for topic, want in configured_hz.items():
        got = float(topics.get(topic, {}).get("rate_hz", 0.0))
        ratio = got / want if want > 0 else 0.0
        rates[topic] = {"configured_hz": want, "achieved_hz": round(got, 3),
                        "ratio": round(ratio, 4), "ok": ratio >= RATE_OK_FRACTION}
        if ratio < RATE_OK_FRACTION:
            warnings.append(f"{topic} ran at {got:.2f} Hz, {100 * ratio:.0f} % of the configured "
                            f"{want:g} Hz: {_likely_cause(latency)}")
    return {"rates": rates, "real_time": not warnings, "warnings": warnings}


def _likely_cause(latency: dict[str, dict[str, float | int]]) -> str:
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    cores = os.cpu_count() or 1
    stages = {k: v.get("p95_ms") for k, v in latency.items() if k != "end_to_end" and v.get("n")}
    slow = max(stages.items(), key=lambda kv: float(kv[1] or 0.0)) if stages else None
    parts = []
    if load == load:  # not NaN
        parts.append(f"load average {load:.1f} on {cores} cores"
                     + (" (the machine is overloaded)" if load > cores else ""))
    if slow is not None:
        parts.append(f"slowest stage {slow[0]} p95 {slow[1]} ms")
    return "; ".join(parts) or "no latency figures"
