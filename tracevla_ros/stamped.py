"""``StampedBuffer``: the newest item at or before a stamp, over a bounded stream (no rclpy).

``policy_node`` pairs each camera frame with the joint state of that frame's
time (the newest one stamped at or before it), not with whatever joint state
arrived last before inference: the observation is then a function of the
recorded messages alone, so ``tracevla-replay`` reproduces it exactly, and
image and proprioception describe the same instant (as in the training data).

Example::

    buf = StampedBuffer[np.ndarray](keep=2000)
    buf.add(msg_stamp_s, positions)          # callback, O(1) amortised
    q = buf.at(frame_stamp_s)                # worker; None if nothing that old
"""

from __future__ import annotations

import bisect
import threading
from typing import Generic, TypeVar

__all__ = ["StampedBuffer"]

T = TypeVar("T")


class StampedBuffer(Generic[T]):
    """Thread-safe, time-ordered, keeps the newest ``keep`` items."""

    def __init__(self, keep: int = 2000) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self._keep = keep
        self._stamps: list[float] = []
        self._items: list[T] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._stamps)

    def add(self, stamp: float, item: T) -> None:
        """Insert in stamp order (an out-of-order item goes to its place; equal stamps: the
        later one wins in ``at``)."""
        with self._lock:
            if not self._stamps or stamp >= self._stamps[-1]:
                self._stamps.append(stamp)
                self._items.append(item)
            else:
                i = bisect.bisect_right(self._stamps, stamp)
                self._stamps.insert(i, stamp)
                self._items.insert(i, item)
            if len(self._stamps) > 2 * self._keep:  # trim in batches: amortised O(1)
                del self._stamps[: -self._keep]
                del self._items[: -self._keep]

    def at(self, stamp: float) -> T | None:
        """The newest item stamped at or before ``stamp``; None if all are newer (or empty)."""
        with self._lock:
            i = bisect.bisect_right(self._stamps, stamp) - 1
            return self._items[i] if i >= 0 else None

    def newest_stamp(self) -> float | None:
        """The stamp of the newest item (None when empty)."""
        with self._lock:
            return self._stamps[-1] if self._stamps else None

    def latest(self) -> T | None:
        with self._lock:
            return self._items[-1] if self._items else None

    def clear(self) -> None:
        with self._lock:
            self._stamps.clear()
            self._items.clear()
