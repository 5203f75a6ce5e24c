"""TraceForge: arc-length retargeting on analytic curves, 3D lifting against the FR3 sim's
ground truth, the sample layout, resumability and corrupt/bad episodes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from tracegen_ros import data as D
from tracegen_ros.traceforge.cli import main as traceforge_main
from tracegen_ros.traceforge.geometry import GeometryError, check_rgbd, unproject, xyz_to_uvz
from tracegen_ros.traceforge.resample import arc_length, resample_by_arc_length
from tracegen_ros.traceforge.sources import discover

# -- speed retargeting ---------------------------------------------------------------------


def _circle(theta: np.ndarray, r: float = 0.2) -> np.ndarray:
    return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)


def _helix(theta: np.ndarray, r: float = 0.1, pitch: float = 0.05) -> np.ndarray:
    return np.stack([r * np.cos(theta), r * np.sin(theta), pitch * theta / (2 * np.pi)], axis=1)


@pytest.mark.parametrize("curve,dim", [(_circle, 2), (_helix, 3)])
def test_resampling_keeps_shape_and_spacing(curve, dim: int) -> None:
    # Uneven speed: the parameter advances quadratically (slow start, fast end), 400 samples.
    s = np.linspace(0.0, 1.0, 400) ** 2
    theta = s * 1.75 * 2 * np.pi
    path = curve(theta)
    out = resample_by_arc_length(path, 32)
    assert out.shape == (32, dim)
    np.testing.assert_allclose(out[0], path[0])
    np.testing.assert_allclose(out[-1], path[-1])
    # On the curve: radius kept (chords of a fine polyline: < 0.1 mm off)
    np.testing.assert_allclose(np.linalg.norm(out[:, :2], axis=1), 0.2 if dim == 2 else 0.1, atol=1e-4)
    if dim == 3:  # helix: z follows the unwrapped angle
        ang = np.unwrap(np.arctan2(out[:, 1], out[:, 0]))
        np.testing.assert_allclose(out[:, 2], 0.05 * ang / (2 * np.pi), atol=1e-4)
    # Equal arc-length spacing along the true curve: equal angle steps
    ang = np.unwrap(np.arctan2(out[:, 1], out[:, 0]))
    steps = np.diff(ang)
    np.testing.assert_allclose(steps, steps.mean(), rtol=0.01)
    np.testing.assert_allclose(arc_length(out)[-1], arc_length(path)[-1], rtol=0.01)


def test_resampling_is_speed_invariant() -> None:
    theta_a = np.linspace(0, np.pi, 300)
    theta_b = np.pi * np.sin(np.linspace(0, np.pi / 2, 50)) ** 3  # another speed profile
    a = resample_by_arc_length(_helix(theta_a), 32)
    b = resample_by_arc_length(_helix(theta_b), 32)
    np.testing.assert_allclose(a, b, atol=2e-3)  # coarse 50-sample polyline: mm-level chords


def test_resampling_static_and_pauses() -> None:
    p = np.repeat(np.array([[0.1, 0.2, 0.3]]), 10, axis=0)
    out = resample_by_arc_length(p + 1e-5 * np.arange(10)[:, None], 32, min_length=0.003)
    np.testing.assert_allclose(out, np.repeat(p[:1], 32, axis=0))
    # a pause in the middle (repeated points) does not bunch the output
    line = np.concatenate([np.linspace([0, 0, 0], [1, 0, 0], 5), np.repeat([[1, 0, 0]], 20, 0),
                           np.linspace([1, 0, 0], [2, 0, 0], 5)])
    out = resample_by_arc_length(line, 9)
    np.testing.assert_allclose(out[:, 0], np.linspace(0, 2, 9), atol=1e-12)
    with pytest.raises(ValueError):
        resample_by_arc_length(np.array([[0.0, np.nan]]), 4)


# -- sim ground truth ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def rec():
    from tracegen_ros.traceforge.simgt import record_expert
    from tracevla_ros.sim.env import SimEnv

    env = SimEnv("fr3", "push_block_to_region", seed=0)
    try:
        yield record_expert(env, seed=1)
    finally:
        env.close()


def test_lifting_matches_sim_ground_truth(rec) -> None:
    """Depth lifting (pixel + depth + intrinsics -> 3D in the reference camera) is within 1 cm
    of the simulator's true surface points; tracking drift is measured separately."""
    from tracegen_ros.traceforge.geometry import sample_depth
    from tracegen_ros.traceforge.simgt import gt_points

    kp = D.grid_keypoints(*rec.depth.shape[1:])
    gt = gt_points(rec, 0, kp)  # (T, K, 3) reference camera frame, rigid with each body
    ok0 = np.isfinite(gt[0, :, 0])
    assert ok0.sum() > 300
    # every grid point of the reference frame
    lifted0 = unproject(kp[ok0], sample_depth(rec.depth[0], kp[ok0]), rec.K)
    assert np.linalg.norm(lifted0 - gt[0, ok0], axis=1).max() < 0.01
    # every frame: each true point's pixel, lifted with that frame's depth, where not occluded
    errs = []
    for t in range(1, len(rec.rgb)):
        uvz = xyz_to_uvz(gt[t, ok0], rec.K)
        z = sample_depth(rec.depth[t], uvz[:, :2])
        seen = np.isfinite(z) & (np.abs(z - uvz[:, 2]) < 0.02)
        lifted = unproject(uvz[seen, :2], z[seen], rec.K)
        errs.append(np.linalg.norm(lifted - gt[t, ok0][seen], axis=1))
    err = np.concatenate(errs)
    assert err.size > 5000
    assert np.percentile(err, 99) < 0.01, np.percentile(err, 99)


