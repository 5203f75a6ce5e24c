"""tracevla-collect writes episodes that load_episode reads back (no ROS)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mujoco")

from tracevla_ros.sim.dataset import DatasetError, list_episodes, load_episode, load_info  # noqa: E402
from tracevla_ros.tools.collect import main  # noqa: E402


def test_collect_fr3_with_depth(tmp_path: Path) -> None:
    out = tmp_path / "ball"
    assert main(["--robot", "fr3", "--task", "put_ball_in_box", "--episodes", "1", "--out", str(out)]) == 0
    info = load_info(out)
    assert info["action_space"] == "ee_delta_7d" and info["camera"]["depth"] is True
    K = np.array(info["camera"]["K"])
    assert K.shape == (3, 3) and K[0, 2] == pytest.approx(127.5)
    eps = list_episodes(out)
    assert len(eps) == 1
    ep = load_episode(eps[0])
    t = len(ep)
    assert t > 10 and ep.success and ep.step_success[-1] and not ep.step_success[0]
    assert ep.rgb.shape == (t, 256, 256, 3) and ep.rgb.dtype == np.uint8
    assert ep.depth is not None and ep.depth.shape == (t, 256, 256) and ep.depth.dtype == np.float32
    assert ep.state.shape == (t, 8) and ep.joint_positions.shape == (t, 9)
    assert ep.ee_pose.shape == (t, 7) and ep.actions.shape == (t, 7) and ep.joint_targets.shape == (t, 7)
    assert np.all(np.diff(ep.timestamps) > 0)
    assert ep.instruction == "put the ball in the box"
    # Gripper closes during the episode and reopens to release.
    assert ep.actions[:, 6].min() == 0.0 and ep.actions[-1, 6] == 1.0
    # The ee moved roughly as the actions said (first step, metres).
    np.testing.assert_allclose(ep.ee_pose[1, :3] - ep.ee_pose[0, :3], ep.actions[0, :3], atol=0.01)


def test_collect_widowx_only_success_and_video(tmp_path: Path) -> None:
    out = tmp_path / "push"
    rc = main(["--robot", "widowx", "--task", "push_block_right", "--episodes", "2", "--out", str(out),
               "--only-success", "--video", "--seed", "4"])
    assert rc == 0
    eps = list_episodes(out)
    assert len(eps) == 2
    ep = load_episode(eps[1])
    assert ep.depth is None and ep.seed == 5 and ep.robot == "widowx250s"
    assert (eps[0] / "rgb.mp4").stat().st_size > 1000
    meta = json.loads((eps[0] / "meta.json").read_text())
    assert meta["length"] == len(load_episode(eps[0]))


def test_collect_rejects_bad_arguments(tmp_path: Path) -> None:
    assert main(["--robot", "widowx", "--task", "put_ball_in_box", "--episodes", "1",
                 "--out", str(tmp_path / "x")]) == 2
    assert main(["--robot", "ur5", "--task", "lift_cube", "--out", str(tmp_path / "y")]) == 2
    (tmp_path / "z").mkdir()
    (tmp_path / "z" / "f").write_text("x")
    assert main(["--robot", "widowx", "--task", "lift_cube", "--out", str(tmp_path / "z")]) == 2
    with pytest.raises(DatasetError, match="info.json"):
        list_episodes(tmp_path / "z")
