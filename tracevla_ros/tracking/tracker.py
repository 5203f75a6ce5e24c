"""``IncrementalTracker``: TraceVLA visual traces at policy rate, tracked at camera rate.

Time base
---------
The N positions of a trace are sampled at the last N *policy steps* (e.g.
N=6 at 5 Hz = 1.2 s), not camera frames. Two calls separate the rates:

* ``observe(image, stamp)`` -- any rate (e.g. every 30 Hz camera frame):
  moves the M active points from the previous observed frame to this one
  (cheap: M points, pyramid built once per frame). LK between consecutive
  camera frames is more robust than across a whole policy period.
* ``step()`` -- once per policy step: the latest observed frame becomes one
  history entry (its frame goes into the N-frame ring buffer, the current
  point positions into the trace), and the dense re-query is scheduled in
  policy steps. Returns a ``TraceResult``.

For a camera at the policy rate, call both per frame (``process``).

Schedule (all counts in policy steps since the last reset)
---------------------------------------------------------
* no trace until the buffer holds N frames;
* dense re-query when the buffer first fills, every ``redraw_steps`` while
  traced, after ``untraced_retry_steps`` while untraced, and at once when
  fewer than ``requery_min_visible`` traced points are still tracked
  (default 1: when all are lost);
* dense re-query: a K x K grid on the oldest buffer frame is tracked through
  the N buffer frames; tracks that leave the image or are lost are dropped; a
  track is active when mean_t(|dx_t| + |dy_t|) > kappa (px per policy step);
  M of the active tracks are drawn at random (seeded); fewer than M active
  (that pass the backend's consistency check) = untraced. The N dense
  positions of the chosen tracks are the trace at once;
* between re-queries only the M points are tracked, continuing from their
  last positions; each step appends the newest position. A lost point keeps
  its last position with visible=False until the next dense re-query (it is
  not retried: after an occlusion LK would lock onto the occluder).

Mixed backends: ``config.dense_backend`` runs the dense re-query and
``config.sparse_backend`` (``self.backend``) tracks the M points; both default to
``config.backend``. After a dense re-query the sparse backend's ``keep`` gets
the chosen tracks over the buffer (CoTracker3 starts its online session there;
LK needs nothing). E.g. CoTracker3 for the K x K pass and LK in between.

Robustness: a non-array / non-uint8 / badly shaped / empty image raises
``TrackerInputError``; a frame not newer than the last one is dropped
(``observe`` returns False); a frame of a different size resets the tracker
and is then used. After any reset no trace is produced until N new policy
steps are seen, so a trace never holds positions from before a reset.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from tracevla_ros.tracking.backend import PointTrackerBackend, make_backend
from tracevla_ros.tracking.config import TrackerConfig
from tracevla_ros.tracking.frames import Frame, make_frame
from tracevla_ros.tracking.overlay import draw_trace

__all__ = ["IncrementalTracker", "TraceResult", "NoNewFrameError", "grid_points"]

_log = logging.getLogger(__name__)


class NoNewFrameError(RuntimeError):
    """``step()`` was called without a frame observed since the previous step."""


def grid_points(width: int, height: int, k: int) -> np.ndarray:
    """(K*K, 2) float32 cell centres of a K x K grid over a width x height image."""
    xs = (np.arange(k, dtype=np.float32) + 0.5) * (width / k) - 0.5
    ys = (np.arange(k, dtype=np.float32) + 0.5) * (height / k) - 0.5
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)


@dataclass(frozen=True)
class TraceResult:
    """What one policy step produced.

    Coordinates: pixels of an image_size[0] x image_size[1] frame, x right / y down.
    """

    valid: bool
    points: np.ndarray  # (M, N, 2) float32, oldest first; (0, 0, 2) when not valid
    visible: np.ndarray  # (M, N) bool; (0, 0) when not valid
    step_stamps: np.ndarray  # (N,) float64 camera stamps of the policy steps, oldest first
    stamp: float  # camera stamp of the frame this step belongs to (newest position)
    image_size: tuple[int, int]  # (width, height) px
    step_index: int  # policy steps since the last reset (1 = first)
    dense: bool  # a dense re-query ran at this step
    num_active: int  # active tracks found by the last dense re-query
    reason: str = ""  # why not valid ("" when valid)
    tracker: str = ""  # backend name
    query_points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    # (M, 2) float32: where the traced points were on the oldest buffer frame of their dense query
    query_stamp: float = 0.0  # stamp of that frame

    def overlay(self, image: np.ndarray, draw_length: int | None = None) -> np.ndarray:
        """A new RGB image with this trace drawn on ``image`` (a copy of it when not valid)."""
        if not self.valid:
            return draw_trace(image, np.zeros((0, 2, 2)), np.zeros((0, 2), bool))
        return draw_trace(image, self.points, self.visible, draw_length)


class IncrementalTracker:
    """The incremental trace tracker (no ROS). See the module docstring."""

    def __init__(self, config: TrackerConfig, backend: PointTrackerBackend | None = None,
                 dense_backend: PointTrackerBackend | None = None) -> None:
        """``backend`` tracks the M points (default: ``config.sparse_backend_name``);
        ``dense_backend`` runs the dense re-query (default: ``config.dense_backend_name``,
        the same object as ``backend`` when the names agree)."""
        self.config = config
        sparse_name, dense_name = config.sparse_backend_name, config.dense_backend_name
        self.backend = backend if backend is not None else make_backend(config, sparse_name)
        if dense_backend is not None:
            self.dense_backend = dense_backend
        elif backend is not None or dense_name == sparse_name:
            self.dense_backend = self.backend
        else:
            self.dense_backend = make_backend(config, dense_name)
        self._needs_color = self.backend.needs_color or self.dense_backend.needs_color
        self._rng = np.random.default_rng(config.seed)
        self._grid_cache: dict[tuple[int, int], np.ndarray] = {}
        self.reset_count = -1  # reset() below makes it 0
        self.dropped_frames = 0
        self.last_dense_ms = 0.0
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self, reason: str = "reset requested") -> None:
        """Forget every frame and point; the next trace needs N new policy steps."""
        n = self.config.history
        self._frames: deque[Frame] = deque(maxlen=n)
        self._hist_pts: deque[np.ndarray] = deque(maxlen=n)
        self._hist_vis: deque[np.ndarray] = deque(maxlen=n)
        self._latest: Frame | None = None
        self._new_frame = False
        self._size: tuple[int, int] | None = None
        self._pts: np.ndarray | None = None  # (M, 2) current positions
        self._vis: np.ndarray | None = None  # (M,) current visibility
        self._query_pts = np.zeros((0, 2), np.float32)
        self._query_stamp = 0.0
        self._steps = 0
        self._observed = 0  # frames observed since the last step
        self._last_dense = 0
        self._last_attempt: int | None = None
        self._num_active = 0
        self.reset_count += 1
        if self.reset_count > 0:
            _log.info("tracker reset: %s", reason)

    @property
    def has_new_frame(self) -> bool:
        """A frame was observed since the last ``step()``."""
        return self._new_frame

    @property
    def latest_frame(self) -> Frame | None:
        return self._latest

    @property
    def tracker_name(self) -> str:
        """Backend name(s): 'lk', or 'dense+sparse' (e.g. 'cotracker3+lk') when mixed."""
        if self.dense_backend is self.backend or self.dense_backend.name == self.backend.name:
            return self.backend.name
        return f"{self.dense_backend.name}+{self.backend.name}"

    @property
    def traced(self) -> bool:
        return self._pts is not None

    # -------------------------------------------------------------- per frame
    def observe(self, image: np.ndarray, stamp: float) -> bool:
        """Track the active points into ``image`` (camera rate is fine).

        image: (H, W, 3) uint8 RGB or (H, W) uint8 grey; stamp: seconds.
        Returns False when the frame is dropped (not newer than the last one).
        Raises TrackerInputError for an unusable image (state unchanged).
        """
        frame = make_frame(image, stamp, self._needs_color)
        if self._latest is not None and frame.stamp <= self._latest.stamp:
            self.dropped_frames += 1
            _log.debug("dropped frame %.6f: not newer than %.6f", frame.stamp, self._latest.stamp)
            return False
        if self._size is not None and frame.size != self._size:
            self.reset(f"frame size changed from {self._size[0]}x{self._size[1]} to "
                       f"{frame.size[0]}x{frame.size[1]}")
        self._size = frame.size
        self.backend.prepare(frame)
        if self.dense_backend is not self.backend:
            self.dense_backend.prepare(frame)
        if self._pts is not None and self._vis is not None and self._latest is not None:
            alive = np.flatnonzero(self._vis)
            if alive.size:
                new, ok = self.backend.track_step(self._latest, frame, self._pts[alive],
                                                  fb_check=False)
                self._pts[alive] = new
                self._vis[alive] = ok
        self._latest = frame
        self._new_frame = True
        self._observed += 1
        return True

    # -------------------------------------------------------------- per step
    def step(self, stamp: float | None = None) -> TraceResult:
        """Mark a policy step at the latest observed frame; returns its trace.

        ``stamp`` (optional, seconds) is the policy tick time; the result is
        stamped with the camera frame's stamp. Raises NoNewFrameError when no
        frame was observed since the previous step.
        """
        if not self._new_frame or self._latest is None:
            raise NoNewFrameError("step() needs a frame observed (observe()) since the last step")
        frame = self._latest
        if stamp is not None and stamp + 1e-9 < frame.stamp:
            _log.debug("policy tick %.6f is before its camera frame %.6f", stamp, frame.stamp)
        self._new_frame = False
        if self._frames and self._hist_pts and self._pts is not None:
            self._check_since_last_step(self._frames[-1], frame)
        self._observed = 0
        self._frames.append(frame)
        self._steps += 1
        if self._pts is not None and self._vis is not None:
            self._hist_pts.append(self._pts.copy())
            self._hist_vis.append(self._vis.copy())
        dense = False
        if len(self._frames) == self.config.history:
            if self._pts is None or self._vis is None:
                due = (self._last_attempt is None
                       or self._steps - self._last_attempt >= self.config.untraced_retry_steps)
            else:
                due = (self._steps - self._last_dense >= self.config.redraw_steps
                       or int(self._vis.sum()) < self.config.requery_min_visible)
            if due:
                self._dense_query()
                dense = True
        return self._result(dense)

    def _check_since_last_step(self, prev: Frame, frame: Frame) -> None:
        """Consistency check of the points across the whole policy step.

        ``observe`` tracks frame to frame without the backend's check (cheap at
        camera rate); here the backend's ``verify`` (LK: forward-backward error
        and patch residual between the previous and the current policy-step
        frame) decides which points are lost. With one frame per step this is
        exactly a checked ``track_step``; at camera rate it also catches slow
        drifts that per-frame checks miss (an edge sweeping over a point 1 px
        per frame). A point that fails goes back to its previous position.
        """
        if self._pts is None or self._vis is None:
            return
        idx = np.flatnonzero(self._vis & self._hist_vis[-1])
        if idx.size == 0:
            return
        pair = np.stack([self._hist_pts[-1][idx], self._pts[idx]])  # (2, P, 2)
        bad = idx[~self.backend.verify([prev, frame], pair)]
        self._vis[bad] = False
        self._pts[bad] = self._hist_pts[-1][bad]

    def process(self, image: np.ndarray, stamp: float) -> TraceResult | None:
        """``observe`` + ``step`` for a camera at the policy rate; None when the frame is dropped."""
        if not self.observe(image, stamp):
            return None
        return self.step(stamp)

    # -------------------------------------------------------------- internals
    def _grid(self, width: int, height: int) -> np.ndarray:
        key = (width, height)
        if key not in self._grid_cache:
            self._grid_cache[key] = grid_points(width, height, self.config.grid_size)
        return self._grid_cache[key]

    def _dense_query(self) -> None:
        """Dense K x K re-query over the buffer; picks M active tracks or goes untraced.

        Cost control, same result as tracking and checking every grid point:
        the backend's ``candidates`` prefilter drops points that certainly did
        not move, tracking runs without consistency checks, and ``verify``
        (LK: per-step forward-backward) runs only on the tracks drawn, in
        random order, until M pass -- a uniform draw among the passing tracks.
        """
        cfg = self.config
        t0 = time.perf_counter()
        frames = list(self._frames)
        w, h = frames[0].size
        grid = self._grid(w, h)
        queries = grid[self.dense_backend.candidates(frames, grid)]
        tracks, visible = self.dense_backend.track(frames, queries, fb_check=False)
        inside = ((tracks[..., 0] >= 0) & (tracks[..., 0] <= w - 1)
                  & (tracks[..., 1] >= 0) & (tracks[..., 1] <= h - 1))
        keep = (inside & visible).all(axis=0)
        if tracks.shape[0] > 1:
            motion = np.abs(np.diff(tracks, axis=0)).sum(axis=2).mean(axis=0)  # (P,) px/step
        else:
            motion = np.zeros(tracks.shape[1], np.float32)
        active = np.flatnonzero(keep & (motion > cfg.kappa_px))
        order = self._rng.permutation(active)
        chosen: list[int] = []
        batch = 2 * cfg.num_points
        for start in range(0, order.size, batch):
            part = order[start:start + batch]
            passed = part[self.dense_backend.verify(frames, tracks[:, part])]
            chosen.extend(int(i) for i in passed[: cfg.num_points - len(chosen)])
            if len(chosen) == cfg.num_points:
                break
        self._num_active = int(active.size)
        self._last_dense = self._steps
        self._last_attempt = self._steps
        self._hist_pts.clear()
        self._hist_vis.clear()
        if len(chosen) < cfg.num_points:
            self._pts = self._vis = None
            self._query_pts = np.zeros((0, 2), np.float32)
            _log.debug("step %d untraced: %d active tracks, %d consistent < M=%d", self._steps,
                       active.size, len(chosen), cfg.num_points)
        else:
            sel = np.array(chosen, np.intp)
            for t in range(tracks.shape[0]):
                self._hist_pts.append(tracks[t, sel].copy())
                self._hist_vis.append(visible[t, sel].copy())
            self._pts = tracks[-1, sel].copy()
            self._vis = visible[-1, sel].copy()
            self._query_pts = tracks[0, sel].copy()
            self._query_stamp = frames[0].stamp
            # the sparse backend continues these tracks (CoTracker3: its online session)
            self.backend.keep(frames, tracks[:, sel], visible[:, sel])
        self.last_dense_ms = (time.perf_counter() - t0) * 1e3

    def _result(self, dense: bool) -> TraceResult:
        latest = self._latest
        if latest is None:  # step() checked it; keeps mypy informed
            raise NoNewFrameError("no frame observed")
        stamps = np.array([f.stamp for f in self._frames], np.float64)
        common = dict(stamp=latest.stamp, image_size=latest.size,
                      step_index=self._steps, dense=dense, num_active=self._num_active,
                      tracker=self.tracker_name)
        n = self.config.history
        if self._pts is None or len(self._hist_pts) < n:
            if len(self._frames) < n:
                reason = f"history {len(self._frames)}/{n} policy steps"
            else:
                reason = (f"{self._num_active} active tracks < M={self.config.num_points}")
            return TraceResult(valid=False, points=np.zeros((0, 0, 2), np.float32),
                               visible=np.zeros((0, 0), bool), step_stamps=stamps,
                               reason=reason, **common)  # type: ignore[arg-type]
        points = np.stack(list(self._hist_pts), axis=1).astype(np.float32)  # (M, N, 2)
        visible = np.stack(list(self._hist_vis), axis=1)  # (M, N)
        return TraceResult(valid=True, points=points, visible=visible, step_stamps=stamps,
                           query_points=self._query_pts.copy(), query_stamp=self._query_stamp,
                           **common)  # type: ignore[arg-type]
