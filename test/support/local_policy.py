"""Fakes for the local-policy tests: a tiny generated dataset and a tiny random checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tracevla_ros.sim.dataset import EpisodeWriter, write_info
from tracevla_ros.tracking import TrackerConfig
from tracevla_ros.tracking.offline import annotate_frames, save_traces
from tracevla_ros.tracking.synthetic import SyntheticScene

SIZE = 64  # px, frames of the generated dataset
TINY_MODEL = {"width": 32, "depth": 1, "heads": 2, "channels": (8, 16)}
TRACKER = TrackerConfig(preset="paper", grid_size=20)  # N = 6: traces from step 6 on (t = 5)
INSTRUCTIONS = ("pick up the red cube", "push the block to the right")


def make_dataset(root: Path, episodes: int = 2, steps: int = 14, annotate: bool = True,
                 size: int = SIZE) -> Path:
    """A dataset in the tracevla-collect layout: synthetic moving textures as frames,
    a smooth action sequence, alternating instructions; traces via annotate_frames."""
    write_info(root, {"robot": "widowx250s", "task": "synthetic", "fps": 5.0,
                      "action_space": "ee_delta_7d", "camera": {"width": size, "height": size}})
    for e in range(episodes):
        scene = SyntheticScene.default(size, size, seed=e)
        frames, times = scene.sequence(fps=5.0, n_frames=steps)
        w = EpisodeWriter(with_depth=False)
        for t in range(steps):
            phase = t / steps
            action = np.array([0.02 * np.cos(6 * phase + e), 0.02 * np.sin(6 * phase), -0.01 * phase,
                               0.0, 0.0, 0.05 * np.sin(3 * phase), float(t < steps // 2)], np.float32)
            joints = np.concatenate([np.linspace(-0.5, 0.5, 6) * phase, [0.02, -0.02]]).astype(np.float32)
            w.add(observation__images__scene=frames[t],
                  observation__state=np.concatenate([joints[:6], [1.0]]).astype(np.float32),
                  observation__joint_positions=joints,
                  observation__ee_pose=np.zeros(7, np.float32), timestamp=np.float64(times[t]),
                  success=np.bool_(False), action=action,
                  action__joint_targets=joints[:6].copy())
        ep_dir = root / f"episode_{e:06d}"
        w.save(ep_dir, {"robot": "widowx250s", "task": f"task{e % 2}",
                        "instruction": INSTRUCTIONS[e % 2], "seed": 1000 + e, "success": True})
        if annotate:
            save_traces(ep_dir, annotate_frames(frames, TRACKER, seed=e), {"test": True})
    return root


def make_tiny_checkpoint(root: Path, no_trace: bool = False, size: int = SIZE) -> Path:
    """Train a tiny network for one step on a generated dataset of ``size`` px frames;
    returns the checkpoint dir."""
    from tracevla_ros.policy.local.train import TrainConfig, train

    data = make_dataset(root / "data", episodes=2, steps=8, size=size)
    out = root / ("ckpt_notrace" if no_trace else "ckpt")
    train(TrainConfig(data=(str(data),), out=str(out), no_trace=no_trace, epochs=1, batch_size=8,
                      image_size=32, max_steps=1, device="cpu", model=dict(TINY_MODEL)),
          progress=False)
    return out
