"""tracevla-annotate and traceforge over many episodes on a local 2-worker Ray cluster
(``tracevla_ros/parallel.py``): the same files as one after the other, resumable, failures
reported per episode, no Ray process left behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from support.local_policy import make_dataset

from tracevla_ros.parallel import run_tasks
from tracevla_ros.tools.annotate import main as annotate_main
from tracevla_ros.tracking.offline import load_traces

ray = pytest.importorskip("ray")

PARAMS = "tracker_node:\n  ros__parameters:\n    preset: paper\n    grid_size: 20\n"


def _descendants(pid: int) -> list[int]:
    """Live (not zombie) descendants of ``pid``, from /proc."""
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parent[int(stat.parent.name)] = int(fields[1])
    out, frontier = [], [pid]
    while frontier:
        kids = [c for c, p in parent.items() if p in frontier]
        out += kids
        frontier = kids
    return out


def _ray_children() -> list[int]:
    """Ray's daemons (gcs_server, raylet) and workers started from this process."""
    def cmd(pid: int) -> str:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return ""
    return [p for p in _descendants(os.getpid()) if "ray" in cmd(p)]


@pytest.fixture(scope="module")
def cluster():
    """One local 2-CPU Ray cluster for the module; the tools use it as an existing cluster."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             object_store_memory=80 * 1024 * 1024)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        deadline = time.monotonic() + 30
        while _ray_children() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _ray_children() == [], "Ray processes left behind"


def _traces(root: Path) -> dict[str, bytes]:
    out = {}
    for ep in sorted(p.parent for p in root.glob("episode_*/trace.npz")):
        with np.load(ep / "trace.npz") as z:
            out[ep.name] = b"".join(z[k].tobytes() for k in sorted(z.files))
    return out


def test_ray_annotation_equals_serial_resumes_and_reports_failures(cluster, tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS)
    serial = make_dataset(tmp_path / "serial", episodes=4, steps=12, annotate=False)
    par = tmp_path / "par"
    shutil.copytree(serial, par)
    # a corrupt fifth episode: reported with its error, the others still annotated
    bad = par / "episode_000004"
    shutil.copytree(par / "episode_000000", bad)
    (bad / "data.npz").write_bytes(b"\x00" * 64)

    assert annotate_main(["--data", str(serial), "--params", str(params)]) == 0
    assert annotate_main(["--data", str(par), "--params", str(params), "--workers", "2"]) == 1
    rep = json.loads((par / "annotate_report.json").read_text())
    assert rep["backend"] == "ray-cluster" and rep["workers"] == 2
    assert rep["done"] == [f"episode_{i:06d}" for i in range(4)]
    assert list(rep["failed"]) == ["episode_000004"]
    failure = rep["failed"]["episode_000004"]
    assert failure["error"].startswith("ValueError: ") and "load_episode" in failure["traceback"]
    assert not (bad / "trace.npz").exists() and not list(bad.glob(".trace.partial*"))
    assert _traces(par) == _traces(serial)  # byte-identical arrays, episode by episode

    # resume: a rerun skips the four finished episodes and only retries the failed one
    stamps = {p.name: (p / "trace.json").stat().st_mtime_ns for p in par.glob("episode_00000[0-3]")}
    (par / "episode_000001" / "trace.json").unlink()  # as if killed between the two renames
    assert annotate_main(["--data", str(par), "--params", str(params), "--workers", "2"]) == 1
    rep = json.loads((par / "annotate_report.json").read_text())
    assert rep["done"] == ["episode_000001"] and list(rep["failed"]) == ["episode_000004"]
    assert sorted(rep["skipped"]) == ["episode_000000", "episode_000002", "episode_000003"]
    for name in ("episode_000000", "episode_000002", "episode_000003"):
        assert (par / name / "trace.json").stat().st_mtime_ns == stamps[name]
    assert _traces(par) == _traces(serial)


def test_traceforge_on_ray_equals_serial(cluster, tmp_path: Path) -> None:
    from tracegen_ros import data as D
    from tracegen_ros.traceforge.cli import main as traceforge_main
    from tracevla_ros.tools.collect import main as collect_main

    src = tmp_path / "push"
    assert collect_main(["--robot", "fr3", "--task", "push_block_to_region", "--episodes", "2",
                         "--out", str(src), "--seed", "3"]) == 0
    shutil.copytree(src / "episode_000000", src / "episode_000002")
    (src / "episode_000002" / "data.npz").write_bytes(b"corrupt")
    outs = {}
    for workers in ("1", "2"):
        out = tmp_path / f"forge{workers}"
        assert traceforge_main(["--episodes", str(src), "--out", str(out), "--no-progress",
                                "--workers", workers]) == 0
        rep = json.loads((out / "traceforge_report.json").read_text())
        assert rep["done"] == ["push_block_to_region_episode_000000",
                               "push_block_to_region_episode_000001"]
        assert list(rep["failed"]) == ["push_block_to_region_episode_000002"]
        assert rep["backend"] == ("serial" if workers == "1" else "ray-cluster")
        assert not [p for p in out.iterdir() if p.name.startswith(".")]
        outs[workers] = {str(p.relative_to(out)): np.load(p)["traj"].tobytes()
                         for p in D.list_samples(out)}
    assert outs["1"] and outs["1"] == outs["2"]


def test_runner_reports_every_failure_and_result(cluster) -> None:
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # test/ is not on the workers' path
    items = [(f"ep{i}", i) for i in range(6)]
    rep = run_tasks(_square_or_fail, items, workers=2, progress=False)
    assert sorted(rep.done) == ["ep0", "ep2", "ep4"]
    assert rep.done["ep4"] == {"square": 16}
    assert sorted(rep.failed) == ["ep1", "ep3", "ep5"]
    assert rep.failed["ep3"].error == "ValueError: odd episode 3"
    assert "_square_or_fail" in rep.failed["ep3"].traceback
    with pytest.raises(ValueError, match="twice"):
        run_tasks(_square_or_fail, [("a", 0), ("a", 2)], workers=2)


def _square_or_fail(i: int) -> dict[str, int]:
    if i % 2:
        raise ValueError(f"odd episode {i}")
    return {"square": i * i}


def test_cli_starts_its_own_cluster_and_stops_on_sigterm(tmp_path: Path) -> None:
    """The command starts a local cluster itself; SIGTERM mid-run keeps what is finished,
    exits 143 (128 + SIGTERM), and leaves no Ray process (a subprocess: its own Ray, not the fixture's)."""
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS)
    data = make_dataset(tmp_path / "d", episodes=12, steps=40, annotate=False)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "tracevla_ros.tools.annotate", "--data", str(data),
                             "--params", str(params), "--workers", "2"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(data.glob("episode_*/trace.json")) and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        ray_pids = _descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    finished = list(data.glob("episode_*/trace.json"))
    assert (data / "annotate_report.json").exists(), (proc.returncode, err)
    rep = json.loads((data / "annotate_report.json").read_text())
    if proc.returncode == 0:  # it finished every episode before the signal arrived
        assert len(finished) == 12 and rep["interrupted"] is False
    else:
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert "stopped (SIGTERM)" in err and "Traceback" not in err
        # a task may finish after the signal, unreported: its files are complete all the same
        assert rep["interrupted"] is True and rep["done"]
        assert set(rep["done"]) <= {p.parent.name for p in finished}
        assert len(rep["done"]) + len(rep["not_run"]) == 12
        for p in finished:  # a killed task leaves at most a hidden .trace.partial* folder
            load_traces(p.parent)
        # the rerun finishes the rest, in this process, and clears what killed tasks left
        assert annotate_main(["--data", str(data), "--params", str(params)]) == 0
        assert len(list(data.glob("episode_*/trace.json"))) == 12
        assert not list(data.glob("episode_*/.trace.partial*"))
    assert rep["backend"] == "ray-local" and rep["workers"] == 2
    assert ray_pids, "the command started no Ray processes"
    deadline = time.monotonic() + 30
    while _alive(ray_pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _alive(ray_pids) == [], "Ray processes left behind"


def _alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.append(pid)
    return out
