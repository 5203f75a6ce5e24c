"""Write rosbag2 bags (MCAP by default) from already-serialised CDR messages.

``BagRecorder`` loses at most ``flush_period_s`` of messages when the process is
killed (SIGKILL, power cut): MCAP chunks are written (and fsync'd) once they
hold ``chunk_size`` bytes or their first message is ``flush_period_s`` old
(``write`` checks, and ``flush_if_due`` lets a timer flush a quiet topic). The
parameter file (``custom_data``) is written into the MCAP as a Metadata record
as soon as it is set, so ``tracevla-bag reindex`` restores it after a crash.
``close()`` (also on exceptions, via the context manager) finishes the MCAP
(summary, footer) and writes ``metadata.yaml`` atomically; it is idempotent and
a close interrupted by KeyboardInterrupt is completed (then the interrupt is
re-raised), or by the next call. The result is readable by ``rosbags``, the
``mcap`` package and ``ros2 bag info/play`` (rosbag2 metadata version 9).
"""

from __future__ import annotations

import logging
import os
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.metadata import dump_qos_v9
from rosbags.rosbag2.writer import Connection

from tracevla_ros.bag.mcap_io import COMPRESSIONS, McapError, McapIndex, McapWriter
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

    first_stamp_ns: int = 0  # header stamps, for types that start with a std_msgs/Header
    last_stamp_ns: int = 0

    def rate_hz(self) -> float:
        """Messages per second: over their header stamps where they have one (the rate they
        were produced at, free of delivery bursts), else over their receive times."""
        if self.count < 2:
            return 0.0
        first, last = ((self.first_stamp_ns, self.last_stamp_ns) if self.last_stamp_ns
                       else (self.first_ns, self.last_ns))
        if last <= first:
            return 0.0
        return (self.count - 1) / ((last - first) * 1e-9)


# Types whose first field is a std_msgs/Header: their rate is taken from the header stamps.
STAMPED_TYPES = frozenset({
    "sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo", "sensor_msgs/msg/JointState",
    "sensor_msgs/msg/CompressedImage", "trajectory_msgs/msg/JointTrajectory",
    "geometry_msgs/msg/PoseArray", "diagnostic_msgs/msg/DiagnosticArray",
    "tracevla_ros/msg/VisualTrace",
    "tracevla_ros/msg/PolicyAction", "tracevla_ros/msg/Trace3D", "tracevla_ros/msg/VisualPrompt",
    "tracevla_ros/msg/AffordancePoints"})


def header_stamp_ns(cdr: bytes) -> int:
    """The header stamp [ns] of a CDR-serialised message whose first field is a std_msgs/Header
    (after the 4-byte encapsulation: int32 sec, uint32 nanosec)."""
    sec, nsec = struct.unpack_from("<iI" if cdr[1:2] == b"\x01" else ">iI", cdr, 4)
    return sec * 1_000_000_000 + nsec


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



# Name of the MCAP Metadata record holding ``custom_data`` (written when it is set, so a
# crashed recording keeps it); rosbag2's own record (at close) is named "rosbag2".
CUSTOM_DATA_RECORD = "tracevla_ros.custom_data"
ROSBAG2_VERSION: Literal[9] = 9


def qos_yaml(profiles: list[Qos]) -> str:
    """offered_qos_profiles as rosbag2 v9 stores them in MCAP channel metadata (YAML text)."""
    return str(yaml.safe_dump(dump_qos_v9(profiles), default_flow_style=False)).strip()


def bag_metadata(storage_file: str, storage_id: str, topics: list[dict[str, Any]],
                 start_ns: int, end_ns: int, custom_data: dict[str, str]) -> dict[str, Any]:
    """The ``rosbag2_bagfile_information`` of metadata.yaml (version 9), as rosbags writes it.

    ``topics``: [{name, type, serialization_format, offered_qos_profiles (v9 list),
    type_description_hash, message_count}] in channel order.
    """
    count = sum(int(t["message_count"]) for t in topics)
    start = start_ns if count else 0
    duration = max(0, end_ns - start_ns) if count else 0
    return {
        "version": ROSBAG2_VERSION,
        "storage_identifier": storage_id,
        "relative_file_paths": [storage_file],
        "duration": {"nanoseconds": duration},
        "starting_time": {"nanoseconds_since_epoch": start},
        "message_count": count,
        "topics_with_message_count": [
            {"topic_metadata": {"name": t["name"], "type": t["type"],
                                "serialization_format": t["serialization_format"],
                                "offered_qos_profiles": t["offered_qos_profiles"],
                                "type_description_hash": t["type_description_hash"]},
             "message_count": int(t["message_count"])}
            for t in topics],
        "compression_format": "",
        "compression_mode": "",
        "files": [{"path": storage_file, "starting_time": {"nanoseconds_since_epoch": start},
                   "duration": {"nanoseconds": duration}, "message_count": count}],
        "custom_data": dict(custom_data) or None,
        "ros_distro": "rosbags",
    }


