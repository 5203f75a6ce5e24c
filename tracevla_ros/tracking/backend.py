"""The one point-tracker interface every backend implements, and the backend registry.

Coordinates: pixels, x right / y down, centre of the top-left pixel at (0, 0).
"""

from __future__ import annotations

import abc
from typing import Callable, Sequence

import numpy as np

from tracevla_ros.tracking.config import TrackerConfig
from tracevla_ros.tracking.frames import Frame

__all__ = ["PointTrackerBackend", "register_backend", "make_backend", "BACKENDS"]


class PointTrackerBackend(abc.ABC):
    """Dense tracking over a short clip, and incremental tracking frame to frame."""

    #: name reported in VisualTrace.tracker
    name: str = "?"
    #: whether ``Frame.color`` must be kept (False: grey is enough)
    needs_color: bool = False

    @abc.abstractmethod
    def track(self, frames: Sequence[Frame], queries: np.ndarray,
              fb_check: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Track ``queries`` from ``frames[0]`` through all ``frames``.

        queries: (P, 2) float32 pixels in frames[0].
        Returns tracks (T, P, 2) float32 pixels and visible (T, P) bool, with
        T = len(frames); tracks[0] == queries. A point not visible at a step
        carries its last estimate. ``fb_check=False`` lets a backend skip its
        own consistency checks (the caller then runs ``verify`` on the few
        tracks it keeps).
        """

    def verify(self, frames: Sequence[Frame], tracks: np.ndarray) -> np.ndarray:
        """(P,) bool: tracks (T, P, 2) from ``track(..., fb_check=False)`` that pass the
        checks ``fb_check=True`` would have applied. Default: all pass."""
        return np.ones(np.asarray(tracks).shape[1], bool)

    def candidates(self, frames: Sequence[Frame], queries: np.ndarray) -> np.ndarray:
        """(P,) bool: queries that may have moved over ``frames`` (cheap prefilter before
        dense tracking; a False point must be certain to be static). Default: all."""
        return np.ones(np.asarray(queries).reshape(-1, 2).shape[0], bool)

    @abc.abstractmethod
    def track_step(self, prev: Frame, frame: Frame, points: np.ndarray,
                   fb_check: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Move ``points`` (P, 2) float32 from ``prev`` to ``frame``.

        Returns (P, 2) float32 new positions and (P,) bool visible (False: lost
        or left the image; the position is then the input position).
        ``fb_check=False``: skip the consistency check (``verify`` later).
        """

    def keep(self, frames: Sequence[Frame], tracks: np.ndarray,  # noqa: B027 - optional hook
             visible: np.ndarray) -> None:
        """The tracker keeps these dense tracks (N, M, 2) / (N, M) over ``frames`` and will
        move their newest positions with ``track_step``; a backend with state per query
        set (CoTracker3's online session) starts it here. Default: nothing."""

    def prepare(self, frame: Frame) -> None:  # noqa: B027 - optional hook
        """Precompute per-frame data (cached in ``frame.cache``); optional."""


BACKENDS: dict[str, Callable[[TrackerConfig], PointTrackerBackend]] = {}


def register_backend(name: str, factory: Callable[[TrackerConfig], PointTrackerBackend]) -> None:
    """Make ``TrackerConfig(backend=name)`` build ``factory(config)``."""
    BACKENDS[name] = factory


def make_backend(config: TrackerConfig, name: str | None = None) -> PointTrackerBackend:
    """The backend ``name`` (default ``config.backend``) names (imports it lazily)."""
    # Importing the modules registers them; cotracker's import of torch is lazy too.
    from tracevla_ros.tracking import cotracker, lk  # noqa: F401

    try:
        factory = BACKENDS[name or config.backend]
    except KeyError:
        raise ValueError(f"unknown tracker backend '{name or config.backend}'; "
                         f"available: {sorted(BACKENDS)}") from None
    return factory(config)
