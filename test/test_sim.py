"""Simulator worlds, camera model, tasks and scripted experts (no ROS)."""

from __future__ import annotations

import math

import numpy as np
import pytest

mujoco = pytest.importorskip("mujoco")

from tracevla_ros.sim.camera import intrinsics_from_fovy, project_points  # noqa: E402
from tracevla_ros.sim.env import SimEnv, SimError  # noqa: E402
from tracevla_ros.sim.experts import EXPERTS, run_expert_episode  # noqa: E402
from tracevla_ros.sim.tasks import TASKS, TaskError, tasks_for_robot  # noqa: E402

ALL = [("widowx", t) for t in tasks_for_robot("widowx250s")] + [("fr3", t) for t in tasks_for_robot("fr3")]


@pytest.fixture(scope="module")
def widowx() -> SimEnv:
    env = SimEnv(robot="widowx", task="lift_cube", seed=0)
    yield env
    env.close()


@pytest.fixture(scope="module")
def fr3() -> SimEnv:
    env = SimEnv(robot="fr3", task="push_block_to_region", seed=0)
    yield env
    env.close()


def test_intrinsics_from_fovy() -> None:
    intr = intrinsics_from_fovy(90.0, 256, 256, "cam")
    assert intr.fx == pytest.approx(128.0) and intr.fy == pytest.approx(128.0)
    assert (intr.cx, intr.cy) == (127.5, 127.5)
    with pytest.raises(ValueError, match="fovy"):
        intrinsics_from_fovy(0.0, 10, 10, "cam")


def test_task_lists() -> None:
    assert len(tasks_for_robot("widowx250s")) >= 3
    assert len(tasks_for_robot("fr3")) >= 2
    assert set(EXPERTS) == set(TASKS)
    with pytest.raises(TaskError, match="known"):
        SimEnv(robot="widowx", task="no_such_task")
    with pytest.raises(TaskError, match="robot"):
        SimEnv(robot="widowx", task="put_ball_in_box")


def test_render_shapes_and_textures(widowx: SimEnv, fr3: SimEnv) -> None:
    rgb = widowx.render()
    assert rgb.shape == (256, 256, 3) and rgb.dtype == np.uint8
    # Textured table: many distinct colours, not a flat image.
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 500
    assert not widowx.has_depth
    depth = fr3.render_depth()
    assert depth.shape == (256, 256) and depth.dtype == np.float32
    valid = depth[depth > 0]
    assert valid.size > 0.8 * depth.size and 0.3 < valid.min() < valid.max() < 8.0


def test_projection_matches_rendered_depth(fr3: SimEnv) -> None:
    """The block's top face centre projects to a pixel whose depth equals its optical z."""
    fr3.reset(3)
    top = fr3.object_pose("fr3_block").pos + np.array([0.0, 0.0, 0.025])
    cid = fr3._cam_id
    uvz = project_points(top[None], fr3.data.cam_xpos[cid], fr3.data.cam_xmat[cid], fr3.camera_info())[0]
    u, v = int(round(uvz[0])), int(round(uvz[1]))
    assert 0 <= u < 256 and 0 <= v < 256
    assert fr3.render_depth()[v, u] == pytest.approx(uvz[2], abs=0.01)
    # camera_pose() is the optical frame: its z axis points at the scene (positive depth).
    pos, rot = fr3.camera_pose()
    assert ((top - pos) @ rot)[2] == pytest.approx(uvz[2], abs=1e-9)
    # The block is yellow in the RGB image at that pixel.
    r, g, b = fr3.render()[v, u].astype(int)
    assert r > 120 and g > 90 and b < 90


def test_reset_is_seeded(widowx: SimEnv) -> None:
    widowx.reset(5)
    a = widowx.object_pose("cube").pos
    widowx.reset(6)
    b = widowx.object_pose("cube").pos
    widowx.reset(5)
    c = widowx.object_pose("cube").pos
    np.testing.assert_allclose(a, c, atol=1e-9)
    assert np.linalg.norm(a - b) > 1e-3
    np.testing.assert_allclose(widowx.joint_positions(), widowx.robot.spec.home_q, atol=0.02)
    assert widowx.gripper_opening() > 0.95 and widowx.sim_time == 0.0