def mcap_topics(index: McapIndex) -> list[dict[str, Any]]:
    """The topics of bag_metadata() from an MCAP's channels, schemas and message counts."""
    out = []
    for cid, ch in index.channels.items():
        schema = index.schemas.get(ch.schema_id)
        qos_text = ch.metadata.get("offered_qos_profiles", "")
        qos = yaml.safe_load(qos_text) if qos_text else []
        out.append({"name": ch.topic, "type": schema.name if schema else "",
                    "serialization_format": ch.message_encoding,
                    "offered_qos_profiles": qos if isinstance(qos, list) else [],
                    "type_description_hash": ch.metadata.get("topic_type_hash", ""),
                    "message_count": index.counts.get(cid, 0)})
    return out


def write_metadata_yaml(bag_dir: Path, info: dict[str, Any]) -> None:
    """metadata.yaml, atomically (temp file, fsync, os.replace): never half-written."""
    text = yaml.safe_dump({"rosbag2_bagfile_information": info}, default_flow_style=False,
                          sort_keys=False)
    tmp = bag_dir / "metadata.yaml.tmp"
    with open(tmp, "w", encoding="utf8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, bag_dir / "metadata.yaml")


@dataclass
class _Topic:
    msgtype: str
    digest: str
    qos: list[Qos]
    channel: int = 0  # MCAP channel id
    conn: Connection | None = None  # sqlite3 (rosbags writer)


class BagRecorder:
    """Thread-safe rosbag2 writer. ``path`` must not exist yet (rosbag2 rule).

    MCAP: ``compression`` of the chunks (none | zstd | lz4), a chunk is written once
    it holds ``chunk_size`` bytes or ``flush_period_s`` after its first message;
    ``fsync``: force each chunk to the disk. sqlite3 (rosbags): each message is
    stored as it comes; compression must be none.
    """

    def __init__(self, path: str | Path, storage: str = "mcap", compression: str = "none",
                 flush_period_s: float = 1.0, chunk_size: int = 1 << 20, fsync: bool = True) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"bag directory {self.path} already exists; choose a new path")
        plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
        if storage not in plugins:
            raise BagError(f"storage '{storage}' unknown; use one of {sorted(plugins)}")
        if compression not in COMPRESSIONS:
            raise BagError(f"compression '{compression}' unknown; use one of {list(COMPRESSIONS)}")
        if storage == "sqlite3" and compression != "none":
            raise BagError("compression is for MCAP chunks; sqlite3 bags take compression none")
        if flush_period_s <= 0:
            raise BagError(f"flush_period_s must be > 0, got {flush_period_s}")
        self.storage = storage
        self.compression = compression
        self._topics: dict[str, _Topic] = {}
        self._schemas: dict[str, int] = {}
        self._custom: dict[str, str] = {}
        self.stats: dict[str, TopicStats] = {}
        self._lock = threading.RLock()
        self._closed = False  # no more writes
        self._done = False  # close() completed
        self._rosbag2_record = False
        self._writer: Writer | None = None
        self._mcap: McapWriter | None = None
        if storage == "mcap":
            try:
                self.path.mkdir(mode=0o755, parents=True)
            except FileExistsError:
                raise BagError(f"bag directory {self.path} already exists; choose a new path") from None
            try:
                self._mcap = McapWriter(self.path / f"{self.path.name}.mcap", compression=compression,
                                        chunk_size=chunk_size, flush_period_s=flush_period_s,
                                        fsync=fsync, library="tracevla_ros (rosbag2-compatible)")
            except (McapError, OSError) as exc:
                raise BagError(f"cannot create the bag in {self.path}: {exc}") from None
        else:
            self._writer = Writer(self.path, version=ROSBAG2_VERSION, storage_plugin=plugins[storage])
            self._writer.open()

    @property
    def storage_file(self) -> Path:
        suffix = ".mcap" if self.storage == "mcap" else ".db3"
        return self.path / f"{self.path.name}{suffix}"

    def add_topic(self, topic: str, msgtype: str, qos: OfferedQos | None = None) -> None:
        """Declare ``topic`` with ROS type ``msgtype`` (e.g. 'sensor_msgs/msg/Image') and,
        optionally, the QoS its publisher offered."""
        with self._lock:
            if topic in self._topics:
                return
            if self._closed:
                raise BagError(f"bag {self.path} is closed")
            store = typestore()
            if msgtype not in store.fielddefs:
                raise BagError(f"message type '{msgtype}' of topic {topic} is unknown to the "
                               f"typestore; add its definition")
            offered = [qos.to_rosbags()] if qos is not None else []
            digest = store.hash_rihs01(msgtype)
            t = _Topic(msgtype, digest, offered)
            if self._mcap is not None:
                if msgtype not in self._schemas:
                    msgdef, _ = store.generate_msgdef(msgtype, ros_version=2)
                    enc = "ros2idl" if msgdef.startswith("=" * 80 + "\nIDL: ") else "ros2msg"
                    self._schemas[msgtype] = self._mcap.add_schema(msgtype, enc, msgdef)
                t.channel = self._mcap.add_channel(topic, self._schemas[msgtype], {
                    "offered_qos_profiles": qos_yaml(offered), "topic_type_hash": digest})
            else:
                assert self._writer is not None
                t.conn = self._writer.add_connection(topic, msgtype, typestore=store,
                                                     offered_qos_profiles=offered)
            self._topics[topic] = t
            self.stats[topic] = TopicStats(msgtype)

    def set_custom_data(self, key: str, value: str) -> None:
        """A string in metadata.yaml ``custom_data`` (written at ``close``); with MCAP also
        written into the file at once (record ``tracevla_ros.custom_data``) for reindex."""
        if not isinstance(value, str):
            raise BagError(f"custom_data values are strings, got {type(value).__name__} for {key}")
        with self._lock:
            self._custom[key] = value
            if self._mcap is not None and not self._closed:
                self._mcap.add_metadata(CUSTOM_DATA_RECORD, dict(self._custom))
            elif self._writer is not None:
                self._writer.set_custom_data(key, value)

    def write(self, topic: str, t_ns: int, data: bytes) -> None:
        """Append one CDR-serialised message received at ``t_ns`` (ns since epoch)."""
        with self._lock:
            if self._closed:
                return
            t = self._topics.get(topic)
            if t is None:
                raise BagError(f"topic {topic} was not added before writing")
            if self._mcap is not None:
                self._mcap.add_message(t.channel, t_ns, data)
                if self._mcap.flush_due():
                    self._mcap.flush()
            else:
                assert self._writer is not None and t.conn is not None
                self._writer.write(t.conn, t_ns, data)
            st = self.stats[topic]
            st.count += 1
            st.first_ns = st.first_ns or t_ns
            st.last_ns = t_ns
            if st.msgtype in STAMPED_TYPES and len(data) >= 12:
                stamp = header_stamp_ns(data)
                st.first_stamp_ns = st.first_stamp_ns or stamp
                st.last_stamp_ns = max(st.last_stamp_ns, stamp)

    def flush_if_due(self) -> bool:
        """Write the open chunk if its first message is ``flush_period_s`` old (for a timer,
        so that a quiet topic is flushed too). True when a chunk was written."""
        with self._lock:
            if self._closed or self._mcap is None or not self._mcap.flush_due():
                return False
            self._mcap.flush()
            return True

    def flush(self) -> None:
        """Write the open chunk now."""
        with self._lock:
            if not self._closed and self._mcap is not None:
                self._mcap.flush()

    def close(self) -> None:
        """Finish the storage file and write metadata.yaml. Idempotent. A KeyboardInterrupt
        (a second Ctrl-C) during it does not stop it: the close is completed, then the
        interrupt is re-raised; if it still ends early, the next call completes it."""
        interrupt: BaseException | None = None
        for _ in range(5):
            try:
                self._close_steps()
                break
            except KeyboardInterrupt as exc:
                interrupt = exc
        if interrupt is not None:
            raise interrupt

    def _close_steps(self) -> None:
        with self._lock:
            if self._done:
                return
            self._closed = True
            if self._mcap is not None:
                if not self._mcap.finished:
                    self._mcap.flush()
                    if not self._rosbag2_record:
                        text = yaml.safe_dump(self._metadata(), default_flow_style=False,
                                              sort_keys=False)
                        self._mcap.add_metadata("rosbag2", {"serialized_metadata": text})
                        self._rosbag2_record = True
                    self._mcap.finish()
                write_metadata_yaml(self.path, self._metadata())
            elif self._writer is not None:
                if self._writer.storage is not None:
                    self._writer.close()  # rosbags: storage, then metadata.yaml via os.replace
            self._done = True
            log.info("bag closed: %s (%d topics)", self.path, len(self._topics))

    def _metadata(self) -> dict[str, Any]:
        assert self._mcap is not None
        idx = self._mcap.index
        return bag_metadata(self.storage_file.name, "mcap", mcap_topics(idx), idx.start_ns,
                            idx.end_ns, self._custom)

    def abort(self) -> None:
        """Stop without finishing (what a crash leaves; for tests)."""
        with self._lock:
            self._closed = self._done = True
            if self._mcap is not None:
                self._mcap.abort()

    def __enter__(self) -> "BagRecorder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
