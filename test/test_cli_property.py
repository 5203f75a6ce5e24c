"""Property tests (hypothesis) of the console scripts' validation layer.

Generated values for numeric and path options, and generated parameter files: an invalid
value always ends in exit 2 with one line naming the option and no traceback; a valid one
is accepted (the run then stops at another, deliberately wrong input, whose message is the
one printed). JSON written by the stack never contains NaN or Infinity.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.bad_input import entry_point
from tracevla_ros.cli import dumps_json, write_json_atomic

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-10**6, max_value=10**6).map(str),
    st.sampled_from(["nan", "inf", "-inf", "NaN", "1e400", "", "abc", "0x10", "1,5", " 3"]),
).map(lambda v: v if isinstance(v, str) else repr(v))


def _run(cmd: list[str], cwd: Path) -> tuple[int, str]:
    err = io.StringIO()
    old = os.getcwd()
    try:
        os.chdir(cwd)
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = entry_point(cmd[0])(cmd[1:])
    finally:
        os.chdir(old)
    return int(rc or 0), err.getvalue()


def _one_line(rc: int, err: str) -> str:
    assert "Traceback" not in err, err
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


def _as_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


# (command template, option, valid(value) -> bool); the command always carries one wrong
# input after the option (an --out that is an existing file, an unknown robot), so a valid
# value never starts real work.
NUMERIC = [
    (["tracevla-collect", "--robot", "widowx", "--task", "lift_cube", "--out", "{file}"],
     "--noise-rot", lambda v: v is not None and math.isfinite(v) and 0 <= v <= 3.2),
    (["tracevla-demo", "--out", "{file}"], "--timeout",
     lambda v: v is not None and math.isfinite(v) and v >= 0),
    (["tracevla-replay", "{tmp}/nobag", "--out", "{file}"], "--speed",
     lambda v: v is not None and math.isfinite(v) and v >= 0),
    (["tracevla-bench", "loop", "--robot", "ur5"], "--seconds",
     lambda v: v is not None and math.isfinite(v) and 0 < v <= 86400),
]


@pytest.mark.parametrize("template,option,valid", NUMERIC, ids=[n[1] for n in NUMERIC])
@SETTINGS
@given(value=numbers)
def test_numeric_options(template: list[str], option: str, valid: Any, value: str,
                         tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    cmd = [a.replace("{file}", str(tmp_path / "file")).replace("{tmp}", str(tmp_path))
           for a in template]
    at = 2 if cmd[0] == "tracevla-bench" else 1  # before the wrong input: argparse stops at
    line = _one_line(*_run([*cmd[:at], f"{option}={value}", *cmd[at:]], tmp_path))  # the first
    if valid(_as_float(value)):  # accepted: the error is about the other input
        assert option not in line, line
    else:
        assert option in line, line


ints = st.one_of(st.integers(min_value=-2**40, max_value=2**40).map(str),
                 st.sampled_from(["nan", "1.5", "", "x", "1e3"]))


@pytest.mark.parametrize("tool,option,lo,hi", [
    ("tracevla-serve", "--port", 0, 65535),
    ("tracevla-collect", "--episodes", 1, 1_000_000),
    ("tracevla-demo", "--steps", 1, None),
])
@SETTINGS
@given(value=ints)
def test_integer_options(tool: str, option: str, lo: int, hi: int | None, value: str,
                         tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    other = {"tracevla-serve": ["--backend", "remote"],
             "tracevla-collect": ["--robot", "ur5", "--task", "lift_cube", "--out", "o"],
             "tracevla-demo": ["--out", str(tmp_path / "file")]}[tool]
    line = _one_line(*_run([tool, f"{option}={value}", *other], tmp_path))
    try:
        v: int | None = int(value)
    except ValueError:
        v = None
    ok = v is not None and v >= lo and (hi is None or v <= hi)
    assert (option in line) != ok, line


@SETTINGS
@given(name=st.one_of(st.text(max_size=30), st.sampled_from(
    ["afile", "afile/x", "", " ", ".", "~0", "~nosuchuser/x"])))
def test_output_paths(name: str, tmp_path: Path) -> None:
    """--out: an existing file, a path under a file or an empty name is refused naming
    --out; anything else is a directory the tool may create (the run then stops at the
    unknown robot, before anything is written)."""
    (tmp_path / "afile").write_text("x")
    rc, err = _run(["tracevla-collect", "--robot", "nosuchrobot", "--task", "lift_cube",
                    f"--out={name}"], tmp_path)
    line = _one_line(rc, err)
    if not name.strip() or name in ("afile", "afile/x", "~0", "~nosuchuser/x"):
        assert "--out" in line, line
    else:
        assert "--out" in line or "nosuchrobot" in line, line
    assert not list(tmp_path.rglob("info.json"))


TRACKER_KEYS = ["history", "draw_length", "grid_size", "control_rate_hz", "observe_rate_hz",
                "kappa_px", "preset", "backend", "seed", "lk_window", "nonexistent_key"]
values = st.one_of(st.integers(-5, 100), st.floats(allow_nan=True, allow_infinity=True),
                   st.text(max_size=8), st.booleans(), st.none(), st.lists(st.integers(), max_size=3))
param_files = st.one_of(
    st.dictionaries(st.sampled_from(TRACKER_KEYS), values, max_size=4).map(
        lambda d: yaml.safe_dump({"tracker_node": {"ros__parameters": d}})),
    st.text(max_size=60),  # anything at all, mostly not YAML of the right shape
    st.sampled_from(["", "tracker_node: 3", "- a\n- b", "tracker_node:\n  ros__parameters: [1]",
                     "{{{", "tracker_node: {ros__parameters: {history: .nan}}"]),
)


@SETTINGS
@given(text=param_files)
def test_generated_param_files(text: str, tmp_path: Path) -> None:
    """tracevla-annotate --params FILE: whatever the file holds, one line and exit 2 (a bad
    file names itself; a good one gets to the empty dataset, which is then refused)."""
    from tracevla_ros.sim.dataset import FORMAT

    (tmp_path / "ds").mkdir(exist_ok=True)
    (tmp_path / "ds" / "info.json").write_text(json.dumps({"format": FORMAT,
                                                           "robot": "widowx250s"}))
    (tmp_path / "p.yaml").write_text(text)
    line = _one_line(*_run(["tracevla-annotate", "--data", str(tmp_path / "ds"),
                            "--params", str(tmp_path / "p.yaml")], tmp_path))
    assert "p.yaml" in line or "no episodes" in line, line


json_values = st.recursive(
    st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.text(max_size=5),
              st.booleans(), st.none()),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=5), children, max_size=4)),
    max_leaves=20)


def _strict(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in JSON output")

    return json.loads(text, parse_constant=refuse)


@SETTINGS
@given(data=json_values)
def test_json_outputs_never_hold_nan(data: Any, tmp_path: Path) -> None:
    parsed = _strict(dumps_json(data))
    write_json_atomic(tmp_path / "out.json", data)
    assert _strict((tmp_path / "out.json").read_text()) == parsed
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temporary left
    if isinstance(data, float) and math.isfinite(data):
        assert parsed == data
