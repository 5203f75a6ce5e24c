"""CoTracker3 backend (the official ``cotracker`` package, online predictor, local checkpoint).

Requires ``torch`` and the ``cotracker`` package (facebookresearch/co-tracker,
``pip install -e .`` of a clone) and a CoTracker3 *online* checkpoint on disk
(``TrackerConfig.cotracker_checkpoint``, e.g. ``scaled_online.pth``). Nothing
is ever downloaded: a missing path raises ``CheckpointMissingError`` naming it.

Upstream's online protocol
--------------------------
``CoTrackerOnlinePredictor`` is initialised once per query set
(``is_first_step=True``: stores the queries, runs nothing). Each later call
processes ONE window of ``S = window_len`` frames (16 for the released
``scaled_online.pth``) starting at the model's ``online_ind``, then advances
``online_ind`` by ``step = S // 2``. Windows overlap by ``step`` frames: a
frame's position is *final* once no later window covers it, i.e. once the
window that starts after it has run. A window on fewer than S frames is
padded by the model with its last frame.

Incremental use here (``OnlineSession``, bookkeeping in ``OnlineWindowPlan``)
-----------------------------------------------------------------------------
* Dense re-query (``track``): a fresh session with the K x K queries on the
  oldest buffer frame, fed the N buffer frames: full windows as they fall due
  plus one uncommitted window over the remaining frames (N <= S: one model
  window in all). The session is then dropped.
* ``keep`` (called by ``IncrementalTracker`` with the M chosen tracks): the
  ONE predictor re-initialisation per dense re-query -- a session with the M
  queries on the oldest buffer frame, fed the buffer frames (no model run yet).
* ``track_step``: feeds the new frame to that session. A committed window runs
  whenever S frames past ``online_ind`` are present (state advances). The lag
  of the newest frame is handled by ``cotracker_lag``:

  - ``"provisional"`` (default): when no full window is due, the current
    window runs on the frames it has so far (padded) WITHOUT committing the
    model state (snapshot, run, restore). Every step costs exactly one model
    window; the newest position is current but provisional (a later window
    refines it); ``last_info.provisional`` says so.
  - ``"hold"``: the model runs only when a full window is due (one window per
    ``step`` frames: the amortised cost per frame is 1/step of a window). Between
    windows the newest position is the one of the last processed frame,
    ``last_info.lag_frames`` frames old (0 .. step-1).

  Lag with the released window (S=16, step=8): a frame's position becomes
  final 8..15 frames after it arrives; in ``"hold"`` mode the newest position
  is 0..7 frames stale. At a 5 Hz policy with ``observe_rate_hz = 0`` (one
  frame per policy step) that is 1.6..3.0 s to final and 0..1.4 s stale; with
  a 30 Hz ``observe_rate_hz`` (frames at camera rate) 267..500 ms and
  0..233 ms. The trace published each step uses the newest estimate
  (provisional or held); positions already in the trace are not revised.
  In ``"hold"`` mode the first committed window after a re-query needs
  S frames since the buffer's oldest frame, i.e. S - N frames after the
  re-query (10 with N=6), during which the dense positions are held.
  Every frame fed costs a window in ``"provisional"`` mode, so with CoTracker3
  as the sparse backend keep ``observe_rate_hz = 0`` (or use ``"hold"``).

The model keeps per-frame predictions since its initialisation (they grow
with the session), which is bounded by the dense re-query period.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from tracevla_ros.tracking.backend import PointTrackerBackend, register_backend
from tracevla_ros.tracking.config import TrackerConfig
from tracevla_ros.tracking.frames import Frame

__all__ = ["CoTrackerBackend", "CheckpointMissingError", "BackendUnavailableError",
           "OnlineWindowPlan", "OnlineSession", "StepInfo", "LAG_MODES"]

WINDOW_LEN = 16  # CoTracker3 online window of the released checkpoint (frames)
LAG_MODES = ("provisional", "hold")


class BackendUnavailableError(ImportError):
    """A backend's Python package is not installed."""


class CheckpointMissingError(FileNotFoundError):
    """The configured checkpoint file does not exist."""


