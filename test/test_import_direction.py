"""Imports run one way: tracegen_ros may import tracevla_ros, never the reverse.

tracevla_ros finds what tracegen_ros adds (the FR3 demo, the TraceGen benchmarks) through
entry points (tracevla_ros/plugins.py). Checked statically with ast over every module under
tracevla_ros/: ``import``/``from ... import`` statements (at any depth, lazy ones included),
and string literals handed to ``importlib.import_module`` / ``__import__``.
"""

from __future__ import annotations

import ast
from pathlib import Path

FORBIDDEN = "tracegen_ros"


def _forbidden(name: str | None) -> bool:
    return bool(name) and (name == FORBIDDEN or str(name).startswith(FORBIDDEN + "."))


def _is_import_call(func: ast.expr) -> bool:
    if isinstance(func, ast.Attribute):  # importlib.import_module(...), x.import_module(...)
        return func.attr in ("import_module", "__import__")
    return isinstance(func, ast.Name) and func.id in ("import_module", "__import__")


def violations(source: str, filename: str = "<string>") -> list[str]:
    out = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            out += [f"{filename}:{node.lineno}: import {a.name}" for a in node.names
                    if _forbidden(a.name)]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and _forbidden(node.module):
                out.append(f"{filename}:{node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Call) and _is_import_call(node.func):
            for arg in node.args[:1]:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) \
                        and _forbidden(arg.value):
                    out.append(f"{filename}:{node.lineno}: import_module({arg.value!r})")
                elif isinstance(arg, ast.JoinedStr):  # f"tracegen_ros.{x}"
                    head = arg.values[0] if arg.values else None
                    if isinstance(head, ast.Constant) and str(head.value).startswith(FORBIDDEN):
                        out.append(f"{filename}:{node.lineno}: import_module(f{head.value!r}...)")
    return out


def test_tracevla_ros_never_imports_tracegen_ros(repo_root: Path) -> None:
    files = sorted((repo_root / "tracevla_ros").rglob("*.py"))
    assert len(files) > 50
    found = [v for f in files for v in violations(f.read_text(), str(f.relative_to(repo_root)))]
    assert not found, "tracevla_ros must not import tracegen_ros:\n" + "\n".join(found)


def test_the_check_sees_every_form() -> None:
    src = """
import tracegen_ros
import os, tracegen_ros.demo as d
from tracegen_ros.bench import tracegen
def f():
    from tracegen_ros import demo
    import importlib
    importlib.import_module("tracegen_ros.bench.tracegen_sim")
    importlib.import_module(f"tracegen_ros.{name}")
    __import__("tracegen_ros")
"""
    assert len(violations(src)) == 7
    ok = """
import tracegen_rosx
from . import tracegen_ros
from tracevla_ros.plugins import load
msg = "install the tracegen_ros package"
import importlib
importlib.import_module("tracevla_ros.bench.ik")
"""
    assert violations(ok) == []
