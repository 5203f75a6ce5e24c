"""tracevla-replay on synthetic bags: reproduction of recorded traces and actions, topic
detection, storage formats, compressed images, and one clear error (exit 2) per bad bag."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tracevla_ros.bag import messages as bm
from tracevla_ros.bag.config import PARAMS_KEY
from tracevla_ros.bag.writer import BagRecorder
from tracevla_ros.policy.base import Observation
from tracevla_ros.tools.replay import main as replay_main
from tracevla_ros.tracking import IncrementalTracker, TrackerConfig
from tracevla_ros.tracking.synthetic import SyntheticScene

SUPPORT = Path(__file__).resolve().parent / "support"
sys.path.insert(0, str(SUPPORT))
from replay_policy import ReplayTestPolicy  # noqa: E402

POLICY = "replay_policy:make_policy"
INSTRUCTION = "put the carrot on the plate"
JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")
TRACKER = {"preset": "authors", "history": 6, "draw_length": 6, "grid_size": 20,
           "observe_rate_hz": 30.0, "control_rate_hz": 5.0, "seed": 3}
MS = 1_000_000


def _params_yaml() -> str:
    return yaml.safe_dump({"tracker_node": {"ros__parameters": dict(TRACKER)},
                           "policy_node": {"ros__parameters": {"backend": POLICY}}})


def write_recorded_bag(path: Path, frames: int = 60, storage: str = "mcap", compressed: bool = False,
                       with_run: bool = True, size: int = 128, corrupt_frame: int = -1) -> dict:
    """A 10 Hz camera bag; with_run: also what a tracker (5 Hz steps, every frame observed)
    and a policy (acting at two of three steps) recorded, like the nodes on a robot."""
    scene = SyntheticScene.default(size, size, seed=1)
    tracker = IncrementalTracker(TrackerConfig(**TRACKER))
    policy = ReplayTestPolicy()
    t0 = 1_700_000_000 * 1_000_000_000
    out: list[tuple[int, str, tuple[str, bytes]]] = [(t0 - 50 * MS, "/instruction", bm.string_msg(INSTRUCTION))]
    joints: list[tuple[int, np.ndarray]] = []
    for k in range(frames * 5):  # joint states at 50 Hz, received 4 ms after their stamp
        stamp = t0 + k * 20 * MS + 3 * MS
        q = np.sin(np.arange(6) + k * 0.05) * 0.3
        joints.append((stamp, q))
        out.append((stamp + 4 * MS, "/joint_states", bm.joint_state_msg(JOINTS, q, stamp)))
    step_stamps: list[int] = []
    valid = actions = 0
    for i in range(frames):
        stamp = t0 + i * 100 * MS
        image = scene.render(i * 0.1)[0]
        img_msg = (bm.compressed_image_msg(image, stamp) if compressed else bm.image_msg(image, stamp))
        if i == corrupt_frame:
            img_msg = (img_msg[0], b"\x00\x01\x00\x00\x07")  # a damaged message
        out.append((stamp + 2 * MS, "/camera/image_raw", img_msg))
        if not with_run:
            continue
        tracker.observe(image, stamp * 1e-9)
        if i % 2 == 0:
            continue
        res = tracker.step()
        step_stamps.append(stamp)
        hist = step_stamps[-len(res.step_stamps):]
        valid += int(res.valid)
        out.append((stamp + 30 * MS, "/trace", bm.visual_trace_msg(
            stamp, res.valid, res.points, res.visible, hist, (size, size), 5.0)))
        if len(step_stamps) % 3 == 0:
            continue  # the policy worker was busy: no action for this frame
        latency = 5 * MS
        t_action = stamp + 60 * MS
        q = [q for s, q in joints if s <= stamp][-1]  # policy_node: the frame's joint state
        overlay = res.overlay(image, TRACKER["draw_length"]) if res.valid else None
        chunk = policy.infer(Observation(image=image, overlay=overlay, instruction=INSTRUCTION,
                                         proprio=q.astype(np.float32), stamp=stamp * 1e-9))
        out.append((t_action, "/policy/action", bm.policy_action_msg(
            stamp, chunk.values, policy.name, overlay is not None, latency * 1e-9)))
        actions += 1
    with BagRecorder(path, storage=storage) as bag:
        if with_run:
            bag.set_custom_data(PARAMS_KEY, _params_yaml())
        for t, topic, (msgtype, data) in sorted(out, key=lambda x: x[0]):
            if topic not in bag.stats:
                bag.add_topic(topic, msgtype)
            bag.write(topic, t, data)
    return {"steps": len(step_stamps), "valid": valid, "actions": actions}


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = replay_main([*argv, "--quiet"])
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def recorded_bag(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    d = tmp_path_factory.mktemp("rec")
    truth = write_recorded_bag(d / "bag")
    return d / "bag", truth


def test_replay_reproduces_recorded_traces_and_actions(recorded_bag: tuple[Path, dict],
                                                       tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    bag, truth = recorded_bag
    code, err = run([str(bag), "--out", str(tmp_path / "r")], capsys)
    assert code == 0, err
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    assert rep["complete"] and rep["error"] is None
    assert rep["config"]["source"].startswith("bag metadata")
    assert rep["config"]["tracker"]["history"] == 6 and rep["config"]["tracker"]["seed"] == 3
    assert rep["topics"]["selected"] == {"image": "/camera/image_raw", "instruction": "/instruction",
                                         "joint_states": "/joint_states",
                                         "action": "/policy/action", "trace": "/trace",
                                         "prompt": ""}
    assert rep["steps"] == truth["steps"] and rep["trace_valid_steps"] == truth["valid"]
    assert truth["valid"] > 5  # the scene moves: there is something to reproduce
    assert rep["trace_valid_ratio"] == round(truth["valid"] / truth["steps"], 4)
    assert rep["comparison"]["traces"]["max_abs_point_diff_px"] == 0.0
    acts = rep["comparison"]["actions"]
    assert acts["compared"] == truth["actions"] and acts["max_abs_error"] == 0.0
    assert set(acts["per_dim"]) == {"dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"}
    assert rep["reproduced"] == {"action_tolerance": 1e-5, "trace_valid_ratio": True,
                                 "traces": True, "actions": True}
    assert rep["policy"]["calls"] == truth["actions"] and rep["policy"]["failures"] == 0
    for stage in ("decode", "observe", "step", "overlay", "policy", "total"):
        lat = rep["latency_ms"][stage]
        assert lat["n"] > 0 and 0 <= lat["p50_ms"] <= lat["p95_ms"], stage
    assert rep["real_time_factor"] > 0
    out = tmp_path / "r"
    assert rep["outputs"]["overlay_frames"] == truth["steps"]
    for name in ("overlay.mp4", "actions.png", "latency.png"):
        assert (out / name).stat().st_size > 1000, name


def test_a_different_tracker_setting_is_reported_as_not_reproduced(
        recorded_bag: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bag, _ = recorded_bag
    code, err = run([str(bag), "--out", str(tmp_path / "r"), "--tracker-param", "seed=4"], capsys)
    assert code == 0, err
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    assert rep["config"]["tracker"]["seed"] == 4
    assert rep["reproduced"]["traces"] is False
    assert rep["comparison"]["traces"]["first_mismatch_stamp_ns"] is not None


def test_sqlite3_bag_with_compressed_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth = write_recorded_bag(tmp_path / "bag", frames=40, storage="sqlite3", compressed=True)
    assert list((tmp_path / "bag").glob("*.db3"))
    code, err = run([str(tmp_path / "bag"), "--out", str(tmp_path / "r"), "--no-video"], capsys)
    assert code == 0, err
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    assert rep["storage"] == "sqlite3" and rep["topics"]["found"]["/camera/image_raw"]["type"] \
        == "sensor_msgs/msg/CompressedImage"
    # PNG is lossless: the same traces and actions as from raw images
    assert rep["steps"] == truth["steps"]
    assert rep["reproduced"]["traces"] and rep["reproduced"]["actions"]
    assert "overlay" not in rep["outputs"]


def test_camera_only_bag_uses_the_node_schedule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_recorded_bag(tmp_path / "bag", frames=40, with_run=False)
    code, err = run([str(tmp_path / "bag"), "--out", str(tmp_path / "r"), "--policy", POLICY,
                     "--robot", "widowx", "--instruction", "lift the cube"], capsys)
    assert code == 0, err
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    assert rep["schedule"] == "timer" and rep["act_at"] == "steps"
    # the node's schedule: a step on every frame due at 5 Hz by its stamp, i.e. on frames
    # 0.0, 0.2, ... 3.8 s of the 40 frames at 10 Hz
    assert rep["steps"] == 20
    assert rep["policy"]["calls"] == 20 and rep["comparison"]["actions"]["compared"] == 0
    assert rep["reproduced"]["traces"] is None and rep["reproduced"]["actions"] is None
    assert "widowx.yaml" in rep["config"]["source"]


def test_image_topic_flag_and_detection_notes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scene = SyntheticScene.default(64, 64, seed=2)
    with BagRecorder(tmp_path / "bag") as bag:
        for topic in ("/cam_a/image_raw", "/cam_b/image", "/camera/depth/image_raw"):
            bag.add_topic(topic, bm.IMAGE)
        for i in range(10):
            stamp = (1000 + i) * 100 * MS
            img = scene.render(i * 0.1)[0]
            for topic in ("/cam_a/image_raw", "/cam_b/image", "/camera/depth/image_raw"):
                bag.write(topic, stamp, bm.image_msg(img, stamp)[1])
    code, err = run([str(tmp_path / "bag"), "--out", str(tmp_path / "a"), "--policy", "none"], capsys)
    assert code == 0, err
    rep = json.loads((tmp_path / "a" / "report.json").read_text())
    assert rep["topics"]["selected"]["image"] == "/cam_a/image_raw"
    assert "/cam_b/image" in rep["topics"]["notes"][0] and "depth" not in rep["topics"]["notes"][0]
    code, err = run([str(tmp_path / "bag"), "--out", str(tmp_path / "b"), "--policy", "none",
                     "--image-topic", "/cam_b/image"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "b" / "report.json").read_text())["topics"]["selected"]["image"] \
        == "/cam_b/image"


# ------------------------------------------------------------------------ bad bags
def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and lines[0].startswith("tracevla-replay: error: ")
    return lines[0]


def test_no_image_topic_names_the_topics_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with BagRecorder(tmp_path / "bag") as bag:
        bag.add_topic("/joint_states", bm.JOINT_STATE)
        bag.write("/joint_states", 1, bm.joint_state_msg(JOINTS, np.zeros(6), 1)[1])
    code, err = run([str(tmp_path / "bag"), "--out", str(tmp_path / "r")], capsys)
    line = _one_error_line(err)
    assert code == 2 and "no camera image topic" in line
    assert "/joint_states (sensor_msgs/msg/JointState, 1 msgs)" in line
    assert not (tmp_path / "r").exists()


def _unknown_type_bag(path: Path) -> None:
    """A sqlite3 bag whose only topic has a type with no definition anywhere (as from a
    rosbag2 that stored none)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    st = get_typestore(Stores.ROS2_KILTED)
    st.register(get_types_from_msg("int32 x\n", "acme_msgs/msg/Gripper"))
    w = Writer(path, version=9, storage_plugin=StoragePlugin.SQLITE3)
    w.open()
    c = w.add_connection("/acme/gripper", "acme_msgs/msg/Gripper", typestore=st)
    w.write(c, 5, st.serialize_cdr(st.types["acme_msgs/msg/Gripper"](x=1), "acme_msgs/msg/Gripper"))
    w.close()
    db = next(path.glob("*.db3"))
    with sqlite3.connect(db) as con:
        con.execute("DELETE FROM message_definitions")


