"""Episode dataset written by ``tracevla-collect`` and read by offline trainers (no rclpy).

Layout (documented in DATASET.md next to this file)::

    DIR/info.json                    dataset-level facts (robot, camera, action space, fps)
    DIR/episode_000000/meta.json     instruction, task, seed, success, length
    DIR/episode_000000/data.npz      per-step arrays (keys below), np.savez_compressed
    DIR/episode_000000/rgb.mp4       optional preview video (lossy; data.npz is the source)

Example::

    from tracevla_ros.sim.dataset import load_episode, list_episodes
    for path in list_episodes("data/widowx_carrot"):
        ep = load_episode(path)
        ep.rgb.shape, ep.actions.shape, ep.instruction
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FORMAT", "Episode", "pack_mask", "unpack_masks", "EpisodeWriter", "load_episode", "list_episodes", "load_info",
           "write_info", "DatasetError"]

FORMAT = "tracevla_sim_episodes/v1"

# data.npz keys (LeRobot-style names so a converter is a rename).
K_RGB = "observation.images.scene"  # (T, H, W, 3) uint8 RGB
K_DEPTH = "observation.depth.scene"  # (T, H, W) float32 metres along the optical axis, 0 = none
K_STATE = "observation.state"  # (T, dof + 1) float32: arm joints [rad] + gripper openness [0..1]
K_JOINTS = "observation.joint_positions"  # (T, dof + n_fingers) float32 rad / m (joint_names order)
K_EE = "observation.ee_pose"  # (T, 7) float32: x y z [m], qw qx qy qz, base frame
K_ACTION = "action"  # (T, 7) float32 ee_delta_7d: dx dy dz [m], droll dpitch dyaw [rad], gripper
K_TARGETS = "action.joint_targets"  # (T, dof) float32 joint targets the IK sent [rad]
K_TIME = "timestamp"  # (T,) float64 sim seconds since reset, at the observation
K_SUCCESS = "success"  # (T,) bool: task success at the observation
# --masks: segmentation masks, (T, ceil(H*W/8)) uint8 = np.packbits of the row-major (H, W) bool
K_TARGET_MASK = "observation.masks.target"  # pixels of the target body (meta.json "target")
K_GRIPPER_MASK = "observation.masks.gripper"  # pixels of the gripper link and fingers


def pack_mask(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool -> (ceil(H*W/8),) uint8 packed bits (row-major, big bit order)."""
    return np.packbits(np.asarray(mask, bool).reshape(-1))


def unpack_masks(packed: np.ndarray, height: int, width: int) -> np.ndarray:
    """(T, ceil(H*W/8)) uint8 -> (T, H, W) bool (inverse of :func:`pack_mask` per step)."""
    n = height * width
    return np.unpackbits(packed, axis=-1, count=n).reshape(-1, height, width).astype(bool)


class DatasetError(ValueError):
    """A dataset directory or episode is missing or malformed; the message names the file."""


@dataclass
class Episode:
    """One recorded episode; step ``t`` = observation at t, then action t was executed."""

    path: Path
    instruction: str
    task: str
    robot: str
    seed: int
    success: bool
    rgb: np.ndarray  # (T, H, W, 3) uint8
    state: np.ndarray  # (T, dof + 1) float32
    joint_positions: np.ndarray  # (T, n_joints) float32
    ee_pose: np.ndarray  # (T, 7) float32
    actions: np.ndarray  # (T, 7) float32
    joint_targets: np.ndarray  # (T, dof) float32
    timestamps: np.ndarray  # (T,) float64
    step_success: np.ndarray  # (T,) bool
    depth: np.ndarray | None = None  # (T, H, W) float32 or None
    target_mask: np.ndarray | None = None  # (T, H, W) bool or None (collected with --masks)
    gripper_mask: np.ndarray | None = None  # (T, H, W) bool or None
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.actions.shape[0])


class EpisodeWriter:
    """Accumulates steps in memory and writes one episode directory on ``save``."""

    def __init__(self, with_depth: bool) -> None:
        self.with_depth = with_depth
        self._cols: dict[str, list[np.ndarray]] = {}

    def add(self, **arrays: Any) -> None:
        """One step; keyword names are the data.npz keys with '.' replaced by '__'."""
        for k, v in arrays.items():
            self._cols.setdefault(k.replace("__", "."), []).append(np.asarray(v))

    def __len__(self) -> int:
        return len(next(iter(self._cols.values()), []))

    def save(self, ep_dir: Path, meta: dict[str, Any], video_fps: float | None = None) -> None:
        ep_dir.mkdir(parents=True, exist_ok=True)
        arrays = {k: np.stack(v) for k, v in self._cols.items()}
        lengths = {k: a.shape[0] for k, a in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise DatasetError(f"{ep_dir}: columns have different lengths {lengths}")
        np.savez_compressed(ep_dir / "data.npz", **arrays)  # type: ignore[arg-type]
        meta = dict(meta, length=len(self), format=FORMAT)
        (ep_dir / "meta.json").write_text(json.dumps(meta, indent=2))
        if video_fps is not None and K_RGB in arrays:
            import imageio.v2 as imageio

            imageio.mimwrite(ep_dir / "rgb.mp4", list(arrays[K_RGB]), fps=video_fps,
                             macro_block_size=1)


def write_info(root: Path, info: dict[str, Any]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "info.json").write_text(json.dumps(dict(info, format=FORMAT), indent=2))


def load_info(root: str | Path) -> dict[str, Any]:
    path = Path(root) / "info.json"
    if not path.is_file():
        raise DatasetError(f"{path} not found: is {root} a tracevla-collect output directory?")
    info: dict[str, Any] = json.loads(path.read_text())
    if info.get("format") != FORMAT:
        raise DatasetError(f"{path}: format {info.get('format')!r}, expected {FORMAT!r}")
    return info


def list_episodes(root: str | Path) -> list[Path]:
    """Episode directories under ``root``, in order."""
    root = Path(root)
    load_info(root)
    return sorted(p for p in root.glob("episode_*") if (p / "data.npz").is_file())


def load_episode(path: str | Path) -> Episode:
    """Read one episode directory written by :class:`EpisodeWriter`."""
    path = Path(path)
    meta_path, data_path = path / "meta.json", path / "data.npz"
    if not meta_path.is_file() or not data_path.is_file():
        raise DatasetError(f"{path}: expected meta.json and data.npz (a tracevla-collect episode)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise DatasetError(f"{meta_path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    with np.load(data_path) as z:
        missing = [k for k in (K_RGB, K_STATE, K_JOINTS, K_EE, K_ACTION, K_TARGETS, K_TIME, K_SUCCESS)
                   if k not in z.files]
        if missing:
            raise DatasetError(f"{data_path}: missing arrays {missing}")
        h, w = z[K_RGB].shape[1:3]
        masks = [unpack_masks(z[k], h, w) if k in z.files else None
                 for k in (K_TARGET_MASK, K_GRIPPER_MASK)]
        return Episode(
            path=path, instruction=str(meta["instruction"]), task=str(meta["task"]),
            robot=str(meta["robot"]), seed=int(meta["seed"]), success=bool(meta["success"]),
            rgb=z[K_RGB], state=z[K_STATE], joint_positions=z[K_JOINTS], ee_pose=z[K_EE],
            actions=z[K_ACTION], joint_targets=z[K_TARGETS], timestamps=z[K_TIME],
            step_success=z[K_SUCCESS], depth=z[K_DEPTH] if K_DEPTH in z.files else None, meta=meta,
            target_mask=masks[0], gripper_mask=masks[1],
        )
