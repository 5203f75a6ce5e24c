"""Rates, dropped frames and stage latencies of the running loop, from what an observer
received (no rclpy). Used by ``tracevla-bench loop``.

Input per topic: ``(rx, stamp)`` pairs in seconds, ``rx`` on the observer's wall clock,
``stamp`` the message's header stamp (the camera frame's stamp for everything derived
from a frame). All processes run on one machine, so ``rx - stamp`` is a latency when
the stamps are wall-clock stamps (``stamp_source: wall``, the default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["Stage", "topic_rates", "stage_latencies", "percentiles", "stamps_are_wall_time"]

Samples = Sequence[tuple[float, float]]  # (rx time, header stamp) [s]


def percentiles(values: Sequence[float], scale: float = 1e3) -> dict[str, float | int]:
    """n, p50/p95/max in ms of latencies (in s; ``scale=1`` for values already in ms);
    ``{"n": 0}`` for none, non-finite values left out (never NaN in a JSON file)."""
    a = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64) * scale
    if a.size == 0:
        return {"n": 0}
    return {"n": int(a.size), "p50_ms": round(float(np.percentile(a, 50)), 3),
            "p95_ms": round(float(np.percentile(a, 95)), 3), "max_ms": round(float(a.max()), 3)}


def topic_rates(samples: Samples, configured_hz: float | None, window: tuple[float, float]
                ) -> dict[str, float | int | None]:
    """Achieved rate over ``window`` (rx times) and frames dropped.

    ``dropped``: periods missing between consecutive stamps (a gap of k periods counts
    k - 1), for topics with a configured rate; None otherwise.
    """
    t0, t1 = window
    rx = np.asarray([r for r, _ in samples if t0 <= r <= t1])
    stamps = np.asarray([s for r, s in samples if t0 <= r <= t1])
    out: dict[str, float | int | None] = {"configured_hz": configured_hz, "received": int(rx.size)}
    rate = (rx.size - 1) / (rx[-1] - rx[0]) if rx.size >= 2 and rx[-1] > rx[0] else 0.0
    out["achieved_hz"] = round(float(rate), 3)
    if configured_hz:
        period = 1.0 / configured_hz
        out["ratio"] = round(float(rate) / configured_hz, 4)
        gaps = np.diff(np.sort(stamps)) / period if stamps.size >= 2 else np.zeros(0)
        out["dropped"] = int(np.sum(np.maximum(np.round(gaps) - 1, 0)))
    else:
        out["ratio"] = out["dropped"] = None
    return out


@dataclass(frozen=True)
class Stage:
    """A latency between two topics.

    kind ``stamp``: rx(dst) - stamp(dst) (from the camera frame's stamp);
    ``same_stamp``: rx(dst) - rx(src) for the src message with the same stamp;
    ``next``: rx of the first dst after each src, before the next src, minus rx(src);
    ``next_stamp``: as ``next``, but minus the src message's stamp (end to end).
    """

    name: str
    src: str
    dst: str
    kind: str


def stamps_are_wall_time(samples: Samples) -> bool:
    """True when header stamps are on the receiver's wall clock (``stamp_source: wall``),
    False for sim time (stamps near 0 while the wall clock reads ~1.8e9 s)."""
    d = [r - s for r, s in samples]
    return bool(d) and abs(float(np.median(d))) < 1e6  # sim time would have to run 11 days


def stage_latencies(data: dict[str, list[tuple[float, float]]], stages: Sequence[Stage],
                    window: tuple[float, float], tol_s: float = 1e-4,
                    camera: str = "/camera/image_raw") -> dict[str, dict[str, float | int]]:
    """Latency percentiles per stage. With sim-time stamps, a ``stamp`` stage is measured
    from the observer's receipt of the camera frame with that stamp instead (the camera's
    own transport, a few ms, is then not included)."""
    t0, t1 = window
    wall = stamps_are_wall_time(data.get(camera, []))
    camera_rx = {round(s / tol_s): r for r, s in data.get(camera, [])}
    out: dict[str, dict[str, float | int]] = {}
    for st in stages:
        dst = [(r, s) for r, s in data.get(st.dst, []) if t0 <= r <= t1]
        src = sorted(data.get(st.src, []))
        if not wall:  # sim time: a stamp means "when the observer got that camera frame"
            src = sorted((r, camera_rx.get(round(s / tol_s), math.nan)) if st.kind == "next_stamp"
                         else (r, s) for r, s in src)
        vals: list[float] = []
        if st.kind == "stamp":
            if wall:
                vals = [r - s for r, s in dst]
            elif st.dst != camera:
                vals = [r - camera_rx[round(s / tol_s)] for r, s in dst
                        if round(s / tol_s) in camera_rx]
        elif st.kind == "same_stamp":
            by_stamp = {round(s / tol_s): r for r, s in src}
            vals = [r - by_stamp[round(s / tol_s)] for r, s in dst if round(s / tol_s) in by_stamp]
        elif st.kind in ("next", "next_stamp"):
            dst_rx = np.sort(np.asarray([r for r, _ in dst]))
            for i, (r, s) in enumerate(src):
                if not t0 <= r <= t1:
                    continue
                nxt = src[i + 1][0] if i + 1 < len(src) else math.inf
                j = int(np.searchsorted(dst_rx, r))
                if j < dst_rx.size and dst_rx[j] < nxt:
                    vals.append(dst_rx[j] - (r if st.kind == "next" else s))
        else:
            raise ValueError(f"stage {st.name}: unknown kind '{st.kind}'")
        out[st.name] = percentiles(vals)
    return out
