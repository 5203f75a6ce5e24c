"""The affordance node's logic as plain Python (no rclpy): requests, supersession, outputs.

    reqs = AffordanceRequests()
    n = reqs.submit("point to the red cube")   # a new request supersedes the pending one
    req = reqs.take()                           # the worker takes the newest (or None)
    ...                                         # run the backend
    reqs.current(req)                           # False: superseded while it ran, drop it

``prompt_from_result`` turns an answer into the PixelVLA ``VisualPrompt`` (None
with a reason when there are no usable points); ``draw_points`` is the overlay.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from tracevla_ros.affordance.backend import AffordanceResult
from tracevla_ros.policy.prompt import PromptError, VisualPrompt

__all__ = ["Request", "AffordanceRequests", "prompt_from_result", "draw_points"]


@dataclass(frozen=True)
class Request:
    number: int  # increasing; the newest request is the one that counts
    instruction: str


class AffordanceRequests:
    """The newest pending request; thread-safe, O(1)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._pending: Request | None = None

    def submit(self, instruction: str) -> Request:
        with self._lock:
            self._count += 1
            self._pending = Request(self._count, instruction)
            return self._pending

    def take(self) -> Request | None:
        with self._lock:
            req, self._pending = self._pending, None
            return req

    def put_back(self, req: Request) -> None:
        """A request that could not run yet (no image): pending again unless superseded."""
        with self._lock:
            if self._pending is None and req.number == self._count:
                self._pending = req

    def current(self, req: Request) -> bool:
        with self._lock:
            return req.number == self._count


def prompt_from_result(result: AffordanceResult, width: int, height: int,
                       stamp: float, max_points: int = 0) -> tuple[VisualPrompt | None, str]:
    """(prompt, "") or (None, why no prompt); with ``max_points`` > 0 only that many points,
    the best scored first (in the answer's order without one score per point)."""
    points = np.asarray(result.points, np.float64).reshape(-1, 2)
    if len(points) == 0:
        return None, "; ".join(result.warnings) or "the answer has no points"
    if 0 < max_points < len(points):
        scores = np.asarray(result.scores, np.float64).reshape(-1)
        order = (np.argsort(-scores, kind="stable") if scores.shape == (len(points),)
                 else np.arange(len(points)))
        points = points[order[:max_points]]
    try:
        return VisualPrompt(points=points, image_size=(width, height), stamp=stamp), ""
    except PromptError as exc:
        return None, str(exc)


def draw_points(image: np.ndarray, points: np.ndarray, radius: int = 3) -> np.ndarray:
    """A copy of ``image`` (H, W, 3) uint8 with each normalized point drawn as a green disc
    with a dark rim."""
    out = image.copy()
    h, w = out.shape[:2]
    yy, xx = np.mgrid[-radius - 1:radius + 2, -radius - 1:radius + 2]
    d = np.hypot(xx, yy)
    for x, y in np.asarray(points, np.float64).reshape(-1, 2):
        cx, cy = int(x * w), int(y * h)
        for colour, sel in (((20, 20, 20), d <= radius + 1), ((40, 255, 60), d <= radius)):
            py, px = cy + yy[sel], cx + xx[sel]
            ok = (px >= 0) & (px < w) & (py >= 0) & (py < h)
            out[py[ok], px[ok]] = colour
    return out
