"""tracevla-demo / tracevla-bench extensions through entry points (tracevla_ros/plugins.py):
tracegen_ros registers the FR3 demo and its benchmarks in this checkout's package metadata
(setup.py, and CMakeLists.txt's ament_python_install_package for colcon; both read
scripts/entry_points.cfg); without them, one line says which package to install."""

from __future__ import annotations

import configparser
import importlib.metadata
import sys
import types
from pathlib import Path

import pytest

from tracevla_ros.plugins import BENCH_GROUP, DEMO_GROUP, DemoPlugin

EXPECTED = {DEMO_GROUP: {"fr3": "tracegen_ros.demo:FR3_DEMO"},
            BENCH_GROUP: {"tracegen": "tracegen_ros.bench.tracegen",
                          "tracegen-sim": "tracegen_ros.bench.tracegen_sim"}}


def _no_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.metadata.entry_points

    def entry_points(**kw):  # type: ignore[no-untyped-def]
        if kw.get("group") in (DEMO_GROUP, BENCH_GROUP):
            return importlib.metadata.EntryPoints(())
        return real(**kw)
    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


def test_setup_py_metadata_registers_the_plugins(plugin_metadata: Path) -> None:
    cfg = configparser.ConfigParser()
    cfg.read(plugin_metadata / "tracevla_stack.egg-info" / "entry_points.txt")
    for group, names in EXPECTED.items():
        assert dict(cfg[group]) == names, group


def test_colcon_install_gets_the_same_entry_points(repo_root: Path) -> None:
    cmake = (repo_root / "CMakeLists.txt").read_text()
    assert "ament_python_install_package(tracegen_ros SETUP_CFG scripts/entry_points.cfg)" in cmake
    for moved in ("demo_tracegen", "bench/tracegen"):
        assert moved not in cmake
    cfg = configparser.ConfigParser()
    cfg.read(repo_root / "scripts" / "entry_points.cfg")
    got = {g: dict(ln.strip().split(" = ") for ln in v.splitlines() if ln.strip())
           for g, v in cfg["options.entry_points"].items()}
    assert got == EXPECTED


def test_entry_points_load(with_plugins: None) -> None:
    from tracevla_ros.plugins import entry_points, load_demo

    demo = load_demo("fr3")
    assert isinstance(demo, DemoPlugin)
    assert demo.policies == ("tracegen", "tracegen_oracle", "no_motion")
    assert set(entry_points(BENCH_GROUP)) >= {"tracegen", "tracegen-sim"}
    assert callable(entry_points(BENCH_GROUP)["tracegen-sim"].load().main)


def test_demo_without_the_plugin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    from tracevla_ros.tools import demo

    _no_plugins(monkeypatch)
    assert demo.main(["--robot", "fr3", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tracevla-demo: error: 'fr3' ")
    assert "tracegen_ros" in err and DEMO_GROUP in err
    assert not (tmp_path / "o").exists()


def test_demo_policy_check_comes_from_the_plugin(with_plugins: None, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from tracevla_ros.tools import demo

    assert demo.main(["--robot", "fr3", "--policy", "local", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tracevla-demo: error: --policy 'local': ")
    assert "--robot fr3 runs the TraceGen loop" in err  # the plugin's words
    assert "['tracegen', 'tracegen_oracle', 'no_motion']" in err


def test_bench_without_the_plugin(monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    from tracevla_ros.tools import bench

    _no_plugins(monkeypatch)
    for name in ("tracegen", "tracegen-sim"):
        assert bench.main([name, "--episodes", "1"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"tracevla-bench: error: '{name}' ")
        assert "tracegen_ros" in err and BENCH_GROUP in err
    assert bench.main(["nope"]) == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err
    assert bench.main([]) == 2  # a benchmark name is required
    capsys.readouterr()
    assert bench.main(["--help"]) == 0
    assert "tracegen" not in capsys.readouterr().out


def test_bench_runs_a_plugin(monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    from tracevla_ros.tools import bench

    mod = types.ModuleType("fake_bench_plugin")
    mod.main = lambda argv: {"argv": argv}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_bench_plugin", mod)
    ep = importlib.metadata.EntryPoint("fake", "fake_bench_plugin", BENCH_GROUP)
    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **kw: importlib.metadata.EntryPoints((ep,))
                        if kw.get("group") == BENCH_GROUP else real(**kw))
    assert bench.main(["--help"]) == 0
    listing = capsys.readouterr().out.split("benchmarks (", 1)[1]
    assert "\n  fake " in listing and "\n  ik " in listing  # with the plugin's one-liner
    assert bench.main(["fake", "--x", "1"]) == 0
    assert '"argv": [\n    "--x",\n    "1"\n  ]' in capsys.readouterr().out


def test_real_bench_entry_point_parses(with_plugins: None,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from tracevla_ros.tools import bench

    assert bench.main(["-h"]) == 0
    out = capsys.readouterr().out
    assert "\n  tracegen-sim  TraceGen's execution path on the FR3 sim tasks." in out
    assert bench.main(["tracegen-sim", "--help"]) == 0
    assert "usage: tracevla-bench tracegen-sim" in capsys.readouterr().out
