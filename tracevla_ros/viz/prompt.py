"""Visual prompts for people (no rclpy): a 3D click into the image, and prompts drawn on it.

* ``project_point(p, intr, extrinsic)`` -- a 3D point (robot base frame, or the camera
  optical frame with ``extrinsic=None``) to pixels of the camera image, through the
  static camera extrinsic (p_cam = R^T (p_base - t)), the pinhole K and the lens
  distortion of the CameraInfo (plumb_bob / rational_polynomial with OpenCV's model,
  equidistant with its fisheye model); ``ProjectionError`` when the point is behind
  the camera or lands outside the image.
* ``click_prompt(p, intr, extrinsic, stamp)`` -- that pixel as a one-point ``VisualPrompt``.
* ``draw_prompt(image, prompt)`` -- a copy of an RGB image with the prompt drawn: each
  point a filled disc (radius ``POINT_RADIUS`` px) in a dark ring, lines and boxes
  2 px wide, the mask as a translucent tint, labels as text. For the user-facing
  picture only: the trace overlay a policy takes as input never shows prompts.

Pixels follow OpenCV (x right, y down, pixel centres at integers); a prompt's
normalized x = u / width, y = v / height (``tracevla_ros.policy.prompt``).
"""

from __future__ import annotations

import cv2
import numpy as np

from tracevla_ros.camera.base import CameraIntrinsics
from tracevla_ros.policy.prompt import PromptError, VisualPrompt
from tracevla_ros.viz.lift import CameraExtrinsic

__all__ = ["ProjectionError", "project_point", "click_prompt", "draw_prompt", "POINT_RADIUS",
           "PROMPT_RGB", "MASK_ALPHA"]

POINT_RADIUS = 5  # px, disc of a prompt point (ring: 2 px more)
_RING = 2  # px, dark outline around a point, visible on bright and dark images alike
PROMPT_RGB = (255, 0, 255)  # magenta: not one of the trace overlay's colours
_RING_RGB = (0, 0, 0)
MASK_ALPHA = 0.35  # tint weight of the mask colour


class ProjectionError(PromptError):
    """A 3D point has no pixel in the camera image (behind it, or outside the image)."""


def project_point(point: np.ndarray, intr: CameraIntrinsics,
                  extrinsic: CameraExtrinsic | None) -> tuple[float, float]:
    """(3,) metres -> (u, v) px of ``intr``'s image; ``extrinsic`` None = already optical frame."""
    p = np.asarray(point, np.float64).reshape(3)
    if not np.all(np.isfinite(p)):
        raise ProjectionError(f"point {p.tolist()} is not finite")
    cam = p if extrinsic is None else extrinsic.rotation.T @ (p - extrinsic.translation)
    if cam[2] <= 1e-6:
        raise ProjectionError(f"point is behind the camera (z = {cam[2]:.3f} m in the optical frame)")
    obj = cam.reshape(1, 1, 3)
    zero = np.zeros(3)
    coeffs = np.asarray(intr.coeffs, np.float64)
    if intr.distortion_model == "equidistant" and coeffs.size == 4:
        uv, _ = cv2.fisheye.projectPoints(obj, zero, zero, intr.k, coeffs)
    elif intr.distortion_model in ("plumb_bob", "rational_polynomial") and coeffs.size:
        uv, _ = cv2.projectPoints(obj, zero, zero, intr.k, coeffs)
    else:  # none (rectified / simulated), or a model OpenCV does not know: pinhole only
        uv = (intr.k @ cam)[:2] / cam[2]
    u, v = (float(x) for x in np.asarray(uv, np.float64).ravel()[:2])
    if not (0.0 <= u < intr.width and 0.0 <= v < intr.height):
        raise ProjectionError(f"point projects to pixel ({u:.1f}, {v:.1f}), outside the "
                              f"{intr.width}x{intr.height} image")
    return u, v


def click_prompt(point: np.ndarray, intr: CameraIntrinsics, extrinsic: CameraExtrinsic | None,
                 stamp: float, label: str = "") -> VisualPrompt:
    """A one-point prompt at the pixel of ``point`` (see ``project_point``)."""
    u, v = project_point(point, intr, extrinsic)
    return VisualPrompt(points=np.array([[u / intr.width, v / intr.height]], np.float32),
                        image_size=(intr.width, intr.height), stamp=stamp,
                        labels=(label,) if label else ())


def _disc(out: np.ndarray, u: float, v: float, radius: float, rgb: tuple[int, int, int]) -> None:
    h, w = out.shape[:2]
    r = int(np.ceil(radius))
    cu, cv_ = int(round(u)), int(round(v))
    y0, y1, x0, x1 = max(0, cv_ - r), min(h, cv_ + r + 1), max(0, cu - r), min(w, cu + r + 1)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    inside = (xx - cu) ** 2 + (yy - cv_) ** 2 <= radius * radius
    out[y0:y1, x0:x1][inside] = rgb


def draw_prompt(image: np.ndarray, prompt: VisualPrompt | None) -> np.ndarray:
    """A copy of ``image`` ((H, W, 3) uint8 RGB) with ``prompt`` drawn (unchanged if None)."""
    out = np.array(image, np.uint8, copy=True)
    if prompt is None:
        return out
    h, w = out.shape[:2]
    colour = np.array(PROMPT_RGB, np.float32)
    if prompt.mask is not None:
        m = prompt.mask
        if m.shape != (h, w):
            m = cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        out[m] = np.round(out[m] * (1.0 - MASK_ALPHA) + colour * MASK_ALPHA).astype(np.uint8)
    for x0, y0, x1, y1 in prompt.pixel_lines(w, h):
        cv2.line(out, (int(round(x0)), int(round(y0))), (int(round(x1)), int(round(y1))),
                 PROMPT_RGB, 2, cv2.LINE_AA)
    for x0, y0, x1, y1 in prompt.pixel_boxes(w, h):
        cv2.rectangle(out, (int(round(x0)), int(round(y0))), (int(round(x1)), int(round(y1))),
                      PROMPT_RGB, 2, cv2.LINE_AA)
    for u, v in prompt.pixel_points(w, h):
        _disc(out, u, v, POINT_RADIUS + _RING, _RING_RGB)
        _disc(out, u, v, POINT_RADIUS, PROMPT_RGB)
    anchors = ([tuple(p) for p in prompt.pixel_points(w, h)]
               + [tuple(seg[:2]) for seg in prompt.pixel_lines(w, h)]
               + [tuple(box[:2]) for box in prompt.pixel_boxes(w, h)])
    for text, (u, v) in zip(prompt.labels, anchors):
        if text:
            cv2.putText(out, text, (int(u) + POINT_RADIUS + 3, max(10, int(v) - 4)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.4, PROMPT_RGB, 1, cv2.LINE_AA)
    return out
