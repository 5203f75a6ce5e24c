"""Episode sources for TraceForge: ``tracevla-collect`` datasets and plain RGB-D folders (no rclpy).

**tracevla-collect** (``info.json`` format ``tracevla_sim_episodes/v1``, see
``tracevla_ros/sim/DATASET.md``): RGB, depth (metres), intrinsics and the fixed camera's
pose in the robot base frame, the end-effector poses and the task's instruction.

**Plain RGB-D folder**, one per episode::

    EPISODE/rgb/*.png|*.jpg          colour frames, sorted by name (also: color/, images/)
    EPISODE/depth/*.png|*.npy|*.npz  aligned depth, same count and order; 16-bit PNG or
                                     integer arrays are millimetres x depth_scale_m,
                                     float arrays are metres (npz key 'depth')
    EPISODE/intrinsics.json          {"K": [[fx,0,cx],[0,fy,cy],[0,0,1]]} or {"fx","fy","cx","cy"},
                                     optional "depth_scale_m" (default 0.001)
    EPISODE/instruction.txt          optional (else --instruction)
    EPISODE/poses.npy|poses.txt      optional (T, 4, 4) / (T, 16) camera-to-world poses of a
                                     moving camera; absent = static camera

``--episodes`` may name such a folder, a directory of them, or a collect dataset.
Each episode is loaded lazily, so one corrupt episode fails alone (and is reported).
"""

from __future__ import annotations

import functools
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from tracegen_ros.traceforge.geometry import GeometryError, check_intrinsics, check_rgbd
from tracevla_ros.sim.dataset import FORMAT as COLLECT_FORMAT
from tracevla_ros.sim.dataset import DatasetError, load_episode

__all__ = ["RGBDEpisode", "EpisodeRef", "SourceError", "discover"]

_RGB_DIRS = ("rgb", "color", "images")
_IMG_EXT = (".png", ".jpg", ".jpeg")


class SourceError(ValueError):
    """An episode or source directory cannot be read; the message names the file."""


@dataclass
class RGBDEpisode:
    """One episode's frames and camera, in memory."""

    name: str
    rgb: np.ndarray  # (T, H, W, 3) uint8
    depth: np.ndarray  # (T, H, W) float32 metres, 0 = invalid
    K: np.ndarray  # (3, 3) float64
    instruction: str
    task: str = ""
    robot: str = ""
    source: str = ""
    T_world_cam: np.ndarray | None = None  # (T, 4, 4) camera poses of a moving camera, or None
    T_base_cam: np.ndarray | None = None  # (4, 4) fixed camera in the robot base frame (sim)
    ee_base: np.ndarray | None = None  # (T, 3) end-effector positions in the base frame (sim)

    def validate(self) -> None:
        """Raise GeometryError / SourceError for unusable data (sizes, depth, intrinsics)."""
        if self.rgb.ndim != 4 or self.rgb.shape[0] < 2:
            raise SourceError(f"{self.name}: need >= 2 RGB frames (T, H, W, 3), got {self.rgb.shape}")
        if self.depth.shape[0] != self.rgb.shape[0]:
            raise SourceError(f"{self.name}: {self.rgb.shape[0]} RGB frames but "
                              f"{self.depth.shape[0]} depth frames")
        check_rgbd(self.rgb[0], self.depth[0])  # sizes, dtype, depth not all zero
        check_intrinsics(self.K)
        if self.T_world_cam is not None and self.T_world_cam.shape != (self.rgb.shape[0], 4, 4):
            raise SourceError(f"{self.name}: poses must be ({self.rgb.shape[0]}, 4, 4), "
                              f"got {self.T_world_cam.shape}")


@dataclass(frozen=True)
class EpisodeRef:
    """A not-yet-loaded episode: its output name and how to load it."""

    name: str
    path: Path
    load: Callable[[], RGBDEpisode]


# -- tracevla-collect --------------------------------------------------------------------
def _collect_refs(root: Path, instruction: str) -> list[EpisodeRef]:
    info = json.loads((root / "info.json").read_text())
    cam = info.get("camera", {})
    task = str(info.get("task", ""))
    refs = []
    for ep in sorted(p for p in root.glob("episode_*") if p.is_dir()):
        name = f"{task}_{ep.name}" if task else ep.name
        refs.append(EpisodeRef(name, ep, functools.partial(_load_collect, ep, name, info, cam,
                                                           instruction)))
    return refs


