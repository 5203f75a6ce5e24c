"""``sim``: frames from an in-process renderer (e.g. the MuJoCo sim), no device.

Any object with the ``Renderer`` methods works; this module does not import
the simulator. Build it in-process: ``SimCamera(renderer)`` or
``make_camera(CameraConfig(backend="sim", ...), renderer=r)``.
"""

from __future__ import annotations

import time
from typing import Any, Protocol, runtime_checkable

import numpy as np

from tracevla_ros.camera import register_camera
from tracevla_ros.camera.base import Camera, CameraError, CameraIntrinsics, Pacer, check_rgb
from tracevla_ros.camera.config import CameraConfig
from tracevla_ros.config import ConfigError


@runtime_checkable
class Renderer(Protocol):
    """What SimCamera needs from a simulator."""

    def render(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB of the current state."""
        ...


@runtime_checkable
class DepthRenderer(Renderer, Protocol):
    def render_depth(self) -> np.ndarray:
        """(H, W) float metres (z-depth) aligned to ``render()``."""
        ...


@runtime_checkable
class IntrinsicsSource(Protocol):
    def camera_intrinsics(self) -> CameraIntrinsics:
        ...


@register_camera("sim")
class SimCamera(Camera):
    """Wraps ``renderer``; depth if it has ``render_depth`` and ``with_depth``.

    ``fps > 0`` paces reads; ``fps == 0`` renders on demand (the sim steps
    the clock itself).
    """

    def __init__(self, renderer: Any, with_depth: bool = True, fps: float = 0.0,
                 intrinsics: CameraIntrinsics | None = None) -> None:
        super().__init__()
        if not isinstance(renderer, Renderer):
            raise TypeError(f"SimCamera: renderer {type(renderer).__name__} has no render() method")
        self.renderer = renderer
        self.with_depth = with_depth and isinstance(renderer, DepthRenderer)
        self.fps = fps
        self._intrinsics = intrinsics
        self._pacer: Pacer | None = None

    @classmethod
    def from_config(cls, cfg: CameraConfig, renderer: Any = None, **_: Any) -> "SimCamera":
        if renderer is None:
            raise ConfigError("camera backend 'sim' needs an in-process renderer: "
                              "make_camera(cfg, renderer=sim) (it cannot be opened from parameters alone)")
        return cls(renderer, with_depth=cfg.enable_depth, fps=cfg.fps if cfg.realtime else 0.0)

    @property
    def description(self) -> str:
        return f"sim:{type(self.renderer).__name__}"

    @property
    def has_depth(self) -> bool:
        return self.with_depth

    def _open(self) -> None:
        if self._intrinsics is None and isinstance(self.renderer, IntrinsicsSource):
            self._intrinsics = self.renderer.camera_intrinsics()
        self._pacer = Pacer(self.fps) if self.fps > 0 else None

    def _grab(self) -> tuple[np.ndarray, np.ndarray | None, float, CameraIntrinsics | None]:
        if self._pacer is not None:
            self._pacer.wait()
        rgb = check_rgb(self.renderer.render(), self.description)
        depth = None
        if self.with_depth:
            depth = np.asarray(self.renderer.render_depth(), dtype=np.float32)  # type: ignore[attr-defined]
            if depth.shape != rgb.shape[:2]:
                raise CameraError(f"{self.description}: depth shape {depth.shape} != image "
                                  f"shape {rgb.shape[:2]}")
        return rgb, depth, time.time(), self._intrinsics

    def _close(self) -> None:
        self._pacer = None
