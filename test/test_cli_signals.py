"""Long-running console scripts stopped by SIGTERM mid-run, and runs with nothing to report.

Each signal test starts the real executable, waits until it has started its work (a file
it writes appears; no fixed sleep), sends SIGTERM, and checks: exit 128 + 15 within the
grace period, no traceback, the outputs complete and valid, the report marked incomplete.
(tracevla-demo's SIGINT/SIGTERM tests are in test_demo.py.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from test_replay import POLICY, SUPPORT, write_recorded_bag
from tracevla_ros.bag import messages as bm
from tracevla_ros.bag.writer import BagRecorder
from tracevla_ros.tracking.synthetic import SyntheticScene

BIN = Path(sys.executable).parent


def _start(argv: list[str], tmp: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(SUPPORT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([str(BIN / argv[0]), *argv[1:]], cwd=tmp, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def _stop_when(proc: subprocess.Popen[str], ready: Callable[[], bool],
               timeout: float = 200.0) -> tuple[int, str, float]:
    """SIGTERM once ``ready()``; returns (exit status, stderr, seconds from signal to exit)."""
    try:
        end = time.monotonic() + timeout
        while not ready():
            assert proc.poll() is None, f"exited early ({proc.returncode}): {proc.stderr.read()}"  # type: ignore[union-attr]
            assert time.monotonic() < end, "never started its work"
            time.sleep(0.1)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        return proc.returncode, err, time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_collect_stopped_by_sigterm_keeps_whole_episodes(tmp_path: Path) -> None:
    from tracevla_ros.sim.dataset import list_episodes, load_episode, load_info

    out = tmp_path / "data"
    proc = _start(["tracevla-collect", "--robot", "widowx", "--task", "lift_cube",
                   "--episodes", "1000", "--out", str(out)], tmp_path)
    rc, err, took = _stop_when(proc, lambda: (out / "episode_000000" / "meta.json").is_file())
    assert rc == 128 + signal.SIGTERM, err[-2000:]
    assert "Traceback" not in err and "stopped by SIGTERM" in err
    assert took < 10.0  # within one sim step plus the episode save and the interpreter exit
    info = load_info(out)
    run = info["collection"]
    assert run["complete"] is False and run["stopped_by"] == "SIGTERM"
    eps = list_episodes(out)
    assert len(eps) == run["episodes_written"] >= 1
    for ep in eps:  # every episode on disk is whole
        assert len(load_episode(ep)) > 0
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no half-written episode


def test_replay_stopped_by_sigterm_writes_an_incomplete_report(tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    write_recorded_bag(bag, frames=80)  # 8 s at 10 Hz; replayed at half speed: 16 s
    out = tmp_path / "r"
    proc = _start(["tracevla-replay", str(bag), "--out", str(out), "--policy", POLICY,
                   "--speed", "0.5", "--quiet"], tmp_path)
    rc, err, took = _stop_when(proc, lambda: (out / "overlay.mp4").is_file())
    assert rc == 128 + signal.SIGTERM, err[-2000:]
    assert "Traceback" not in err and "stopped by SIGTERM" in err
    assert took < 10.0
    rep = json.loads((out / "report.json").read_text())  # strict JSON, written whole
    assert rep["complete"] is False and rep["stopped_by"] == "SIGTERM"
    assert rep["error"] == "stopped by SIGTERM"
    assert 0 < rep["frames"] < 80


def _images_only_bag(path: Path, frames: int = 30) -> None:
    """A camera bag without an instruction: the policy has nothing to act on."""
    scene = SyntheticScene.default(96, 96, seed=1)
    t0 = 1_700_000_000 * 1_000_000_000
    with BagRecorder(path) as bag:
        bag.add_topic("/camera/image_raw", "sensor_msgs/msg/Image")
        for i in range(frames):
            stamp = t0 + i * 100_000_000
            msgtype, data = bm.image_msg(scene.render(i * 0.1)[0], stamp)
            bag.write("/camera/image_raw", stamp + 1_000_000, data)


def test_replay_where_the_policy_is_never_called_is_not_complete(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tracevla_ros.tools.replay import main

    _images_only_bag(tmp_path / "bag")
    rc = main([str(tmp_path / "bag"), "--out", str(tmp_path / "r"), "--policy", POLICY,
               "--robot", "widowx", "--quiet", "--no-video", "--no-plots"])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "the policy was never called" in err and "--instruction" in err
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    assert rep["complete"] is False and rep["policy"]["calls"] == 0
    assert rep["policy"]["no_instruction"] > 0
    # with an instruction the same bag replays completely
    rc = main([str(tmp_path / "bag"), "--out", str(tmp_path / "r2"), "--policy", POLICY,
               "--robot", "widowx", "--quiet", "--no-video", "--no-plots",
               "--instruction", "lift the cube"])
    assert rc == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "r2" / "report.json").read_text())["complete"] is True


def test_replay_where_every_policy_call_fails_is_not_complete(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tracevla_ros.tools.replay import main

    _images_only_bag(tmp_path / "bag")
    rc = main([str(tmp_path / "bag"), "--out", str(tmp_path / "r"),
               "--policy", "replay_policy:make_failing_policy", "--robot", "widowx", "--quiet",
               "--no-video", "--no-plots", "--instruction", "lift the cube"])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "every policy call failed" in err
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    assert rep["complete"] is False
    assert rep["policy"]["calls"] == rep["policy"]["failures"] > 0


def test_a_failing_run_leaves_nothing_that_blocks_the_rerun(tmp_path: Path) -> None:
    """tracevla-demo after it started recording: an input error removes OUT/bag, any other
    error keeps it as OUT/bag.failed; either way the corrected rerun is not refused."""
    from tracevla_ros.config import ConfigError
    from tracevla_ros.tools.demo import _set_aside_bag

    bag = tmp_path / "bag"
    bag.mkdir()
    (bag / "metadata.yaml").write_text("x")
    _set_aside_bag(bag, ConfigError("node 'tracker_node': bad"))
    assert not bag.exists() and not (tmp_path / "bag.failed").exists()
    bag.mkdir()
    (bag / "bag.mcap").write_bytes(b"data")
    _set_aside_bag(bag, RuntimeError("a node crashed"))
    assert not bag.exists() and (tmp_path / "bag.failed" / "bag.mcap").read_bytes() == b"data"
