"""bag_player_node: plays a recorded bag into the stack (``ros2 bag play`` without rosbag2).

Publishes the bag's inputs (camera, camera_info, depth, instruction, joint states)
under their recorded names, the recorded outputs (trace, image_trace, action)
under ``recorded_prefix`` (e.g. /recorded/trace) for comparison, each with the
QoS stored in the bag, raw CDR as recorded (stamps unchanged), paced by the
receive times / ``rate``; and /clock from the bag's time, so nodes started with
``use_sim_time:=true`` (replay.launch.py does) judge the recorded stamps as current.
A worker thread plays (``tracevla_ros.bag.player``); the node only publishes.

    ros2 run tracevla_ros bag_player_node --ros-args -p bag:=/data/run1 -p rate:=1.0
"""

from __future__ import annotations

import threading
from typing import Any

from builtin_interfaces.msg import Time
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock

from tracevla_ros.bag.config import BagPlayerConfig
from tracevla_ros.bag.player import Playback
from tracevla_ros.bag.reader import BagReader, BagReadError
from tracevla_ros.bag.writer import OfferedQos
from tracevla_ros.config import ConfigError
from tracevla_ros.nodes.common import declare_config, run_node
from tracevla_ros.nodes.recorder_node import import_msg_type


def _qos(q: OfferedQos) -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=q.depth,
                      reliability=ReliabilityPolicy.RELIABLE if q.reliable
                      else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if q.latched
                      else DurabilityPolicy.VOLATILE)


class BagPlayerNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("bag_player_node", **kwargs)
        self.cfg = declare_config(self, BagPlayerConfig)
        if not self.cfg.bag:
            raise ConfigError("parameter 'bag' is empty: name a rosbag2 directory or .mcap/.db3 "
                              "file (ros2 launch tracevla_ros replay.launch.py bag:=/path/to/bag)")
        try:
            self.reader = BagReader(self.cfg.bag)
        except BagReadError as exc:
            raise ConfigError(f"parameter 'bag': {exc}") from None
        self.playback = Playback(self.reader, self.cfg)
        if not self.playback.plan:
            self.reader.close()
            raise ConfigError(f"parameter 'topics': none of {list(self.cfg.topics)} is in "
                              f"{self.cfg.bag}; topics found: {self.reader.describe_topics()}")
        self._pubs: dict[str, Any] = {}
        for item in self.playback.plan.values():
            try:
                cls = import_msg_type(item.msgtype)
            except (ImportError, AttributeError, ValueError) as exc:
                self.get_logger().error(f"not playing {item.source}: type {item.msgtype} not "
                                        f"importable ({exc})")
                continue
            self._pubs[item.target] = self.create_publisher(cls, item.target, _qos(item.qos))
        self._clock_pub = self.create_publisher(Clock, "/clock", 10) if self.cfg.publish_clock else None
        self._stop = threading.Event()
        self.finished = threading.Event()
        self._worker = threading.Thread(target=self._play, name="bag_player", daemon=True)
        self._worker.start()
        self.get_logger().info(f"playing {self.cfg.bag} at x{self.cfg.rate}: " + ", ".join(
            f"{i.source}" + (f" -> {i.target}" if i.target != i.source else "")
            for i in self.playback.plan.values() if i.target in self._pubs))

    def _publish(self, target: str, data: bytes) -> None:
        pub = self._pubs.get(target)
        if pub is not None:
            pub.publish(data)

    def _publish_clock(self, t_ns: int) -> None:
        if self._clock_pub is not None:
            self._clock_pub.publish(Clock(clock=Time(sec=t_ns // 1_000_000_000,
                                                 nanosec=t_ns % 1_000_000_000)))

    def _play(self) -> None:
        log = self.get_logger()
        if self._stop.wait(self.cfg.start_delay_s):
            self.finished.set()
            return
        try:
            while not self._stop.is_set():
                sent = self.playback.run(self._publish, self._publish_clock, self._stop)
                log.info(f"playback finished: {sent} messages")
                if not self.cfg.loop or sent == 0:
                    break
        except BagReadError as exc:
            log.error(f"playback stopped: {exc}")
        finally:
            self.finished.set()

    def close(self) -> None:
        self._stop.set()
        if self._worker.is_alive():
            self._worker.join(timeout=2.0)
        self.reader.close()


def main(args: list[str] | None = None) -> int:
    return run_node(BagPlayerNode, args, name="bag_player_node", config=BagPlayerConfig)


if __name__ == "__main__":
    raise SystemExit(main())
