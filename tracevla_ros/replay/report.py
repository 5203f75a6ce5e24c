"""Replay statistics, comparison with the recorded run, plots and the overlay video.

``ReplayStats.add(step)`` keeps only numbers (no images) per step; ``summary()``
gives the report's statistics: trace validity, per-stage latency p50/p95,
trace agreement with the recorded traces (validity per step, max point
difference in px) and the action error per dimension against the recorded
actions (mean/max absolute, RMSE, over every row of every compared chunk).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tracevla_ros.loopstats import percentiles
from tracevla_ros.replay.engine import STAGES, StepResult
from tracevla_ros.replay.recorded import RecordedRun

__all__ = ["ACTION_DIM_NAMES", "ReplayStats", "VideoSink", "plot_actions",
           "plot_latency"]

log = logging.getLogger(__name__)

TRACE_TOL_PX = 1e-3  # px: replayed and recorded points closer than this are the same trace
ACTION_DIM_NAMES = {"ee_delta_7d": ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper")}


@dataclass
class ReplayStats:
    recorded: RecordedRun
    steps: int = 0
    valid: int = 0
    latency: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    # trace comparison at frames with a recorded trace
    traces_compared: int = 0
    validity_agree: int = 0
    traces_agree: int = 0  # same validity and, when valid, same points (TRACE_TOL_PX) and flags
    replay_valid_on_recorded: int = 0
    max_point_diff_px: float = 0.0
    visible_disagree: int = 0
    first_trace_mismatch: int | None = None  # stamp ns
    # actions
    action_t: list[float] = field(default_factory=list)  # s since the first frame
    predicted: list[np.ndarray] = field(default_factory=list)  # (D,) first row of each chunk
    recorded_at: list[np.ndarray | None] = field(default_factory=list)
    diffs: list[np.ndarray] = field(default_factory=list)  # (H, D) per compared action
    shape_mismatch: int = 0
    _t0: int | None = None

    def add(self, step: StepResult) -> None:
        if self._t0 is None:
            self._t0 = step.t
        for k, v in step.latency_ms.items():
            self.latency.setdefault(k, []).append(v)
        tr = step.trace
        if tr is not None:
            self.steps += 1
            self.valid += int(tr.valid)
            rec = self.recorded.traces.get(step.stamp)
            if rec is not None:
                self._compare_trace(step.stamp, tr.valid, tr.points, tr.visible, rec.valid,
                                    rec.points, rec.visible)
        if step.action is not None:
            rec_a = self.recorded.actions.get(step.stamp)
            self.action_t.append((step.t - self._t0) * 1e-9)
            self.predicted.append(step.action[0])
            self.recorded_at.append(rec_a.values[0] if rec_a is not None else None)
            if rec_a is not None:
                if rec_a.values.shape == step.action.shape:
                    self.diffs.append(step.action.astype(np.float64) - rec_a.values)
                else:
                    self.shape_mismatch += 1

    def _compare_trace(self, stamp: int, valid: bool, pts: np.ndarray, vis: np.ndarray,
                       rvalid: bool, rpts: np.ndarray, rvis: np.ndarray) -> None:
        self.traces_compared += 1
        self.replay_valid_on_recorded += int(valid)
        same = valid == rvalid
        if same and valid:
            if pts.shape == rpts.shape:
                diff = float(np.abs(pts - rpts).max()) if pts.size else 0.0
                flips = int((vis != rvis).sum())
                self.max_point_diff_px = max(self.max_point_diff_px, diff)
                self.visible_disagree += flips
                same = diff <= TRACE_TOL_PX and flips == 0
            else:
                same = False
        self.validity_agree += int(valid == rvalid)
        self.traces_agree += int(same)
        if not same and self.first_trace_mismatch is None:
            self.first_trace_mismatch = stamp

    # ---------------------------------------------------------------- summary
    def valid_ratio(self) -> float | None:
        return self.valid / self.steps if self.steps else None

    def latency_summary(self) -> dict[str, dict[str, float | int]]:
        return {k: percentiles(v, scale=1.0) for k, v in self.latency.items()}  # ms

    def trace_comparison(self) -> dict[str, Any]:
        rec = self.recorded
        n_rec = len(rec.traces)
        out: dict[str, Any] = {
            "recorded_traces": n_rec,
            "compared": self.traces_compared,
            "validity_agree": self.validity_agree,
            "agree": self.traces_agree,
            "point_tolerance_px": TRACE_TOL_PX,
            "max_abs_point_diff_px": round(self.max_point_diff_px, 6),
            "visible_flags_disagree": self.visible_disagree,
            "first_mismatch_stamp_ns": self.first_trace_mismatch,
        }
        if n_rec and self.traces_compared:
            out["valid_ratio_recorded"] = round(rec.recorded_valid_ratio() or 0.0, 4)
            out["valid_ratio_replayed_same_frames"] = round(
                self.replay_valid_on_recorded / self.traces_compared, 4)
        return out

    def action_comparison(self, dim_names: tuple[str, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {"recorded_actions": len(self.recorded.actions),
                               "replayed_actions": len(self.predicted),
                               "compared": len(self.diffs), "shape_mismatch": self.shape_mismatch}
        if not self.diffs:
            return out
        d = np.concatenate(self.diffs, axis=0)  # (rows, D)
        names = dim_names if len(dim_names) == d.shape[1] else tuple(f"d{i}" for i in range(d.shape[1]))
        out["per_dim"] = {
            n: {"mean_abs": float(np.abs(d[:, i]).mean()), "max_abs": float(np.abs(d[:, i]).max()),
                "rmse": float(np.sqrt((d[:, i] ** 2).mean()))}
            for i, n in enumerate(names)}
        out["max_abs_error"] = float(np.abs(d).max())
        return out


class VideoSink:
    """H.264 MP4 of the overlay frames, opened on the first frame, closed by ``close``
    (also after an error, so the frames written so far stay playable)."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path = path
        self.fps = fps
        self.frames = 0
        self._writer: Any = None

    def add(self, frame: np.ndarray) -> None:
        if self._writer is None:
            import imageio.v2 as imageio

            # ultrafast: ~20x less encoder CPU than the default preset on 256x256 (measured),
            # files ~20% larger; the encoder shares the 2 cores with the replay
            self._writer = imageio.get_writer(str(self.path), fps=self.fps, codec="libx264",
                                              quality=8, macro_block_size=1,
                                              ffmpeg_params=["-preset", "ultrafast"])
        self._writer.append_data(frame)
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def plot_actions(path: Path, stats: ReplayStats, dim_names: tuple[str, ...]) -> bool:
    """Predicted vs recorded action (first row of each chunk) per dimension over time."""
    if not stats.predicted:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pred = np.stack(stats.predicted)
    d = pred.shape[1]
    names = dim_names if len(dim_names) == d else tuple(f"d{i}" for i in range(d))
    t = np.asarray(stats.action_t)
    fig, axes = plt.subplots(d, 1, figsize=(8, 1.6 * d + 0.6), sharex=True, squeeze=False)
    rec_idx = [i for i, r in enumerate(stats.recorded_at) if r is not None and r.shape == (d,)]
    for i, ax in enumerate(axes[:, 0]):
        ax.plot(t, pred[:, i], lw=1.2, label="replayed")
        if rec_idx:
            rec = np.stack([stats.recorded_at[j] for j in rec_idx])  # type: ignore[misc]
            ax.plot(t[rec_idx], rec[:, i], "--", lw=1.0, label="recorded")
        ax.set_ylabel(names[i])
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("time since first frame [s]")
    fig.suptitle("actions: replayed vs recorded (first step of each chunk)")
    fig.subplots_adjust(left=0.14, right=0.97, top=0.95, bottom=0.06, hspace=0.15)
    fig.savefig(path, dpi=80)  # (tight_layout costs more than the rest of the plot)
    plt.close(fig)
    return True


def plot_latency(path: Path, stats: ReplayStats) -> bool:
    """Histogram of the per-step latency of each stage that ran."""
    stages = [(k, v) for k, v in stats.latency.items() if v]
    if not stages:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(stages), 1, figsize=(7, 1.5 * len(stages) + 0.6), squeeze=False)
    for ax, (name, vals) in zip(axes[:, 0], stages):
        ax.hist(vals, bins=40, color="tab:blue", alpha=0.8)
        p = percentiles(vals, scale=1.0)  # ms
        ax.set_title(f"{name}: p50 {p['p50_ms']} ms, p95 {p['p95_ms']} ms, n={p['n']}", fontsize=9)
        ax.set_ylabel("count")
    axes[-1, 0].set_xlabel("latency per policy step [ms]")
    fig.subplots_adjust(left=0.1, right=0.97, top=0.95, bottom=0.08, hspace=0.6)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True
