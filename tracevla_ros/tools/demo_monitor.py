"""The demo's observer node: latencies per stage, trace validity, overlay frames."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Bool
from trajectory_msgs.msg import JointTrajectory

from tracevla_ros.msg import PolicyAction, VisualTrace
from tracevla_ros.nodes.common import RELIABLE_QOS, SENSOR_QOS, stamp_to_sec
from tracevla_ros.ros_image import image_to_rgb
from tracevla_ros.tools.demo_stats import StageClock

_INTERNAL_TOPICS = ("/rosout", "/parameter_events")


def wait_until_matched(nodes: list[Node], recorder: Any, timeout_s: float) -> list[str]:
    """Block until every publisher of ``nodes`` is matched with every subscriber the graph
    shows for its topic and ``recorder`` subscribes to every topic of its list that has a
    publisher (the executor must be spinning). Returns what is still unmatched at the
    timeout ([] = all matched), so the first frame reaches the bag and every node.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        missing = list(recorder.pending_topics())
        for node in nodes:
            for pub in node.publishers:
                topic = pub.topic_name
                if topic not in _INTERNAL_TOPICS and \
                        pub.get_subscription_count() < node.count_subscribers(topic):
                    missing.append(topic)
        if not missing or time.monotonic() > deadline:
            return sorted(set(missing))
        time.sleep(0.05)


def start_when_matched(spin: threading.Thread, nodes: list[Node], recorder: Any,
                       go: threading.Event, timeout_s: float = 20.0) -> None:
    """Start the executor thread, wait (:func:`wait_until_matched`, a warning naming what is
    still unmatched at the timeout), then let the sim publish: the bag gets every message from
    the first frame on."""
    spin.start()
    unmatched = wait_until_matched(nodes, recorder, timeout_s)
    if unmatched:
        print(f"[demo] warning: not matched within {timeout_s:.0f} s: {unmatched}", file=sys.stderr)
    go.set()


def write_mp4(frames: list[np.ndarray], path: Path, fps: float) -> int:
    """Write RGB frames as H.264 MP4; returns the number of frames (0: nothing written)."""
    if not frames:
        return 0
    import imageio.v2 as imageio

    with imageio.get_writer(str(path), fps=fps, codec="libx264", quality=8,
                            macro_block_size=1) as w:
        for f in frames:
            w.append_data(f)  # type: ignore[attr-defined]
    return len(frames)


class DemoMonitor(Node):
    def __init__(self, command_topic: str, max_frames: int = 5000, **kwargs: Any) -> None:
        super().__init__("demo_monitor", **kwargs)
        self.clock = StageClock()
        self.actions = 0
        self.traces = 0
        self.valid_traces = 0
        self.commands = 0
        self.success_at_step: int | None = None  # policy step when /success first became true
        self._frames: list[np.ndarray] = []
        self._max_frames = max_frames
        self._lock = threading.Lock()
        self.create_subscription(VisualTrace, "/trace", self._on_trace, RELIABLE_QOS)
        self.create_subscription(Image, "/image_trace", self._on_image_trace, SENSOR_QOS)
        self.create_subscription(PolicyAction, "/policy/action", self._on_action, RELIABLE_QOS)
        self.create_subscription(JointTrajectory, command_topic, self._on_command, RELIABLE_QOS)
        self.create_subscription(Bool, "/success", self._on_success, RELIABLE_QOS)

    def _on_success(self, msg: Bool) -> None:
        if msg.data and self.success_at_step is None:
            self.success_at_step = self.actions

    def _now(self) -> float:
        return float(self.get_clock().now().nanoseconds) * 1e-9

    def _on_trace(self, msg: VisualTrace) -> None:
        self.clock.on_trace(stamp_to_sec(msg.header.stamp), self._now())
        self.traces += 1
        self.valid_traces += int(msg.valid)

    def _on_image_trace(self, msg: Image) -> None:
        with self._lock:
            if len(self._frames) < self._max_frames:
                self._frames.append(image_to_rgb(msg))

    def _on_action(self, msg: PolicyAction) -> None:
        self.clock.on_action(stamp_to_sec(msg.header.stamp), self._now())
        self.actions += 1

    def _on_command(self, msg: JointTrajectory) -> None:
        self.clock.on_command(self._now())
        self.commands += 1

    def trace_valid_ratio(self) -> float:
        return round(self.valid_traces / self.traces, 4) if self.traces else 0.0

    def write_video(self, path: Path, fps: float) -> int:
        """Write the overlay frames as H.264 MP4; returns the number of frames."""
        with self._lock:
            frames = list(self._frames)
        return write_mp4(frames, path, fps)
