"""The TraceForge sample layout (``tracegen_traceforge/v1``): writer helpers and reader (no rclpy).

Written by ``traceforge`` (:mod:`tracegen_ros.traceforge`), read by the TraceGen trainer and
the evaluation. One dataset directory::

    OUT/info.json                          format, grid (20), L (32), source, robot, splits
    OUT/<episode>/images/<frame:06d>.png   RGB reference frames (8-bit PNG)
    OUT/<episode>/depth/<frame:06d>_raw.npz  key ``depth``: (H, W) uint16 millimetres, 0 = invalid
    OUT/<episode>/samples/<episode>_<frame:06d>.npz   one training triplet (keys below)
    OUT/<episode>/three_instructions.json  {"instruction_1": ..., "instruction_2": ..., "instruction_3": ...}

Sample keys (K = grid * grid = 400 keypoints, L = 32 steps):

=================  ==================  ==================================================
``keypoints``      (K, 2) float32      pixels (u right, v down) on the reference frame
``traj``           (K, L, 3) float32   screen-aligned (u px, v px, z m) in the reference
                                       camera frame; step 0 = the keypoint; -inf = invalid
``valid_steps``    (K, L) bool         False where ``traj`` is -inf
``frame_index``    () int64            the reference frame (names its PNG and depth)
``intrinsics``     (3, 3) float32      K of the reference camera (OpenCV convention)
``image_size``     (2,) int64          [W, H]
``T_base_cam``     (4, 4) float64      sim episodes only: camera optical frame in the
                                       robot base frame (``p_base = T @ p_cam``)
``ee_uvz``         (L, 3) float32      sim episodes only, when known: the end effector's own
                                       screen-aligned trace (evaluation)
=================  ==================  ==================================================

Example::

    from tracegen_ros.data import list_samples, load_sample
    for path in list_samples("/work/data/traceforge/fr3", split="train"):
        s = load_sample(path)          # Sample: rgb, depth_m, keypoints, traj, valid_steps, ...
"""

from __future__ import annotations

import json
import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

__all__ = [
    "FORMAT", "GRID", "TRACE_LEN", "DataError", "Sample", "list_samples", "load_sample",
    "load_info", "list_episodes", "load_instructions", "write_info", "write_frame",
    "write_sample", "write_instructions", "sample_path", "image_path", "depth_path",
    "read_depth_mm", "depth_to_mm", "grid_keypoints",
]

log = logging.getLogger(__name__)

FORMAT = "tracegen_traceforge/v1"
GRID = 20  # keypoints per side of the grid
TRACE_LEN = 32  # L: steps per trace
INSTRUCTION_KEYS = ("instruction_1", "instruction_2", "instruction_3")
_REQUIRED = ("keypoints", "traj", "valid_steps", "frame_index", "intrinsics", "image_size")


class DataError(ValueError):
    """A dataset file is missing or malformed; the message names the file and what is wrong."""


@dataclass
class Sample:
    """One TraceForge training triplet: reference RGB-D frame, instructions, 3D traces."""

    rgb: np.ndarray  # (H, W, 3) uint8 RGB reference frame
    depth_m: np.ndarray  # (H, W) float32 metres along the optical axis, 0 = invalid
    keypoints: np.ndarray  # (K, 2) float32 pixels (u right, v down)
    traj: np.ndarray  # (K, L, 3) float32 (u px, v px, z m), reference camera frame; -inf invalid
    valid_steps: np.ndarray  # (K, L) bool
    intrinsics: np.ndarray  # (3, 3) float32
    instructions: list[str]  # 1..3 phrasings of the task
    T_base_cam: np.ndarray | None  # (4, 4) float64 optical frame in the robot base frame, or None
    episode: str  # episode directory name
    frame_index: int  # reference frame index within the episode
    ee_uvz: np.ndarray | None = None  # (L, 3) float32 end-effector screen-aligned trace, or None
    path: Path = field(default_factory=Path)  # the sample .npz


