"""``video``: a video file through OpenCV, optionally looped and paced in real time."""

from __future__ import annotations

import logging
import os
import time
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

log = logging.getLogger(__name__)


@register_camera("video")
class VideoFileCamera(Camera):
    """Frames of ``path`` in order; ``fps <= 0`` paces at the file's own rate."""

    def __init__(self, path: str, loop: bool = True, realtime: bool = True, fps: float = 0.0,
                 intrinsics: CameraIntrinsics | None = None,
                 config: CameraConfig | None = None) -> None:
        super().__init__()
        self.path, self.loop, self.realtime, self.fps = str(path), loop, realtime, fps
        self._intrinsics = intrinsics
        self._config = config
        self._cap: Any = None
        self._pacer: Pacer | None = None
        self.file_fps = 0.0
        self.frame_count = 0

    @classmethod
    def from_config(cls, cfg: CameraConfig, **_: Any) -> "VideoFileCamera":
        return cls(path=cfg.path, loop=cfg.loop, realtime=cfg.realtime, fps=cfg.fps, config=cfg)

    @property
    def description(self) -> str:
        return f"video:{self.path}"

    def _open(self) -> None:
        if not os.path.isfile(self.path):
            raise CameraNotFoundError(f"video camera: no such file '{self.path}' (check 'path')")
        cap = cv2.VideoCapture(self.path)
        if not cap.isOpened():
            cap.release()
            raise CameraOpenError(f"video camera: cannot decode '{self.path}' (corrupt, or a "
                                  f"codec OpenCV's FFmpeg lacks?)")
        ok, first = cap.read()
        if not ok or first is None:
            cap.release()
            raise CameraOpenError(f"video camera: '{self.path}' has no decodable frame (corrupt?)")
        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        self.file_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        rate = self.fps if self.fps > 0 else self.file_fps
        if self.realtime and rate <= 0:
            cap.release()
            raise CameraOpenError(f"video camera: '{self.path}' reports no frame rate; set 'fps'")
        self._pacer = Pacer(rate) if self.realtime else None
        self._cap = cap

    def _next_bgr(self) -> np.ndarray:
        ok, bgr = self._cap.read()
        if ok and bgr is not None:
            return np.asarray(bgr)
        if not self.loop:
            raise EndOfStreamError(f"video camera: end of '{self.path}' (loop is off)")
        self._cap.release()  # rewind by reopening: seeking is unreliable for some codecs
        self._cap = cv2.VideoCapture(self.path)
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            raise CameraOpenError(f"video camera: '{self.path}' stopped decoding on rewind")
        return np.asarray(bgr)

    def _grab(self) -> tuple[np.ndarray, np.ndarray | None, float, CameraIntrinsics | None]:
        bgr = self._next_bgr()
        if self._pacer is not None:
            self._pacer.wait()
        stamp = time.time()
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if self._intrinsics is None and self._config is not None:
            self._intrinsics = config_intrinsics(self._config, rgb.shape[1], rgb.shape[0])
        return rgb, None, stamp, self._intrinsics

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
