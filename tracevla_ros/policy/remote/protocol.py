"""Binary frames between ``tracevla-serve`` and the ``remote`` backend (no pickle).

One frame = a fixed 20-byte header, a UTF-8 JSON part, then raw array bytes::

    header  <4sBBHIQ  magic b"TVLA", version, type, flags (0), json_len, payload_len
    json    {"meta": {...}, "arrays": [{"name", "dtype", "shape", "offset", "nbytes"}, ...]}
    payload the arrays' C-order little-endian bytes, back to back in "arrays" order

Only the dtypes in ``DTYPES`` are accepted; every length is checked against
``max_frame`` before anything is allocated, so a peer cannot make the other
side read or allocate without bound. Message types:

=======  ========  =========================================================
HELLO    c -> s    {"protocol", "token"} first frame on a connection
WELCOME  s -> c    {"protocol", "backend"} the token was accepted
INFER    c -> s    {"instruction", "stamp", "reset", "budget_s", ["prompt"]} + image, [overlay],
                   proprio, [prompt_points, prompt_lines, prompt_boxes, prompt_mask]
ACTION   s -> c    {"action_space", "trace_used", "infer_s"} + values (H, D) float32
ERROR    s -> c    {"kind": auth|policy|protocol|internal|expired, "message"}
AFFORD   c -> s    {"instruction", "budget_s"} + image: an affordance question
POINTS   s -> c    {"text", "infer_s"}: the affordance model's text answer
=======  ========  =========================================================
"""

from __future__ import annotations

import json
import socket
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, cast

import numpy as np

from tracevla_ros.policy.base import PolicyError
from tracevla_ros.policy.prompt import PromptError, VisualPrompt

__all__ = [
    "MAGIC",
    "VERSION",
    "HEADER",
    "DEFAULT_MAX_FRAME",
    "DTYPES",
    "MsgType",
    "ProtocolError",
    "Frame",
    "encode_frame",
    "decode_frame",
    "send_frame",
    "recv_frame",
    "prompt_to_wire",
    "prompt_from_wire",
]

MAGIC = b"TVLA"
VERSION = 1
HEADER = struct.Struct("<4sBBHIQ")
MAX_JSON = 1 << 20  # bytes of metadata
DEFAULT_MAX_FRAME = 64 << 20  # bytes; a 640x480 frame + overlay is ~1.8 MB
DTYPES = ("uint8", "int32", "int64", "float32", "float64", "bool")


class MsgType(IntEnum):
    HELLO = 1
    WELCOME = 2
    INFER = 3
    ACTION = 4
    ERROR = 5
    AFFORD = 6
    POINTS = 7


class ProtocolError(ValueError):
    """A malformed, oversized or unexpected frame; the connection is closed."""


@dataclass
class Frame:
    """type + JSON-able metadata + named numpy arrays."""

    type: MsgType
    meta: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def _le(dtype: np.dtype) -> np.dtype:
    return dtype.newbyteorder("<") if dtype.itemsize > 1 else dtype


def encode_frame(frame: Frame, max_frame: int = DEFAULT_MAX_FRAME) -> list[bytes | memoryview]:
    """Header, JSON and payload buffers (send them in order, e.g. with ``sendall``)."""
    specs: list[dict[str, Any]] = []
    bufs: list[bytes | memoryview] = []
    offset = 0
    for name, arr in frame.arrays.items():
        a = np.asarray(arr)
        if a.dtype.name not in DTYPES:
            raise ProtocolError(f"array '{name}': dtype {a.dtype} not allowed (allowed: {DTYPES})")
        data = np.asarray(a, dtype=_le(a.dtype), order="C")  # keeps 0-d arrays 0-d
        nbytes = int(data.nbytes)
        specs.append({"name": name, "dtype": a.dtype.name, "shape": list(data.shape),
                      "offset": offset, "nbytes": nbytes})
        bufs.append(memoryview(cast(Any, data)).cast("B") if nbytes else b"")
        offset += nbytes
    try:
        js = json.dumps({"meta": frame.meta, "arrays": specs}, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"metadata is not plain JSON: {exc}") from exc
    if len(js) > MAX_JSON or HEADER.size + len(js) + offset > max_frame:
        raise ProtocolError(f"frame of {HEADER.size + len(js) + offset} bytes exceeds the limit "
                            f"({max_frame} bytes, JSON {MAX_JSON})")
    header = HEADER.pack(MAGIC, VERSION, int(frame.type), 0, len(js), offset)
    return [header, js, *bufs]


def parse_header(header: bytes, max_frame: int) -> tuple[MsgType, int, int]:
    """(type, json_len, payload_len) of a 20-byte header; ProtocolError if invalid."""
    magic, version, mtype, _flags, json_len, payload_len = HEADER.unpack(header)
    if magic != MAGIC:
        raise ProtocolError(f"not a tracevla frame (magic {magic!r}); is the port right?")
    if version != VERSION:
        raise ProtocolError(f"protocol version {version}, this side speaks {VERSION}: "
                            "update tracevla_ros on both machines")
    try:
        t = MsgType(mtype)
    except ValueError:
        raise ProtocolError(f"unknown message type {mtype}") from None
    if json_len > MAX_JSON or HEADER.size + json_len + payload_len > max_frame:
        raise ProtocolError(f"incoming frame of {HEADER.size + json_len + payload_len} bytes "
                            f"exceeds the limit ({max_frame} bytes)")
    return t, json_len, payload_len


