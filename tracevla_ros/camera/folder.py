"""``folder``: a directory of images (sorted PNG/JPG names), paced and looped."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tracevla_ros.camera import register_camera
from tracevla_ros.camera.base import (
    Camera,
    CameraIntrinsics,
    CameraNotFoundError,
    CameraOpenError,
    EndOfStreamError,
    Pacer,
)
from tracevla_ros.camera.config import CameraConfig, config_intrinsics

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@register_camera("folder")
class FolderCamera(Camera):
    """Images of ``path`` in name order (``sorted``), one per ``read()``."""

    def __init__(self, path: str, fps: float = 30.0, loop: bool = True, realtime: bool = True,
                 intrinsics: CameraIntrinsics | None = None,
                 config: CameraConfig | None = None) -> None:
        super().__init__()
        self.path, self.fps, self.loop, self.realtime = str(path), fps, loop, realtime
        self._intrinsics = intrinsics
        self._config = config
        self.files: list[Path] = []
        self._index = 0
        self._pacer: Pacer | None = None

    @classmethod
    def from_config(cls, cfg: CameraConfig, **_: Any) -> "FolderCamera":
        return cls(path=cfg.path, fps=cfg.fps, loop=cfg.loop, realtime=cfg.realtime, config=cfg)

    @property
    def description(self) -> str:
        return f"folder:{self.path}"

    def _open(self) -> None:
        root = Path(self.path)
        if not root.is_dir():
            raise CameraNotFoundError(f"folder camera: '{self.path}' is not a directory (check 'path')")
        self.files = sorted(p for p in root.iterdir()
                            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise CameraOpenError(f"folder camera: '{self.path}' holds no {'/'.join(IMAGE_SUFFIXES)} "
                                  f"images")
        self._index = 0
        self._pacer = Pacer(self.fps) if self.realtime else None

    def _grab(self) -> tuple[np.ndarray, np.ndarray | None, float, CameraIntrinsics | None]:
        if self._index >= len(self.files):
            if not self.loop:
                raise EndOfStreamError(f"folder camera: all {len(self.files)} images of "
                                       f"'{self.path}' read (loop is off)")
            self._index = 0
        file = self.files[self._index]
        self._index += 1
        bgr = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if bgr is None:
            raise CameraOpenError(f"folder camera: cannot decode image '{file}'")
        if self._pacer is not None:
            self._pacer.wait()
        stamp = time.time()
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if self._intrinsics is None and self._config is not None:
            self._intrinsics = config_intrinsics(self._config, rgb.shape[1], rgb.shape[0])
        return rgb, None, stamp, self._intrinsics

    def _close(self) -> None:
        self.files = []
