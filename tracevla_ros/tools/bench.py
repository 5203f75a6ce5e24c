"""``tracevla-bench <name> [args]``: run one benchmark, print one JSON object.

Example::

    tracevla-bench tracker --backend lk --size 256 --frames 300 --preset paper
    tracevla-bench tracker --help          # the benchmark's own options

Benchmarks: this package's (``tracevla_ros.bench.BENCHMARKS``) and those other installed
packages register in entry point group ``tracevla_ros.benches`` (tracegen_ros: ``tracegen``,
``tracegen-sim``). The JSON is strict: a value that is not a finite number (a statistic over
zero items) is printed as ``null`` and counted in ``notes``. SIGINT/SIGTERM stop a benchmark
(no JSON, exit status 128 + the signal).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import math
import os
import platform
import sys
from typing import Any

from tracevla_ros.bench import BENCHMARKS
from tracevla_ros.cli import ArgParser, UsageError, dumps_json, run_main
from tracevla_ros.plugins import BENCH_GROUP, KNOWN_PROVIDERS, entry_points, missing_message
from tracevla_ros.stopping import StopRequest, install_stop_signals

PROG = "tracevla-bench"


def machine_info() -> dict[str, object]:
    """What every benchmark reports about the machine it ran on."""
    return {
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
    }


def _modules() -> dict[str, str]:
    """Every benchmark's name -> its module (this package's, then the plugins')."""
    mods = {name: f"tracevla_ros.bench.{mod}" for name, mod in BENCHMARKS.items()}
    for name, ep in entry_points(BENCH_GROUP).items():
        mods.setdefault(name, ep.value.split(":")[0])
    return mods


def summary_line(module: str) -> str:
    """The first line of ``module``'s docstring, read from its source (nothing imported)."""
    try:
        spec = importlib.util.find_spec(module)
        origin = spec.origin if spec is not None else None
        doc = ast.get_docstring(ast.parse(open(origin).read())) if origin else None
    except (ImportError, OSError, SyntaxError, ValueError):
        doc = None
    line = " ".join((doc or "(no description)").strip().split("\n\n")[0].split())
    prefix = line.split(":", 1)
    if len(prefix) == 2 and prefix[0].startswith("``tracevla-bench"):  # "``tracevla-bench x``: ..."
        line = prefix[1].strip()
    return line


def _parser() -> ArgParser:
    mods = _modules()
    width = max(map(len, mods), default=0)
    listing = "\n".join(f"  {name:<{width}}  {summary_line(mod)}" for name, mod in sorted(mods.items()))
    ap = ArgParser(PROG, description=__doc__.split("\n\n")[0],
                   epilog=f"benchmarks ({PROG} NAME --help for each one's options):\n{listing}")
    ap.add_argument("benchmark", metavar="NAME", help="the benchmark to run (listed below)")
    ap.add_argument("args", nargs=argparse.REMAINDER, help="the benchmark's own options")
    return ap


def count_nonfinite(obj: Any) -> int:
    """How many floats in ``obj`` (nested dicts/lists) are NaN or infinite."""
    if isinstance(obj, float):
        return 0 if math.isfinite(obj) else 1
    if isinstance(obj, dict):
        return sum(count_nonfinite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(count_nonfinite(v) for v in obj)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, _main, argv)


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    name = args.benchmark
    plugins = {n: ep for n, ep in entry_points(BENCH_GROUP).items() if n not in BENCHMARKS}
    if name not in BENCHMARKS and name not in plugins:
        if name in KNOWN_PROVIDERS[BENCH_GROUP]:  # a known one, not installed
            raise UsageError(missing_message(BENCH_GROUP, name))
        raise UsageError(f"unknown benchmark '{name}'; give one of "
                         f"{sorted([*BENCHMARKS, *plugins])} (see {PROG} --help)")
    # a stop signal interrupts the benchmark (its own cleanup runs in its finally blocks)
    install_stop_signals(StopRequest(), interrupt=True)
    if name in BENCHMARKS:
        module = importlib.import_module(f"tracevla_ros.bench.{BENCHMARKS[name]}")
    else:  # another package's (entry point group tracevla_ros.benches)
        module = plugins[name].load()
    result = module.main(list(args.args))
    result.setdefault("machine", machine_info())
    bad = count_nonfinite(result)
    if bad:  # a statistic over zero items: say so rather than print NaN
        notes = result.setdefault("notes", [])
        if isinstance(notes, list):
            notes.append(f"{bad} value(s) were not finite numbers (a statistic over zero "
                         "items, or a division by zero) and are null")
    print(dumps_json(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