def decode_frame(mtype: MsgType, js: bytes, payload: bytearray) -> Frame:
    """Parse the JSON part and view the payload as the declared arrays (writable, no copy)."""
    try:
        doc = json.loads(js.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"bad frame metadata: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("meta", {}), dict) \
            or not isinstance(doc.get("arrays", []), list):
        raise ProtocolError("frame metadata must be {'meta': {...}, 'arrays': [...]}")
    arrays: dict[str, np.ndarray] = {}
    expected = 0
    for spec in doc.get("arrays", []):
        try:
            name, dtype_name, shape = str(spec["name"]), str(spec["dtype"]), tuple(spec["shape"])
            offset, nbytes = int(spec["offset"]), int(spec["nbytes"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"bad array spec {spec!r}: {exc}") from exc
        if dtype_name not in DTYPES:
            raise ProtocolError(f"array '{name}': dtype {dtype_name} not allowed")
        if not all(isinstance(n, int) and n >= 0 for n in shape):
            raise ProtocolError(f"array '{name}': bad shape {shape}")
        dtype = _le(np.dtype(dtype_name))
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if offset != expected or nbytes != count * dtype.itemsize or offset + nbytes > len(payload):
            raise ProtocolError(f"array '{name}': offset/size do not match its dtype and shape or "
                                "the payload")
        arrays[name] = np.frombuffer(payload, dtype=dtype, count=count, offset=offset).reshape(shape)
        expected += nbytes
    if expected != len(payload):
        raise ProtocolError(f"payload has {len(payload) - expected} bytes not described by any array")
    return Frame(mtype, doc.get("meta", {}), arrays)


def _recv_exactly(sock: socket.socket, n: int) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ConnectionError("connection closed by the peer")
        got += k
    return buf


def send_frame(sock: socket.socket, frame: Frame, max_frame: int = DEFAULT_MAX_FRAME) -> None:
    """One ``sendall`` of the whole frame (one copy; avoids Nagle stalls between parts)."""
    sock.sendall(b"".join(encode_frame(frame, max_frame)))


def recv_frame(sock: socket.socket, max_frame: int = DEFAULT_MAX_FRAME) -> Frame:
    """Read one frame; ConnectionError on EOF, socket.timeout per the socket's timeout."""
    mtype, json_len, payload_len = parse_header(bytes(_recv_exactly(sock, HEADER.size)), max_frame)
    js = bytes(_recv_exactly(sock, json_len))
    payload = _recv_exactly(sock, payload_len) if payload_len else bytearray()
    return decode_frame(mtype, js, payload)


_PROMPT_ARRAYS = ("points", "lines", "boxes", "mask")


def prompt_to_wire(prompt: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A ``VisualPrompt`` as INFER meta ``prompt`` {image_size, labels, stamp} plus the arrays
    ``prompt_points`` (P, 2), ``prompt_lines`` (L, 4), ``prompt_boxes`` (B, 4) float32 and
    ``prompt_mask`` (H, W) bool (only when there is a mask)."""
    meta = {"image_size": list(prompt.image_size), "labels": list(prompt.labels),
            "stamp": float(prompt.stamp)}
    arrays = {f"prompt_{k}": np.asarray(getattr(prompt, k), np.float32)
              for k in _PROMPT_ARRAYS[:3]}
    if prompt.mask is not None:
        arrays["prompt_mask"] = np.asarray(prompt.mask, bool)
    return meta, arrays


def prompt_from_wire(meta: Any, arrays: dict[str, np.ndarray]) -> Any:
    """The inverse of :func:`prompt_to_wire`; ``None`` when the request has no prompt.
    A malformed prompt is a ``PolicyError`` naming it (the server answers ERROR policy)."""
    if meta is None:
        return None
    if not isinstance(meta, dict):
        raise PolicyError("request 'prompt' must be an object {image_size, labels, stamp}")
    try:
        none2, none4 = np.zeros((0, 2), np.float32), np.zeros((0, 4), np.float32)
        return VisualPrompt(points=arrays.get("prompt_points", none2),
                            lines=arrays.get("prompt_lines", none4),
                            boxes=arrays.get("prompt_boxes", none4), mask=arrays.get("prompt_mask"),
                            image_size=tuple(meta.get("image_size", (0, 0))),  # type: ignore[arg-type]
                            labels=tuple(meta.get("labels", ())),
                            stamp=float(meta.get("stamp", 0.0)))
    except (PromptError, TypeError, ValueError) as exc:
        raise PolicyError(f"request prompt is malformed: {exc}") from None
