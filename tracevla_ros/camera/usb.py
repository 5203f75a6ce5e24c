"""``usb``: UVC / V4L2 cameras through OpenCV (``cv2.VideoCapture(dev, cv2.CAP_V4L2)``).

Fails fast and once: a missing ``/dev/videoN``, a path that is not a
character device, or an index with no camera each raise one CameraError
naming the device before OpenCV is asked; opening runs in a helper thread
bounded by ``open_timeout_s`` so a wedged driver cannot hang the caller.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from typing import Any

import cv2
import numpy as np

from tracevla_ros.camera import register_camera
from tracevla_ros.camera.base import (
    Camera,
    CameraError,
    CameraIntrinsics,
    CameraNotFoundError,
    CameraOpenError,
    CameraTimeoutError,
)
from tracevla_ros.camera.config import CameraConfig, config_intrinsics

log = logging.getLogger(__name__)

_CHECK = "check `ls -l /dev/video*` / `v4l2-ctl --list-devices`, the cable, and that your user is in group 'video'"


def resolve_device(device: int | str) -> str:
    """``0`` / ``"0"`` / ``"/dev/video0"`` -> an existing character-device path.

    Raises CameraNotFoundError if it does not exist, CameraOpenError if it is
    not a character device (e.g. a regular file).
    """
    if isinstance(device, int) or (isinstance(device, str) and device.isdigit()):
        path = f"/dev/video{int(device)}"
    elif isinstance(device, str) and device:
        path = device
    else:
        raise CameraNotFoundError(f"usb camera: device must be an index or a /dev/videoN path, got {device!r}")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CameraNotFoundError(f"usb camera {path}: no such device; {_CHECK}") from None
    except OSError as exc:
        raise CameraOpenError(f"usb camera {path}: cannot stat ({exc.strerror}); {_CHECK}") from None
    if not stat.S_ISCHR(st.st_mode):
        raise CameraOpenError(f"usb camera {path}: not a character device (a V4L2 camera is "
                              f"/dev/videoN); {_CHECK}")
    return path


@register_camera("usb")
class UsbCamera(Camera):
    """A V4L2 camera; frames are converted BGR -> RGB."""

    def __init__(self, device: int | str = 0, width: int = 640, height: int = 480,
                 fps: float = 30.0, open_timeout_s: float = 5.0, read_timeout_s: float = 2.0,
                 intrinsics: CameraIntrinsics | None = None,
                 config: CameraConfig | None = None) -> None:
        super().__init__()
        self.device = device
        self.width, self.height, self.fps = width, height, fps
        self.open_timeout_s, self.read_timeout_s = open_timeout_s, read_timeout_s
        self._intrinsics = intrinsics
        self._config = config
        self._path = str(device)
        self._cap: Any = None

    @classmethod
    def from_config(cls, cfg: CameraConfig, **_: Any) -> "UsbCamera":
        return cls(device=cfg.device, width=cfg.width, height=cfg.height, fps=cfg.fps,
                   open_timeout_s=cfg.open_timeout_s, read_timeout_s=cfg.read_timeout_s,
                   config=cfg)

    @property
    def description(self) -> str:
        return f"usb:{self._path}"

    def _open(self) -> None:
        self._path = resolve_device(self.device)
        result: dict[str, Any] = {}
        abandoned = threading.Event()

        def open_it() -> None:
            try:
                cap = cv2.VideoCapture(self._path, cv2.CAP_V4L2)
                if abandoned.is_set():  # the caller timed out: do not leak the device
                    cap.release()
                    return
                if cap.isOpened():
                    cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
                    cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
                    cap.set(cv2.CAP_PROP_FPS, self.fps)
                    if hasattr(cv2, "CAP_PROP_READ_TIMEOUT_MSEC"):  # V4L2 select() bound
                        cap.set(cv2.CAP_PROP_READ_TIMEOUT_MSEC, self.read_timeout_s * 1000.0)
                result["cap"] = cap
            except cv2.error as exc:
                result["error"] = exc

        worker = threading.Thread(target=open_it, name=f"open-{self._path}", daemon=True)
        worker.start()
        worker.join(self.open_timeout_s)
        if worker.is_alive():
            abandoned.set()
            raise CameraTimeoutError(f"usb camera {self._path}: opening took longer than "
                                     f"{self.open_timeout_s} s; {_CHECK}")
        if "error" in result:
            raise CameraOpenError(f"usb camera {self._path}: OpenCV error {result['error']}; {_CHECK}")
        cap = result["cap"]
        if not cap.isOpened():
            cap.release()
            raise CameraOpenError(f"usb camera {self._path}: V4L2 could not open it (busy in "
                                  f"another program, or not a capture device?); {_CHECK}")
        w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if (w, h) != (self.width, self.height):
            log.warning("usb camera %s: asked for %dx%d, device delivers %dx%d",
                        self._path, self.width, self.height, w, h)
        self._cap = cap

    def _grab(self) -> tuple[np.ndarray, np.ndarray | None, float, CameraIntrinsics | None]:
        t0 = time.monotonic()
        ok, bgr = self._cap.read()
        stamp = time.time()
        if not ok or bgr is None:
            waited = time.monotonic() - t0
            raise CameraError(f"usb camera {self._path}: read failed after {waited:.2f} s "
                              f"(unplugged?); {_CHECK}")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        intr = self._intrinsics
        if intr is None and self._config is not None:
            intr = config_intrinsics(self._config, rgb.shape[1], rgb.shape[0])
            self._intrinsics = intr
        return rgb, None, stamp, intr

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
