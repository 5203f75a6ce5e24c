"""``tracevla-bench annotate``: episodes per minute of ``tracevla-annotate`` serially and on a
local Ray cluster of N workers.

Records ``--episodes`` scripted-expert episodes with ``tracevla-collect`` (or uses
``--data``), then annotates a fresh copy of them once per ``--workers`` value, each run
as the command does it (``--workers 1``: in this process; N > 1: a local Ray cluster of
N CPUs started and shut down inside the timed run), and checks that every run wrote the
same traces. Episodes per minute = episodes / wall time of the whole run.

    MUJOCO_GL=egl tracevla-bench annotate --episodes 10 --workers 1 2
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from tracevla_ros.cli import ArgParser, existing_dir, int_range, robot_task


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for ep in sorted(p.parent for p in root.glob("episode_*/trace.npz")):
        with np.load(ep / "trace.npz") as z:
            for k in sorted(z.files):
                h.update(z[k].tobytes())
    return h.hexdigest()[:16]


def main(argv: list[str]) -> dict[str, Any]:
    ap = ArgParser("tracevla-bench annotate", description=__doc__)
    ap.add_argument("--episodes", type=int_range(1, 100_000), default=10,
                    help="episodes to record and annotate")
    ap.add_argument("--robot", default="widowx", help="robot of the recorded episodes (widowx, fr3)")
    ap.add_argument("--task", default="lift_cube", help="task the episodes are recorded on")
    ap.add_argument("--workers", type=int_range(1, 1024), nargs="+", default=[1, 2],
                    help="runs to compare: workers of each (1 = serial, N > 1 = local Ray)")
    ap.add_argument("--data", type=existing_dir, default=None,
                    help="annotate (copies of) this tracevla-collect dataset instead of recording")
    args = ap.parse_args(argv)
    if args.data is None:
        robot_task(args.robot, args.task)  # UsageError naming the flag before anything runs
    from tracevla_ros.tools.annotate import annotate_datasets
    from tracevla_ros.tools.collect import main as collect_main

    with tempfile.TemporaryDirectory(prefix="bench_annotate_") as tmp:
        src = args.data
        if src is None:
            src = Path(tmp) / "data"
            with contextlib.redirect_stderr(io.StringIO()):
                rc = collect_main(["--robot", args.robot, "--task", args.task, "--episodes",
                                   str(args.episodes), "--out", str(src)])
            if rc != 0:
                raise RuntimeError(f"tracevla-collect failed ({rc})")
        runs = []
        for n in args.workers:
            data = Path(tmp) / f"w{n}"
            shutil.copytree(src, data, ignore=shutil.ignore_patterns("trace.*", "*_report.json"))
            t = time.perf_counter()
            rep, per_root = annotate_datasets([data], workers=n, progress=False)
            wall = time.perf_counter() - t
            steps = sum(int(v["steps"]) for v in rep.done.values())
            runs.append({"workers": n, "backend": rep.backend, "episodes": len(rep.done),
                         "failed": len(rep.failed), "steps": steps, "wall_s": round(wall, 2),
                         "episodes_per_minute": round(60.0 * len(rep.done) / wall, 1),
                         "cluster_start_s": round(rep.startup_seconds, 2),
                         "episodes_per_minute_after_start": round(
                             60.0 * len(rep.done) / (wall - rep.startup_seconds), 1),
                         "traces_sha256": _digest(data)})
    base = runs[0]["wall_s"]
    for r in runs:
        r["speedup"] = round(base / r["wall_s"], 2)
    return {"benchmark": "annotate", "robot": args.robot, "task": args.task,
            "data": str(args.data or "(recorded, temporary)"), "runs": runs,
            "identical_traces": len({r["traces_sha256"] for r in runs}) == 1,
            "note": "episodes_per_minute: wall time of the whole run, a local Ray cluster's "
                    "start and shutdown included; _after_start: without the start"}