def _load_collect(ep_dir: Path, name: str, info: dict[str, Any], cam: dict[str, Any], instruction: str) -> RGBDEpisode:
    try:
        ep = load_episode(ep_dir)
    except (DatasetError, OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise SourceError(f"{ep_dir}: unreadable tracevla-collect episode ({exc})") from None
    if ep.depth is None:
        raise GeometryError(f"{ep_dir}: depth is missing (record with an RGB-D camera, without "
                            "--no-depth)")
    try:
        K = np.asarray(cam["K"], np.float64)
        t_bc = np.eye(4)
        t_bc[:3, :3] = np.asarray(cam["rotation_base_optical"], np.float64)
        t_bc[:3, 3] = np.asarray(cam["position_in_base"], np.float64)
    except (KeyError, ValueError) as exc:
        raise SourceError(f"{ep_dir.parent / 'info.json'}: camera K/extrinsics missing ({exc})") from None
    return RGBDEpisode(name=name, rgb=ep.rgb, depth=ep.depth.astype(np.float32), K=K,
                       instruction=instruction or ep.instruction, task=ep.task, robot=ep.robot,
                       source="tracevla-collect", T_base_cam=t_bc,
                       ee_base=ep.ee_pose[:, :3].astype(np.float64))


# -- plain RGB-D folders ---------------------------------------------------------------------
def _rgb_dir(ep: Path) -> Path | None:
    return next((ep / d for d in _RGB_DIRS if (ep / d).is_dir()), None)


def _read_depth(path: Path, scale: float) -> np.ndarray:
    if path.suffix == ".png":
        d = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if d is None:
            raise SourceError(f"{path}: unreadable depth PNG")
    else:
        try:
            if path.suffix == ".npz":
                with np.load(path) as z:
                    d = z["depth"] if "depth" in z.files else z[z.files[0]]
            else:
                d = np.load(path)
        except (OSError, ValueError, KeyError, IndexError, zipfile.BadZipFile, EOFError) as exc:
            raise SourceError(f"{path}: unreadable depth array ({exc})") from None
    if d.ndim != 2:
        raise SourceError(f"{path}: depth must be (H, W), got {d.shape}")
    if np.issubdtype(d.dtype, np.integer):
        return d.astype(np.float32) * np.float32(scale)
    return d.astype(np.float32)


def _load_folder(ep: Path, instruction: str) -> RGBDEpisode:
    rgb_dir = _rgb_dir(ep)
    if rgb_dir is None:
        raise SourceError(f"{ep}: no colour folder ({'/'.join(_RGB_DIRS)})")
    imgs = sorted(p for p in rgb_dir.iterdir() if p.suffix.lower() in _IMG_EXT)
    ddir = ep / "depth"
    if not ddir.is_dir():
        raise GeometryError(f"{ep}: depth is missing (expected {ddir} with one depth image per frame)")
    deps = sorted(p for p in ddir.iterdir() if p.suffix in (".png", ".npy", ".npz"))
    if not imgs:
        raise SourceError(f"{rgb_dir}: no images")
    if len(deps) != len(imgs):
        raise SourceError(f"{ep}: {len(imgs)} colour frames but {len(deps)} depth frames")
    ipath = ep / "intrinsics.json"
    if not ipath.is_file():
        raise SourceError(f"{ipath} not found: give the colour camera's K")
    try:
        intr = json.loads(ipath.read_text())
        K = np.asarray(intr["K"], np.float64) if "K" in intr else np.array(
            [[intr["fx"], 0, intr["cx"]], [0, intr["fy"], intr["cy"]], [0, 0, 1]], np.float64)
        scale = float(intr.get("depth_scale_m", 0.001))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise SourceError(f"{ipath}: need 'K' (3x3) or fx, fy, cx, cy ({exc})") from None
    rgb = []
    for p in imgs:
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SourceError(f"{p}: unreadable image")
        rgb.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    depth = [_read_depth(p, scale) for p in deps]
    for p, a, b in zip(imgs, rgb, depth):
        if a.shape[:2] != b.shape:
            raise GeometryError(f"{p.name}: RGB {a.shape[1]}x{a.shape[0]} and depth "
                                f"{b.shape[1]}x{b.shape[0]} differ in size: align depth to colour")
    text = instruction
    if (ep / "instruction.txt").is_file():
        text = (ep / "instruction.txt").read_text().strip() or instruction
    if not text:
        raise SourceError(f"{ep}: no instruction (add instruction.txt or pass --instruction)")
    poses = None
    for name in ("poses.npy", "poses.txt"):
        if (ep / name).is_file():
            try:
                arr = np.load(ep / name) if name.endswith(".npy") else np.loadtxt(ep / name)
            except (OSError, ValueError) as exc:
                raise SourceError(f"{ep / name}: unreadable poses ({exc})") from None
            poses = np.asarray(arr, np.float64).reshape(-1, 4, 4)
    return RGBDEpisode(name=ep.name, rgb=np.stack(rgb), depth=np.stack(depth), K=K,
                       instruction=text, source="rgbd-folder", T_world_cam=poses)


def discover(paths: list[Path], instruction: str = "") -> list[EpisodeRef]:
    """Episodes under ``paths`` (collect datasets, RGB-D folders or directories of them)."""
    refs: list[EpisodeRef] = []
    for root in paths:
        if not root.is_dir():
            raise SourceError(f"{root} is not a directory")
        info = root / "info.json"
        if info.is_file():
            try:
                fmt = json.loads(info.read_text()).get("format")
            except json.JSONDecodeError as exc:
                raise SourceError(f"{info}: not valid JSON ({exc})") from None
            if fmt != COLLECT_FORMAT:
                raise SourceError(f"{info}: format {fmt!r}; expected {COLLECT_FORMAT!r} or RGB-D folders")
            refs += _collect_refs(root, instruction)
        elif _rgb_dir(root) is not None:
            refs.append(EpisodeRef(root.name, root, functools.partial(_load_folder, root, instruction)))
        else:
            subs = sorted(p for p in root.iterdir() if p.is_dir() and _rgb_dir(p) is not None)
            if not subs:
                raise SourceError(f"{root}: neither a tracevla-collect dataset nor RGB-D episode "
                                  f"folders (<episode>/{{rgb,depth}}/, intrinsics.json)")
            refs += [EpisodeRef(p.name, p, functools.partial(_load_folder, p, instruction)) for p in subs]
    names = [r.name for r in refs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SourceError(f"episode names occur twice across --episodes: {dup[:5]}")
    return refs
