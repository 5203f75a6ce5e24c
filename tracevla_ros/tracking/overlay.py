"""Draw a visual trace on an observation (TraceVLA visual trace prompting).

One fixed colour per point (evenly spaced hues), polylines of width 2 through
the visible positions (oldest to newest; a segment touching an invisible step
is skipped), and an arrowhead at the newest position pointing along the last
visible motion. The input image is never modified: a new RGB array is returned.
"""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

from tracevla_ros.tracking.frames import check_image

__all__ = ["draw_trace", "point_colors"]

LINE_WIDTH = 2  # px, as the authors' renderer
ARROW_LENGTH_PX = 10.0  # arrowhead wing length, as the authors' renderer
_SHIFT = 4  # fractional bits: sub-pixel drawing
_SCALE = float(1 << _SHIFT)


def point_colors(num_points: int) -> list[tuple[int, int, int]]:
    """RGB colour of each point: hue i / (M + 1), full saturation and value (fixed per index)."""
    out = []
    for i in range(num_points):
        r, g, b = colorsys.hsv_to_rgb(i / (num_points + 1), 1.0, 1.0)
        out.append((int(round(r * 255)), int(round(g * 255)), int(round(b * 255))))
    return out


def _fixed(p: np.ndarray) -> tuple[int, int]:
    return int(round(float(p[0]) * _SCALE)), int(round(float(p[1]) * _SCALE))


def draw_trace(image: np.ndarray, points: np.ndarray, visible: np.ndarray,
               draw_length: int | None = None) -> np.ndarray:
    """Return a copy of ``image`` with the trace drawn on it.

    image: (H, W, 3) uint8 RGB or (H, W) uint8 grey (drawn on an RGB copy).
    points: (M, L, 2) float pixels, x right / y down, oldest first.
    visible: (M, L) bool; invisible positions are not drawn.
    draw_length: draw only the newest this-many positions (None: all L).
    """
    image = check_image(image)
    out = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 or image.shape[2] == 1 \
        else image.copy()
    pts = np.asarray(points, dtype=np.float64)
    vis = np.asarray(visible, dtype=bool)
    if pts.ndim != 3 or pts.shape[2] != 2 or vis.shape != pts.shape[:2]:
        raise ValueError(f"points must be (M, L, 2) and visible (M, L); got {pts.shape}, {vis.shape}")
    if draw_length is not None:
        pts, vis = pts[:, -draw_length:], vis[:, -draw_length:]
    for m, color in enumerate(point_colors(pts.shape[0])):
        p, v = pts[m], vis[m]
        # polylines through runs of consecutive visible positions
        run: list[tuple[int, int]] = []
        for n in range(p.shape[0] + 1):
            if n < p.shape[0] and v[n]:
                run.append(_fixed(p[n]))
                continue
            if len(run) >= 2:
                cv2.polylines(out, [np.array(run, np.int32)], False, color, LINE_WIDTH,
                              cv2.LINE_AA, _SHIFT)
            run = []
        if not v[-1]:
            continue
        prev = np.flatnonzero(v[:-1])
        head = p[-1]
        if prev.size and float(np.hypot(*(head - p[prev[-1]]))) > 1e-3:
            tail = p[prev[-1]]
            length = float(np.hypot(*(head - tail)))
            cv2.arrowedLine(out, _fixed(tail), _fixed(head), color, LINE_WIDTH, cv2.LINE_AA,
                            _SHIFT, tipLength=min(1.0, ARROW_LENGTH_PX / length))
        else:  # no motion to point along: mark the newest position
            cv2.circle(out, _fixed(head), 3 << _SHIFT, color, -1, cv2.LINE_AA, _SHIFT)
    return out
