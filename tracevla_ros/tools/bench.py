"""``tracevla-bench <name> [args]``: run one benchmark, print one JSON object.

Example::

    tracevla-bench tracker --backend lk --size 256 --frames 300 --preset paper

Benchmarks: this package's (``tracevla_ros.bench.BENCHMARKS``) and those other installed
packages register in entry point group ``tracevla_ros.benches`` (tracegen_ros: ``tracegen``,
``tracegen-sim``).
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys

from tracevla_ros.bench import BENCHMARKS
from tracevla_ros.plugins import BENCH_GROUP, KNOWN_PROVIDERS, entry_points, missing_message


def machine_info() -> dict[str, object]:
    """What every benchmark reports about the machine it ran on."""
    return {
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    plugins = {n: ep for n, ep in entry_points(BENCH_GROUP).items() if n not in BENCHMARKS}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in {**BENCHMARKS, **plugins}:
        names = ", ".join(sorted([*BENCHMARKS, *plugins])) or "(none yet)"
        msg = f"usage: tracevla-bench <benchmark> [args]; benchmarks: {names}"
        if argv and argv[0] in KNOWN_PROVIDERS[BENCH_GROUP]:  # a known one, not installed
            print(f"tracevla-bench: {missing_message(BENCH_GROUP, argv[0])}", file=sys.stderr)
            return 2
        if argv and argv[0] not in ("-h", "--help"):
            print(f"tracevla-bench: unknown benchmark '{argv[0]}'. {msg}", file=sys.stderr)
            return 2
        print(msg)
        return 0
    if argv[0] in BENCHMARKS:
        module = importlib.import_module(f"tracevla_ros.bench.{BENCHMARKS[argv[0]]}")
    else:  # another package's (entry point group tracevla_ros.benches)
        module = plugins[argv[0]].load()
    result = module.main(argv[1:])
    result.setdefault("machine", machine_info())
    print(json.dumps(result, indent=2, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