@dataclass
class OnlineWindowPlan:
    """Pure bookkeeping of upstream's online window/step protocol (no torch).

    Frames are numbered 0, 1, ... from the session's initialisation.
    ``ind`` mirrors the model's ``online_ind`` (start of the next window);
    ``fed`` is the number of frames fed so far.
    """

    window_len: int = WINDOW_LEN
    fed: int = 0
    ind: int = 0
    processed: int = 0  # frames [0, processed) have an estimate from some window run

    def __post_init__(self) -> None:
        if self.window_len < 2 or self.window_len % 2:
            raise ValueError(f"window_len must be an even number >= 2, got {self.window_len}")

    @property
    def step(self) -> int:
        """Frames the window advances per committed run (upstream: window_len // 2)."""
        return self.window_len // 2

    @property
    def final(self) -> int:
        """Frames [0, final) are final: no later window covers them."""
        return self.ind

    def feed(self) -> None:
        self.fed += 1

    def full_window_due(self) -> bool:
        """A committed window over [ind, ind + window_len) can run now."""
        return self.fed >= self.ind + self.window_len

    def window(self) -> tuple[int, int]:
        """(start, end) frame range of the next model run: the full window when
        due, else the partial window [ind, fed) (padded by the model)."""
        return self.ind, min(self.fed, self.ind + self.window_len)

    def commit(self) -> None:
        """A full window ran: mirror the model advancing ``online_ind``."""
        if not self.full_window_due():
            raise RuntimeError("commit() without a full window")
        self.processed = max(self.processed, self.ind + self.window_len)
        self.ind += self.step

    def provisional(self) -> None:
        """An uncommitted (partial) window ran over [ind, fed)."""
        self.processed = max(self.processed, self.fed)

    def lag_frames(self) -> int:
        """How many frames old the newest available estimate is (0 = newest frame)."""
        return max(0, self.fed - self.processed)

    def pending_final(self) -> int:
        """Frames fed whose estimate is not final yet."""
        return self.fed - self.final

    @staticmethod
    def lag_bounds(window_len: int, mode: str) -> dict[str, tuple[int, int]]:
        """Frames: (min, max) delay until a frame's position is final, and (min, max)
        staleness of the newest position, in steady state."""
        step = window_len // 2
        stale = (0, 0) if mode == "provisional" else (0, step - 1)
        return {"final_after": (step, window_len - 1), "newest_stale": stale}


@dataclass(frozen=True)
class StepInfo:
    """What the last ``track_step`` did."""

    model_calls: int  # model windows run in this call (0 or 1; 2 only if one was owed)
    provisional: bool  # the newest position comes from an uncommitted window
    lag_frames: int  # the newest position is this many frames old (hold mode)
    reinit: bool  # the predictor was re-initialised in this call


