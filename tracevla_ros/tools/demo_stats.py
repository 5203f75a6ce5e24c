"""Latency and rate bookkeeping for tracevla-demo (no rclpy).

Stages, all measured on one clock (the demo runs every node in one process):
  camera->tracker   trace received   - camera stamp of its frame
  tracker->policy   action received  - trace received (same frame stamp)
  policy->command   arm command received - the newest action received before it
  end_to_end        arm command received - camera stamp of the action's frame
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def percentiles_ms(values_s: list[float]) -> dict[str, float | int]:
    if not values_s:
        return {"n": 0}
    a = np.asarray(values_s) * 1e3
    return {"n": int(a.size), "p50_ms": round(float(np.percentile(a, 50)), 3),
            "p95_ms": round(float(np.percentile(a, 95)), 3),
            "max_ms": round(float(a.max()), 3)}


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
            return {k: percentiles_ms(v) for k, v in self.latencies.items()}


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
