"""Incremental point tracking for TraceVLA visual trace prompting (no rclpy).

* ``TrackerConfig`` / ``PRESETS`` -- parameters, "paper" and "authors" presets;
* ``IncrementalTracker`` -- ``observe(image, stamp)`` at camera rate,
  ``step()`` per policy step -> ``TraceResult``;
* ``PointTrackerBackend`` -- the backend interface; ``lk`` (OpenCV, default)
  and ``cotracker3`` (official package, local checkpoint);
* ``draw_trace`` -- the overlay renderer;
* ``synthetic`` -- textured scenes with known motion, for tests and benchmarks.

Example::

    from tracevla_ros.tracking import IncrementalTracker, TrackerConfig
    tracker = IncrementalTracker(TrackerConfig(preset="paper"))
    for image, stamp in camera_at_5hz:
        result = tracker.process(image, stamp)      # observe + step
        if result is not None and result.valid:
            prompt_image = result.overlay(image)
"""

from tracevla_ros.tracking.backend import PointTrackerBackend, make_backend, register_backend
from tracevla_ros.tracking.config import DEFAULT_PRESET, PRESETS, TrackerConfig
from tracevla_ros.tracking.frames import (
    EmptyFrameError,
    Frame,
    TrackerInputError,
    UnsupportedEncodingError,
    decode_image,
    encode_image,
)
from tracevla_ros.tracking.overlay import draw_trace, point_colors
from tracevla_ros.tracking.tracker import IncrementalTracker, NoNewFrameError, TraceResult

__all__ = [
    "DEFAULT_PRESET",
    "EmptyFrameError",
    "Frame",
    "IncrementalTracker",
    "NoNewFrameError",
    "PRESETS",
    "PointTrackerBackend",
    "TraceResult",
    "TrackerConfig",
    "TrackerInputError",
    "UnsupportedEncodingError",
    "decode_image",
    "draw_trace",
    "encode_image",
    "make_backend",
    "point_colors",
    "register_backend",
]
