"""TraceGen execution path: gripper keypoints, camera -> base waypoints, gripper events,
the executor's sequencing, and one oracle / no-motion episode on the FR3 sim."""

from __future__ import annotations

import numpy as np
import pytest

from tracegen_ros.data import grid_keypoints
from tracegen_ros.execution import (
    ExecutionConfig,
    ExecutionError,
    FixedTracePredictor,
    NoMotionPredictor,
    ee_pixel,
    gripper_events,
    plan_execution,
    select_gripper_keypoints,
)
from tracegen_ros.executor import ExecutorConfig, SendGripper, SendWaypoints, TraceExecutor
from tracegen_ros.traceforge.geometry import GeometryError, invert_pose, transform_points, xyz_to_uvz

# The FR3 sim camera: optical frame in the base frame, 256 x 256, fovy 50 deg.
T_BASE_CAM = np.array([[0.6, 0.48, -0.64, 1.2], [0.8, -0.36, 0.48, -0.6], [0.0, -0.8, -0.6, 0.9],
                       [0, 0, 0, 1.0]])
F = 128 / np.tan(np.radians(25))
K = np.array([[F, 0, 127.5], [0, F, 127.5], [0, 0, 1]])
EE0 = np.array([0.45, 0.05, 0.30])


def _scene_trace(ee_path_base: np.ndarray, on_gripper_px: float = 12.0) -> np.ndarray:
    """(400, L, 3): grid points within ``on_gripper_px`` of the ee's projection move with the
    ee (a rigid translation, at the ee's depth + 2 cm); the rest is a static wall at 2.5 m."""
    kp = grid_keypoints(256, 256)
    L = len(ee_path_base)
    ee_uv = ee_pixel(EE0, T_BASE_CAM, K)
    traj = np.empty((400, L, 3), np.float32)
    traj[:, :, :2] = kp[:, None, :]
    traj[:, :, 2] = 2.5
    t_cam_base = invert_pose(T_BASE_CAM)
    disp_cam = transform_points(t_cam_base, ee_path_base) - transform_points(t_cam_base, EE0[None])
    for k in np.flatnonzero(np.linalg.norm(kp - ee_uv[:2], axis=1) < on_gripper_px):
        z0 = ee_uv[2] + 0.02
        p0 = np.array([(kp[k, 0] - K[0, 2]) / F * z0, (kp[k, 1] - K[1, 2]) / F * z0, z0])
        traj[k] = xyz_to_uvz(p0 + disp_cam, K)
    return traj


def _pick_path() -> np.ndarray:
    """Down to the object, up, across, down to a place height, up: 32 waypoints."""
    pts = [EE0, [0.50, 0.10, 0.025], [0.50, 0.10, 0.16], [0.50, -0.10, 0.16], [0.50, -0.10, 0.11],
           [0.50, -0.10, 0.16]]
    seg = [np.linspace(a, b, 7)[:-1] for a, b in zip(pts[:-1], pts[1:])]
    return np.vstack(seg + [np.array(pts[-1])[None], np.array(pts[-1])[None]])


def test_waypoints_follow_the_gripper_keypoints() -> None:
    path = _pick_path()
    traj = _scene_trace(path)
    ee = ee_pixel(EE0, T_BASE_CAM, K)
    kp = select_gripper_keypoints(traj, ee, K)
    grid = grid_keypoints(256, 256)
    assert 1 <= len(kp) <= 3 and np.all(np.linalg.norm(grid[kp] - ee[:2], axis=1) < 12.0)
    plan = plan_execution(traj, K, T_BASE_CAM, EE0, gripper_open=True)
    # the merged waypoints lie on the commanded path, start and end where it does
    np.testing.assert_allclose(plan.path[0], EE0, atol=1e-4)
    np.testing.assert_allclose(plan.path[-1], path[-1], atol=1e-4)
    d = np.min(np.linalg.norm(plan.path[:, None] - path[None], axis=2), axis=1)
    assert d.max() < 1e-4
    # pick: open already, close at the low point, open at the place height
    assert plan.gripper_before is None
    assert plan.grasp_index is not None and plan.release_index is not None
    assert plan.path[plan.grasp_index, 2] == pytest.approx(0.025, abs=1e-4)
    assert plan.path[plan.release_index, 2] == pytest.approx(0.11, abs=1e-4)
    assert [s.gripper_open_after for s in plan.segments] == [False, True, None]
    assert sum(len(s.positions) for s in plan.segments) == len(plan.path)


