"""An rclpy node that timestamps what the running stack publishes (for ``tracevla-bench loop``).

Subscribes raw (no deserialisation: the callback costs microseconds whatever the
message size) and reads only the header stamp from the CDR bytes: every message it
watches starts with ``std_msgs/Header`` (Image, JointState, VisualTrace,
PolicyAction, JointTrajectory, Trace3D, PoseArray).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from rclpy.node import Node

from tracevla_ros.bag.writer import header_stamp_ns
from tracevla_ros.nodes.common import RELIABLE_QOS, SENSOR_QOS
from tracevla_ros.nodes.recorder_node import import_msg_type

class LoopObserver(Node):
    """Records ``(rx wall time, header stamp)`` per topic; ``topics``: name -> (type, sensor?)."""

    def __init__(self, topics: dict[str, tuple[str, bool]], **kwargs: Any) -> None:
        super().__init__("loop_observer", **kwargs)
        self.samples: dict[str, list[tuple[float, float]]] = {t: [] for t in topics}
        self._lock = threading.Lock()
        for topic, (msgtype, sensor) in topics.items():
            self.create_subscription(import_msg_type(msgtype), topic,
                                     lambda data, t=topic: self._on(t, data),
                                     SENSOR_QOS if sensor else RELIABLE_QOS, raw=True)

    def _on(self, topic: str, data: bytes) -> None:
        rx = time.time()
        with self._lock:
            self.samples[topic].append((rx, header_stamp_ns(data) * 1e-9))

    def snapshot(self) -> dict[str, list[tuple[float, float]]]:
        with self._lock:
            return {t: list(v) for t, v in self.samples.items()}

    def count(self, topic: str) -> int:
        with self._lock:
            return len(self.samples[topic])
