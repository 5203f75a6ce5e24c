"""Read rosbag2 bags (sqlite3 or MCAP) with ``rosbags``, no rclpy, with clear errors.

``BagReader`` opens a bag directory (``metadata.yaml`` + storage files) or a
single ``.mcap`` / ``.db3`` file, checks it before anything is read (missing
metadata, missing or truncated storage files), and yields deserialised
messages (``rosbags`` dataclasses with the ROS field names). Message types are
taken from the bag's own definitions where it stores them (MCAP), else from
ROS 2 Kilted's standard types and ``tracevla_ros/msg``. Every failure is a
``BagReadError`` whose message names the file and the problem, and, where it
helps, the topics found. A bag that a killed recorder left (no metadata.yaml,
or an MCAP file without its summary) is first recovered in place like
``tracevla-bag reindex`` does (one warning line says so).

Example::

    with BagReader("demo/bag") as bag:
        print(bag.describe_topics())
        for topic, t_ns, msg in bag.messages(["/camera/image_raw"]):
            ...
"""

from __future__ import annotations

import logging
import sqlite3
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from rosbags.rosbag2 import Reader
from rosbags.rosbag2.errors import ReaderError
from rosbags.serde import SerdeError
from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore
from rosbags.typesys.base import TypesysError
from rosbags.typesys.store import Typestore

from tracevla_ros.bag.typestore import typestore as project_typestore
from tracevla_ros.bag.writer import BagError, OfferedQos

__all__ = ["BagReadError", "BagReader", "BagTopic"]

log = logging.getLogger(__name__)

# What a damaged storage file raises inside rosbags/mcap/sqlite while reading.
_STORAGE_ERRORS: tuple[type[BaseException], ...] = (
    ReaderError, sqlite3.DatabaseError, struct.error, EOFError, zlib.error, ValueError,
    IndexError, KeyError, OSError,
)
try:  # zstd-compressed MCAP chunks
    import zstandard

    _STORAGE_ERRORS += (zstandard.ZstdError,)
except ImportError:  # rosbags reads uncompressed bags without it
    pass