def test_tracked_traces_follow_sim_ground_truth(rec) -> None:
    """LK tracking + lifting on the moving bodies (hand, block): drift stays small."""
    from tracegen_ros.traceforge.simgt import gt_points
    from tracegen_ros.traceforge.tracks import lift_tracks, make_frames, track_2d

    kp = D.grid_keypoints(*rec.depth.shape[1:])
    gt = gt_points(rec, 0, kp)
    tr, vis = track_2d(make_frames(rec.rgb), kp)
    xyz = lift_tracks(tr, vis, rec.depth, rec.K)
    moving = np.nanmax(np.linalg.norm(gt - gt[:1], axis=2), axis=0) > 0.02
    err = np.linalg.norm(xyz[1:, moving] - gt[1:, moving], axis=2)
    valid = np.isfinite(err)
    assert valid.sum() >= 50  # the hand is followed through much of the episode
    assert np.median(err[valid]) < 0.02, np.median(err[valid])


def test_retarget_tail_invalid_when_lost() -> None:
    from tracegen_ros.traceforge.tracks import retarget

    K = np.array([[200.0, 0, 64], [0, 200, 64], [0, 0, 1]])
    xyz = np.full((11, 3, 3), np.nan)
    xyz[:, 0] = np.linspace([0, 0, 1], [0.1, 0, 1], 11)  # seen throughout
    xyz[:6, 1] = np.linspace([0, 0, 1], [0.05, 0, 1], 6)  # lost after half the chunk
    traj, valid = retarget(xyz, K, 32)  # track 2 has no depth at the reference frame
    assert valid[0].all() and valid[1, :16].all() and not valid[1, 16:].any()
    assert not valid[2].any() and np.all(np.isneginf(traj[2]))
    np.testing.assert_allclose(traj[1, 15, :2], [74.0, 64.0], atol=1e-4)  # lost at x = 0.05 m
    assert np.all(np.isneginf(traj[1, 16:]))


# -- the pipeline on a small tracevla-collect dataset ----------------------------------------


@pytest.fixture(scope="module")
def collect_dir(tmp_path_factory) -> Path:
    from tracevla_ros.tools.collect import main as collect_main

    out = tmp_path_factory.mktemp("collect") / "push"
    assert collect_main(["--robot", "fr3", "--task", "push_block_to_region", "--episodes", "2",
                         "--out", str(out), "--seed", "3"]) == 0
    return out


def _sample_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): np.load(p)["traj"].tobytes() for p in D.list_samples(root)}