def test_receding_horizon_keeps_the_events_inside_the_executed_part() -> None:
    path = _pick_path()  # steps 0-6 down to the object (grasp at step 6), lift, carry, place
    traj = _scene_trace(path)
    full = plan_execution(traj, K, T_BASE_CAM, EE0, gripper_open=True)
    early = plan_execution(traj, K, T_BASE_CAM, EE0, True, ExecutionConfig(execute_steps=3))
    # only the approach: the path is the full one's prefix, the grasp is left for the next frame
    assert early.grasp_index is None and early.release_index is None
    assert len(early.path) < len(full.path)
    np.testing.assert_allclose(early.path, full.path[: len(early.path)])
    np.testing.assert_allclose(early.path[-1], path[3], atol=1e-4)
    assert [s.gripper_open_after for s in early.segments] == [None]
    # through the grasp and the lift: it closes on the object, the release comes later
    mid = plan_execution(traj, K, T_BASE_CAM, EE0, True, ExecutionConfig(execute_steps=12))
    assert mid.grasp_index == full.grasp_index and mid.release_index is None
    assert [s.gripper_open_after for s in mid.segments] == [False, None]
    np.testing.assert_allclose(mid.path[-1], path[12], atol=1e-4)
    # a horizon past the end is the whole trace
    last = plan_execution(traj, K, T_BASE_CAM, EE0, True, ExecutionConfig(execute_steps=40))
    np.testing.assert_allclose(last.path, full.path)
    assert (last.grasp_index, last.release_index) == (full.grasp_index, full.release_index)
    with pytest.raises(ValueError, match="execute_steps"):
        ExecutionConfig(execute_steps=-1)


def test_no_gripper_keypoint_is_an_error() -> None:
    traj = _scene_trace(np.repeat(EE0[None], 32, 0), on_gripper_px=0.0)  # nothing on the gripper
    with pytest.raises(ExecutionError, match="no keypoint on the gripper"):
        plan_execution(traj, K, T_BASE_CAM, EE0, gripper_open=True)
    with pytest.raises(ExecutionError, match="N, L, 3"):
        plan_execution(traj[:, :, :2], K, T_BASE_CAM, EE0, gripper_open=True)


def _z(*knots: float, n: int = 6) -> np.ndarray:
    return np.concatenate([np.linspace(a, b, n)[:-1] for a, b in zip(knots[:-1], knots[1:])]
                          + [[knots[-1]]])


def test_gripper_events_from_the_height_profile() -> None:
    cfg = ExecutionConfig()
    pick = _z(0.49, 0.025, 0.16, 0.16, 0.11, 0.16)
    before, g, r = gripper_events(pick, gripper_open=True, cfg=cfg)
    assert before is None and pick[g] == pytest.approx(0.025) and pick[r] == pytest.approx(0.11)
    # closed now (e.g. after a failed grasp): opened before coming down
    assert gripper_events(pick, gripper_open=False, cfg=cfg)[0] is True
    push = _z(0.49, 0.08, 0.025, 0.025, 0.025)
    assert gripper_events(push, True, cfg)[1:] == (10, None)  # close on contact, stay closed
    regrip = _z(0.49, 0.025, 0.025, 0.08, 0.08, 0.025, 0.025)  # pusher goes round the block
    assert gripper_events(regrip, True, cfg)[2] is None
    carrying = _z(0.03, 0.16, 0.16, 0.11, 0.16)  # holding: place it
    before, g, r = gripper_events(carrying, False, cfg)
    assert (before, g) == (None, None) and carrying[r] == pytest.approx(0.11)
    assert gripper_events(np.full(10, 0.3), True, cfg) == (None, None, None)