class BagReadError(BagError):
    """The bag cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class BagTopic:
    """One topic of a bag."""

    name: str
    msgtype: str  # e.g. 'sensor_msgs/msg/Image'
    count: int  # messages (from the bag's index)
    known: bool  # its type can be deserialised (bag definition or a known type)
    qos: OfferedQos | None = None  # what its publisher offered, when the bag stores it


class BagReader:
    """An open rosbag2 bag; use as a context manager (or call ``close``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._reader = _open_reader(self.path)
        try:
            self.store, self._bag_types = _build_typestore(self._reader)
            self.topics: dict[str, BagTopic] = {}
            for conn in self._reader.connections:
                old = self.topics.get(conn.topic)
                count = conn.msgcount + (old.count if old else 0)
                self.topics[conn.topic] = BagTopic(conn.topic, conn.msgtype, count,
                                                   conn.msgtype in self.store.fielddefs,
                                                   _offered_qos(conn))
        except BaseException:
            self._reader.close()
            raise

    # ---------------------------------------------------------------- info
    @property
    def storage(self) -> str:
        files = self.storage_files()
        return "mcap" if files and files[0].suffix == ".mcap" else "sqlite3"

    def storage_files(self) -> list[Path]:
        if self.path.is_file():
            return [self.path]
        return sorted(p for p in self.path.iterdir() if p.suffix in (".mcap", ".db3"))

    @property
    def start_ns(self) -> int:
        return int(self._reader.start_time) if self.message_count else 0

    @property
    def end_ns(self) -> int:
        return int(self._reader.end_time) if self.message_count else 0

    @property
    def message_count(self) -> int:
        return int(self._reader.message_count)

    @property
    def custom_data(self) -> dict[str, str]:
        """``custom_data`` of metadata.yaml (rosbag2 >= v6); empty for a bare storage file."""
        storage = getattr(self._reader, "storage", None)
        meta = getattr(storage, "metadata", None)
        custom = getattr(meta, "custom", None)
        return dict(custom) if isinstance(custom, dict) else {}

    def topics_of_type(self, *msgtypes: str) -> list[BagTopic]:
        return [t for t in self.topics.values() if t.msgtype in msgtypes]

    def describe_topics(self) -> str:
        """'/a (sensor_msgs/msg/Image, 107 msgs), /b (...)' or 'no topics'."""
        if not self.topics:
            return "no topics"
        parts = []
        for t in sorted(self.topics.values(), key=lambda t: t.name):
            unknown = "" if t.known else ", unknown type"
            parts.append(f"{t.name} ({t.msgtype}, {t.count} msgs{unknown})")
        return ", ".join(parts)

    # ------------------------------------------------------------- reading
    def require(self, topic: str, msgtypes: Sequence[str] = ()) -> BagTopic:
        """The topic, checked to exist, to have a readable type and (if given) one of ``msgtypes``."""
        info = self.topics.get(topic)
        if info is None:
            raise BagReadError(f"{self.path}: no topic {topic}; topics found: {self.describe_topics()}")
        if msgtypes and info.msgtype not in msgtypes:
            raise BagReadError(f"{self.path}: topic {topic} has type {info.msgtype}, expected one of "
                               f"{list(msgtypes)}; topics found: {self.describe_topics()}")
        if not info.known:
            raise BagReadError(
                f"{self.path}: topic {topic} has message type {info.msgtype}, which the bag does not "
                f"define and which is not a ROS 2 Kilted or tracevla_ros type; record it as MCAP "
                f"(which stores definitions) or choose another topic; topics found: "
                f"{self.describe_topics()}")
        return info

    def messages(self, topics: Sequence[str], raw: bool = False) -> Iterator[tuple[str, int, Any]]:
        """``(topic, receive time ns, message)`` for ``topics`` in receive-time order.

        ``raw=True`` yields the CDR bytes instead of a message. Raises
        BagReadError (naming the storage file and how far it got) when the
        storage is damaged or a message does not deserialise.
        """
        for t in topics:
            self.require(t)
        conns = [c for c in self._reader.connections if c.topic in set(topics)]
        n = 0
        it = self._reader.messages(connections=conns)
        while True:
            try:
                conn, t_ns, data = next(it)
            except StopIteration:
                return
            except _STORAGE_ERRORS as exc:
                raise BagReadError(
                    f"{self._where()}: the storage is truncated or corrupt after {n} messages of "
                    f"{list(topics)} ({type(exc).__name__}: {exc})") from None
            n += 1
            if raw:
                yield conn.topic, int(t_ns), bytes(data)
                continue
            try:
                msg = self.store.deserialize_cdr(data, conn.msgtype)
            except (SerdeError, struct.error, ValueError, IndexError, UnicodeDecodeError) as exc:
                raise BagReadError(
                    f"{self._where()}: message {n} on {conn.topic} ({conn.msgtype}) at t={t_ns} ns "
                    f"does not deserialise: the file is corrupt or the type definition differs "
                    f"({type(exc).__name__}: {exc})") from None
            yield conn.topic, int(t_ns), msg

    def _where(self) -> str:
        files = self.storage_files()
        return str(files[0]) if len(files) == 1 else str(self.path)

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> "BagReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _offered_qos(conn: Any) -> OfferedQos | None:
    profiles = list(getattr(conn.ext, "offered_qos_profiles", []) or [])
    if not profiles:
        return None
    q = profiles[0]
    return OfferedQos(reliable=q.reliability.name != "BEST_EFFORT",
                      latched=q.durability.name == "TRANSIENT_LOCAL", depth=max(1, int(q.depth)))


def _recover(path: Path) -> None:
    """A killed recorder's bag (no metadata.yaml, or an MCAP without its summary): reindex
    it in place (``tracevla-bag reindex``), with one warning line; BagReadError if it cannot."""
    from tracevla_ros.bag.reindex import reindex

    try:
        r = reindex(path)
    except BagError as exc:
        raise BagReadError(f"{path}: the bag was not closed (recorder killed?) and cannot be "
                           f"recovered: the storage file is truncated or corrupt ({exc})") from None
    where = "the .mcap file repaired in place" if path.is_file() else \
        "reindexed into the bag directory (MCAP summary appended, metadata.yaml rewritten)"
    log.warning("%s: the bag was not closed (recorder killed?): %s; %d messages on %d topics "
                "recovered, %d bytes of an unfinished chunk dropped", path, where, r.message_count,
                len(r.topics), r.lost_bytes)


def _open_reader(path: Path) -> Reader:
    if not path.exists():
        raise BagReadError(f"{path}: no such bag (expected a rosbag2 directory with metadata.yaml, "
                           "or a .mcap / .db3 file)")
    from tracevla_ros.bag.reindex import needs_reindex

    if needs_reindex(path):
        _recover(path)
    if path.is_dir() and not (path / "metadata.yaml").is_file():
        found = sorted(p.name for p in path.iterdir() if p.suffix in (".mcap", ".db3"))
        inner = sorted(p.parent.name for p in path.glob("*/metadata.yaml"))
        hint = (f"; it holds {found}: pass that file itself to read it without metadata"
                if found else f"; did you mean {path / inner[0]}?" if inner
                else "; it holds no .mcap or .db3 file either")
        raise BagReadError(f"{path}: metadata.yaml is missing, so this is not a complete rosbag2 "
                           f"directory (was the recording stopped before it was closed?){hint}")
    if path.is_file() and path.suffix not in (".mcap", ".db3"):
        raise BagReadError(f"{path}: not a rosbag2 bag (expected a directory with metadata.yaml, "
                           f"or a .mcap / .db3 file)")
    try:
        reader = Reader(path)
        reader.open()
    except (ReaderError, FileNotFoundError) as exc:
        raise BagReadError(f"{path}: cannot open the bag: {_explain(exc)}") from None
    except _STORAGE_ERRORS as exc:
        raise BagReadError(f"{path}: the storage file is truncated or corrupt "
                           f"({type(exc).__name__}: {exc})") from None
    return reader


def _explain(exc: BaseException) -> str:
    text = str(exc)
    if "magic" in text.lower() or "malformed" in text.lower() or "not a database" in text.lower():
        return (f"the storage file is truncated or corrupt ({text}); a recording that was "
                "killed before it closed leaves such a file")
    return text


def _build_typestore(reader: Reader) -> tuple[Typestore, set[str]]:
    """Known types (Kilted + ours) overridden by the definitions stored in the bag."""
    types: dict[str, Any] = dict(get_typestore(Stores.ROS2_KILTED).fielddefs)
    types.update({k: v for k, v in project_typestore().fielddefs.items() if k not in types})
    from_bag: dict[str, Any] = {}
    for conn in reader.connections:
        fmt = getattr(conn.msgdef.format, "name", "NONE")
        data = conn.msgdef.data
        try:
            if fmt == "MSG" and data:
                from_bag.update(get_types_from_msg(data, conn.msgtype))
            elif fmt == "IDL" and data:
                from_bag.update(get_types_from_idl(data))
        except (TypesysError, ValueError):  # unparsable stored definition: fall back to ours
            continue
    types.update(from_bag)
    store = get_typestore(Stores.EMPTY)
    store.register(types)
    return store, set(from_bag)
