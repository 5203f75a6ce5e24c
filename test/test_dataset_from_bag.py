"""Record -> dataset -> train: a demo bag (real nodes, real DDS, MuJoCo) turned into a training
dataset by tracevla-dataset, on which tracevla-train trains; and the bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tracevla_ros.bag.reader import BagReader
from tracevla_ros.replay.recorded import RecordedRun
from tracevla_ros.replay.topics import image_from_msg, select_topics
from tracevla_ros.sim.dataset import list_episodes, load_episode, load_info
from tracevla_ros.tools.dataset import main as dataset_main
from tracevla_ros.tracking.offline import load_traces

pytestmark = [pytest.mark.ros, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def demo_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    r = subprocess.run([sys.executable, "-m", "tracevla_ros.tools.demo", "--robot", "widowx",
                        "--steps", "20", "--out", str(out)], capture_output=True, text=True,
                       timeout=280)
    assert r.returncode == 0, r.stderr[-4000:]
    return out / "bag"


def test_demo_bag_becomes_a_dataset_that_tracevla_train_trains_on(demo_bag: Path,
                                                                   tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert dataset_main([str(demo_bag), "--out", str(data)]) == 0
    info = load_info(data)
    assert info["robot"] == "widowx250s" and info["action_space"] == "ee_delta_7d"
    assert info["fps"] == pytest.approx(5.0, rel=0.2)  # the policy rate of the demo
    assert np.asarray(info["camera"]["K"]).shape == (3, 3)

    # what the bag says the run did
    with BagReader(demo_bag) as bag:
        sel = select_topics(bag, {})
        run = RecordedRun.read(bag, sel)
        stamps = sorted(run.actions)
        frames = {}
        for _, _, msg in bag.messages([sel.image]):
            s = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
            if s in (stamps[0], stamps[-1]):
                frames[s] = image_from_msg(msg, bag.topics[sel.image].msgtype)
    (ep_dir,) = list_episodes(data)
    ep = load_episode(ep_dir)
    assert len(ep) == len(stamps) >= 15
    assert ep.instruction == run.instructions[0][1] == "pick up the cube"  # the demo's default task, lift_target_cube
    np.testing.assert_array_equal(ep.actions, np.stack([run.actions[s].values[0] for s in stamps]))
    np.testing.assert_array_equal(ep.rgb[0], frames[stamps[0]])
    np.testing.assert_array_equal(ep.rgb[-1], frames[stamps[-1]])
    proprio = np.stack([run.proprio_for(s, run.actions[s].t) for s in stamps])
    np.testing.assert_array_equal(ep.joint_positions, proprio)
    np.testing.assert_allclose(ep.timestamps, (np.array(stamps) - stamps[0]) * 1e-9)
    assert np.all(np.isfinite(ep.ee_pose)) and np.all(np.isfinite(ep.joint_targets))
    np.testing.assert_allclose(np.linalg.norm(ep.ee_pose[:, 3:], axis=1), 1.0, atol=1e-5)

    # the trace annotation, with the tracker parameters the demo ran with
    traces, meta = load_traces(ep_dir)
    assert traces.valid.shape == (len(ep),) and traces.valid.any()
    assert "recorded parameters" in meta["params_file"]

    # and tracevla-train trains on it; the checkpoint loads with the local backend's loader
    from tracevla_ros.policy.local.checkpoint import load_checkpoint
    from tracevla_ros.tools.train import main as train_main

    ckpt = tmp_path / "ckpt"
    assert train_main(["--data", str(data), "--out", str(ckpt), "--epochs", "1", "--batch-size", "8",
                       "--max-steps", "2", "--threads", "1", "--quiet"]) == 0
    loaded = load_checkpoint(ckpt)
    assert loaded.transforms.use_trace
    (log_file,) = [p for p in (ckpt / "train_log.jsonl", ckpt / "metrics.jsonl") if p.is_file()]
    losses = [v for line in log_file.read_text().splitlines()
              for k, v in json.loads(line).items() if "loss" in k and isinstance(v, float)]
    assert losses and all(np.isfinite(losses))
    assert loaded.training["samples"] == len(ep) and loaded.training["traced_samples"] >= 1


def _bag_without_actions(tmp: Path) -> Path:
    """A bag with camera, joint states and instruction but no /policy/action."""
    from tracevla_ros.bag import messages as bm
    from tracevla_ros.bag.writer import BagRecorder

    path = tmp / "noaction"
    with BagRecorder(path) as bag:
        for topic, kind in (("/camera/image_raw", bm.IMAGE), ("/joint_states", bm.JOINT_STATE),
                            ("/instruction", bm.STRING)):
            bag.add_topic(topic, kind)
        t0 = 1_700_000_000 * 1_000_000_000
        bag.write("/instruction", t0, bm.string_msg("lift the cube")[1])
        for i in range(3):
            s = t0 + i * 200_000_000
            bag.write("/camera/image_raw", s, bm.image_msg(np.zeros((8, 8, 3), np.uint8), s)[1])
            bag.write("/joint_states", s, bm.joint_state_msg(["waist"], np.zeros(1), s)[1])
    return path


@pytest.mark.parametrize("case", ["missing", "not_a_bag", "no_actions", "out_exists",
                                  "workers_0"])
def test_bad_input_is_one_line_and_exit_2(case: str, demo_bag: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    src, phrase = {
        "missing": (tmp_path / "nope", "does not exist"),
        "not_a_bag": (tmp_path, "metadata.yaml is missing"),
        "no_actions": (None, "no action topic"),
        "out_exists": (demo_bag, "already exists"),
        "workers_0": (demo_bag, "--workers 0: must be >= 1"),
    }[case]
    if case == "no_actions":
        src = _bag_without_actions(tmp_path)
    if case == "out_exists":
        out.mkdir()
    extra = ["--workers", "0"] if case == "workers_0" else []
    assert dataset_main([str(src), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert phrase in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    if case != "out_exists":
        assert not out.exists() and not list(tmp_path.glob(".out.partial*"))
