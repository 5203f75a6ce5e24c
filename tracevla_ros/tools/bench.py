"""``tracevla-bench <name> [args]``: run one benchmark, print one JSON object.

Example::

    tracevla-bench tracker --backend lk --size 256 --frames 300 --preset paper
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys

from tracevla_ros.bench import BENCHMARKS


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
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in BENCHMARKS:
        names = ", ".join(sorted(BENCHMARKS)) or "(none yet)"
        msg = f"usage: tracevla-bench <benchmark> [args]; benchmarks: {names}"
        if argv and argv[0] not in ("-h", "--help"):
            print(f"tracevla-bench: unknown benchmark '{argv[0]}'. {msg}", file=sys.stderr)
            return 2
        print(msg)
        return 0
    module = importlib.import_module(f"tracevla_ros.bench.{BENCHMARKS[argv[0]]}")
    result = module.main(argv[1:])
    result.setdefault("machine", machine_info())
    print(json.dumps(result, indent=2, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
