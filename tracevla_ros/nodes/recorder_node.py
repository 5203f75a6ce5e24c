"""recorder_node: writes the stack's topics to a rosbag2 bag (MCAP) without ros2 bag.

Serialised messages are written as received (``raw=True``: no deserialisation),
stamped with the receive time like ``ros2 bag record``. Each topic is
subscribed once a publisher appears, with the publisher's reliability and
durability (so a latched instruction is recorded too), which are also stored
in metadata.yaml (``ros2 bag play`` offers them again). ``params_file`` is
stored in metadata.yaml ``custom_data`` (key ``tracevla_ros.params``) so that
``tracevla-replay`` runs the tracker with the recorded run's parameters.

Crash safety: MCAP chunks are written and fsync'd once they hold
``chunk_size_kib`` or ``flush_period_s`` after their first message (a timer
flushes a quiet topic), so a SIGKILL or power cut loses at most about
``flush_period_s``; ``tracevla-bag reindex DIR`` (or simply ``tracevla-replay``)
recovers such a bag. SIGINT/SIGTERM finish it (summary and metadata.yaml).

To start recording before anything is published (nothing missed), start this
node first and the camera once ``pending_topics()`` is empty, as tracevla-demo does.

    ros2 run tracevla_ros recorder_node --ros-args --params-file config/widowx.yaml \
        -p output:=/data/run1 -p params_file:=config/widowx.yaml
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Any, Iterator

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from tracevla_ros.bag.config import PARAMS_KEY, RecorderConfig
from tracevla_ros.bag.writer import BagError, BagRecorder, OfferedQos
from tracevla_ros.config import ConfigError
from tracevla_ros.nodes.common import declare_config, run_node


def import_msg_type(name: str) -> Any:
    """'sensor_msgs/msg/Image' -> the rclpy message class."""
    pkg, kind, cls = name.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), cls)


class RecorderNode(Node):
    def __init__(self, output: str | None = None, **kwargs: Any) -> None:
        super().__init__("recorder_node", **kwargs)
        self.cfg = declare_config(self, RecorderConfig)
        path = output or self.cfg.output or time.strftime("bag_%Y%m%d_%H%M%S")
        params_text = ""
        if self.cfg.params_file:
            try:
                params_text = Path(self.cfg.params_file).read_text()
            except OSError as exc:
                raise ConfigError(f"parameter 'params_file': cannot read {self.cfg.params_file}: "
                                  f"{exc.strerror}") from None
        try:
            self.bag = BagRecorder(path, storage=self.cfg.storage, compression=self.cfg.compression,
                                   flush_period_s=self.cfg.flush_period_s,
                                   chunk_size=self.cfg.chunk_size_kib * 1024, fsync=self.cfg.fsync)
        except BagError as exc:
            raise ConfigError(f"parameter 'output': {exc}") from None
        if params_text:
            self.bag.set_custom_data(PARAMS_KEY, params_text)
        self._subs: dict[str, Any] = {}
        self._warned: set[str] = set()
        self.create_timer(self.cfg.discovery_period_s, self._discover)
        # a quiet topic's chunk is written too: checked 4x per flush period
        self.create_timer(self.cfg.flush_period_s / 4, self._flush_if_due)
        self._discover()
        self.get_logger().info(f"recording {len(self.cfg.topics)} topics to {path}")

    def pending_topics(self) -> Iterator[str]:
        """Topics of the list that have a publisher but no subscription here yet."""
        types = dict(self.get_topic_names_and_types())
        for topic in self.cfg.topics:
            if topic not in self._subs and topic in types and topic not in self._warned \
                    and self.count_publishers(topic) > 0:
                yield topic

    def _discover(self) -> None:
        types = dict(self.get_topic_names_and_types())
        for topic in self.cfg.topics:
            if topic in self._subs or topic not in types:
                continue
            msgtype = types[topic][0]
            infos = self.get_publishers_info_by_topic(topic)
            if not infos:
                continue
            reliable = all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)
            latched = all(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in infos)
            qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                             reliability=ReliabilityPolicy.RELIABLE if reliable
                             else ReliabilityPolicy.BEST_EFFORT,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL if latched
                             else DurabilityPolicy.VOLATILE)
            try:
                cls = import_msg_type(msgtype)
                # the graph does not carry the history depth: 1 for latched, else 10
                self.bag.add_topic(topic, msgtype, OfferedQos(reliable=reliable, latched=latched,
                                                              depth=1 if latched else 10))
            except (BagError, ImportError, AttributeError, ValueError) as exc:
                if topic not in self._warned:
                    self._warned.add(topic)
                    self.get_logger().error(f"cannot record {topic} ({msgtype}): {exc}")
                continue
            self._subs[topic] = self.create_subscription(
                cls, topic, lambda data, t=topic: self._on_message(t, data), qos, raw=True)

    def _flush_if_due(self) -> None:
        self.bag.flush_if_due()

    def _on_message(self, topic: str, data: bytes) -> None:
        self.bag.write(topic, self.get_clock().now().nanoseconds, data)

    def close(self) -> None:
        self.bag.close()


def main(args: list[str] | None = None) -> int:
    return run_node(RecorderNode, args, name="recorder_node", config=RecorderConfig)


if __name__ == "__main__":
    import sys

    sys.exit(main())
