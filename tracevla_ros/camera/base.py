"""The camera interface every backend implements, and what it returns (no rclpy).

lerobot-style: ``connect()``, ``read() -> Frame`` (block for the next frame),
``read_latest()`` (the newest frame already read, no blocking), ``disconnect()``,
and a context manager that connects/disconnects.

Conventions
-----------
* ``Frame.rgb``: ``(H, W, 3) uint8``, RGB channel order, row 0 at the top.
* ``Frame.depth``: ``(H, W) float32`` metres along the optical axis (z-depth),
  ``0`` where the sensor has no measurement; pixel-aligned with ``rgb``.
  ``depth_to_mm16`` gives the ROS ``16UC1`` millimetre form.
* ``Frame.stamp``: capture time in seconds on the ``time.time()`` (UNIX epoch,
  host wall clock) timebase: the device's host-mapped timestamp where the
  backend has one (RealSense global/system time), else ``time.time()`` taken
  right after the driver returned the frame.
* ``Frame.seq``: 0, 1, 2, ... per frame delivered by this camera object since
  ``connect()``.
* ``CameraIntrinsics``: pinhole, pixels, principal point in the same pixel
  frame as ``rgb`` (x right, y down, centre of the top-left pixel at (0, 0)).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Any, TypeVar

import numpy as np

__all__ = [
    "CameraError",
    "CameraNotFoundError",
    "CameraOpenError",
    "CameraTimeoutError",
    "EndOfStreamError",
    "NoFrameError",
    "CameraIntrinsics",
    "Frame",
    "Camera",
    "depth_to_mm16",
    "mm16_to_depth",
]

log = logging.getLogger(__name__)
CamT = TypeVar("CamT", bound="Camera")


class CameraError(RuntimeError):
    """A camera could not be opened or read; the message names the device and what to check."""


class CameraNotFoundError(CameraError):
    """The configured device / path / serial does not exist."""


class CameraOpenError(CameraError):
    """The device exists but could not be opened or does not deliver what was asked for."""


class CameraTimeoutError(CameraError):
    """Opening or reading did not finish within the configured bound."""


class EndOfStreamError(CameraError):
    """A finite source (video file, image folder) is exhausted and looping is off."""


class NoFrameError(CameraError):
    """``read_latest`` was called before any frame was read, or the newest one is too old."""


@dataclasses.dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics of one image stream.

    ``distortion_model`` uses ROS names: ``"plumb_bob"`` (k1, k2, p1, p2, k3),
    ``"rational_polynomial"`` (8 coeffs) or ``"equidistant"`` (4 coeffs);
    ``"none"`` with empty ``coeffs`` for an undistorted (rectified/simulated) image.
    """

    width: int  # pixels
    height: int  # pixels
    fx: float  # pixels
    fy: float  # pixels
    cx: float  # pixels, x right
    cy: float  # pixels, y down
    distortion_model: str = "none"
    coeffs: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"CameraIntrinsics: width/height must be > 0, got {self.width}x{self.height}")
        if not (self.fx > 0 and self.fy > 0):
            raise ValueError(f"CameraIntrinsics: fx, fy must be > 0, got fx={self.fx} fy={self.fy}")

    @property
    def k(self) -> np.ndarray:
        """(3, 3) float64 camera matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def scaled(self, width: int, height: int) -> "CameraIntrinsics":
        """The same camera resampled to ``width x height`` (distortion unchanged)."""
        sx, sy = width / self.width, height / self.height
        return dataclasses.replace(
            self, width=width, height=height, fx=self.fx * sx, fy=self.fy * sy,
            cx=(self.cx + 0.5) * sx - 0.5, cy=(self.cy + 0.5) * sy - 0.5,
        )


@dataclasses.dataclass(frozen=True)
class Frame:
    """One captured image (and depth) with when and how it was taken."""

    rgb: np.ndarray  # (H, W, 3) uint8, RGB
    stamp: float  # seconds, time.time() timebase (see module docstring)
    seq: int  # frame counter since connect()
    depth: np.ndarray | None = None  # (H, W) float32 metres, 0 = no data; aligned to rgb
    intrinsics: CameraIntrinsics | None = None  # of rgb (and of depth, which is aligned to it)

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


def depth_to_mm16(depth_m: np.ndarray) -> np.ndarray:
    """(H, W) float metres -> (H, W) uint16 millimetres (ROS 16UC1).

    Rounded to the nearest millimetre; non-finite or <= 0 -> 0 (no data);
    beyond 65.535 m -> 0 as well (cannot be represented).
    """
    d = np.asarray(depth_m, dtype=np.float32)
    mm = np.rint(d * 1000.0)
    valid = np.isfinite(mm) & (mm > 0) & (mm <= 65535)
    return np.where(valid, mm, 0).astype(np.uint16)


def mm16_to_depth(depth_mm: np.ndarray) -> np.ndarray:
    """(H, W) uint16 millimetres -> (H, W) float32 metres (0 stays 0)."""
    return np.asarray(depth_mm, dtype=np.float32) * np.float32(1e-3)


class Camera(ABC):
    """Base class: backends implement ``_open``, ``_grab`` and ``_close``.

    ``read()`` is meant for one capture thread; ``read_latest()`` may be called
    from any other thread.
    """

    #: registry name, set by ``register_camera``
    backend_name: str = ""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: Frame | None = None
        self._seq = 0
        self._connected = False

    # -- what a backend implements -------------------------------------------------
    @abstractmethod
    def _open(self) -> None:
        """Open the device; raise a CameraError subclass naming it on failure."""

    @abstractmethod
    def _grab(self) -> tuple[np.ndarray, np.ndarray | None, float, CameraIntrinsics | None]:
        """Block for the next image: ``(rgb, depth_m or None, stamp, intrinsics)``."""

    @abstractmethod
    def _close(self) -> None:
        """Release the device; must not raise for an already closed device."""

    @property
    @abstractmethod
    def description(self) -> str:
        """Human-readable source, e.g. ``usb:/dev/video0`` (used in messages)."""

    @property
    def has_depth(self) -> bool:
        """Whether frames carry depth."""
        return False

    # -- public API -----------------------------------------------------------------
    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        """Open the source. Raises CameraError (never hangs past the backend's open bound)."""
        if self._connected:
            return
        self._open()
        self._seq = 0
        self._latest = None
        self._connected = True
        log.info("camera %s connected", self.description)

    def read(self) -> Frame:
        """Block until the next frame and return it (and keep it for ``read_latest``)."""
        if not self._connected:
            raise CameraError(f"camera {self.description}: read() before connect()")
        rgb, depth, stamp, intr = self._grab()
        frame = Frame(rgb=rgb, depth=depth, stamp=stamp, seq=self._seq, intrinsics=intr)
        self._seq += 1
        with self._lock:
            self._latest = frame
        return frame

    def read_latest(self, max_age_s: float | None = None) -> Frame:
        """The newest frame ``read()`` returned, without blocking.

        Raises NoFrameError if there is none yet, or if it is older than
        ``max_age_s`` seconds (by ``time.time()``).
        """
        with self._lock:
            frame = self._latest
        if frame is None:
            raise NoFrameError(f"camera {self.description}: no frame read yet")
        if max_age_s is not None:
            age = time.time() - frame.stamp
            if age > max_age_s:
                raise NoFrameError(
                    f"camera {self.description}: newest frame is {age:.3f} s old (> {max_age_s} s)"
                )
        return frame

    def disconnect(self) -> None:
        """Release the device (idempotent)."""
        if self._connected:
            self._connected = False
            self._close()
            log.info("camera %s disconnected", self.description)

    def __enter__(self: CamT) -> CamT:
        self.connect()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.disconnect()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description} connected={self._connected}>"


def check_rgb(rgb: Any, where: str) -> np.ndarray:
    """Validate an image as ``(H, W, 3) uint8``; raise CameraError naming ``where``."""
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise CameraError(f"{where}: expected an (H, W, 3) uint8 RGB image, got "
                          f"shape {arr.shape} dtype {arr.dtype}")
    return arr


class Pacer:
    """Sleep so successive ``wait()`` calls return at ``fps`` (monotonic clock).

    Falls behind gracefully: after a stall it restarts the schedule instead of
    bursting to catch up.
    """

    def __init__(self, fps: float) -> None:
        if fps <= 0:
            raise ValueError(f"Pacer: fps must be > 0, got {fps}")
        self.period = 1.0 / fps
        self._next: float | None = None

    def wait(self) -> None:
        now = time.monotonic()
        if self._next is None or now - self._next > self.period:
            self._next = now + self.period
            return
        if self._next > now:
            time.sleep(self._next - now)
        self._next += self.period

    def reset(self) -> None:
        self._next = None
