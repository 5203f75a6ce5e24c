"""Nothing recorded is lost: time-flushed MCAP chunks, reindex of a truncated bag or one
without metadata.yaml, chunk compression, a close that survives interrupts, and a real
recorder_node killed with SIGKILL / stopped with SIGINT or SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from tracevla_ros.bag import messages as bm
from tracevla_ros.bag.config import PARAMS_KEY
from tracevla_ros.bag.mcap_io import McapWriter, has_footer, scan
from tracevla_ros.bag.reader import BagReader
from tracevla_ros.bag.reindex import needs_reindex, reindex
from tracevla_ros.bag.writer import BagError, BagRecorder
from tracevla_ros.tools.bag import main as bag_main

PARAMS = "tracker_node:\n  ros__parameters:\n    grid_size: 20\n"


def _write(path: Path, n: int = 40, compression: str = "none", chunk_size: int = 20_000,
           close: bool = True) -> BagRecorder:
    bag = BagRecorder(path, compression=compression, chunk_size=chunk_size)
    bag.add_topic("/camera/image_raw", bm.IMAGE)
    bag.add_topic("/instruction", bm.STRING)
    bag.set_custom_data(PARAMS_KEY, PARAMS)
    bag.write("/instruction", 5, bm.string_msg("lift the cube")[1])
    rng = np.random.default_rng(0)
    for i in range(n):
        bag.write("/camera/image_raw", 10 + i,
                  bm.image_msg(rng.integers(0, 255, (32, 64, 3), np.uint8), i)[1])
    if close:
        bag.close()
    return bag


def _stamps(path: Path) -> list[int]:
    with Reader(path) as r:
        return [t for c, t, _ in r.messages() if c.topic == "/camera/image_raw"]


def test_truncated_mcap_at_many_offsets_is_reindexed(tmp_path: Path) -> None:
    _write(tmp_path / "src")
    data = (tmp_path / "src" / "src.mcap").read_bytes()
    recovered = []
    for cut in (9, 40, 300, 2_000, 30_000, 60_000, 100_000, len(data) // 2, len(data) - 100,
                len(data) - 1):
        bag = tmp_path / f"cut{cut}"
        bag.mkdir()
        (bag / "cut.mcap").write_bytes(data[:cut])
        assert needs_reindex(bag)
        r = reindex(bag)
        assert not needs_reindex(bag) and has_footer(bag / "cut.mcap")
        stamps = _stamps(bag)
        # every complete chunk comes back, in order, nothing from a cut chunk
        assert stamps == list(range(10, 10 + len(stamps)))
        assert r.message_count == len(stamps) + (1 if r.topics.get("/instruction") else 0)
        with BagReader(bag) as b:  # the project's reader, and the parameter file restored
            if cut > 2_000:  # schemas, channels and the parameter file are at the start
                assert b.custom_data == {PARAMS_KEY: PARAMS}
                assert b.topics["/camera/image_raw"].count == len(stamps)
                assert len(list(b.messages(["/camera/image_raw"]))) == len(stamps)
        recovered.append(len(stamps))
    assert recovered == sorted(recovered) and recovered[-1] == 40 and 0 < recovered[5] < 40


def test_missing_metadata_yaml_is_rebuilt_identically(tmp_path: Path) -> None:
    _write(tmp_path / "bag")
    with Reader(tmp_path / "bag") as r:
        before = [(c.topic, c.msgtype, c.msgcount, c.digest, c.ext) for c in r.connections]
        custom = r.custom_data if hasattr(r, "custom_data") else None
    (tmp_path / "bag" / "metadata.yaml").unlink()
    assert needs_reindex(tmp_path / "bag")
    r2 = reindex(tmp_path / "bag")
    assert r2.was_complete and r2.lost_bytes == 0 and r2.custom_data == {PARAMS_KEY: PARAMS}
    with Reader(tmp_path / "bag") as r:
        assert [(c.topic, c.msgtype, c.msgcount, c.digest, c.ext) for c in r.connections] == before
        assert custom is None or r.custom_data == custom
    assert len(_stamps(tmp_path / "bag")) == 40


def test_bag_reader_recovers_a_killed_recording_with_one_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bag = _write(tmp_path / "bag", close=False)
    bag.flush()
    bag.abort()  # what SIGKILL leaves: no summary, no metadata.yaml
    assert not (tmp_path / "bag" / "metadata.yaml").exists()
    with caplog.at_level("WARNING"):
        with BagReader(tmp_path / "bag") as b:
            assert b.topics["/camera/image_raw"].count == 40
            assert b.custom_data == {PARAMS_KEY: PARAMS}
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "reindexed into the bag directory" in warnings[0].getMessage()


@pytest.mark.parametrize("compression", ["none", "zstd", "lz4"])
def test_compression_round_trips(tmp_path: Path, compression: str) -> None:
    _write(tmp_path / "bag", compression=compression)
    assert _stamps(tmp_path / "bag") == list(range(10, 50))
    with BagReader(tmp_path / "bag") as b:
        msgs = list(b.messages(["/camera/image_raw"]))
        assert len(msgs) == 40 and msgs[3][2].width == 64
    chunks = scan(tmp_path / "bag" / "bag.mcap").index.chunk_indexes
    assert len(chunks) > 1
    with pytest.raises(BagError, match="compression"):
        BagRecorder(tmp_path / "x", compression="gzip")


def test_time_flush_and_an_open_bag_is_readable_up_to_the_last_chunk(tmp_path: Path) -> None:
    w = McapWriter(tmp_path / "a.mcap", flush_period_s=1.0)
    sid = w.add_schema("std_msgs/msg/String", "ros2msg", "string data")
    cid = w.add_channel("/s", sid, {})
    w.add_message(cid, 1, bm.string_msg("a")[1])
    now = time.monotonic()
    assert not w.flush_due(now=now - 10.0) and w.flush_due(now=now + 10.0)
    w.flush()
    w.add_message(cid, 2, bm.string_msg("b")[1])  # still in the open chunk
    s = scan(tmp_path / "a.mcap")  # while it is being written
    assert not s.complete and s.index.message_count == 1 and s.lost_bytes == 0
    w.finish()
    w.finish()  # idempotent
    assert scan(tmp_path / "a.mcap").complete and scan(tmp_path / "a.mcap").index.message_count == 2


def test_close_completes_despite_keyboard_interrupt(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    bag = _write(tmp_path / "bag", close=False)
    import tracevla_ros.bag.writer as writer

    real = writer.write_metadata_yaml
    calls = {"n": 0}

    def interrupted_once(*a: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:  # a second Ctrl-C while closing
            raise KeyboardInterrupt
        real(*a)

    monkeypatch.setattr(writer, "write_metadata_yaml", interrupted_once)
    with pytest.raises(KeyboardInterrupt):
        bag.close()  # completes, then re-raises the interrupt
    assert (tmp_path / "bag" / "metadata.yaml").is_file() and has_footer(tmp_path / "bag" / "bag.mcap")
    bag.close()  # idempotent
    assert calls["n"] == 2 and not list((tmp_path / "bag").glob("*.tmp"))
    assert len(_stamps(tmp_path / "bag")) == 40


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = bag_main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_tracevla_bag_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bag = _write(tmp_path / "bag", close=False)
    bag.flush()
    bag.abort()
    code, out, _ = _cli(["info", str(tmp_path / "bag")], capsys)
    assert code == 0 and "not closed" in out and "40 msgs" in out
    code, out, _ = _cli(["reindex", str(tmp_path / "bag")], capsys)
    assert code == 0 and "41 messages on 2 topics" in out
    code, out, _ = _cli(["info", "--json", str(tmp_path / "bag")], capsys)
    assert code == 0 and '"state": "complete"' in out
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty0").mkdir()
    (tmp_path / "empty0" / "x.mcap").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hi")
    for bad, what in ((tmp_path / "nope", "no such"), (tmp_path / "empty", "not a bag"),
                      (tmp_path / "empty0", "empty"), (tmp_path / "notes.txt", "not a bag")):
        code, out, err = _cli(["reindex", str(bad)], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and what in err, err
        assert "Traceback" not in err
    assert bag_main(["reindex"]) == 2  # a usage error: returned by run_main, not raised
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


# ------------------------------------------------------------------ real recorder_node
TOPIC = "/recorder_test/count"


def _start_recorder(repo: Path, out: Path, *params: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=f"{repo}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    args = [sys.executable, "-m", "tracevla_ros.nodes.recorder_node", "--ros-args",
            "-p", f"output:={out}", "-p", f"topics:=['{TOPIC}']", "-p", "discovery_period_s:=0.1"]
    for p in params:
        args += ["-p", p]
    return subprocess.Popen(args, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _reap(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.fixture
def publisher() -> Any:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import String

    from tracevla_ros.nodes.common import RELIABLE_QOS

    rclpy.init()
    node = rclpy.create_node("recorder_test_pub")
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    pub = node.create_publisher(String, TOPIC, RELIABLE_QOS)
    yield node, ex, pub, String
    ex.shutdown()
    node.destroy_node()
    rclpy.shutdown()


def _publish(publisher: Any, proc: subprocess.Popen[bytes], n: int) -> None:
    """Wait for the recorder's subscription, then publish '0'..'n-1' at ~50 Hz."""
    node, ex, pub, String = publisher
    end = time.monotonic() + 60
    while pub.get_subscription_count() == 0:
        ex.spin_once(timeout_sec=0.05)
        if proc.poll() is not None or time.monotonic() > end:
            out = proc.stdout.read().decode() if proc.stdout else ""
            pytest.fail(f"the recorder did not subscribe (rc={proc.returncode}):\n{out}")
    time.sleep(0.3)  # the reliable match settles both ways
    for i in range(n):
        pub.publish(String(data=str(i)))
        ex.spin_once(timeout_sec=0.02)