def grid_keypoints(height: int, width: int, grid: int = GRID) -> np.ndarray:
    """(grid*grid, 2) float32 pixels (u, v) of the keypoint grid on an H x W reference frame.

    Cell centres of a ``grid`` x ``grid`` partition of the image, row-major (v outer, u
    inner): ``u_j = (j + 0.5) * W / grid - 0.5``, likewise v. TraceForge places this grid
    on every reference frame; the model predicts one trace per grid point in this order.
    """
    if height < 1 or width < 1 or grid < 1:
        raise DataError(f"grid_keypoints needs H, W, grid >= 1, got {height}, {width}, {grid}")
    u = (np.arange(grid) + 0.5) * (width / grid) - 0.5
    v = (np.arange(grid) + 0.5) * (height / grid) - 0.5
    uu, vv = np.meshgrid(u, v)
    return np.stack([uu.ravel(), vv.ravel()], axis=1).astype(np.float32)


# -- paths ---------------------------------------------------------------------------------
def image_path(ep_dir: Path, frame: int) -> Path:
    return ep_dir / "images" / f"{frame:06d}.png"


def depth_path(ep_dir: Path, frame: int) -> Path:
    return ep_dir / "depth" / f"{frame:06d}_raw.npz"


def sample_path(ep_dir: Path, frame: int) -> Path:
    return ep_dir / "samples" / f"{ep_dir.name}_{frame:06d}.npz"


# -- depth ---------------------------------------------------------------------------------
def depth_to_mm(depth_m: np.ndarray) -> np.ndarray:
    """(H, W) metres (0/NaN/inf = invalid) -> uint16 millimetres, 0 = invalid (max 65.535 m)."""
    d = np.asarray(depth_m, dtype=np.float64)
    ok = np.isfinite(d) & (d > 0.0)
    mm = np.zeros(d.shape, np.uint16)
    mm[ok] = np.clip(np.round(d[ok] * 1000.0), 0, 65535).astype(np.uint16)
    return mm


def read_depth_mm(path: Path) -> np.ndarray:
    """(H, W) float32 metres from a ``*_raw.npz`` (uint16 mm, 0 = invalid -> 0.0)."""
    try:
        with np.load(path) as z:
            if "depth" not in z.files:
                raise DataError(f"{path}: no array 'depth' (keys {z.files})")
            mm = z["depth"]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: unreadable depth file ({exc})") from None
    if mm.ndim != 2 or mm.dtype != np.uint16:
        raise DataError(f"{path}: depth must be (H, W) uint16 millimetres, got {mm.shape} {mm.dtype}")
    return mm.astype(np.float32) * np.float32(1e-3)


# -- writing (traceforge) -----------------------------------------------------------------
def write_info(root: Path, info: dict[str, Any]) -> None:
    """``root/info.json`` with the format, grid and L filled in."""
    root.mkdir(parents=True, exist_ok=True)
    data = dict(info, format=FORMAT, grid=GRID, L=TRACE_LEN)
    tmp = root / "info.json.tmp"
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(root / "info.json")


def write_frame(ep_dir: Path, frame: int, rgb: np.ndarray, depth_m: np.ndarray) -> None:
    """The reference frame's PNG (RGB) and raw depth (uint16 mm)."""
    for sub in ("images", "depth"):
        (ep_dir / sub).mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(image_path(ep_dir, frame)), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise DataError(f"could not write {image_path(ep_dir, frame)}")
    np.savez_compressed(depth_path(ep_dir, frame), depth=depth_to_mm(depth_m))


def write_sample(ep_dir: Path, frame: int, arrays: dict[str, np.ndarray]) -> Path:
    """One sample npz (atomic: written to a temporary name, then renamed)."""
    missing = [k for k in _REQUIRED if k not in arrays]
    if missing:
        raise DataError(f"sample for {ep_dir.name} frame {frame} lacks {missing}")
    out = sample_path(ep_dir, frame)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]
    tmp.replace(out)
    return out


def write_instructions(ep_dir: Path, phrasings: list[str]) -> None:
    """``three_instructions.json``: 1..3 phrasings (the last one repeats to fill three)."""
    if not phrasings or not all(isinstance(p, str) and p.strip() for p in phrasings):
        raise DataError(f"{ep_dir.name}: need 1..3 non-empty instruction phrasings, got {phrasings!r}")
    ph = (list(phrasings) + [phrasings[-1]] * 3)[:3]
    ep_dir.mkdir(parents=True, exist_ok=True)
    (ep_dir / "three_instructions.json").write_text(
        json.dumps(dict(zip(INSTRUCTION_KEYS, ph)), indent=2))


