"""Crash-safe MCAP for rosbag2 (profile ``ros2``): a writer that flushes chunks by size
and by time, and a scanner that recovers every complete chunk of a truncated file.

Layout written (valid MCAP, read by ``rosbags``, the ``mcap`` package and rosbag2):
magic, Header, then in file order Schema / Channel / Metadata records (outside
chunks, on disk as soon as they are added) and Chunks (Message records, each
followed by its MessageIndex records). ``finish`` appends DataEnd, the summary
(schemas, channels, statistics, chunk and metadata indexes, summary offsets)
and the footer.

Every append goes to a known offset (``_pos``) and state is only updated once
the bytes are written, so an append or ``finish`` interrupted by an exception
(KeyboardInterrupt included) is simply redone by the next call. After SIGKILL
or a power cut the file ends with complete chunks followed by at most one
partial record; ``scan`` reads up to the last complete record and ``repair``
cuts the partial tail and appends a summary.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

from mcap.data_stream import ReadDataStream, RecordBuilder
from mcap.opcode import Opcode
from mcap.records import (
    Channel,
    ChunkIndex,
    DataEnd,
    Footer,
    Header,
    Metadata,
    MetadataIndex,
    Schema,
    Statistics,
    SummaryOffset,
)

__all__ = ["COMPRESSIONS", "McapError", "McapScan", "McapWriter", "has_footer", "repair", "scan"]

MAGIC = b"\x89MCAP0\r\n"
COMPRESSIONS = ("none", "zstd", "lz4")
_REC = struct.Struct("<BQ")  # opcode, record length
_MSG = struct.Struct("<BQHIQQ")  # Message record header: opcode, length, channel, seq, log, pub
_CHUNK_HEAD = struct.Struct("<QQQI")  # start, end, uncompressed size, uncompressed crc


class McapError(RuntimeError):
    """The MCAP file cannot be written or recovered; the message says why."""


def _compress(data: bytes, compression: str) -> bytes:
    if compression == "zstd":
        import zstandard

        return bytes(zstandard.ZstdCompressor(level=3).compress(data))
    if compression == "lz4":
        import lz4.frame

        return bytes(lz4.frame.compress(data))
    return data


def _decompress(data: bytes, compression: str, size: int) -> bytes:
    if compression == "zstd":
        import zstandard

        return bytes(zstandard.ZstdDecompressor().decompress(data, max_output_size=size))
    if compression == "lz4":
        import lz4.frame

        return bytes(lz4.frame.decompress(data))
    if compression == "":
        return data
    raise McapError(f"unsupported chunk compression '{compression}'")


def _record(rec: object) -> bytes:
    b = RecordBuilder()
    rec.write(b)  # type: ignore[attr-defined]
    return bytes(b.end())


@dataclass
class McapIndex:
    """What the summary of an MCAP file is built from (the committed part of the file)."""

    schemas: dict[int, Schema] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)
    chunk_indexes: list[ChunkIndex] = field(default_factory=list)
    metadata_indexes: list[MetadataIndex] = field(default_factory=list)
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> the last record
    counts: dict[int, int] = field(default_factory=dict)  # channel id -> messages
    start_ns: int = 0
    end_ns: int = 0

    @property
    def message_count(self) -> int:
        return sum(self.counts.values())

    def add_messages(self, counts: dict[int, int], start_ns: int, end_ns: int) -> None:
        if not counts:
            return
        self.start_ns = start_ns if self.message_count == 0 else min(self.start_ns, start_ns)
        self.end_ns = max(self.end_ns, end_ns)
        for cid, n in counts.items():
            self.counts[cid] = self.counts.get(cid, 0) + n


def summary_bytes(data_end: int, idx: McapIndex) -> bytes:
    """DataEnd + summary + footer + magic, to be written at offset ``data_end``."""
    out = bytearray(_record(DataEnd(data_section_crc=0)))
    summary_start = data_end + len(out)
    summary = bytearray()
    offsets: list[SummaryOffset] = []

    def group(opcode: int, records: list[object]) -> None:
        if not records:
            return
        start = len(summary)
        for r in records:
            summary.extend(_record(r))
        offsets.append(SummaryOffset(group_opcode=opcode, group_start=summary_start + start,
                                     group_length=len(summary) - start))

    group(Opcode.SCHEMA, list(idx.schemas.values()))
    group(Opcode.CHANNEL, list(idx.channels.values()))
    group(Opcode.STATISTICS, [Statistics(
        attachment_count=0, channel_count=len(idx.channels),
        channel_message_counts={cid: idx.counts.get(cid, 0) for cid in idx.channels},
        chunk_count=len(idx.chunk_indexes), message_count=idx.message_count,
        message_end_time=idx.end_ns, message_start_time=idx.start_ns,
        metadata_count=len(idx.metadata_indexes), schema_count=len(idx.schemas))])
    group(Opcode.CHUNK_INDEX, list(idx.chunk_indexes))
    group(Opcode.METADATA_INDEX, list(idx.metadata_indexes))
    summary_offset_start = summary_start + len(summary)
    for o in offsets:
        summary.extend(_record(o))
    crc = zlib.crc32(bytes(summary))
    crc = zlib.crc32(struct.pack("<BQQQ", Opcode.FOOTER, 20, summary_start, summary_offset_start), crc)
    out.extend(summary)
    out.extend(_record(Footer(summary_start=summary_start, summary_offset_start=summary_offset_start,
                              summary_crc=crc)))
    out.extend(MAGIC)
    return bytes(out)


class McapWriter:
    """Append-only MCAP writer (not thread-safe: ``BagRecorder`` locks around it).

    ``chunk_size``: a chunk is written once its uncompressed size reaches this many
    bytes; ``flush_due()`` tells when the open chunk's first message is older than
    ``flush_period_s`` (wall clock), and ``flush()`` writes it. ``fsync``: each
    written chunk is also forced to the disk (survives a power cut, not only a crash).
    """

    def __init__(self, path: str | Path, compression: str = "none", chunk_size: int = 1 << 20,
                 flush_period_s: float = 1.0, fsync: bool = True,
                 library: str = "tracevla_ros") -> None:
        if compression not in COMPRESSIONS:
            raise McapError(f"compression '{compression}' unknown; use one of {list(COMPRESSIONS)}")
        _compress(b"", compression)  # fails here, not at the first chunk, when a lib is missing
        self.path = Path(path)
        self.compression = compression
        self.chunk_size = int(chunk_size)
        self.flush_period_s = float(flush_period_s)
        self.fsync = fsync
        self.index = McapIndex()
        self._f: BinaryIO = open(self.path, "xb")  # noqa: SIM115 (closed in finish)
        self._pos = 0
        self._dirty = False
        self._data_end: int | None = None
        self.finished = False
        self._reset_chunk()
        self._append(MAGIC + _record(Header(profile="ros2", library=library)))

    # ------------------------------------------------------------ internals
    def _reset_chunk(self) -> None:
        self._buf = bytearray()
        self._msg_index: dict[int, list[tuple[int, int]]] = {}
        self._chunk_start_ns = 0
        self._chunk_end_ns = 0
        self._chunk_opened = 0.0  # time.monotonic() of the chunk's first message

    def _append(self, data: bytes, sync: bool = False) -> int:
        """Write ``data`` at the committed end; returns its offset. Redone from scratch
        when an earlier call was interrupted part-way."""
        if self._dirty:
            self._f.seek(self._pos)
            self._f.truncate()
        self._dirty = True
        self._f.write(data)
        self._f.flush()
        if sync:
            os.fsync(self._f.fileno())
        offset = self._pos
        self._pos += len(data)
        self._dirty = False
        return offset

    # ----------------------------------------------------------------- API
    def add_schema(self, name: str, encoding: str, data: str) -> int:
        sid = len(self.index.schemas) + 1
        schema = Schema(id=sid, data=data.encode(), encoding=encoding, name=name)
        self._append(_record(schema))
        self.index.schemas[sid] = schema
        return sid

    def add_channel(self, topic: str, schema_id: int, metadata: dict[str, str],
                    message_encoding: str = "cdr") -> int:
        cid = len(self.index.channels) + 1
        channel = Channel(id=cid, topic=topic, message_encoding=message_encoding,
                          metadata=dict(metadata), schema_id=schema_id)
        self._append(_record(channel))
        self.index.channels[cid] = channel
        return cid

    def add_metadata(self, name: str, data: dict[str, str]) -> None:
        """A Metadata record, on disk (fsync'd) when this returns; the last one of a name wins."""
        rec = _record(Metadata(name=name, metadata=dict(data)))
        offset = self._append(rec, sync=self.fsync)
        self.index.metadata_indexes.append(MetadataIndex(offset=offset, length=len(rec), name=name))
        self.index.metadata[name] = dict(data)

    def add_message(self, channel_id: int, log_time: int, data: bytes) -> None:
        if not self._msg_index:
            self._chunk_start_ns = self._chunk_end_ns = log_time
            self._chunk_opened = time.monotonic()
        offset = len(self._buf)
        self._buf += _MSG.pack(Opcode.MESSAGE, 22 + len(data), channel_id, 0, log_time, log_time)
        self._buf += data
        self._msg_index.setdefault(channel_id, []).append((log_time, offset))
        self._chunk_start_ns = min(self._chunk_start_ns, log_time)
        self._chunk_end_ns = max(self._chunk_end_ns, log_time)
        if len(self._buf) >= self.chunk_size:
            self.flush()

    @property
    def pending_messages(self) -> int:
        return sum(len(v) for v in self._msg_index.values())

    def flush_due(self, now: float | None = None) -> bool:
        """The open chunk holds messages and its first one came ``flush_period_s`` ago."""
        if not self._msg_index:
            return False
        return (time.monotonic() if now is None else now) - self._chunk_opened >= self.flush_period_s

    def flush(self) -> None:
        """Write the open chunk (if it holds messages) and its message indexes."""
        if not self._msg_index or self.finished:
            return
        raw = bytes(self._buf)
        comp = _compress(raw, self.compression)
        cname = "" if self.compression == "none" else self.compression
        body = (_CHUNK_HEAD.pack(self._chunk_start_ns, self._chunk_end_ns, len(raw), zlib.crc32(raw))
                + struct.pack("<I", len(cname)) + cname.encode() + struct.pack("<Q", len(comp)))
        chunk_rec = _REC.pack(Opcode.CHUNK, len(body) + len(comp)) + body + comp
        start = self._pos
        index_bytes = bytearray()
        index_offsets: dict[int, int] = {}
        for cid, recs in self._msg_index.items():
            index_offsets[cid] = start + len(chunk_rec) + len(index_bytes)
            payload = struct.pack("<HI", cid, 16 * len(recs)) + b"".join(
                struct.pack("<QQ", t, o) for t, o in recs)
            index_bytes += _REC.pack(Opcode.MESSAGE_INDEX, len(payload)) + payload
        self._append(chunk_rec + bytes(index_bytes), sync=self.fsync)
        self.index.chunk_indexes.append(ChunkIndex(
            message_start_time=self._chunk_start_ns, message_end_time=self._chunk_end_ns,
            chunk_start_offset=start, chunk_length=len(chunk_rec),
            message_index_offsets=index_offsets, message_index_length=len(index_bytes),
            compression=cname, compressed_size=len(comp), uncompressed_size=len(raw)))
        self.index.add_messages({cid: len(r) for cid, r in self._msg_index.items()},
                                self._chunk_start_ns, self._chunk_end_ns)
        self._reset_chunk()

    def finish(self) -> None:
        """Write the last chunk, the summary and the footer, and close the file.
        Idempotent; a call interrupted part-way is completed by the next one."""
        if self.finished:
            return
        self.flush()
        if self._data_end is None:
            self._data_end = self._pos
        self._pos = self._data_end
        self._dirty = True  # whatever an interrupted finish wrote after data_end goes
        self._append(summary_bytes(self._data_end, self.index), sync=self.fsync)
        self._f.close()
        self.finished = True

    def abort(self) -> None:
        """Close the file as it is (no summary): what a crash leaves."""
        if not self._f.closed:
            self._f.close()


# ---------------------------------------------------------------- recovery
@dataclass
class McapScan:
    """What ``scan`` found in an MCAP file."""

    path: Path
    size: int  # file size in bytes
    complete: bool  # a valid footer: the file was closed properly
    data_end: int  # end of the last complete data record (where a summary can go)
    index: McapIndex
    profile: str = ""
    cut_chunk: bool = False  # a chunk at the end was incomplete (its messages are lost)
    note: str = ""  # why the scan stopped early, when it did
    lost_bytes: int = 0  # bytes after the last complete record (0 for a complete file)


def _has_footer(f: BinaryIO, size: int) -> bool:
    if size < 8 + 9 + 37:
        return False
    f.seek(size - 37)
    tail = f.read(37)
    return tail[-8:] == MAGIC and tail[0] == Opcode.FOOTER


def has_footer(path: str | Path) -> bool:
    """The MCAP file ends with a footer and the closing magic (it was finished)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _has_footer(f, path.stat().st_size)
    except OSError:
        return False


def scan(path: str | Path) -> McapScan:
    """Read every complete record of the data section of ``path`` (which may be
    truncated anywhere): schemas, channels, metadata and chunks (decompressed and
    checked against their CRC). Raises McapError when it is not an MCAP file."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) == 0:
            raise McapError(f"{path}: the file is empty (the recorder died before writing anything)")
        if head != MAGIC[: len(head)]:
            raise McapError(f"{path}: not an MCAP file (bad magic)")
        if len(head) < 8:
            raise McapError(f"{path}: the file ends inside the MCAP magic: nothing to recover")
        complete = _has_footer(f, size)
        f.seek(8)
        res = McapScan(path, size, complete, 8, McapIndex())
        idx = res.index
        pending_chunk: tuple[int, int, dict[int, list[tuple[int, int]]]] | None = None
        seen_index: dict[int, int] = {}
        while True:
            at = f.tell()
            hdr = f.read(9)
            if len(hdr) < 9:
                if hdr:
                    res.note = f"a record header at byte {at} is cut"
                break
            op, length = _REC.unpack(hdr)
            if at + 9 + length > size:
                res.note = f"a record (opcode 0x{op:02x}) at byte {at} is cut"
                res.cut_chunk = op == Opcode.CHUNK
                break
            body = f.read(length)
            end = at + 9 + length
            if op == Opcode.MESSAGE_INDEX:
                if pending_chunk is not None:
                    cid = struct.unpack_from("<H", body)[0]
                    seen_index[cid] = at
                    if set(seen_index) >= set(pending_chunk[2]):  # the chunk's indexes are all there
                        _commit_chunk(idx, pending_chunk, seen_index, end - pending_chunk[0]
                                      - pending_chunk[1])
                        pending_chunk = None
                        res.data_end = end
                continue
            if pending_chunk is not None:  # a chunk whose indexes are incomplete (none written)
                _commit_chunk(idx, pending_chunk, {}, 0)
                pending_chunk = None
                res.data_end = at
            if op == Opcode.HEADER:
                res.profile = Header.read(ReadDataStream(BytesIO(body))).profile
            elif op == Opcode.SCHEMA:
                s = Schema.read(ReadDataStream(BytesIO(body)))
                idx.schemas[s.id] = s
            elif op == Opcode.CHANNEL:
                c = Channel.read(ReadDataStream(BytesIO(body)))
                idx.channels[c.id] = c
            elif op == Opcode.METADATA:
                m = Metadata.read(ReadDataStream(BytesIO(body)))
                idx.metadata_indexes.append(MetadataIndex(offset=at, length=9 + length, name=m.name))
                idx.metadata[m.name] = dict(m.metadata)
            elif op == Opcode.CHUNK:
                try:
                    msgs = _chunk_messages(body)
                except (McapError, ValueError, struct.error, zlib.error, RuntimeError) as exc:
                    res.note = f"the chunk at byte {at} is corrupt ({exc})"
                    break
                if not msgs:
                    res.data_end = end
                    continue
                pending_chunk = (at, 9 + length, msgs)
                seen_index = {}
                res.data_end = end
                continue
            elif op == Opcode.MESSAGE:  # unchunked message
                cid, _, log_time = struct.unpack_from("<HIQ", body)
                idx.add_messages({cid: 1}, log_time, log_time)
            elif op in (Opcode.DATA_END, Opcode.FOOTER):
                break
            res.data_end = end
        if pending_chunk is not None:
            _commit_chunk(idx, pending_chunk, {}, 0)
            res.data_end = pending_chunk[0] + pending_chunk[1]
    res.lost_bytes = 0 if complete else size - res.data_end
    return res


def _chunk_messages(body: bytes) -> dict[int, list[tuple[int, int]]]:
    """channel id -> [(log time, offset in the uncompressed chunk)] of a Chunk record body."""
    start, end, usize, crc = _CHUNK_HEAD.unpack_from(body)
    pos = _CHUNK_HEAD.size
    (clen,) = struct.unpack_from("<I", body, pos)
    compression = body[pos + 4: pos + 4 + clen].decode()
    pos += 4 + clen
    (dlen,) = struct.unpack_from("<Q", body, pos)
    pos += 8
    data = _decompress(body[pos: pos + dlen], compression, usize)
    if len(data) != usize or (crc and zlib.crc32(data) != crc):
        raise McapError("size or CRC mismatch")
    out: dict[int, list[tuple[int, int]]] = {}
    p = 0
    while p + 9 <= len(data):
        op, length = _REC.unpack_from(data, p)
        if op == Opcode.MESSAGE:
            cid, _, log_time = struct.unpack_from("<HIQ", data, p + 9)
            out.setdefault(cid, []).append((log_time, p))
        p += 9 + length
    if p != len(data):
        raise McapError("records overrun the chunk")
    return out


def _commit_chunk(idx: McapIndex, chunk: tuple[int, int, dict[int, list[tuple[int, int]]]],
                  index_offsets: dict[int, int], index_length: int) -> None:
    at, length, msgs = chunk
    times = [t for recs in msgs.values() for t, _ in recs]
    idx.chunk_indexes.append(ChunkIndex(
        message_start_time=min(times), message_end_time=max(times), chunk_start_offset=at,
        chunk_length=length, message_index_offsets=dict(index_offsets),
        message_index_length=index_length, compression="", compressed_size=0,
        uncompressed_size=0))
    idx.add_messages({cid: len(r) for cid, r in msgs.items()}, min(times), max(times))


def _fill_chunk_sizes(f: BinaryIO, idx: McapIndex) -> None:
    """Compression and sizes of each chunk index, read from the chunk record."""
    for ci in idx.chunk_indexes:
        f.seek(ci.chunk_start_offset + 9)
        head = f.read(_CHUNK_HEAD.size + 4)
        _, _, usize, _ = _CHUNK_HEAD.unpack_from(head)
        (clen,) = struct.unpack_from("<I", head, _CHUNK_HEAD.size)
        ci.compression = f.read(clen).decode()
        (ci.compressed_size,) = struct.unpack("<Q", f.read(8))
        ci.uncompressed_size = usize


def repair(path: str | Path, dry_run: bool = False) -> McapScan:
    """Make ``path`` a complete MCAP file: keep every complete record, cut the partial
    tail, append a summary. A complete file is left as it is. Returns the scan."""
    res = scan(path)
    if res.complete or dry_run:
        return res
    with open(res.path, "r+b") as f:
        _fill_chunk_sizes(f, res.index)
        f.seek(res.data_end)
        f.truncate()
        if not res.profile:  # the Header record itself was cut
            f.write(_record(Header(profile="ros2", library="tracevla_ros reindex")))
            res.profile = "ros2"
            res.data_end = f.tell()
        f.write(summary_bytes(res.data_end, res.index))
        f.flush()
        os.fsync(f.fileno())
    return res