def test_layout_resume_and_corrupt_episode(collect_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(collect_dir, src)
    out = tmp_path / "out"
    assert traceforge_main(["--episodes", str(src), "--out", str(out), "--no-progress"]) == 0
    info = D.load_info(out)
    assert info["robot"] == "fr3" and info["source"] == "tracevla-collect" and info["episodes"] == 2
    samples = D.list_samples(out)
    assert len(samples) >= 4
    s = D.load_sample(samples[0])
    assert s.keypoints.shape == (400, 2) and s.traj.shape == (400, 32, 3)
    assert s.T_base_cam is not None and s.ee_uvz is not None and s.ee_uvz.shape == (32, 3)
    assert len(s.instructions) == 3 and s.instructions[0] == "push the block into the purple region"
    np.testing.assert_allclose(s.traj[s.valid_steps[:, 0], 0, :2], s.keypoints[s.valid_steps[:, 0]],
                               atol=1e-3)  # step 0 = the keypoint
    assert np.all(np.isneginf(s.traj[~s.valid_steps]))
    assert s.valid_steps[:, 0].mean() > 0.9  # the FR3 scene has depth almost everywhere
    with np.load(D.depth_path(out / s.episode, s.frame_index)) as z:
        assert z["depth"].dtype == np.uint16
    reference = _sample_bytes(out)

    # interrupted run: episode 1 half written (no done.json, a truncated sample)
    ep1 = sorted(p for p in out.iterdir() if p.is_dir())[1]
    (ep1 / "done.json").unlink()
    next((ep1 / "samples").iterdir()).write_bytes(b"truncated")
    # and a corrupt third episode in the source
    bad = src / "episode_000002"
    shutil.copytree(src / "episode_000000", bad)
    (bad / "data.npz").write_bytes(b"\x00" * 100)
    assert traceforge_main(["--episodes", str(src), "--out", str(out), "--no-progress"]) == 0
    rep = json.loads((out / "traceforge_report.json").read_text())
    assert rep["done"] == [ep1.name] and len(rep["skipped"]) == 1
    assert list(rep["failed"]) == ["push_block_to_region_episode_000002"]
    assert "episode_000002" in rep["failed"]["push_block_to_region_episode_000002"]
    assert not (out / "push_block_to_region_episode_000002").exists()
    assert _sample_bytes(out) == reference  # the redone episode is identical
    assert traceforge_main(["--episodes", str(src), "--out", str(out), "--no-progress",
                            "--strict"]) == 1


def test_rgbd_folder_source_and_bad_input(rec, tmp_path: Path) -> None:
    ep = tmp_path / "videos" / "clip_a"
    (ep / "rgb").mkdir(parents=True)
    (ep / "depth").mkdir()
    for t in range(0, len(rec.rgb), 2):
        cv2.imwrite(str(ep / "rgb" / f"{t:04d}.png"), cv2.cvtColor(rec.rgb[t], cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(ep / "depth" / f"{t:04d}.png"), D.depth_to_mm(rec.depth[t]))
    (ep / "intrinsics.json").write_text(json.dumps({"K": rec.K.tolist()}))
    (ep / "instruction.txt").write_text("Push the block.")
    # a second clip whose depth is all zero, a third with mismatched sizes
    zero = tmp_path / "videos" / "clip_b"
    shutil.copytree(ep, zero)
    for p in (zero / "depth").iterdir():
        cv2.imwrite(str(p), np.zeros((256, 256), np.uint16))
    small = tmp_path / "videos" / "clip_c"
    shutil.copytree(ep, small)
    for p in (small / "depth").iterdir():
        cv2.imwrite(str(p), np.ones((128, 128), np.uint16))
    out = tmp_path / "out"
    assert traceforge_main(["--episodes", str(tmp_path / "videos"), "--out", str(out),
                            "--no-progress"]) == 0
    rep = json.loads((out / "traceforge_report.json").read_text())
    assert rep["done"] == ["clip_a"]
    assert "all zero" in rep["failed"]["clip_b"]
    assert "differ in size" in rep["failed"]["clip_c"]
    s = D.load_sample(D.list_samples(out)[0])
    assert s.T_base_cam is None and s.instructions == ["Push the block.", "please push the block",
                                                       "can you push the block?"]
    assert s.valid_steps.any(axis=1).mean() > 0.9


def test_check_rgbd_errors() -> None:
    rgb = np.zeros((4, 6, 3), np.uint8)
    with pytest.raises(GeometryError, match="missing"):
        check_rgbd(rgb, None)
    with pytest.raises(GeometryError, match="all zero"):
        check_rgbd(rgb, np.zeros((4, 6), np.float32))
    with pytest.raises(GeometryError, match="differ in size"):
        check_rgbd(rgb, np.ones((4, 5), np.float32))
    with pytest.raises(GeometryError, match="uint8"):
        check_rgbd(rgb.astype(np.float32), np.ones((4, 6), np.float32))


def test_discover_errors(tmp_path: Path) -> None:
    from tracegen_ros.traceforge.sources import SourceError

    with pytest.raises(SourceError, match="neither"):
        discover([tmp_path])
    assert traceforge_main(["--episodes", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2


def test_moving_camera_poses_bring_points_into_the_reference_frame() -> None:
    """A static scene filmed by a moving camera: with the camera poses, every lifted track
    stays where it was in the reference camera's frame."""
    import mujoco

    from tracegen_ros.traceforge.simgt import camera_pose
    from tracegen_ros.traceforge.tracks import lift_tracks, make_frames, track_2d
    from tracevla_ros.sim.env import SimEnv

    with SimEnv("fr3", "put_ball_in_box", seed=0) as env:
        cid = env._cam_id
        base = env.model.cam_pos[cid].copy()
        rgb, depth, poses = [], [], []
        for t in range(8):
            env.model.cam_pos[cid] = base + np.array([0.01, 0.004, 0.0]) * t  # slides sideways
            mujoco.mj_forward(env.model, env.data)
            rgb.append(env.render())
            depth.append(env.render_depth())
            poses.append(camera_pose(env))
        K = env.camera_info().K
    kp = D.grid_keypoints(256, 256)
    tr, vis = track_2d(make_frames(rgb), kp)
    t_ref = np.stack([np.linalg.inv(poses[0]) @ p for p in poses])
    moved = lift_tracks(tr, vis, np.stack(depth), K, t_ref)
    static = lift_tracks(tr, vis, np.stack(depth), K, None)
    ok = np.all(np.isfinite(moved[:, :, 0]), axis=0)
    assert ok.sum() > 150
    drift = np.linalg.norm(moved[-1, ok] - moved[0, ok], axis=1)
    assert np.median(drift) < 0.005
    # without the poses the same points appear to move with the camera (~7.5 cm)
    assert np.median(np.linalg.norm(static[-1, ok] - static[0, ok], axis=1)) > 0.05


def test_anchor_to_sensor() -> None:
    from tracegen_ros.execution import anchor_to_sensor

    depth = np.full((8, 8), 2.0, np.float32)
    depth[0, 0] = 0.0
    traj = np.zeros((2, 4, 3))
    traj[1, :, :2] = 3.0  # keypoint 0 at pixel (0, 0), keypoint 1 at (3, 3)
    traj[:, :, 2] = [1.0, 1.0, 1.1, 1.2]
    out = anchor_to_sensor(traj, depth)
    np.testing.assert_allclose(out[0, :, 2], traj[0, :, 2])  # no sensor depth there: unchanged
    np.testing.assert_allclose(out[1, :, 2], [2.0, 2.0, 2.2, 2.4])
    traj[1, 2, 2] = -0.5  # behind the camera: invalid
    out = anchor_to_sensor(traj, depth)
    assert np.all(np.isneginf(out[1, 2])) and np.isfinite(out[1, 3]).all()


def test_collect_episode_without_depth_is_reported(collect_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(collect_dir, src)
    data = src / "episode_000001" / "data.npz"
    with np.load(data) as z:
        arrays = {k: z[k] for k in z.files if k != "observation.depth.scene"}
    np.savez_compressed(data, **arrays)  # as `tracevla-collect --no-depth` writes it
    out = tmp_path / "out"
    assert traceforge_main(["--episodes", str(src), "--out", str(out), "--no-progress"]) == 0
    rep = json.loads((out / "traceforge_report.json").read_text())
    assert rep["done"] == ["push_block_to_region_episode_000000"]
    assert "depth is missing" in rep["failed"]["push_block_to_region_episode_000001"]