# -- reading -----------------------------------------------------------------------------
def load_info(root: str | Path) -> dict[str, Any]:
    """``root/info.json``; DataError if missing or of another format."""
    path = Path(root) / "info.json"
    if not path.is_file():
        raise DataError(f"{path} not found: is {root} a traceforge output directory?")
    try:
        info: dict[str, Any] = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if info.get("format") != FORMAT:
        raise DataError(f"{path}: format {info.get('format')!r}, expected {FORMAT!r}")
    return info


def list_episodes(root: str | Path, split: str | None = None) -> list[Path]:
    """Episode directories under ``root`` (sorted); ``split`` = a key of info.json ``splits``."""
    root = Path(root)
    info = load_info(root)
    eps = sorted(p for p in root.iterdir() if p.is_dir() and (p / "samples").is_dir())
    if split is not None:
        splits = info.get("splits", {})
        if split not in splits:
            raise DataError(f"{root / 'info.json'}: no split {split!r}; splits: {sorted(splits)}")
        names = set(splits[split])
        eps = [p for p in eps if p.name in names]
    return eps


def list_samples(root: str | Path, split: str | None = None) -> list[Path]:
    """Every sample npz under ``root`` (sorted by episode, then frame).

    ``split``: "train" / "val" (info.json ``splits``, by episode); None = all.
    """
    out: list[Path] = []
    for ep in list_episodes(root, split):
        out.extend(sorted(p for p in (ep / "samples").glob("*.npz") if not p.name.endswith(".tmp.npz")))
    return out


def load_instructions(ep_dir: Path) -> list[str]:
    """The episode's phrasings from ``three_instructions.json`` (1..3 distinct strings)."""
    path = ep_dir / "three_instructions.json"
    if not path.is_file():
        raise DataError(f"{path} not found (every traceforge episode has one)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    out = [str(data[k]) for k in INSTRUCTION_KEYS if isinstance(data, dict) and data.get(k)]
    if not out:
        raise DataError(f"{path}: needs keys {INSTRUCTION_KEYS} with non-empty strings")
    return list(dict.fromkeys(out))


def _read_png(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path} not found (the sample's reference frame image)")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError(f"{path}: unreadable PNG")
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def load_sample(path: str | Path) -> Sample:
    """Read one sample npz plus its reference image, depth and instructions.

    Raises DataError naming the file for anything missing, unreadable or of the wrong shape.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} not found")
    ep_dir = path.parent.parent
    try:
        with np.load(path) as z:
            missing = [k for k in _REQUIRED if k not in z.files]
            if missing:
                raise DataError(f"{path}: missing arrays {missing}")
            arr = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: unreadable sample ({exc})") from None
    kp = arr["keypoints"].astype(np.float32)
    traj = arr["traj"].astype(np.float32)
    valid = arr["valid_steps"].astype(bool)
    if kp.ndim != 2 or kp.shape[1] != 2:
        raise DataError(f"{path}: keypoints must be (K, 2), got {kp.shape}")
    n = kp.shape[0]
    if traj.ndim != 3 or traj.shape[0] != n or traj.shape[2] != 3:
        raise DataError(f"{path}: traj must be ({n}, L, 3), got {traj.shape}")
    if valid.shape != traj.shape[:2]:
        raise DataError(f"{path}: valid_steps {valid.shape} != traj {traj.shape[:2]}")
    frame = int(arr["frame_index"])
    w, h = (int(v) for v in arr["image_size"])
    rgb = _read_png(image_path(ep_dir, frame))
    depth = read_depth_mm(depth_path(ep_dir, frame)) if depth_path(ep_dir, frame).is_file() else None
    if depth is None:
        raise DataError(f"{depth_path(ep_dir, frame)} not found (the sample's reference depth)")
    if rgb.shape[:2] != (h, w) or depth.shape != (h, w):
        raise DataError(f"{path}: image {rgb.shape[:2]} / depth {depth.shape} do not match "
                        f"image_size [W, H] = [{w}, {h}]")
    t_bc = arr.get("T_base_cam")
    ee = arr.get("ee_uvz")
    return Sample(rgb=rgb, depth_m=depth, keypoints=kp, traj=traj, valid_steps=valid,
                  intrinsics=arr["intrinsics"].astype(np.float32),
                  instructions=load_instructions(ep_dir),
                  T_base_cam=None if t_bc is None else t_bc.astype(np.float64),
                  episode=ep_dir.name, frame_index=frame,
                  ee_uvz=None if ee is None else ee.astype(np.float32), path=path)