class OnlineSession:
    """One online predictor state for one query set (queries on the session's frame 0)."""

    def __init__(self, predictor: Any, torch: Any, device: Any, frame0: Frame,
                 queries: np.ndarray, window_len: int, mode: str) -> None:
        self.predictor = predictor
        self.torch = torch
        self.device = device
        self.mode = mode
        self.plan = OnlineWindowPlan(window_len)
        self.frames: dict[int, Any] = {}  # frame index -> (3, H, W) float tensor
        self.last_frame: Frame | None = None
        q = np.asarray(queries, np.float32).reshape(-1, 2)
        self.pos = q.copy()  # newest estimate, (P, 2)
        self.vis = np.ones(q.shape[0], bool)
        self.model_calls = 0
        q3 = np.concatenate([np.zeros((q.shape[0], 1), np.float32), q], axis=1)
        qt = torch.from_numpy(q3)[None].to(device)
        chunk = self._tensor(frame0)[None, None]
        predictor(video_chunk=chunk, is_first_step=True, queries=qt)
        self._add(frame0)

    def _tensor(self, frame: Frame) -> Any:
        if frame.color is None:
            raise ValueError("cotracker3 needs colour frames (Frame.color is None)")
        return self.torch.from_numpy(np.ascontiguousarray(frame.color)).permute(2, 0, 1).float().to(
            self.device)

    def _add(self, frame: Frame) -> None:
        self.frames[self.plan.fed] = self._tensor(frame)
        self.plan.feed()
        self.last_frame = frame
        for i in [i for i in self.frames if i < self.plan.ind]:
            del self.frames[i]  # no later window needs it

    def _run(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        chunk = self.torch.stack([self.frames[i] for i in range(start, end)])[None]
        tracks, vis = self.predictor(video_chunk=chunk)
        self.model_calls += 1
        t = end - 1
        return (tracks[0, t].float().cpu().numpy().astype(np.float32),
                vis[0, t].cpu().numpy().astype(bool))

    def _snapshot(self) -> dict[str, Any]:
        m = self.predictor.model
        snap: dict[str, Any] = {"online_ind": m.online_ind}
        for name in ("online_track_feat", "online_track_support"):
            snap[name] = [None if x is None else x.clone() for x in getattr(m, name)]
        for name in ("online_coords_predicted", "online_vis_predicted", "online_conf_predicted"):
            snap[name] = getattr(m, name, None)  # replaced (not modified in place) by a run
        return snap

    def _restore(self, snap: dict[str, Any]) -> None:
        m = self.predictor.model
        for name, value in snap.items():
            setattr(m, name, value)

    def feed(self, frame: Frame, run: bool = True) -> StepInfo:
        """Add ``frame``; run the model as the protocol and ``mode`` say (``run=False``:
        only store it -- used to replay a buffer before the first step)."""
        self._add(frame)
        calls = 0
        provisional = False
        with self.torch.no_grad():
            while self.plan.full_window_due():
                start, end = self.plan.window()
                self.pos, self.vis = self._run(start, end)
                self.plan.commit()
                calls += 1
            if run and self.mode == "provisional" and self.plan.lag_frames() > 0:
                snap = self._snapshot()
                start, end = self.plan.window()
                try:
                    self.pos, self.vis = self._run(start, end)
                finally:
                    self._restore(snap)
                self.plan.provisional()
                calls += 1
                provisional = True
        return StepInfo(model_calls=calls, provisional=provisional,
                        lag_frames=self.plan.lag_frames(), reinit=False)

    def match(self, prev: Frame, points: np.ndarray) -> np.ndarray | None:
        """Row of this session for each of ``points`` (their last positions), or None
        when ``prev`` is not the session's last frame or a point is unknown."""
        if self.last_frame is None or (prev is not self.last_frame
                                       and prev.stamp != self.last_frame.stamp):
            return None
        d = np.abs(points[:, None, :] - self.pos[None, :, :]).max(axis=2)  # (P, Q)
        rows = d.argmin(axis=1)
        if points.shape[0] and float(d[np.arange(points.shape[0]), rows].max()) > 1e-3:
            return None
        return rows


class CoTrackerBackend(PointTrackerBackend):
    """CoTracker3 online predictor, one incremental session per dense query set."""

    name = "cotracker3"
    needs_color = True

    def __init__(self, config: TrackerConfig) -> None:
        path = config.cotracker_checkpoint
        if not path or not os.path.isfile(path):
            raise CheckpointMissingError(
                f"CoTracker3 checkpoint not found at '{path}'; set the parameter "
                "cotracker_checkpoint to a local scaled_online.pth (it is never downloaded)")
        try:
            import torch
            from cotracker.predictor import CoTrackerOnlinePredictor
        except ImportError as exc:
            raise BackendUnavailableError(
                f"backend 'cotracker3' needs torch and the cotracker package ({exc}); "
                "install co-tracker from a clone with pip, or use backend 'lk'") from None
        self._torch: Any = torch
        self._device = torch.device(config.cotracker_device)
        self.window_len = config.cotracker_window_len
        self.mode = config.cotracker_lag
        self.predictor = CoTrackerOnlinePredictor(checkpoint=path, window_len=self.window_len)
        self.predictor = self.predictor.to(self._device).eval()
        self.session: OnlineSession | None = None
        self.inits = 0  # predictor re-initialisations (dense passes + sparse sessions)
        self.last_info = StepInfo(0, False, 0, False)
        self.windows_run = 0  # model windows run in all (dense passes and steps)

    def _session(self, frames: Sequence[Frame], queries: np.ndarray) -> OnlineSession:
        self.inits += 1
        s = OnlineSession(self.predictor, self._torch, self._device, frames[0], queries,
                          self.window_len, self.mode)
        for f in frames[1:]:
            s.feed(f, run=False)
        return s

    def track(self, frames: Sequence[Frame], queries: np.ndarray,
              fb_check: bool = True) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        q = np.asarray(queries, np.float32).reshape(-1, 2)
        t_len = len(frames)
        self.session = None  # a dense pass re-initialises the predictor
        s = self._session(frames[:1], q)
        with torch.no_grad():
            for f in frames[1:]:
                s.feed(f, run=False)  # commits full windows as they fall due
            if s.plan.lag_frames() > 0:  # the rest: one uncommitted window
                start, end = s.plan.window()
                chunk = torch.stack([s.frames[i] for i in range(start, end)])[None]
                tracks_t, vis_t = self.predictor(video_chunk=chunk)
                s.model_calls += 1
            else:
                tracks_t = self.predictor.model.online_coords_predicted
                vis_t = None
        if tracks_t is None:
            raise RuntimeError("cotracker returned no tracks")
        w, h = frames[0].size
        if vis_t is None:  # all windows committed: read the model's own record
            m = self.predictor.model
            scale = tracks_t.new_tensor([(w - 1) / (self.predictor.interp_shape[1] - 1),
                                         (h - 1) / (self.predictor.interp_shape[0] - 1)])
            tracks_t = tracks_t * scale
            vis_t = (torch.sigmoid(m.online_vis_predicted)
                     * torch.sigmoid(m.online_conf_predicted)) > 0.6
        tracks = tracks_t[0, :t_len].float().cpu().numpy().astype(np.float32)  # (T, P, 2)
        visible = vis_t[0, :t_len].cpu().numpy().astype(bool).reshape(t_len, -1)
        tracks[0] = q
        visible[0] = True
        self.last_info = StepInfo(s.model_calls, False, 0, True)
        self.windows_run += s.model_calls
        return tracks, visible

    def keep(self, frames: Sequence[Frame], tracks: np.ndarray, visible: np.ndarray) -> None:
        """Start the incremental session of the M chosen tracks: queries at their
        positions on frames[0], the buffer frames fed, their newest positions known."""
        tracks = np.asarray(tracks, np.float32)
        s = self._session(frames, tracks[0])
        s.pos = tracks[-1].copy()
        s.vis = np.asarray(visible, bool)[-1].copy()
        s.plan.processed = s.plan.fed  # the dense pass gave the newest positions
        self.windows_run += s.model_calls  # only when the buffer holds a full window
        self.session = s

    def track_step(self, prev: Frame, frame: Frame, points: np.ndarray,
                   fb_check: bool = True) -> tuple[np.ndarray, np.ndarray]:
        p = np.asarray(points, np.float32).reshape(-1, 2)
        if p.shape[0] == 0:
            return np.zeros((0, 2), np.float32), np.zeros(0, bool)
        session = self.session
        rows = session.match(prev, p) if session is not None else None
        reinit = rows is None
        if session is None or rows is None:  # no session for these points
            session = self.session = self._session([prev], p)
            rows = np.arange(p.shape[0])
        info = session.feed(frame)
        self.last_info = StepInfo(info.model_calls, info.provisional, info.lag_frames, reinit)
        self.windows_run += info.model_calls
        w, h = frame.size
        new = session.pos[rows]
        ok = (session.vis[rows] & (new[:, 0] >= 0) & (new[:, 0] <= w - 1)
              & (new[:, 1] >= 0) & (new[:, 1] <= h - 1))
        # the session keeps its own estimate of a lost point; the caller gets the input
        return np.where(ok[:, None], new, p).astype(np.float32), ok


register_backend("cotracker3", CoTrackerBackend)