def test_joint_targets_move_joints(widowx: SimEnv) -> None:
    widowx.reset(0)
    q = widowx.robot.spec.home_q + np.array([0.3, 0.1, -0.1, 0.0, 0.2, 0.3])
    for _ in range(5):
        widowx.step_joint_targets(q, gripper=0.0)
    np.testing.assert_allclose(widowx.joint_positions(), q, atol=0.03)
    assert widowx.gripper_opening() < 0.1
    assert widowx.sim_time == pytest.approx(5 * widowx.control_dt)
    js = widowx.joint_state()
    assert js.names[:6] == widowx.robot.spec.ros_joint_names and len(js.names) == 8


def test_ee_delta_moves_end_effector(fr3: SimEnv) -> None:
    fr3.reset(0)
    p0, _ = fr3.ee_pose()
    for _ in range(3):
        fr3.step_ee_delta(np.array([0.02, -0.01, -0.02, 0.0, 0.0, 0.0, 1.0]))
    p1, _ = fr3.ee_pose()
    np.testing.assert_allclose(p1 - p0, [0.06, -0.03, -0.06], atol=0.01)
    r0 = fr3.ee_matrix()
    fr3.step_ee_delta(np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.2, 1.0]))
    r1 = fr3.ee_matrix()
    ang = math.acos(np.clip((np.trace(r1 @ r0.T) - 1) / 2, -1, 1))
    assert ang == pytest.approx(0.2, abs=0.03)


def test_bad_actions_raise(widowx: SimEnv) -> None:
    with pytest.raises(SimError, match="7 finite"):
        widowx.step_ee_delta(np.zeros(6))
    with pytest.raises(SimError, match="finite"):
        widowx.step_ee_delta(np.array([np.nan, 0, 0, 0, 0, 0, 1]))
    with pytest.raises(SimError, match="6 finite"):
        widowx.step_joint_targets(np.zeros(3))


def test_success_false_at_start() -> None:
    for robot, task in ALL:
        env = SimEnv(robot=robot, task=task, seed=1)
        assert not env.success(), f"{task} starts solved"
        env.close()


@pytest.mark.parametrize("robot,task", ALL)
def test_expert_solves_a_few_seeds(robot: str, task: str) -> None:
    env = SimEnv(robot=robot, task=task, seed=0)
    results = [run_expert_episode(env, seed)[0] for seed in (0, 1, 2)]
    assert sum(results) >= 2, f"{task}: expert succeeded on {results}"


@pytest.mark.slow
@pytest.mark.parametrize("robot,task", ALL)
def test_expert_success_rate_20_seeds(robot: str, task: str) -> None:
    env = SimEnv(robot=robot, task=task, seed=0)
    wins = sum(run_expert_episode(env, seed)[0] for seed in range(20))
    assert wins >= 18, f"{task}: {wins}/20 < 90%"


def test_command_vector_is_what_ros_controllers_command(widowx: SimEnv) -> None:
    """command_vector: arm targets [rad] then the finger [m]; set_command_vector inverts it."""
    s = widowx.robot.spec
    q = np.asarray(s.home_q, np.float64) + 0.05
    widowx.set_joint_targets(q, 0.25)
    v = widowx.command_vector()
    assert v.shape == (s.dof + 1,)
    np.testing.assert_allclose(v[: s.dof], np.clip(q, s.lower, s.upper))
    assert v[s.dof] == pytest.approx(s.gripper_position(0.25))
    widowx.set_joint_targets(s.home_q, 1.0)
    widowx.set_command_vector(v)
    np.testing.assert_allclose(widowx.command_vector(), v)
    assert widowx.gripper_command == pytest.approx(0.25)
