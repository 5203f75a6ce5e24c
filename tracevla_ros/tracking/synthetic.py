"""Synthetic camera sequences with known ground-truth motion (tests, evaluation, benchmarks).

A static procedural-noise background, textured objects (rectangles and
ellipses with their own noise textures) moving along smooth known paths, an
optional static textured occluder bar that the movers pass behind, and
Gaussian camera noise. Everything is a function of time ``t`` (seconds), so a
30 Hz stream and a 5 Hz stream sample the *same* scene: ``render(t)`` is
identical for the same ``t`` (the noise is seeded by ``t``).

Geometry is given in fractions of the image size, so any resolution works.
Ground truth: a material point at ``q`` at time ``t0`` on object k is at
``q + offset_k(t) - offset_k(t0)`` at time ``t`` (background and occluder
points do not move); it is visible when the label map at ``t`` shows k there.

Example::

    scene = SyntheticScene.default(256, 256)
    frames, times = scene.sequence(fps=5.0, n_frames=60)
    tracks, visible, labels = scene.gt_tracks(points_at_t0, times[0], times)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

__all__ = ["MovingObject", "SyntheticScene", "noise_texture", "BACKGROUND", "OCCLUDER"]

BACKGROUND = 0  # label of the static background
OCCLUDER = 255  # label of the static occluder bar (drawn over the objects)


def noise_texture(height: int, width: int, rng: np.random.Generator, octaves: int = 6,
                  base_cells: int = 4, contrast: float = 1.0, persistence: float = 0.72
                  ) -> np.ndarray:
    """(H, W, 3) float32 in [0, 255]: fractal value noise tinted between random colours.

    Octave o adds bicubically upsampled random values on a (base_cells * 2^o)
    grid (capped at 1 cell per 2 px) with weight persistence^o: large blotches
    plus fine grain, like stone or fabric -- corner structure everywhere.
    """
    acc = np.zeros((height, width), np.float32)
    total = 0.0
    for o in range(octaves):
        cx = min(base_cells * (2 ** o), max(2, width // 2))
        cy = min(base_cells * (2 ** o), max(2, height // 2))
        small = rng.random((cy + 1, cx + 1)).astype(np.float32)
        wgt = persistence ** o
        acc += wgt * cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
        total += wgt
    acc = acc / total
    acc = (acc - acc.mean()) / (acc.std() + 1e-6)
    v = np.clip(0.5 + 0.22 * contrast * acc, 0.0, 1.0)[..., None]
    c0 = rng.uniform(20, 120, 3).astype(np.float32)
    c1 = rng.uniform(120, 240, 3).astype(np.float32)
    return (c0 * (1.0 - v) + c1 * v).astype(np.float32)


@dataclass(frozen=True)
class MovingObject:
    """A textured object; sizes/positions in fractions of the image, motion in fractions/s.

    offset(t) = velocity * t + amplitude * sin(omega * t + phase)
    """

    center: tuple[float, float]  # (x, y) at t = 0, fraction of (W, H)
    size: tuple[float, float]  # (w, h), fraction of (W, H)
    shape: str = "rect"  # "rect" | "ellipse"
    velocity: tuple[float, float] = (0.0, 0.0)
    amplitude: tuple[float, float] = (0.0, 0.0)
    omega: float = 0.0  # rad/s
    phase: float = 0.0  # rad
    texture_seed: int = 1

    @property
    def moving(self) -> bool:
        return any(v != 0.0 for v in self.velocity) or (
            self.omega != 0.0 and any(a != 0.0 for a in self.amplitude))

    def offset(self, t: float) -> tuple[float, float]:
        """Displacement since t = 0, fraction of (W, H)."""
        s = math.sin(self.omega * t + self.phase) - math.sin(self.phase)
        return (self.velocity[0] * t + self.amplitude[0] * s,
                self.velocity[1] * t + self.amplitude[1] * s)


@dataclass
class SyntheticScene:
    """A renderable scene; labels: 0 background, k (1-based) object k, 255 occluder."""

    width: int = 256
    height: int = 256
    objects: tuple[MovingObject, ...] = ()
    noise_sigma: float = 2.0  # camera noise, grey levels
    occluder: tuple[float, float, float, float] | None = None  # (x, y, w, h) fractions
    seed: int = 0
    _bg: np.ndarray = field(init=False, repr=False)
    _tex: list[tuple[np.ndarray, np.ndarray]] = field(init=False, repr=False)
    _occ: tuple[np.ndarray, tuple[int, int, int, int]] | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.width < 16 or self.height < 16:
            raise ValueError(f"scene must be at least 16x16 px, got {self.width}x{self.height}")
        rng = np.random.default_rng(self.seed)
        self._bg = noise_texture(self.height, self.width, rng, contrast=0.9)
        self._tex = []
        for ob in self.objects:
            w = max(4, int(round(ob.size[0] * self.width)))
            h = max(4, int(round(ob.size[1] * self.height)))
            tex = noise_texture(h, w, np.random.default_rng(1000 + ob.texture_seed), base_cells=3,
                                contrast=1.3)
            mask = np.zeros((h, w), np.float32)
            if ob.shape == "ellipse":
                cv2.ellipse(mask, (w // 2, h // 2), (w // 2 - 1, h // 2 - 1), 0, 0, 360, 1.0, -1)
            elif ob.shape == "rect":
                mask[:] = 1.0
            else:
                raise ValueError(f"unknown object shape '{ob.shape}' (rect, ellipse)")
            self._tex.append((tex, mask))
        self._occ = None
        if self.occluder is not None:
            fx, fy, fw, fh = self.occluder
            box = (int(fx * self.width), int(fy * self.height),
                   max(1, int(fw * self.width)), max(1, int(fh * self.height)))
            tex = noise_texture(box[3], box[2], np.random.default_rng(self.seed + 77), contrast=1.2)
            self._occ = (tex, box)

    @classmethod
    def default(cls, width: int = 256, height: int = 256, noise_sigma: float = 2.0,
                occluder: bool = False, seed: int = 0) -> "SyntheticScene":
        """Two movers (a rectangle and an ellipse, ~12% of the image), one static box.

        Peak speeds ~0.14 and ~0.12 image widths/s: ~7 px per 5 Hz policy step
        at 256 px, ~1.2 px per 30 Hz camera frame. With ``occluder`` a static
        bar crosses the rectangle's path.
        """
        objects = (
            MovingObject(center=(0.33, 0.35), size=(0.26, 0.22), shape="rect",
                         amplitude=(0.16, 0.06), omega=0.9, texture_seed=1),
            MovingObject(center=(0.66, 0.68), size=(0.24, 0.24), shape="ellipse",
                         amplitude=(-0.08, 0.14), omega=0.8, phase=1.0, texture_seed=2),
            MovingObject(center=(0.80, 0.20), size=(0.18, 0.14), shape="rect", texture_seed=3),
        )
        occ = (0.44, 0.05, 0.07, 0.62) if occluder else None
        return cls(width=width, height=height, objects=objects, noise_sigma=noise_sigma,
                   occluder=occ, seed=seed)

    @property
    def moving_labels(self) -> frozenset[int]:
        return frozenset(k + 1 for k, ob in enumerate(self.objects) if ob.moving)

    def _offset_px(self, k: int, t: float) -> tuple[float, float]:
        dx, dy = self.objects[k].offset(t)
        return dx * self.width, dy * self.height

    def render(self, t: float, noise: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(image (H, W, 3) uint8 RGB, labels (H, W) uint8) at time ``t`` seconds."""
        img = self._bg.copy()
        labels = np.zeros((self.height, self.width), np.uint8)
        for k, (ob, (tex, mask)) in enumerate(zip(self.objects, self._tex)):
            h, w = mask.shape
            ox, oy = self._offset_px(k, t)
            # top-left so that the texture centre lands on centre + offset (pixel centres)
            tx = ob.center[0] * self.width + ox - (w - 1) / 2.0
            ty = ob.center[1] * self.height + oy - (h - 1) / 2.0
            m = np.array([[1.0, 0.0, tx], [0.0, 1.0, ty]], np.float32)
            wt = cv2.warpAffine(tex, m, (self.width, self.height), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT)
            wm = cv2.warpAffine(mask, m, (self.width, self.height), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT)[..., None]
            img = img * (1.0 - wm) + wt * wm
            labels[wm[..., 0] > 0.5] = k + 1
        if self._occ is not None:
            tex, (x, y, w, h) = self._occ
            x1, y1 = min(self.width, x + w), min(self.height, y + h)
            img[y:y1, x:x1] = tex[: y1 - y, : x1 - x]
            labels[y:y1, x:x1] = OCCLUDER
        if noise and self.noise_sigma > 0:
            rng = np.random.default_rng((self.seed * 1_000_003 + int(round(t * 1e6))) & 0xFFFFFFFF)
            img = img + rng.normal(0.0, self.noise_sigma, img.shape).astype(np.float32)
        return np.clip(img + 0.5, 0, 255).astype(np.uint8), labels

    def labels(self, t: float) -> np.ndarray:
        """(H, W) uint8 label map at time t."""
        return self.render(t, noise=False)[1]

    def sequence(self, fps: float, n_frames: int, t0: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """frames (T, H, W, 3) uint8 at times t0 + i / fps, and times (T,) float64 seconds."""
        times = t0 + np.arange(n_frames, dtype=np.float64) / fps
        frames = np.stack([self.render(float(t))[0] for t in times])
        return frames, times

    def gt_tracks(self, points: np.ndarray, t0: float, times: np.ndarray,
                  label_cache: dict[float, np.ndarray] | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ground truth for material points at ``points`` (P, 2) px at time ``t0``.

        Returns tracks (T, P, 2) float32 px at ``times``, visible (T, P) bool
        (in the image and not hidden by another object or the occluder), and
        labels (P,) the label each point lies on at t0.
        """
        cache = label_cache if label_cache is not None else {}

        def lab(t: float) -> np.ndarray:
            if t not in cache:
                cache[t] = self.labels(t)
            return cache[t]

        pts = np.asarray(points, np.float64).reshape(-1, 2)
        l0 = lab(float(t0))
        xi = np.clip(np.round(pts[:, 0]).astype(int), 0, self.width - 1)
        yi = np.clip(np.round(pts[:, 1]).astype(int), 0, self.height - 1)
        labels0 = l0[yi, xi].astype(np.int64)
        tracks = np.empty((len(times), pts.shape[0], 2), np.float32)
        visible = np.zeros((len(times), pts.shape[0]), bool)
        for i, t in enumerate(times):
            shift = np.zeros_like(pts)
            for k in range(len(self.objects)):
                sel = labels0 == k + 1
                if sel.any():
                    ax, ay = self._offset_px(k, float(t))
                    bx, by = self._offset_px(k, float(t0))
                    shift[sel] = (ax - bx, ay - by)
            p = pts + shift
            tracks[i] = p
            inside = (p[:, 0] >= 0) & (p[:, 0] <= self.width - 1) & (p[:, 1] >= 0) & (
                p[:, 1] <= self.height - 1)
            lt = lab(float(t))
            xi = np.clip(np.round(p[:, 0]).astype(int), 0, self.width - 1)
            yi = np.clip(np.round(p[:, 1]).astype(int), 0, self.height - 1)
            visible[i] = inside & (lt[yi, xi] == labels0)
        return tracks, visible, labels0