def test_no_motion_predictor() -> None:
    depth = np.full((256, 256), 1.5, np.float32)
    depth[:10] = 0.0
    out = NoMotionPredictor().predict(np.zeros((256, 256, 3), np.uint8), depth, K, "x")
    assert out.shape == (400, 32, 3) and out.dtype == np.float32
    ok = np.isfinite(out[:, 0, 2])
    assert ok.sum() == 380 and np.all(out[ok] == out[ok][:, :1])
    with pytest.raises(GeometryError, match="missing"):
        NoMotionPredictor().predict(np.zeros((256, 256, 3), np.uint8), None, K, "x")  # type: ignore[arg-type]


def test_executor_sequences_segments_and_gripper() -> None:
    path = _pick_path()
    plan = plan_execution(_scene_trace(path), K, T_BASE_CAM, EE0, gripper_open=False)
    ex = TraceExecutor(ExecutorConfig(gripper_wait_s=1.0, timeout_margin_s=2.0))
    ex.start(plan)
    t = 0.0
    cmds = ex.tick(t, EE0)
    assert isinstance(cmds[0], SendGripper) and cmds[0].open  # opened before coming down
    assert ex.tick(0.5, EE0) == []  # waits for the hand
    cmds = ex.tick(1.1, EE0)
    assert isinstance(cmds[0], SendWaypoints)
    first = cmds[0].positions
    assert ex.tick(1.2, EE0) == []  # not there yet
    end = 1.1 + ExecutorConfig().expected_s(EE0, first)
    assert ex.tick(end - 0.5, first[-1] + 0.005) == []  # there, but early: still moving
    assert ex.tick(end - 0.4, first[-1] + 0.05) == []  # overshoot: 5 cm off again
    assert ex.tick(end + 0.1, first[-1] + 0.005) == []  # back, settling
    cmds = ex.tick(end + 0.45, first[-1] + 0.005)  # reached (within 1 cm) and settled
    assert isinstance(cmds[0], SendGripper) and not cmds[0].open
    seen = [cmds[0]]
    t = end + 1.5
    while ex.busy and t < 200:
        seen += ex.tick(t, None)  # no ee feedback: segments end by timeout
        t += 0.5
    assert not ex.busy and ex.timeouts == 2
    kinds = [(type(c).__name__, getattr(c, "open", None)) for c in seen]
    assert kinds == [("SendGripper", False), ("SendWaypoints", None), ("SendGripper", True),
                     ("SendWaypoints", None)]


@pytest.fixture(scope="module")
def ball_env():
    from tracevla_ros.sim.env import SimEnv

    env = SimEnv("fr3", "put_ball_in_box", seed=0)
    yield env
    env.close()


def test_oracle_and_no_motion_on_the_sim(ball_env) -> None:
    """One held-out seed: the expert's own trace, executed through IK + safety, succeeds;
    nothing moving does not."""
    from tracegen_ros.sim_exec import SimTraceRunner
    from tracegen_ros.traceforge.pipeline import trace_from_frames
    from tracegen_ros.traceforge.simgt import record_expert

    rec = record_expert(ball_env, 100002)
    assert rec.success
    traj, _ = trace_from_frames(rec.rgb, rec.depth, rec.K)
    runner = SimTraceRunner(ball_env)
    res = runner.run_episode(FixedTracePredictor(traj), 100002)
    assert res.success and res.rounds == 1 and res.waypoints >= 20 and not res.error
    assert len(res.grasps) == 1
    res = runner.run_episode(NoMotionPredictor(), 100002)
    assert not res.success and res.waypoints <= 1
