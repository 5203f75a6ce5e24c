"""Property tests of the node parameter checks (tracevla_ros.config): generated params
files and ``-p`` rules, with values of the right type, of a wrong type, non-finite, ``[]``,
near-misspelled keys and other nodes' keys in ``/**``.

- a valid input loads and gives exactly the values written (ints widen to float);
- an invalid one raises ConfigError naming the offending key;
- values the config class itself refuses (ranges, cross-field) raise ConfigError naming
  one of its keys, as the class does.
Pure Python (fast); one test compares with what a real rclpy node reads from the same
file, and runs the node's ``main`` on the invalid ones.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tracevla_ros.bag.config import RecorderConfig
from tracevla_ros.config import (
    ROS_BUILTIN_PARAMS,
    ConfigError,
    FieldSpec,
    field_specs,
    node_config_from_sources,
    parse_ros_args,
    stack_param_names,
)
from tracevla_ros.control.controller_config import WidowXControllerConfig
from tracevla_ros.policy.config import PolicyNodeConfig
from tracevla_ros.tracking.config import TrackerConfig

CONFIGS: dict[str, type] = {"tracker_node": TrackerConfig, "policy_node": PolicyNodeConfig,
                            "recorder_node": RecorderConfig,
                            "widowx_controller_node": WidowXControllerConfig}
STACK = stack_param_names()
VALID, WRONG_TYPE, NON_FINITE, EMPTY, UNKNOWN, OTHER_NODE = (
    "valid", "wrong type", "non-finite", "[]", "unknown", "other node's key")


@dataclass(frozen=True)
class Entry:
    key: str
    text: str  # the value as written in YAML / after -p key:=
    value: Any  # what the node must get (VALID only)
    kind: str
    shared: bool  # in the /** section (else the node's own)

    @property
    def invalid(self) -> bool:
        return self.kind not in (VALID, OTHER_NODE)


def _float_text(x: float) -> str:
    return repr(float(x))


_NUM = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
_STR = st.text("abcxyz_/.019", max_size=8)


def _valid(spec: FieldSpec) -> st.SearchStrategy[tuple[str, Any]]:
    """(YAML text, value) of the spec's type."""
    kind = spec.kind
    if kind == "bool":
        return st.booleans().map(lambda b: ("true" if b else "false", b))
    if kind == "int":
        return st.integers(-5, 100).map(lambda i: (str(i), i))
    if kind == "float":
        return st.one_of(_NUM.map(lambda x: (_float_text(x), x)),
                         st.integers(-5, 100).map(lambda i: (str(i), float(i))))  # widened
    if kind == "str":
        return _STR.map(lambda s: (json.dumps(s), s))
    elem = {"float[]": _NUM.map(lambda x: (_float_text(x), x)),
            "int[]": st.integers(-5, 100).map(lambda i: (str(i), i)),
            "str[]": _STR.map(lambda s: (json.dumps(s), s))}[kind]
    return st.lists(elem, min_size=1 if spec.default != () else 0, max_size=4).map(
        lambda items: ("[" + ", ".join(t for t, _ in items) + "]", tuple(v for _, v in items)))


def _wrong_type(spec: FieldSpec) -> st.SearchStrategy[str]:
    return st.sampled_from({
        "bool": ["1", "'true'", "0.5", "[true]"],
        "int": ["'7'", "1.5", "true", "seven", "[1]"],
        "float": ["'1.5'", "true", "fast", "[1.0]"],
        "str": ["5", "2.5", "true", "[a]"],
        "float[]": ["1.0", "[a, b]", "[true]"],
        "int[]": ["1", "[1.5]", "[a]"],
        "str[]": ["a", "[1, 2]", "[true]"],
    }[spec.kind])


def _near_miss(name: str) -> st.SearchStrategy[str]:
    """``name`` with one character deleted, inserted, replaced or two swapped."""
    def edit(args: tuple[int, int, str]) -> str:
        op, i, c = args
        i %= len(name)
        if op == 0:
            return name[:i] + name[i + 1:]
        if op == 1:
            return name[:i] + c + name[i:]
        if op == 2:
            return name[:i] + c + name[i + 1:]
        j = (i + 1) % len(name)
        a, b = sorted((i, j))
        return name[:a] + name[b] + name[a + 1:b] + name[a] + name[b + 1:]
    return st.tuples(st.integers(0, 3), st.integers(0, 99), st.sampled_from("abeiorstw_")).map(edit)


@st.composite
def entry(draw: st.DrawFn, node: str, via_p: bool) -> Entry:
    specs = field_specs(CONFIGS[node])
    own = {s.name for s in specs}
    kinds = [VALID] * 4 + [WRONG_TYPE, UNKNOWN, OTHER_NODE]
    spec = draw(st.sampled_from(specs))
    if spec.kind.startswith("float"):
        kinds.append(NON_FINITE)
    if spec.kind.endswith("[]") and spec.default != ():
        kinds.append(EMPTY)
    kind = draw(st.sampled_from(kinds))
    shared = (not via_p) and draw(st.booleans())
    if kind == VALID:
        text, value = draw(_valid(spec))
        return Entry(spec.name, text, value, kind, shared)
    if kind == WRONG_TYPE:
        return Entry(spec.name, draw(_wrong_type(spec)), None, kind, shared)
    if kind == NON_FINITE:
        bad = draw(st.sampled_from([".nan", ".inf", "-.inf", "nan", "inf", "-inf"]))
        return Entry(spec.name, f"[1.0, {bad}]" if spec.kind.endswith("[]") else bad, None,
                     kind, shared)
    if kind == EMPTY:
        return Entry(spec.name, "[]", None, kind, shared)
    if kind == OTHER_NODE:
        others = sorted(STACK - own)
        key = draw(st.sampled_from(others))
        # another node's key is fine in /** only; in the node's own section or a -p it is not
        return Entry(key, "1", None, OTHER_NODE if shared else UNKNOWN, shared)
    key = draw(_near_miss(spec.name))
    taken = own | ROS_BUILTIN_PARAMS | (STACK if shared else set())
    return Entry(key if key and key not in taken else spec.name + "_x", "1", None, kind, shared)


