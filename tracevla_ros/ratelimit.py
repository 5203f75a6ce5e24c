"""Data-driven rate limiting by message stamp (no rclpy).

The tracker and the policy act on the frame they are given, as soon as it
arrives, but no more often than their configured rate. ``StampRateLimiter``
decides per stamp (seconds, the camera frame's stamp) whether that frame is
due. It keeps a grid of due times ``t0 + k / rate`` so the long-run rate is
exactly ``rate_hz`` whatever the input rate, as long as the input is at least
as fast: a frame is due when it is the one nearest to the next grid point
(within half an input period before it, or any time after it). A gap longer
than one period (a paused camera) re-anchors the grid on the next frame.

    lim = StampRateLimiter(5.0)
    [lim.due(0.1 * k) for k in range(6)] -> [True, False, True, False, True, False]
"""

from __future__ import annotations

import math

__all__ = ["StampRateLimiter", "FrameSchedule"]


class StampRateLimiter:
    """Is a frame with this stamp due, at ``rate_hz``? Not thread-safe: one caller."""

    def __init__(self, rate_hz: float, smoothing: float = 0.1) -> None:
        if not (math.isfinite(rate_hz) and rate_hz > 0.0):
            raise ValueError(f"rate_hz must be a finite number > 0, got {rate_hz}")
        self.period = 1.0 / rate_hz
        self._alpha = smoothing
        self._next_due: float | None = None
        self._last: float | None = None
        self._input_dt: float | None = None  # running mean of the input's period [s]

    @property
    def input_period(self) -> float | None:
        """The measured period of the stamps offered so far [s] (None before two)."""
        return self._input_dt

    def reset(self) -> None:
        self._next_due = self._last = self._input_dt = None

    def due(self, stamp: float) -> bool:
        """True when the frame stamped ``stamp`` [s] should be acted on (then counted as used)."""
        if self._last is not None:
            if stamp <= self._last:  # not newer: never due
                return False
            d = stamp - self._last
            if d < 2.0 * self.period:  # a gap is not a period
                self._input_dt = d if self._input_dt is None else (
                    (1.0 - self._alpha) * self._input_dt + self._alpha * d)
        self._last = stamp
        half = 0.5 * min(self._input_dt or 0.0, self.period)
        if self._next_due is None or stamp - self._next_due > self.period:
            self._next_due = stamp + self.period  # first frame, or after a gap: re-anchor
            return True
        if stamp + half >= self._next_due - 1e-9:
            self._next_due += self.period
            return True
        return False


class FrameSchedule:
    """What the tracker does with each camera frame, by its stamp: ``tracker_node`` and the
    replay engine (``tracevla-replay`` on a bag without traces) share this, so a replay
    steps on the frames the node stepped on.

    ``decide(stamp) -> (observe, step)``: step (a policy step) on frames due at
    ``control_rate_hz``; observe those and, with ``observe_rate_hz > 0``, the frames due at
    that rate in between. A frame not newer than the last is passed on (observe True) so
    the tracker refuses and counts it.
    """

    def __init__(self, control_rate_hz: float, observe_rate_hz: float = 0.0) -> None:
        self._step = StampRateLimiter(control_rate_hz)
        self._observe = StampRateLimiter(observe_rate_hz) if observe_rate_hz > 0 else None
        self._last: float | None = None

    def decide(self, stamp: float) -> tuple[bool, bool]:
        newer = self._last is None or stamp > self._last
        step = self._step.due(stamp)
        observe = self._observe is not None and self._observe.due(stamp)
        if newer:
            self._last = stamp
        return step or observe or not newer, step
