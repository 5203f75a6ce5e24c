"""CoTracker3 backend (the official ``cotracker`` package, online predictor, local checkpoint).

Requires ``torch`` and the ``cotracker`` package (facebookresearch/co-tracker,
``pip install -e .`` of a clone) and a CoTracker3 *online* checkpoint on disk
(``TrackerConfig.cotracker_checkpoint``, e.g. ``scaled_online.pth``). Nothing
is ever downloaded: a missing path raises ``CheckpointMissingError`` naming it.

``CoTrackerOnlinePredictor`` processes windows of ``window_len=16`` frames in
steps of ``step=8`` and takes queries as (t, x, y) pixels; it keeps state that
grows with the video, so it is re-initialised (``is_first_step=True``) for
every clip. A clip shorter than the window (the N=6..10 frame buffer) is padded
by repeating its last frame; only the first T outputs are returned.
``track_step`` runs the same model on the two-frame clip [prev, frame]: correct
but expensive, so with this backend prefer ``observe_rate_hz = 0``.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from tracevla_ros.tracking.backend import PointTrackerBackend, register_backend
from tracevla_ros.tracking.config import TrackerConfig
from tracevla_ros.tracking.frames import Frame

__all__ = ["CoTrackerBackend", "CheckpointMissingError", "BackendUnavailableError"]

WINDOW_LEN = 16  # CoTracker3 online window (frames)


class BackendUnavailableError(ImportError):
    """A backend's Python package is not installed."""


class CheckpointMissingError(FileNotFoundError):
    """The configured checkpoint file does not exist."""


class CoTrackerBackend(PointTrackerBackend):
    """CoTracker3 online predictor on RGB clips."""

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
        self._model = CoTrackerOnlinePredictor(checkpoint=path, window_len=WINDOW_LEN)
        self._model = self._model.to(self._device).eval()

    def _clip(self, frames: Sequence[Frame]) -> Any:
        for f in frames:
            if f.color is None:
                raise ValueError("cotracker3 needs colour frames (Frame.color is None)")
        arr = np.stack([f.color for f in frames if f.color is not None])  # (T, H, W, 3)
        if arr.shape[0] < WINDOW_LEN:
            pad = np.repeat(arr[-1:], WINDOW_LEN - arr.shape[0], axis=0)
            arr = np.concatenate([arr, pad], axis=0)
        video = self._torch.from_numpy(arr).permute(0, 3, 1, 2)[None].float()
        return video.to(self._device)  # (1, T', 3, H, W) float 0..255

    def track(self, frames: Sequence[Frame], queries: np.ndarray,
              fb_check: bool = True) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        t_len = len(frames)
        q = np.asarray(queries, np.float32).reshape(-1, 2)
        video = self._clip(frames)
        q3 = np.concatenate([np.zeros((q.shape[0], 1), np.float32), q], axis=1)  # (t, x, y)
        qt = torch.from_numpy(q3)[None].to(self._device)
        model = self._model
        step = int(model.step)
        tracks_t = vis_t = None
        with torch.no_grad():
            model(video_chunk=video[:, :0 + 2 * step], is_first_step=True, queries=qt)
            for ind in range(0, video.shape[1] - step, step):
                tracks_t, vis_t = model(video_chunk=video[:, ind: ind + 2 * step])
        if tracks_t is None or vis_t is None:
            raise RuntimeError("cotracker returned no tracks (clip shorter than one step?)")
        tracks = tracks_t[0, :t_len].cpu().numpy().astype(np.float32)  # (T, P, 2)
        visible = vis_t[0, :t_len].cpu().numpy().astype(bool).reshape(t_len, -1)
        tracks[0] = q
        visible[0] = True
        return tracks, visible

    def track_step(self, prev: Frame, frame: Frame, points: np.ndarray,
                   fb_check: bool = True) -> tuple[np.ndarray, np.ndarray]:
        p = np.asarray(points, np.float32).reshape(-1, 2)
        if p.shape[0] == 0:
            return np.zeros((0, 2), np.float32), np.zeros(0, bool)
        tracks, visible = self.track([prev, frame], p)
        w, h = frame.size
        new = tracks[1]
        ok = visible[1] & (new[:, 0] >= 0) & (new[:, 0] <= w - 1) & (new[:, 1] >= 0) & (new[:, 1] <= h - 1)
        return np.where(ok[:, None], new, p).astype(np.float32), ok


register_backend("cotracker3", CoTrackerBackend)
