"""tracegen_ros.data: the TraceForge sample layout round-trips; bad files raise DataError."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tracegen_ros import data as D


def _write_episode(root: Path, name: str = "ep_a", frames: tuple[int, ...] = (0, 5),
                   h: int = 24, w: int = 32) -> None:
    rng = np.random.default_rng(0)
    ep = root / name
    for f in frames:
        rgb = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        depth = rng.uniform(0.5, 2.0, (h, w)).astype(np.float32)
        depth[0, 0] = 0.0
        D.write_frame(ep, f, rgb, depth)
        traj = np.full((400, 32, 3), -np.inf, np.float32)
        traj[:, :10] = rng.uniform(0, 20, (400, 10, 3))
        valid = np.isfinite(traj[..., 0])
        D.write_sample(ep, f, dict(
            keypoints=traj[:, 0, :2].copy(), traj=traj, valid_steps=valid,
            frame_index=np.int64(f), intrinsics=np.eye(3, dtype=np.float32),
            image_size=np.array([w, h], np.int64), T_base_cam=np.eye(4)))
    D.write_instructions(ep, ["push the block", "move the block"])


def test_roundtrip(tmp_path: Path) -> None:
    D.write_info(tmp_path, {"source": "test", "robot": "fr3",
                            "splits": {"train": ["ep_a"], "val": ["ep_b"]}})
    _write_episode(tmp_path, "ep_a")
    _write_episode(tmp_path, "ep_b", frames=(3,))
    info = D.load_info(tmp_path)
    assert (info["grid"], info["L"], info["format"]) == (20, 32, D.FORMAT)
    assert len(D.list_samples(tmp_path)) == 3
    train = D.list_samples(tmp_path, split="train")
    assert [p.name for p in train] == ["ep_a_000000.npz", "ep_a_000005.npz"]
    s = D.load_sample(train[1])
    assert s.rgb.shape == (24, 32, 3) and s.rgb.dtype == np.uint8
    assert s.depth_m.dtype == np.float32 and s.depth_m[0, 0] == 0.0
    assert s.frame_index == 5 and s.episode == "ep_a"
    assert s.instructions == ["push the block", "move the block"]
    assert s.T_base_cam is not None and s.T_base_cam.shape == (4, 4)
    assert np.all(np.isneginf(s.traj[:, 10:])) and not s.valid_steps[:, 10:].any()
    raw = json.loads((tmp_path / "ep_a" / "three_instructions.json").read_text())
    assert list(raw) == ["instruction_1", "instruction_2", "instruction_3"]


def test_depth_mm_roundtrip() -> None:
    d = np.array([[0.0, np.nan, 1.2346], [np.inf, -1.0, 70.0]], np.float32)
    mm = D.depth_to_mm(d)
    assert mm.dtype == np.uint16
    assert mm.tolist() == [[0, 0, 1235], [0, 0, 65535]]


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(D.DataError, match="info.json"):
        D.list_samples(tmp_path)
    D.write_info(tmp_path, {"source": "test"})
    _write_episode(tmp_path)
    path = D.list_samples(tmp_path)[0]
    (tmp_path / "ep_a" / "images" / "000000.png").unlink()
    with pytest.raises(D.DataError, match="000000.png"):
        D.load_sample(path)
    path.write_bytes(b"not a zip")
    with pytest.raises(D.DataError, match="unreadable"):
        D.load_sample(path)
    with pytest.raises(D.DataError, match="split"):
        D.list_samples(tmp_path, split="train")
    (tmp_path / "ep_a" / "three_instructions.json").write_text("{}")
    with pytest.raises(D.DataError, match="instruction_1"):
        D.load_instructions(tmp_path / "ep_a")