def _recorded(bag: Path) -> list[int]:
    with BagReader(bag) as b:
        return [int(m.data) for _, _, m in b.messages([TOPIC])]


@pytest.mark.ros
def test_kill_9_loses_only_the_unflushed_chunk(publisher: Any, repo_root: Path, tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    proc = _start_recorder(repo_root, bag, "flush_period_s:=0.5", "params_file:=config/widowx.yaml")
    try:
        _publish(publisher, proc, 150)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        _reap(proc)
    assert not (bag / "metadata.yaml").exists() and needs_reindex(bag)
    r = reindex(bag)
    assert r.custom_data[PARAMS_KEY] == (repo_root / "config" / "widowx.yaml").read_text()
    got = _recorded(bag)
    # every message up to the last flushed chunk is there, in order, none missing
    assert len(got) > 0 and got == list(range(len(got)))
    with Reader(bag) as rd:
        assert sum(1 for _ in rd.messages()) == len(got)
    assert r.message_count == len(got)


@pytest.mark.ros
@pytest.mark.parametrize("signals", [(signal.SIGINT,), (signal.SIGINT, signal.SIGINT),
                                     (signal.SIGTERM,)], ids=["sigint", "sigint_twice", "sigterm"])
def test_signals_finish_the_bag(publisher: Any, repo_root: Path, tmp_path: Path,
                                signals: tuple[int, ...]) -> None:
    bag = tmp_path / "bag"
    proc = _start_recorder(repo_root, bag, "compression:=zstd")
    try:
        _publish(publisher, proc, 60)
        time.sleep(0.5)  # let the last messages arrive
        for s in signals:
            os.kill(proc.pid, s)
        proc.wait(timeout=60)
        out = proc.stdout.read().decode() if proc.stdout else ""
    finally:
        _reap(proc)
    assert (bag / "metadata.yaml").is_file(), out
    assert has_footer(bag / "bag.mcap") and not needs_reindex(bag), out
    assert _recorded(bag) == list(range(60)), out
    assert not list(bag.glob("*.tmp"))
    shutil.rmtree(bag)