def test_unknown_message_type(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _unknown_type_bag(tmp_path / "bag")
    code, err = run([str(tmp_path / "bag"), "--out", str(tmp_path / "r")], capsys)
    line = _one_error_line(err)
    assert code == 2 and "no camera image topic" in line
    assert "/acme/gripper (acme_msgs/msg/Gripper, 1 msgs, unknown type)" in line
    code, err = run([str(tmp_path / "bag"), "--out", str(tmp_path / "r"),
                     "--image-topic", "/acme/gripper"], capsys)
    line = _one_error_line(err)
    assert code == 2 and "acme_msgs/msg/Gripper" in line and "expected one of" in line


def _recovery_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelname == "WARNING" and r.name == "tracevla_ros.bag.reader"]


def test_truncated_mcap(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                        caplog: pytest.LogCaptureFixture) -> None:
    """A killed recorder's bag (MCAP cut, no metadata.yaml) is recovered with one warning;
    a file with nothing recoverable is one error line."""
    write_recorded_bag(tmp_path / "bag", frames=12, with_run=False)
    f = next((tmp_path / "bag").glob("*.mcap"))
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    (tmp_path / "bag" / "metadata.yaml").unlink()
    code, err = run([str(tmp_path / "bag"), "--out", str(tmp_path / "r"), "--policy", "none",
                     "--robot", "widowx", "--no-video", "--no-plots"], capsys)
    warnings = _recovery_warnings(caplog)
    assert len(warnings) == 1 and "not closed" in warnings[0] and "reindexed" in warnings[0]
    # the single chunk of this small bag was cut: its topics are back, its messages are not
    assert code == 2 and "image" in _one_error_line(err)
    f.write_bytes(data[:5])
    code, err = run([str(tmp_path / "bag"), "--out", str(tmp_path / "r2")], capsys)
    line = _one_error_line(err)
    assert code == 2 and "truncated or corrupt" in line


