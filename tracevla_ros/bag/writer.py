"""Write rosbag2 bags (MCAP by default) from already-serialised CDR messages.

``BagRecorder`` never loses what it has written: messages go to the storage as
they arrive and ``close()`` (also on exceptions, via the context manager)
finishes the file and writes ``metadata.yaml``. The result is readable by
``rosbags`` and by ``ros2 bag info/play``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.writer import Connection

from tracevla_ros.bag.typestore import typestore

log = logging.getLogger(__name__)


class BagError(RuntimeError):
    """The bag cannot be written or read; the message says why."""


@dataclass
class TopicStats:
    msgtype: str
    count: int = 0
    first_ns: int = 0
    last_ns: int = 0
    stamps_ns: list[int] = field(default_factory=list)

    def rate_hz(self) -> float:
        if self.count < 2 or self.last_ns <= self.first_ns:
            return 0.0
        return (self.count - 1) / ((self.last_ns - self.first_ns) * 1e-9)


@dataclass(frozen=True)
class OfferedQos:
    """The publisher QoS stored per topic in metadata.yaml, so ``ros2 bag play`` offers the
    same (a latched instruction stays latched)."""

    reliable: bool = True
    latched: bool = False
    depth: int = 10

    def to_rosbags(self) -> Qos:
        zero = QosTime(0, 0)
        return Qos(history=QosHistory.KEEP_LAST, depth=self.depth,
                   reliability=QosReliability.RELIABLE if self.reliable
                   else QosReliability.BEST_EFFORT,
                   durability=QosDurability.TRANSIENT_LOCAL if self.latched
                   else QosDurability.VOLATILE,
                   deadline=zero, lifespan=zero, liveliness=QosLiveliness.AUTOMATIC,
                   liveliness_lease_duration=zero, avoid_ros_namespace_conventions=False)


class BagRecorder:
    """Thread-safe rosbag2 writer. ``path`` must not exist yet (rosbag2 rule)."""

    def __init__(self, path: str | Path, storage: str = "mcap") -> None:
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"bag directory {self.path} already exists; choose a new path")
        plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
        if storage not in plugins:
            raise BagError(f"storage '{storage}' unknown; use one of {sorted(plugins)}")
        self._writer = Writer(self.path, version=9, storage_plugin=plugins[storage])
        self._writer.open()
        self._conns: dict[str, Connection] = {}
        self.stats: dict[str, TopicStats] = {}
        self._lock = threading.Lock()
        self._closed = False

    def add_topic(self, topic: str, msgtype: str, qos: OfferedQos | None = None) -> None:
        """Declare ``topic`` with ROS type ``msgtype`` (e.g. 'sensor_msgs/msg/Image') and,
        optionally, the QoS its publisher offered."""
        with self._lock:
            if topic in self._conns:
                return
            store = typestore()
            if msgtype not in store.fielddefs:
                raise BagError(f"message type '{msgtype}' of topic {topic} is unknown to the "
                               f"typestore; add its definition")
            offered = [qos.to_rosbags()] if qos is not None else []
            self._conns[topic] = self._writer.add_connection(topic, msgtype, typestore=store,
                                                             offered_qos_profiles=offered)
            self.stats[topic] = TopicStats(msgtype)

    def set_custom_data(self, key: str, value: str) -> None:
        """A string in metadata.yaml ``custom_data`` (written at ``close``)."""
        with self._lock:
            self._writer.set_custom_data(key, value)

    def write(self, topic: str, t_ns: int, data: bytes) -> None:
        """Append one CDR-serialised message received at ``t_ns`` (ns since epoch)."""
        with self._lock:
            if self._closed:
                return
            conn = self._conns.get(topic)
            if conn is None:
                raise BagError(f"topic {topic} was not added before writing")
            self._writer.write(conn, t_ns, data)
            st = self.stats[topic]
            st.count += 1
            st.first_ns = st.first_ns or t_ns
            st.last_ns = t_ns

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._writer.close()
                log.info("bag closed: %s (%d topics)", self.path, len(self._conns))

    def __enter__(self) -> "BagRecorder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
