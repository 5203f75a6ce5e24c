"""StampedBuffer: newest item at or before a stamp, bounded, order-tolerant."""

from __future__ import annotations

import pytest

from tracevla_ros.stamped import StampedBuffer


def test_newest_at_or_before() -> None:
    buf: StampedBuffer[str] = StampedBuffer(keep=10)
    assert buf.at(5.0) is None and buf.latest() is None
    for s, v in ((1.0, "a"), (2.0, "b"), (3.0, "c")):
        buf.add(s, v)
    assert buf.at(0.5) is None
    assert buf.at(1.0) == "a" and buf.at(2.5) == "b" and buf.at(99.0) == "c"
    buf.add(2.0, "b2")  # same stamp again: the later one wins
    assert buf.at(2.0) == "b2"
    buf.add(1.5, "late")  # out of order: goes to its place
    assert buf.at(1.7) == "late" and buf.latest() == "c"


def test_bounded() -> None:
    buf: StampedBuffer[int] = StampedBuffer(keep=3)
    for i in range(100):
        buf.add(float(i), i)
    assert len(buf) <= 6 and buf.at(99.0) == 99 and buf.at(96.5) == 96
    assert buf.at(10.0) is None  # trimmed
    with pytest.raises(ValueError, match="keep"):
        StampedBuffer(keep=0)
