"""OpenCV pyramidal Lucas-Kanade backend (CPU, no weights), with a forward-backward check.

Each frame's image pyramid is built once (``cv2.buildOpticalFlowPyramid``)
and cached in ``Frame.cache``, so a frame tracked at camera rate is reused
as-is by the dense re-query over the buffer -- where the OpenCV Python binding
accepts a pyramid for ``calcOpticalFlowPyrLK`` (OpenCV 4.x). OpenCV 5.0's
binding rejects it ("prevImg is not a numerical tuple"); this is probed once
and the grey image is passed instead (OpenCV then builds the pyramid per call). Dense tracking chains LK over
consecutive buffer frames; a point lost once stays lost for that clip.

Lost = OpenCV status 0 in either direction, or the forward-backward error
``|p0 - back(forward(p0))|`` (L2, px) above ``fb_threshold_px``, or the new
position outside the image.
"""

from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np

from tracevla_ros.tracking.backend import PointTrackerBackend, register_backend
from tracevla_ros.tracking.config import TrackerConfig
from tracevla_ros.tracking.frames import Frame

__all__ = ["LKBackend"]

_PYR_KEY = "lk_pyramid"


class LKBackend(PointTrackerBackend):
    """Pyramidal Lucas-Kanade (``cv2.calcOpticalFlowPyrLK``) with forward-backward checks."""

    name = "lk"
    needs_color = False

    def __init__(self, config: TrackerConfig) -> None:
        self._win = (config.lk_window, config.lk_window)
        self._levels = config.lk_levels
        self._criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS,
                          config.lk_max_iter, config.lk_epsilon)
        self._fb2 = float(config.fb_threshold_px) ** 2
        self.uses_pyramids = _pyramids_supported()
        self._prefilter = float(config.prefilter_gray)
        self._max_residual = float(config.lk_max_residual)
        self._diff_buf: np.ndarray | None = None

    def prepare(self, frame: Frame) -> None:
        if self.uses_pyramids and _PYR_KEY not in frame.cache:
            _, pyr = cv2.buildOpticalFlowPyramid(frame.gray, self._win, self._levels,
                                                 withDerivatives=True)
            frame.cache[_PYR_KEY] = pyr

    def _pyr(self, frame: Frame) -> Any:
        if not self.uses_pyramids:
            return frame.gray
        self.prepare(frame)
        return frame.cache[_PYR_KEY]

    def _crop(self, frame: Frame, p0: np.ndarray) -> tuple[int, int, int, int] | None:
        """(x0, y0, x1, y1) of a region around ``p0`` that holds everything LK can
        reach from it (window half-size times the pyramid's reach), or None when
        that region is most of the image. Few points (the M traced ones) then cost
        pyramids of a small crop instead of the whole frame -- OpenCV 5's Python
        binding rebuilds both pyramids on every call. The origin is aligned to
        2^levels so every pyramid level samples the same pixels as the full frame."""
        if self.uses_pyramids or p0.shape[0] > 64:
            return None
        w, h = frame.size
        reach = (self._win[0] // 2 + 2) * (2 ** (self._levels + 1))
        align = 2 ** self._levels
        pts = p0.reshape(-1, 2)
        x0 = max(0, (int(pts[:, 0].min()) - reach) // align * align)
        y0 = max(0, (int(pts[:, 1].min()) - reach) // align * align)
        x1 = min(w, int(pts[:, 0].max()) + reach + 1)
        y1 = min(h, int(pts[:, 1].max()) + reach + 1)
        if (x1 - x0) * (y1 - y0) > 0.6 * w * h:
            return None
        return x0, y0, x1, y1

    def _lk(self, prev: Frame, frame: Frame, p0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One LK call from ``prev`` to ``frame``; ok = found and the patch residual
        (mean |I1 - I0| over the window, grey levels) is at most ``max_residual``: a
        point swept up by an object passing over it changes its patch and fails."""
        box = self._crop(frame, p0)
        if box is None:
            a, b, q = self._pyr(prev), self._pyr(frame), p0
        else:
            x0, y0, x1, y1 = box
            a, b = prev.gray[y0:y1, x0:x1], frame.gray[y0:y1, x0:x1]
            q = p0 - np.array([x0, y0], np.float32)
        p1, st, err = cv2.calcOpticalFlowPyrLK(  # type: ignore[call-overload]
            a, b, q, None, winSize=self._win, maxLevel=self._levels, criteria=self._criteria)
        if box is not None:
            p1 = p1 + np.array([box[0], box[1]], np.float32)
        ok = st.reshape(-1) == 1
        if self._max_residual > 0:
            ok &= err.reshape(-1) <= self._max_residual
        return p1, ok

    @staticmethod
    def _inside(p: np.ndarray, frame: Frame) -> np.ndarray:
        w, h = frame.size
        return (p[:, 0] >= 0) & (p[:, 0] <= w - 1) & (p[:, 1] >= 0) & (p[:, 1] <= h - 1)

    def track_step(self, prev: Frame, frame: Frame, points: np.ndarray,
                   fb_check: bool = True) -> tuple[np.ndarray, np.ndarray]:
        p0 = np.ascontiguousarray(points, dtype=np.float32).reshape(-1, 1, 2)
        n = p0.shape[0]
        if n == 0:
            return np.zeros((0, 2), np.float32), np.zeros(0, bool)
        p1, ok = self._lk(prev, frame, p0)
        p0f, p1f = p0.reshape(n, 2), p1.reshape(n, 2)
        ok &= self._inside(p1f, frame)
        if fb_check:
            p0b, ok2 = self._lk(frame, prev, p1)
            ok &= ok2 & (np.sum((p0f - p0b.reshape(n, 2)) ** 2, axis=1) <= self._fb2)
        out = np.where(ok[:, None], p1f, p0f).astype(np.float32, copy=False)
        return out, ok

    def track(self, frames: Sequence[Frame], queries: np.ndarray,
              fb_check: bool = True) -> tuple[np.ndarray, np.ndarray]:
        q = np.asarray(queries, dtype=np.float32).reshape(-1, 2)
        t_len, p = len(frames), q.shape[0]
        tracks = np.empty((t_len, p, 2), np.float32)
        visible = np.zeros((t_len, p), bool)
        tracks[0] = q
        visible[0] = True
        alive = np.arange(p)
        for t in range(1, t_len):
            tracks[t] = tracks[t - 1]
            if alive.size == 0:
                continue
            new, ok = self.track_step(frames[t - 1], frames[t], tracks[t - 1, alive], fb_check)
            tracks[t, alive] = new
            visible[t, alive] = ok
            alive = alive[ok]
        return tracks, visible

    def verify(self, frames: Sequence[Frame], tracks: np.ndarray) -> np.ndarray:
        """Per-step forward-backward check of forward-only tracks (T, P, 2): the same
        test ``track_step`` applies, run only on the tracks the caller keeps."""
        tr = np.asarray(tracks, np.float32)
        ok = np.ones(tr.shape[1], bool)
        for t in range(1, len(frames)):
            idx = np.flatnonzero(ok)
            if idx.size == 0:
                break
            back, st = self._lk(frames[t], frames[t - 1],
                                np.ascontiguousarray(tr[t, idx]).reshape(-1, 1, 2))
            fb2 = np.sum((back.reshape(-1, 2) - tr[t - 1, idx]) ** 2, axis=1)
            ok[idx] = st & (fb2 <= self._fb2)
        return ok

    def candidates(self, frames: Sequence[Frame], queries: np.ndarray) -> np.ndarray:
        """Grid points whose lk_window neighbourhood changed by more than
        ``prefilter_gray`` (mean absolute grey difference) at some step.

        A point whose neighbourhood never changes between consecutive buffer
        frames did not move (its tracked motion would be ~0 < kappa), so the
        dense pass need not track it. 0 disables the prefilter.
        """
        q = np.asarray(queries, np.float32).reshape(-1, 2)
        if self._prefilter <= 0 or len(frames) < 2:
            return np.ones(q.shape[0], bool)
        w, h = frames[0].size
        xi = np.clip(np.round(q[:, 0]).astype(np.intp), 0, w - 1)
        yi = np.clip(np.round(q[:, 1]).astype(np.intp), 0, h - 1)
        best = np.zeros(q.shape[0], np.float32)
        diff = self._diff_buf if self._diff_buf is not None and self._diff_buf.shape == (h, w) \
            else np.empty((h, w), np.uint8)
        self._diff_buf = diff
        for t in range(1, len(frames)):
            cv2.absdiff(frames[t].gray, frames[t - 1].gray, dst=diff)
            box = cv2.blur(diff, self._win)  # uint8 box mean, rounding is harmless here
            np.maximum(best, box[yi, xi], out=best)
        return best > self._prefilter


_PYRAMIDS_OK: bool | None = None


def _pyramids_supported() -> bool:
    """Whether this OpenCV's Python binding takes prebuilt pyramids (probed once)."""
    global _PYRAMIDS_OK
    if _PYRAMIDS_OK is None:
        img = np.zeros((32, 32), np.uint8)
        _, pyr = cv2.buildOpticalFlowPyramid(img, (9, 9), 1, withDerivatives=True)
        try:
            cv2.calcOpticalFlowPyrLK(pyr, pyr, np.full((1, 1, 2), 8, np.float32), None,  # type: ignore[call-overload]
                                     winSize=(9, 9), maxLevel=1)
            _PYRAMIDS_OK = True
        except cv2.error:
            _PYRAMIDS_OK = False
    return _PYRAMIDS_OK


register_backend("lk", LKBackend)
