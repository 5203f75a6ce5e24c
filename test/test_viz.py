"""viz: back-projection, depth lifting, ray/table intersection, Trace3D to metres, line
strips in the overlay's colours; the configured extrinsics are the sim cameras'."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tracevla_ros.camera.base import CameraIntrinsics
from tracevla_ros.config import load_node_config
from tracevla_ros.tracking.overlay import point_colors
from tracevla_ros.viz.config import TraceVizConfig
from tracevla_ros.viz.lift import (
    CameraExtrinsic,
    backproject,
    lift_trace,
    ray_plane,
    sample_depth,
    trace3d_to_xyz,
)
from tracevla_ros.viz.markers import polylines, trace_strokes

INTR = CameraIntrinsics(width=256, height=256, fx=309.0, fy=309.0, cx=127.5, cy=127.5)
WIDOWX = CameraExtrinsic.from_xyz_quat((0.0, -0.35, 0.45), (-0.84426, 0.336414, -0.154431, 0.387558))


def _project(p_cam: np.ndarray) -> np.ndarray:
    return np.stack([INTR.fx * p_cam[:, 0] / p_cam[:, 2] + INTR.cx,
                     INTR.fy * p_cam[:, 1] / p_cam[:, 2] + INTR.cy], axis=1)


def test_backproject_inverts_projection() -> None:
    rng = np.random.default_rng(0)
    p = np.column_stack([rng.uniform(-0.3, 0.3, 50), rng.uniform(-0.3, 0.3, 50), rng.uniform(0.4, 2, 50)])
    assert np.allclose(backproject(_project(p), p[:, 2], INTR), p, atol=1e-12)


def test_lift_with_depth_recovers_the_points_and_marks_holes() -> None:
    depth = np.full((256, 256), 1.25, np.float32)
    depth[100:110, 100:110] = 0.0  # a hole wider than the 3x3 window
    uv = np.array([[[20.0, 30.0], [40.2, 50.7], [104.0, 104.0]]])  # (M=1, N=3, 2)
    vis = np.array([[True, True, True]])
    xyz, ok, method = lift_trace(uv, vis, INTR, depth_image=depth)
    assert method == "depth" and ok.tolist() == [[True, True, False]]
    assert np.allclose(xyz[0, :2, 2], 1.25) and np.allclose(_project(xyz[0, :2]), uv[0, :2])
    assert sample_depth(depth, np.array([[300.0, 5.0]]))[0] == 0.0  # outside the image


def test_ray_plane_puts_table_points_back_on_the_table() -> None:
    rng = np.random.default_rng(1)
    table = np.column_stack([rng.uniform(0.1, 0.5, 40), rng.uniform(-0.2, 0.2, 40), np.zeros(40)])
    p_cam = (table - WIDOWX.translation) @ WIDOWX.rotation  # base -> optical
    uv = _project(p_cam)
    xyz, hit = ray_plane(uv, INTR, WIDOWX, plane_z=0.0)
    assert hit.all() and np.allclose(xyz, p_cam, atol=1e-9)
    # a pixel looking above the horizon never meets the table in front of the camera
    up = (np.array([[1.5, 0.3, 0.8]]) - WIDOWX.translation) @ WIDOWX.rotation
    assert up[0, 2] > 0  # in front of the camera, above its height
    _, hit_up = ray_plane(_project(up), INTR, WIDOWX, 0.0)
    assert not hit_up[0]
    xyz2, ok2, method = lift_trace(uv.reshape(4, 10, 2), np.ones((4, 10), bool), INTR,
                                   extrinsic=WIDOWX)
    assert method == "plane" and ok2.all()
    _, ok3, method3 = lift_trace(uv.reshape(4, 10, 2), np.ones((4, 10), bool), INTR)
    assert method3 == "none" and not ok3.any()


def test_trace3d_pixel_depth_and_metric() -> None:
    p_cam = np.array([[[0.1, -0.05, 1.0], [0.12, -0.04, 1.1]], [[0.0, 0.0, 0.9], [0.0, 0.0, 1.0]]])
    uvd = np.concatenate([_project(p_cam.reshape(-1, 3)).reshape(2, 2, 2), p_cam[..., 2:]], axis=-1)
    uvd[1, 1] = [10.0, 10.0, 0.0]  # no depth
    valid = np.ones((2, 2), bool)
    xyz, ok = trace3d_to_xyz(uvd, valid, 0, INTR)
    assert ok.tolist() == [[True, True], [True, False]]
    assert np.allclose(xyz[ok], p_cam[ok], atol=1e-12)
    metric, ok_m = trace3d_to_xyz(p_cam, valid, 1, None)
    assert np.array_equal(metric, p_cam) and ok_m.all()
    with pytest.raises(ValueError, match="intrinsics"):
        trace3d_to_xyz(uvd, valid, 0, None)
    with pytest.raises(ValueError, match="coordinates 7"):
        trace3d_to_xyz(uvd, valid, 7, INTR)


def test_polylines_break_at_missing_steps_and_keep_overlay_colours() -> None:
    xyz = np.arange(3 * 6 * 3, dtype=float).reshape(3, 6, 3)
    ok = np.array([[1, 1, 0, 1, 1, 1], [1, 0, 1, 0, 1, 0], [0, 0, 0, 0, 0, 0]], bool)
    runs = polylines(xyz, ok)
    assert [(m, len(p)) for m, p in runs] == [(0, 2), (0, 3)]
    lines, heads = trace_strokes(xyz, ok)
    colors = point_colors(3)
    assert lines[0].rgba[:3] == tuple(c / 255.0 for c in colors[0])
    assert [h.point_index for h in heads] == [0, 1]  # point 2 has no valid step
    assert np.array_equal(heads[1].points[0], xyz[1, 4])


@pytest.mark.parametrize("robot,yaml_name", [("widowx", "widowx.yaml"), ("fr3", "fr3.yaml")])
def test_configured_extrinsic_is_the_sim_camera(repo_root: Path, robot: str, yaml_name: str) -> None:
    from tracevla_ros.sim.env import SimEnv

    cfg = load_node_config(TraceVizConfig, repo_root / "config" / yaml_name, "trace_viz_node")
    ext = CameraExtrinsic.from_xyz_quat(cfg.camera_xyz, cfg.camera_quat_xyzw)
    env = SimEnv(robot=robot)
    try:
        pos, rot = env.camera_pose()
        assert cfg.base_frame == env.robot.spec.base_frame
        assert cfg.camera_frame == env.camera_info().frame_id
    finally:
        env.close()
    assert np.allclose(ext.translation, pos, atol=1e-6)
    assert np.allclose(ext.rotation, rot, atol=1e-5)
