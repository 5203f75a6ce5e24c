"""A tiny generated TraceForge-layout dataset for tests and smoke runs (no simulator).

A textured table plane seen from above at ``table_m`` metres, with one
coloured block (``block_m`` metres closer to the camera). The instruction
names a direction ("push the block left" ...); over the trace the block
slides ``motion_px`` pixels that way while the background stays put, so a
model must use both the image (where the block is) and the text (which way)
to predict the trace. Written with the ``tracegen_ros.data`` writer helpers.

Example::

    python -c "from tracegen_ros.synthetic import write_dataset; write_dataset('/tmp/tg', 6)"
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tracegen_ros.data import (
    GRID,
    TRACE_LEN,
    grid_keypoints,
    write_frame,
    write_info,
    write_instructions,
    write_sample,
)

__all__ = ["write_dataset", "DIRECTIONS"]

DIRECTIONS: dict[str, tuple[float, float]] = {
    "left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0),
}


def _scene(rng: np.random.Generator, size: int, table_m: float, block_m: float,
           block_px: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    yy, xx = np.mgrid[0:size, 0:size]
    tex = 120 + 40 * np.sin(xx / 3.0 + rng.uniform(0, 6)) * np.cos(yy / 4.0)
    rgb = np.stack([tex, tex * 0.9, tex * 0.8], -1).astype(np.uint8)
    depth = np.full((size, size), table_m, np.float32)
    lo, hi = block_px, size - 2 * block_px
    x0, y0 = int(rng.integers(lo, hi)), int(rng.integers(lo, hi))
    rgb[y0:y0 + block_px, x0:x0 + block_px] = (220, 30, 30)
    depth[y0:y0 + block_px, x0:x0 + block_px] = table_m - block_m
    return rgb, depth, (x0, y0)


def write_dataset(root: str | Path, episodes: int = 8, frames_per_episode: int = 2,
                  size: int = 64, motion_px: float = 12.0, seed: int = 0,
                  table_m: float = 1.0, block_m: float = 0.05, val_episodes: int = 2) -> Path:
    """Write ``episodes`` episodes (directions cycle) to ``root``; returns ``root``.

    The last ``val_episodes`` episodes form the "val" split of info.json.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    f = size * 1.2
    K = np.array([[f, 0, (size - 1) / 2], [0, f, (size - 1) / 2], [0, 0, 1]], np.float32)
    kp = grid_keypoints(size, size, GRID)
    names = list(DIRECTIONS)
    ep_names = []
    block_px = max(4, size // 6)
    for e in range(episodes):
        name = f"episode_{e:06d}"
        ep_names.append(name)
        ep_dir = root / name
        word = names[e % len(names)]
        du, dv = DIRECTIONS[word]
        write_instructions(ep_dir, [f"push the block {word}", f"move the red block {word}",
                                    f"slide the cube to the {word}"])
        for fr in range(frames_per_episode):
            rgb, depth, (x0, y0) = _scene(rng, size, table_m, block_m, block_px)
            write_frame(ep_dir, fr, rgb, depth)
            on = ((kp[:, 0] >= x0 - 0.5) & (kp[:, 0] < x0 + block_px - 0.5)
                  & (kp[:, 1] >= y0 - 0.5) & (kp[:, 1] < y0 + block_px - 0.5))
            s = np.linspace(0.0, 1.0, TRACE_LEN, dtype=np.float32)
            traj = np.empty((kp.shape[0], TRACE_LEN, 3), np.float32)
            traj[:, :, 0] = kp[:, None, 0] + on[:, None] * du * motion_px * s[None]
            traj[:, :, 1] = kp[:, None, 1] + on[:, None] * dv * motion_px * s[None]
            iu = np.clip(np.rint(kp[:, 0]).astype(int), 0, size - 1)
            iv = np.clip(np.rint(kp[:, 1]).astype(int), 0, size - 1)
            traj[:, :, 2] = depth[iv, iu][:, None]
            valid = np.ones(traj.shape[:2], bool)
            write_sample(ep_dir, fr, {
                "keypoints": kp, "traj": traj, "valid_steps": valid,
                "frame_index": np.array(fr, np.int64), "intrinsics": K,
                "image_size": np.array([size, size], np.int64)})
    n_val = min(val_episodes, max(episodes - 1, 0))
    write_info(root, {"source": "synthetic", "robot": "none",
                      "splits": {"train": ep_names[: episodes - n_val],
                                 "val": ep_names[episodes - n_val:]}})
    return root