def test_killed_recording_replays_what_was_flushed(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    write_recorded_bag(tmp_path / "bag", frames=30, with_run=False)
    f = next((tmp_path / "bag").glob("*.mcap"))
    from tracevla_ros.bag.mcap_io import scan

    chunks = scan(f).index.chunk_indexes
    assert len(chunks) >= 2
    end = chunks[-1].chunk_start_offset + 100  # cut inside the last chunk
    f.write_bytes(f.read_bytes()[:end])
    code, err = run([str(tmp_path / "bag"), "--out", str(tmp_path / "r"), "--policy", "none",
                     "--robot", "widowx", "--no-video", "--no-plots"], capsys)
    assert code == 0, err
    assert len(_recovery_warnings(caplog)) == 1
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    assert 0 < rep["frames"] < 30


def test_corrupt_sqlite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_recorded_bag(tmp_path / "bag", frames=12, with_run=False, storage="sqlite3")
    f = next((tmp_path / "bag").glob("*.db3"))
    f.write_bytes(b"this is not a database" * 100)
    code, err = run([str(tmp_path / "bag"), "--out", str(tmp_path / "r")], capsys)
    line = _one_error_line(err)
    assert code == 2 and ("corrupt" in line or "not a database" in line)


def test_missing_metadata_yaml_and_missing_bag(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               caplog: pytest.LogCaptureFixture) -> None:
    write_recorded_bag(tmp_path / "bag", frames=12, with_run=False)
    (tmp_path / "bag" / "metadata.yaml").unlink()
    # a killed recorder's bag: metadata.yaml is rebuilt (one warning line), the replay runs
    code, err = run([str(tmp_path / "bag"), "--out", str(tmp_path / "r0"), "--policy", "none",
                     "--robot", "widowx", "--no-video", "--no-plots"], capsys)
    assert code == 0 and (tmp_path / "bag" / "metadata.yaml").is_file(), err
    warnings = _recovery_warnings(caplog)
    assert len(warnings) == 1 and "metadata.yaml" in warnings[0]
    # the storage file on its own is readable
    code, err = run([str(tmp_path / "bag" / "bag.mcap"), "--out", str(tmp_path / "r"),
                     "--policy", "none", "--robot", "widowx"], capsys)
    assert code == 0, err
    code, err = run([str(tmp_path / "nope"), "--out", str(tmp_path / "r2")], capsys)
    assert code == 2 and "no such bag" in _one_error_line(err)


def test_failure_before_reading_keeps_earlier_outputs(recorded_bag: tuple[Path, dict],
                                                      tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    bag, _ = recorded_bag
    out = tmp_path / "r"
    assert run([str(bag), "--out", str(out), "--no-video", "--no-plots"], capsys)[0] == 0
    before = (out / "report.json").read_text()
    code, err = run([str(bag), "--out", str(out), "--tracker-param", "lk_window=4"], capsys)
    assert code == 2 and "lk_window" in _one_error_line(err)
    code, err = run([str(bag), "--out", str(out), "--policy", "no_such_module:f"], capsys)
    assert code == 2 and "no_such_module" in _one_error_line(err)
    assert (out / "report.json").read_text() == before


def test_damaged_message_mid_bag_keeps_a_partial_report(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    write_recorded_bag(tmp_path / "bag", frames=40, corrupt_frame=25)
    out = tmp_path / "r"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, err = run([str(tmp_path / "bag"), "--out", str(out)], capsys)
    line = _one_error_line(err)
    assert code == 2 and "does not deserialise" in line and "/camera/image_raw" in line
    rep = json.loads((out / "report.json").read_text())
    assert rep["complete"] is False and "does not deserialise" in rep["error"]
    assert rep["frames"] == 25 and rep["steps"] == 12
    assert rep["outputs"]["overlay_frames"] == 12 and (out / "overlay.mp4").stat().st_size > 1000
    assert (out / "notes.txt").read_text() == "mine"


def test_cli_exit_code_and_no_traceback_in_a_subprocess(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "tracevla_ros.tools.replay", str(tmp_path / "none"),
                        "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "no such bag" in r.stderr


def test_recorded_prompt_is_held_replaced_cleared_and_expired_as_in_policy_node() -> None:
    from tracevla_ros.policy.prompt import VisualPrompt
    from tracevla_ros.replay.recorded import RecordedRun

    s = 1_000_000_000
    box = VisualPrompt(boxes=np.array([[0.1, 0.1, 0.3, 0.3]]), image_size=(256, 256), stamp=10.0)
    pts = VisualPrompt(points=np.array([[0.5, 0.5]]), image_size=(256, 256), stamp=12.0)
    run = RecordedRun(instructions=[(0, "pick up the cube"), (20 * s, "push the block")],
                      prompts=[(10 * s, box), (12 * s, pts), (14 * s, None), (15 * s, box)])
    assert run.prompt_for(9 * s, 9 * s, 30.0, False) is None  # before the first one
    assert run.prompt_for(11 * s, 11 * s, 30.0, False) is box
    assert run.prompt_for(13 * s, 13 * s, 30.0, False) is pts  # replaced
    assert run.prompt_for(14 * s, 14 * s, 30.0, False) is None  # cleared
    assert run.prompt_for(16 * s, 16 * s, 30.0, False) is box  # set again (stamped 10 s)
    assert run.prompt_for(16 * s, 16 * s, 5.0, False) is None  # 6 s old at the frame
    assert run.prompt_for(16 * s, 16 * s, 0.0, False) is box  # 0 = no expiry
    # a new instruction drops it (the first, latched one does not) unless kept
    assert run.prompt_for(21 * s, 21 * s, 30.0, False) is None
    assert run.prompt_for(21 * s, 21 * s, 30.0, True) is box
