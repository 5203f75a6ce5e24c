"""Play a rosbag2 bag with its recorded timing, without ``ros2 bag play`` (no rclpy).

``Playback(reader, cfg)`` decides what goes out under which name and with which
QoS (``plan``); ``run(publish, clock, stop)`` sends the raw CDR messages paced by
their receive times divided by ``rate``, and the bag time on ``clock``, so the
header stamps inside the messages (the recorded ones) are "now" for nodes that
use sim time. ``bag_player_node`` wraps it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from tracevla_ros.bag.config import BagPlayerConfig
from tracevla_ros.bag.reader import BagReader
from tracevla_ros.bag.writer import OfferedQos

__all__ = ["PlanItem", "Playback"]

_DEFAULT_QOS = OfferedQos(reliable=True, latched=False, depth=10)
_LATCHED_QOS = OfferedQos(reliable=True, latched=True, depth=1)


@dataclass(frozen=True)
class PlanItem:
    source: str  # topic in the bag
    target: str  # topic it is published on
    msgtype: str  # e.g. sensor_msgs/msg/Image
    qos: OfferedQos  # from the bag when stored, else reliable (latched for an instruction)


class Playback:
    def __init__(self, reader: BagReader, cfg: BagPlayerConfig) -> None:
        self.reader = reader
        self.cfg = cfg
        self.plan: dict[str, PlanItem] = {}
        for topic in cfg.topics:
            self._add(topic, topic)
        if cfg.recorded_prefix:
            for topic in cfg.recorded_topics:
                self._add(topic, cfg.recorded_prefix.rstrip("/") + topic)
        self.played = 0

    def _add(self, source: str, target: str) -> None:
        info = self.reader.topics.get(source)
        if info is None or info.count == 0:
            return
        qos = info.qos or (_LATCHED_QOS if source.endswith("instruction") else _DEFAULT_QOS)
        self.plan[source] = PlanItem(source, target, info.msgtype, qos)

    def run(self, publish: Callable[[str, bytes], None], clock: Callable[[int], None],
            stop: threading.Event, sleep: Callable[[float], None] = time.sleep) -> int:
        """Play once; returns the number of messages sent. ``publish(target, cdr)``,
        ``clock(bag_time_ns)``; ``stop`` ends it early."""
        if not self.plan:
            return 0
        start = self.reader.start_ns + int(self.cfg.start_offset_s * 1e9)
        wall0 = time.monotonic()
        last_clock = -1
        sent = 0
        period_ns = int(self.cfg.clock_period_s * 1e9)
        for topic, t, data in self.reader.messages(list(self.plan), raw=True):
            if t < start:
                continue
            # wait for the message's time, keeping /clock moving meanwhile
            while not stop.is_set():
                due = wall0 + (t - start) * 1e-9 / self.cfg.rate
                now = time.monotonic()
                if now >= due:
                    break
                if self.cfg.publish_clock:
                    bag_now = start + int((now - wall0) * self.cfg.rate * 1e9)
                    if bag_now - last_clock >= period_ns:
                        clock(bag_now)
                        last_clock = bag_now
                sleep(min(due - now, self.cfg.clock_period_s / self.cfg.rate))
            if stop.is_set():
                break
            if self.cfg.publish_clock and t > last_clock:
                clock(t)
                last_clock = t
            publish(self.plan[topic].target, data)
            sent += 1
        self.played += sent
        return sent
