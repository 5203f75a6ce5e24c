"""Pair the camera image with the trace and overlay computed from that same frame.

Pure logic for ``policy_node``: the callbacks put timestamped items in, the
worker asks for the newest complete observation. Items are matched by the
camera frame's stamp (the tracker stamps its outputs with it), within
``tolerance_s``. Bounded memory: only the last ``keep`` items per stream.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TraceInfo:
    """The part of a VisualTrace the policy needs."""

    stamp: float
    valid: bool


@dataclass(frozen=True)
class Paired:
    """A complete set for one camera frame; overlay is None when the trace is invalid."""

    stamp: float
    image: np.ndarray
    overlay: np.ndarray | None
    trace_valid: bool
    source_stamp: Any = None  # the frame's original stamp object (e.g. builtin_interfaces/Time)


class ObservationPairer:
    """Thread-safe latest-complete-set matcher (callbacks O(1) amortised)."""

    def __init__(self, require_trace: bool = True, tolerance_s: float = 1e-4, keep: int = 8) -> None:
        self._require_trace = require_trace
        self._tol = tolerance_s
        self._images: deque[tuple[float, np.ndarray, Any]] = deque(maxlen=keep)
        self._overlays: deque[tuple[float, np.ndarray]] = deque(maxlen=keep)
        self._traces: deque[TraceInfo] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._last_used = -np.inf

    def add_image(self, stamp: float, image: np.ndarray, source_stamp: Any = None) -> None:
        """``source_stamp`` is handed back unchanged (exact stamps for the outputs)."""
        with self._lock:
            self._images.append((stamp, image, source_stamp))

    def add_overlay(self, stamp: float, image: np.ndarray) -> None:
        with self._lock:
            self._overlays.append((stamp, image))

    def add_trace(self, info: TraceInfo) -> None:
        with self._lock:
            self._traces.append(info)

    def reset(self) -> None:
        with self._lock:
            self._images.clear()
            self._overlays.clear()
            self._traces.clear()
            self._last_used = -np.inf

    def latest(self) -> Paired | None:
        """The newest frame not used before that has everything it needs, or None."""
        with self._lock:
            for stamp, image, source in reversed(self._images):
                if stamp <= self._last_used:
                    return None
                if not self._require_trace:
                    self._last_used = stamp
                    return Paired(stamp, image, None, False, source)
                trace = next((t for t in self._traces if abs(t.stamp - stamp) <= self._tol), None)
                if trace is None:
                    continue
                overlay = None
                if trace.valid:
                    overlay = next((o for s, o in self._overlays if abs(s - stamp) <= self._tol), None)
                    if overlay is None:
                        continue
                self._last_used = stamp
                return Paired(stamp, image, overlay, trace.valid, source)
            return None
