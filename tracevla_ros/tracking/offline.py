"""Offline visual-trace annotation of recorded episodes over 2N-frame segments (no rclpy).

The training-data counterpart of ``IncrementalTracker`` (which produces the
traces at serve time). TraceVLA annotates its training trajectories offline
with a dense point tracker over segments of 2N frames; this module does the
same with the project's tracker backends and parameters:

* segment k covers frames ``[kN, kN + 2N)`` (cut at the episode's end);
* its first N frames get exactly the online dense re-query: a K x K grid
  (``grid_points``) on the first frame, the backend's ``candidates``
  prefilter, tracks that leave the image or are lost dropped, *active* = mean
  per-step L1 displacement over the N frames above ``kappa_px``, M active
  tracks that pass the backend's ``verify`` drawn at random (seeded); fewer
  than M = no trace for the segment's steps;
* the M points then continue through the segment's last N frames with the
  backend's checked frame-to-frame step, as the online tracker continues its
  points between re-queries (a lost point keeps its last position, not visible);
* step t (t >= N - 1) belongs to segment ``k = (t - N + 1) // N``; its trace
  is the last N positions of the M points, frames ``t - N + 1 .. t``,
  oldest first, i.e. the same (M, N, 2) ``TraceResult.points`` layout the
  online tracker publishes. Steps t < N - 1 have no trace (the online tracker
  also needs N policy steps of history);
* the overlay of step t is ``draw_trace(frame_t, points, visible,
  draw_length)``, the function ``TraceResult.overlay`` calls online.

Use the tracker_node's parameters (``config/<robot>.yaml``) so that offline and
online traces come from the same preset (K, M, N, kappa, draw length) and LK
settings; ``tracevla-annotate`` does so by default. The policy is run at the
same 5 Hz as the recorded steps, so one recorded step = one online policy step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tracevla_ros.tracking.backend import PointTrackerBackend, make_backend
from tracevla_ros.tracking.config import TrackerConfig
from tracevla_ros.tracking.frames import Frame, make_frame
from tracevla_ros.tracking.overlay import draw_trace
from tracevla_ros.tracking.tracker import grid_points

__all__ = ["OfflineTraces", "TRACE_FORMAT", "TraceFileError", "annotate_frames", "load_traces",
           "save_traces", "segment_of_step"]


@dataclass(frozen=True)
class OfflineTraces:
    """Traces of one episode of T steps (pixels, x right / y down)."""

    valid: np.ndarray  # (T,) bool
    points: np.ndarray  # (T, M, N, 2) float32, oldest first; zeros where not valid
    visible: np.ndarray  # (T, M, N) bool
    overlays: np.ndarray  # (T, H, W, 3) uint8: frame t with its trace (the frame if none)
    segment: np.ndarray  # (T,) int32 segment index of each step, -1 for t < N - 1
    num_active: np.ndarray  # (S,) int32 active tracks found in each segment


def segment_of_step(t: int, n: int) -> int:
    """Segment index of step ``t`` for history ``n`` (-1 before the first full window)."""
    return -1 if t < n - 1 else (t - n + 1) // n


def _dense(backend: PointTrackerBackend, head: list[Frame], cfg: TrackerConfig,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    """The online dense re-query (``IncrementalTracker._dense_query``) over the N ``head``
    frames -> (tracks (N, M, 2), visible (N, M), num_active); 0 columns when fewer than M
    active tracks pass ``verify``. Same grid, prefilter, activity measure, seeded draw."""
    w, h = head[0].size
    grid = grid_points(w, h, cfg.grid_size)
    queries = grid[backend.candidates(head, grid)]
    tracks, visible = backend.track(head, queries, fb_check=False)
    inside = ((tracks[..., 0] >= 0) & (tracks[..., 0] <= w - 1)
              & (tracks[..., 1] >= 0) & (tracks[..., 1] <= h - 1))
    keep = (inside & visible).all(axis=0)
    if tracks.shape[0] > 1:
        motion = np.abs(np.diff(tracks, axis=0)).sum(axis=2).mean(axis=0)
    else:
        motion = np.zeros(tracks.shape[1], np.float32)
    active = np.flatnonzero(keep & (motion > cfg.kappa_px))
    order = rng.permutation(active)
    chosen: list[int] = []
    m = cfg.num_points
    for start in range(0, order.size, 2 * m):
        part = order[start:start + 2 * m]
        passed = part[backend.verify(head, tracks[:, part])]
        chosen.extend(int(i) for i in passed[: m - len(chosen)])
        if len(chosen) == m:
            break
    if len(chosen) < m:
        return (np.zeros((len(head), 0, 2), np.float32), np.zeros((len(head), 0), bool),
                int(active.size))
    sel = np.array(chosen, np.intp)
    return tracks[:, sel], visible[:, sel], int(active.size)


def _segment(backend: PointTrackerBackend, frames: list[Frame], cfg: TrackerConfig,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    """One 2N-frame segment -> (tracks (L, M, 2), visible (L, M), num_active), L = len(frames).

    The first N frames are the online buffer at a dense re-query; the M chosen points
    then continue frame by frame with the backend's checked step, as the online
    tracker continues them between re-queries (a lost point keeps its last position,
    visible False, and is not retried)."""
    n = cfg.history
    tracks, visible, num_active = _dense(backend, frames[:n], cfg, rng)
    if tracks.shape[1] == 0 or len(frames) <= n:
        return tracks, visible, num_active
    length, m = len(frames), tracks.shape[1]
    out_t = np.empty((length, m, 2), np.float32)
    out_v = np.zeros((length, m), bool)
    out_t[:n], out_v[:n] = tracks, visible
    for j in range(n, length):
        out_t[j], out_v[j] = out_t[j - 1], out_v[j - 1]
        alive = np.flatnonzero(out_v[j - 1])
        if alive.size:
            new, ok = backend.track_step(frames[j - 1], frames[j], out_t[j - 1, alive],
                                         fb_check=True)
            out_t[j, alive] = new
            out_v[j, alive] = ok
    return out_t, out_v, num_active


def annotate_frames(rgb: np.ndarray, cfg: TrackerConfig, seed: int = 0,
                    backend: PointTrackerBackend | None = None) -> OfflineTraces:
    """Offline traces for one episode's frames.

    rgb: (T, H, W, 3) uint8 RGB, one frame per policy step. ``seed`` seeds the
    choice of the M points (``tracevla-annotate`` combines the tracker seed and the
    episode seed). With ``seed = cfg.seed`` the first segment draws the same points
    as an ``IncrementalTracker(cfg)`` whose first dense re-query succeeds.
    A step is traced when its segment found M points and at least
    ``requery_min_visible`` of them are visible at that step (online, fewer
    triggers an immediate re-query).
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 4 or rgb.shape[3] != 3 or rgb.dtype != np.uint8 or rgb.shape[0] == 0:
        raise ValueError(f"rgb must be (T>0, H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    be = backend if backend is not None else make_backend(cfg)
    n, m = cfg.history, cfg.num_points
    t_len = rgb.shape[0]
    rng = np.random.default_rng(seed)
    frames = [make_frame(img, float(t), be.needs_color) for t, img in enumerate(rgb)]
    for f in frames:
        be.prepare(f)
    valid = np.zeros(t_len, bool)
    points = np.zeros((t_len, m, n, 2), np.float32)
    visible = np.zeros((t_len, m, n), bool)
    segment = np.full(t_len, -1, np.int32)
    overlays = rgb.copy()
    num_segments = (t_len - n) // n + 1 if t_len >= n else 0
    num_active = np.zeros(num_segments, np.int32)
    for k in range(num_segments):
        s = k * n
        tracks, vis, num_active[k] = _segment(be, frames[s:s + 2 * n], cfg, rng)
        for t in range(s + n - 1, min(s + 2 * n - 1, t_len)):
            segment[t] = k
            lo = t - n + 1 - s
            if tracks.shape[1] == 0 or int(vis[lo + n - 1].sum()) < cfg.requery_min_visible:
                continue
            pts = np.ascontiguousarray(tracks[lo:lo + n].transpose(1, 0, 2))  # (M, N, 2)
            v = np.ascontiguousarray(vis[lo:lo + n].T)  # (M, N)
            valid[t] = True
            points[t], visible[t] = pts, v
            overlays[t] = draw_trace(rgb[t], pts, v, cfg.draw_length)
    return OfflineTraces(valid=valid, points=points, visible=visible, overlays=overlays,
                         segment=segment, num_active=num_active)


# --- on disk: <episode>/trace.npz + trace.json (documented in sim/DATASET.md) ---------------
TRACE_FORMAT = "tracevla_sim_traces/v1"
TRACE_NPZ, TRACE_JSON = "trace.npz", "trace.json"
_KEYS = {"valid": "trace.valid", "points": "trace.points", "visible": "trace.visible",
         "overlays": "trace.overlay", "segment": "trace.segment", "num_active": "trace.num_active"}


class TraceFileError(ValueError):
    """An episode has no usable trace annotation; the message names the file and the fix."""


def save_traces(episode_dir: str | Path, traces: OfflineTraces, meta: dict[str, Any]) -> None:
    """Write ``trace.npz`` (arrays, compressed) and ``trace.json`` (``meta`` + format)."""
    d = Path(episode_dir)
    arrays = {key: getattr(traces, attr) for attr, key in _KEYS.items()}
    np.savez_compressed(d / TRACE_NPZ, **arrays)  # type: ignore[arg-type]
    info = dict(meta, format=TRACE_FORMAT, valid_steps=int(traces.valid.sum()),
                steps=int(traces.valid.shape[0]))
    (d / TRACE_JSON).write_text(json.dumps(info, indent=2) + "\n")


def load_traces(episode_dir: str | Path) -> tuple[OfflineTraces, dict[str, Any]]:
    """Read what ``save_traces`` wrote; TraceFileError when missing or of another format."""
    d = Path(episode_dir)
    if not (d / TRACE_NPZ).is_file() or not (d / TRACE_JSON).is_file():
        raise TraceFileError(f"{d}: no {TRACE_NPZ}/{TRACE_JSON}; run `tracevla-annotate --data "
                             f"{d.parent}` first (or train with --no-trace)")
    meta = json.loads((d / TRACE_JSON).read_text())
    if meta.get("format") != TRACE_FORMAT:
        raise TraceFileError(f"{d / TRACE_JSON}: format {meta.get('format')!r}, expected "
                             f"{TRACE_FORMAT!r}; re-run tracevla-annotate --overwrite")
    with np.load(d / TRACE_NPZ) as z:
        missing = [k for k in _KEYS.values() if k not in z.files]
        if missing:
            raise TraceFileError(f"{d / TRACE_NPZ}: missing arrays {missing}")
        traces = OfflineTraces(**{attr: z[key] for attr, key in _KEYS.items()})
    return traces, meta