@st.composite
def params_input(draw: st.DrawFn) -> tuple[str, bool, list[Entry]]:
    node = draw(st.sampled_from(sorted(CONFIGS)))
    via_p = draw(st.booleans())
    entries = draw(st.lists(entry(node, via_p), min_size=1, max_size=5,
                            unique_by=lambda e: e.key))
    return node, via_p, entries


def _argv(node: str, via_p: bool, entries: list[Entry], tmp: Path) -> list[str]:
    if via_p:
        return ["--ros-args", *[a for e in entries for a in ("-p", f"{e.key}:={e.text}")]]
    shared = [e for e in entries if e.shared]
    own = [e for e in entries if not e.shared]
    text = ""
    for section, items in (("/**", shared), (node, own)):
        if items:
            text += f"{section}:\n  ros__parameters:\n"
            text += "".join(f"    {e.key}: {e.text}\n" for e in items)
    path = tmp / "params.yaml"
    path.write_text(text)
    return ["--ros-args", "--params-file", str(path)]


def _load(node: str, argv: list[str]) -> Any:
    cls = CONFIGS[node]
    own = frozenset(s.name for s in field_specs(cls))
    return node_config_from_sources(cls, parse_ros_args(argv).sources, node,
                                    stack_params=STACK | own)


def _expected(node: str, entries: list[Entry]) -> Any:
    """The oracle: the config class built directly from the values written."""
    return CONFIGS[node](**{e.key: e.value for e in entries if e.kind == VALID})


def _check(node: str, entries: list[Entry], argv: list[str]) -> Any:
    bad = [e for e in entries if e.invalid]
    event("invalid: " + ", ".join(sorted({e.kind for e in bad})) if bad else "valid types")
    if bad:
        with pytest.raises(ConfigError) as exc:
            _load(node, argv)
        assert any(f"'{e.key}'" in str(exc.value) for e in bad), (str(exc.value), bad)
        return None
    try:
        want = _expected(node, entries)
    except ConfigError as exc:  # the class's own checks refuse the combination
        event("refused by the config class")
        key = str(exc).split("'")[1]
        with pytest.raises(ConfigError, match=f"'{key}'"):
            _load(node, argv)
        return None
    got = _load(node, argv)
    assert got == want
    for e in entries:
        if e.kind == VALID:
            v = getattr(got, e.key)
            assert v == e.value and type(v) is type(e.value), (e, v)
    return got


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params_input())
def test_generated_params_load_exactly_or_name_the_key(inp: tuple[str, bool, list[Entry]]) -> None:
    node, via_p, entries = inp
    with tempfile.TemporaryDirectory() as d:
        _check(node, entries, _argv(node, via_p, entries, Path(d)))


@pytest.mark.parametrize("text", ["1e3", "1.", "2.5e-1", ".5", "12", "0x1F"])
def test_floats_are_read_as_rcl_reads_them(text: str, tmp_path: Path) -> None:
    """YAML 1.1 (PyYAML) reads 1e3 as a string; rcl as a double. The check reads as rcl."""
    want = float(int(text, 0)) if text.startswith("0x") else float(text)
    cfg = _load("tracker_node", ["--ros-args", "-p", f"lk_epsilon:={text}"])
    assert cfg.lk_epsilon == want and not math.isnan(cfg.lk_epsilon)


@pytest.mark.ros
@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(entry("tracker_node", False), min_size=1, max_size=5, unique_by=lambda e: e.key))
def test_a_real_node_reads_what_the_check_reads(entries: list[Entry]) -> None:
    """The same generated file given to a real rclpy node: a valid one gives the config the
    pure check gives; an invalid one makes tracker_node's main() exit 2 naming the key."""
    import rclpy
    from rclpy.node import Node

    from tracevla_ros.nodes.common import declare_config
    from tracevla_ros.nodes.tracker_node import main

    with tempfile.TemporaryDirectory() as d:
        argv = _argv("tracker_node", False, entries, Path(d))
        want = _check("tracker_node", entries, argv)
        if want is None:
            if any(e.invalid for e in entries):
                err = io.StringIO()
                with contextlib.redirect_stderr(err):
                    assert main(argv) == 2
                line = err.getvalue().strip().splitlines()[-1]
                assert line.startswith("tracker_node: error: ")
                assert any(f"'{e.key}'" in line for e in entries if e.invalid), line
            return
        ctx = rclpy.Context()
        rclpy.init(args=argv, context=ctx)
        try:
            node = Node("tracker_node", context=ctx)
            try:
                assert declare_config(node, TrackerConfig) == want
            finally:
                node.destroy_node()
        finally:
            rclpy.shutdown(context=ctx)
