"""Offline trace annotation (tracevla-annotate) against the online IncrementalTracker."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support.local_policy import make_dataset

from tracevla_ros.config import config_dir, load_node_config
from tracevla_ros.tracking import IncrementalTracker, TrackerConfig, draw_trace
from tracevla_ros.tracking.offline import (
    TRACE_FORMAT,
    TraceFileError,
    annotate_frames,
    load_traces,
    segment_of_step,
)
from tracevla_ros.tracking.synthetic import SyntheticScene

NODE_CFG = load_node_config(TrackerConfig, config_dir() / "widowx.yaml", "tracker_node")


def _online(frames: np.ndarray, cfg: TrackerConfig) -> list:
    tracker = IncrementalTracker(cfg)
    return [tracker.process(img, float(t)) for t, img in enumerate(frames)]


def test_segments_cover_every_step_once() -> None:
    n = 10
    assert [segment_of_step(t, n) for t in (0, 8, 9, 18, 19, 28, 29)] == [-1, -1, 0, 0, 1, 1, 2]


def test_offline_equals_online_where_the_schedules_coincide() -> None:
    """Same parameters (the tracker_node's), same seed: the offline segment 0 draws the
    online tracker's first dense re-query's points, tracks them with the same checked
    steps and draws them with the same function, so traces and overlays agree on the
    segment's steps (the online tracker re-queries only after redraw_steps = 25)."""
    scene = SyntheticScene.default(160, 160, seed=3)
    n = NODE_CFG.history
    frames, _ = scene.sequence(fps=5.0, n_frames=2 * n)
    online = _online(frames, NODE_CFG)
    offline = annotate_frames(frames, NODE_CFG, seed=NODE_CFG.seed)
    assert [r.valid for r in online] == offline.valid.tolist()
    assert offline.valid[n - 1:].all() and not offline.valid[: n - 1].any()
    for t in range(n - 1, 2 * n - 1):  # segment 0; step 2N - 1 starts segment 1
        r = online[t]
        np.testing.assert_allclose(offline.points[t], r.points, atol=0.05)
        np.testing.assert_array_equal(offline.visible[t], r.visible)
        drawn = r.overlay(frames[t], NODE_CFG.draw_length)
        assert np.abs(offline.overlays[t].astype(int) - drawn.astype(int)).mean() < 0.5
        np.testing.assert_array_equal(
            offline.overlays[t],
            draw_trace(frames[t], offline.points[t], offline.visible[t], NODE_CFG.draw_length))
    for t in range(n - 1):
        np.testing.assert_array_equal(offline.overlays[t], frames[t])  # untraced: the frame


def test_offline_and_online_traces_agree_on_a_sim_episode(tmp_path: Path) -> None:
    """On a recorded expert episode (the training data), offline and online traces
    are valid on a similar share of steps and their points move alike."""
    pytest.importorskip("mujoco")
    from tracevla_ros.sim.dataset import EpisodeWriter
    from tracevla_ros.sim.env import SimEnv
    from tracevla_ros.tools.collect import collect_episode

    env = SimEnv(robot="widowx", task="put_carrot_on_plate", seed=3)
    writer = EpisodeWriter(with_depth=False)
    collect_episode(env, 3, writer, extra_steps=2, noise_pos=0.008, noise_rot=0.03)
    env.close()
    writer.save(tmp_path / "ep", {"robot": "widowx250s", "task": "t", "instruction": "x",
                                  "seed": 3, "success": True})
    frames = np.load(tmp_path / "ep" / "data.npz")["observation.images.scene"]
    online = _online(frames, NODE_CFG)
    offline = annotate_frames(frames, NODE_CFG, seed=NODE_CFG.seed)
    on_valid = np.array([r.valid for r in online])
    assert on_valid.sum() >= 5 and offline.valid.sum() >= 5, (on_valid, offline.valid)
    # Share of traced steps within 20 percentage points of each other.
    assert abs(on_valid.mean() - offline.valid.mean()) < 0.2
    # Mean per-step motion of the drawn points (px/step): same scale.
    on_motion = np.mean([np.abs(np.diff(r.points, axis=1)).sum(-1).mean() for r in online if r.valid])
    off_motion = np.mean([np.abs(np.diff(offline.points[t], axis=1)).sum(-1).mean()
                          for t in np.flatnonzero(offline.valid)])
    assert 0.5 < off_motion / on_motion < 2.0, (on_motion, off_motion)


def test_annotate_tool_writes_documented_files(tmp_path: Path) -> None:
    from tracevla_ros.tools.annotate import main

    data = make_dataset(tmp_path / "d", episodes=2, steps=12, annotate=False)
    params = tmp_path / "params.yaml"
    params.write_text("tracker_node:\n  ros__parameters:\n    preset: paper\n    grid_size: 20\n")
    assert main(["--data", str(data), "--params", str(params)]) == 0
    ep = data / "episode_000000"
    traces, meta = load_traces(ep)
    assert meta["format"] == TRACE_FORMAT and meta["segment_frames"] == 12
    assert meta["tracker"]["history"] == 6 and meta["tracker"]["grid_size"] == 20
    assert traces.valid.shape == (12,) and traces.points.shape == (12, 5, 6, 2)
    assert traces.overlays.shape == (12, 64, 64, 3) and traces.valid[5:].any()
    assert meta["valid_steps"] == int(traces.valid.sum())
    # Every array key is documented in DATASET.md.
    doc = (Path(__file__).resolve().parent.parent / "tracevla_ros/sim/DATASET.md").read_text()
    with np.load(ep / "trace.npz") as z:
        assert all(f"`{k}`" in doc for k in z.files), z.files
    # Existing traces are kept unless --overwrite.
    stamp = (ep / "trace.json").stat().st_mtime_ns
    assert main(["--data", str(data), "--params", str(params)]) == 0
    assert (ep / "trace.json").stat().st_mtime_ns == stamp
    assert main(["--data", str(data), "--params", str(params), "--overwrite"]) == 0
    assert json.loads((ep / "trace.json").read_text())["format"] == TRACE_FORMAT
    assert main(["--data", str(tmp_path / "missing")]) == 2
    with pytest.raises(TraceFileError, match="tracevla-annotate"):
        load_traces(tmp_path)
