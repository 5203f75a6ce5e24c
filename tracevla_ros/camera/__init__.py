"""Camera drivers behind one small interface (no rclpy).

    from tracevla_ros.camera import CameraConfig, make_camera
    with make_camera(CameraConfig(backend="folder", path="frames/")) as cam:
        frame = cam.read()          # Frame: rgb (H, W, 3) uint8, depth (H, W) m or None, ...

Backends are registered by name: adding a backend is adding a file
``tracevla_ros/camera/<name>.py`` whose ``Camera`` subclass is decorated with
``@register_camera("<name>")`` and has ``from_config(cfg, **resources)``.
``make_camera`` imports that module on first use, so optional dependencies
(``pyrealsense2``) are only needed by the backend that uses them.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable, TypeVar

from tracevla_ros.camera.base import (
    Camera,
    CameraError,
    CameraIntrinsics,
    CameraNotFoundError,
    CameraOpenError,
    CameraTimeoutError,
    EndOfStreamError,
    Frame,
    NoFrameError,
    depth_to_mm16,
    mm16_to_depth,
)
from tracevla_ros.config import ConfigError

__all__ = [
    "Camera",
    "CameraConfig",
    "CameraError",
    "CameraIntrinsics",
    "CameraNotFoundError",
    "CameraOpenError",
    "CameraTimeoutError",
    "EndOfStreamError",
    "Frame",
    "NoFrameError",
    "available_backends",
    "depth_to_mm16",
    "make_camera",
    "mm16_to_depth",
    "register_camera",
]

_NOT_BACKENDS = {"base", "config"}
_REGISTRY: dict[str, type[Camera]] = {}
C = TypeVar("C", bound=type[Camera])


def register_camera(name: str) -> Callable[[C], C]:
    """Class decorator: make a Camera subclass available as backend ``name``."""

    def deco(cls: C) -> C:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"camera backend '{name}' registered twice")
        cls.backend_name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def available_backends() -> list[str]:
    """Backend names: one per module file in this package (sorted)."""
    here = Path(__file__).resolve().parent
    return sorted(p.stem for p in here.glob("*.py")
                  if not p.stem.startswith("_") and p.stem not in _NOT_BACKENDS)


def backend_class(name: str) -> type[Camera]:
    """The Camera class registered as ``name``, importing its module if needed."""
    if name not in _REGISTRY:
        if name not in available_backends():
            raise ConfigError(f"unknown camera backend '{name}'; available: {available_backends()}")
        importlib.import_module(f"{__name__}.{name}")
    if name not in _REGISTRY:
        raise ConfigError(f"module tracevla_ros.camera.{name} does not register a backend "
                          f"'{name}' (decorate its class with @register_camera('{name}'))")
    return _REGISTRY[name]


def make_camera(cfg: "CameraConfig", **resources: Any) -> Camera:
    """Build (not connect) the backend ``cfg.backend`` from ``cfg``.

    ``resources`` are in-process objects some backends need (``sim``: ``renderer``).
    """
    cls = backend_class(cfg.backend)
    from_config = getattr(cls, "from_config")
    camera: Camera = from_config(cfg, **resources)
    return camera


from tracevla_ros.camera.config import CameraConfig  # noqa: E402  (imports available_backends)
