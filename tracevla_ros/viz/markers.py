"""What to draw for a 3D trace, independent of ROS message classes.

``polylines(xyz, valid)`` splits each point's track into runs of consecutive
valid steps (a step without a 3D position breaks the line, as an invisible step
breaks the overlay's polyline); ``trace_strokes`` adds the colour of each point,
the same as the 2D overlay's (``tracking.overlay.point_colors``), so rviz and
the image show one trace.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracevla_ros.tracking.overlay import point_colors

__all__ = ["Stroke", "polylines", "trace_strokes"]


@dataclass(frozen=True)
class Stroke:
    """One LINE_STRIP: ``points`` (P, 3) metres, P >= 2, or one head point (P = 1)."""

    point_index: int  # which traced point (colour)
    points: np.ndarray
    rgba: tuple[float, float, float, float]


def polylines(xyz: np.ndarray, valid: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(M, N, 3) and (M, N) -> [(m, (P, 3) run of >= 2 consecutive valid steps)], oldest first."""
    out: list[tuple[int, np.ndarray]] = []
    for m in range(xyz.shape[0]):
        run: list[int] = []
        for n in range(xyz.shape[1] + 1):
            if n < xyz.shape[1] and valid[m, n]:
                run.append(n)
                continue
            if len(run) >= 2:
                out.append((m, xyz[m, run]))
            run = []
    return out


def trace_strokes(xyz: np.ndarray, valid: np.ndarray,
                  alpha: float = 1.0) -> tuple[list[Stroke], list[Stroke]]:
    """Lines (runs) and heads (the newest valid position of each point) with overlay colours."""
    colors = [(r / 255.0, g / 255.0, b / 255.0, alpha) for r, g, b in point_colors(xyz.shape[0])]
    lines = [Stroke(m, pts, colors[m]) for m, pts in polylines(xyz, valid)]
    heads = []
    for m in range(xyz.shape[0]):
        idx = np.flatnonzero(valid[m])
        if idx.size:
            heads.append(Stroke(m, xyz[m, idx[-1]].reshape(1, 3), colors[m]))
    return lines, heads
