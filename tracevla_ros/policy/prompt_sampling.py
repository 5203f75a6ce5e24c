"""Visual prompts sampled from a segmentation mask, as PixelVLA annotates them (no rclpy).

PixelVLA's automatic annotation turns the target object's mask into prompts of four
kinds; :func:`sample_prompt` does the same for one (H, W) bool mask:

* ``point``: 1-3 points drawn uniformly from the mask's pixels;
* ``line``: one segment between two mask pixels whose every sample lies in the mask
  (a line inside the region; after 20 tries a zero-length segment on one mask pixel);
* ``box``: the bounding box of the mask (= of its outer contour);
* ``mask``: the mask itself.

Coordinates follow :class:`VisualPrompt`: x = column / width, y = row / height, so
``prompt.pixel_points()`` returns the pixel columns/rows that were drawn. An empty
mask (the target not visible) gives ``None`` = no prompt.

    rng = np.random.default_rng(0)
    p = sample_prompt(mask, "point", rng)      # VisualPrompt(points=(n, 2))
"""

from __future__ import annotations

import numpy as np

from tracevla_ros.policy.prompt import PROMPT_KINDS, PromptError, VisualPrompt

__all__ = ["sample_prompt", "mask_box", "episode_rng"]

_LINE_TRIES = 20
_LINE_SAMPLES = 16


def episode_rng(seed: int) -> np.random.Generator:
    """The oracle prompt's sampler for the episode of ``seed`` (sim_node and the bench draw
    the same points and lines for the same episode)."""
    return np.random.default_rng([seed, 0x9B0])


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(col_min, row_min, col_max, row_max) of the mask's pixels, None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def sample_prompt(mask: np.ndarray, kind: str, rng: np.random.Generator,
                  stamp: float = 0.0) -> VisualPrompt | None:
    """One prompt of ``kind`` (``PROMPT_KINDS``) for the (H, W) bool ``mask``; None if empty."""
    if kind not in PROMPT_KINDS:
        raise PromptError(f"prompt kind {kind!r}: choose one of {PROMPT_KINDS}")
    m = np.asarray(mask, bool)
    if m.ndim != 2 or m.size == 0:
        raise PromptError(f"mask must be (H, W), got shape {m.shape}")
    h, w = m.shape
    rows, cols = np.nonzero(m)
    if rows.size == 0:
        return None
    scale = np.array([w, h], np.float64)
    size = (w, h)
    if kind == "mask":
        return VisualPrompt(mask=m, image_size=size, stamp=stamp)
    if kind == "box":
        c0, r0, c1, r1 = mask_box(m)  # type: ignore[misc]
        return VisualPrompt(boxes=np.array([[c0 / w, r0 / h, c1 / w, r1 / h]]), image_size=size,
                            stamp=stamp)
    if kind == "point":
        n = int(rng.integers(1, 4))
        pick = rng.integers(0, rows.size, n)
        pts = np.stack([cols[pick], rows[pick]], axis=1) / scale
        return VisualPrompt(points=pts, image_size=size, stamp=stamp)
    # line: both ends in the mask and every sample along it too
    t = np.linspace(0.0, 1.0, _LINE_SAMPLES)
    for _ in range(_LINE_TRIES):
        a, b = rng.integers(0, rows.size, 2)
        cs = np.rint(cols[a] + t * (cols[b] - cols[a])).astype(int)
        rs = np.rint(rows[a] + t * (rows[b] - rows[a])).astype(int)
        if m[rs, cs].all():
            break
    else:
        b = a
    seg = np.array([[cols[a] / w, rows[a] / h, cols[b] / w, rows[b] / h]])
    return VisualPrompt(lines=seg, image_size=size, stamp=stamp)
