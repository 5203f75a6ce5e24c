"""``tracevla-annotate``: add offline visual traces to episodes recorded by ``tracevla-collect``.

Example::

    tracevla-annotate --data /work/data/local/widowx/lift_cube /work/data/local/widowx/push_block_right

Writes ``trace.npz`` + ``trace.json`` into every episode directory (format in
``tracevla_ros/sim/DATASET.md``): per step the trace validity, the M x N traced
positions and the overlay image, computed over 2N-frame segments by
``tracevla_ros.tracking.offline`` with the tracker parameters of the robot's
``tracker_node`` section in ``config/<robot>.yaml`` (the ones the online tracker
runs with), unless ``--params`` names another file. No rclpy.

Each episode is one idempotent task (files renamed into place, ``trace.json`` last):
``--workers N`` runs N at a time on a local Ray cluster started for the run,
``--address HOST:PORT`` on an existing one (``tracevla_ros/parallel.py``). Resumable:
episodes that already have traces are skipped unless ``--overwrite``, so rerunning
the same command after an interruption does the rest. A failed episode is logged and
listed with its error in ``DIR/annotate_report.json``; the others go on, and the exit
status is then 1 (128 + the signal's number after Ctrl-C/SIGTERM: 130/143; finished
episodes kept)::

    tracevla-annotate --data data/widowx/* --workers 8
    tracevla-annotate --data /shared/data/widowx/* --address 10.0.0.5:6379
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tracevla_ros.cli import (ArgParser, UsageError, existing_dir, existing_file, run_main,
                              write_json_atomic)
from tracevla_ros.config import ConfigError, config_dir, load_node_config
from tracevla_ros.parallel import RunReport, add_parallel_args, resolve_workers, run_tasks
from tracevla_ros.sim.dataset import DatasetError, list_episodes, load_episode, load_info
from tracevla_ros.stopping import StopRequest
from tracevla_ros.tracking.config import TrackerConfig
from tracevla_ros.tracking.offline import TRACE_JSON, TRACE_NPZ, annotate_frames, save_traces

log = logging.getLogger("tracevla-annotate")
PROG = "tracevla-annotate"

ROBOT_PARAMS = {"widowx250s": "widowx.yaml", "fr3": "fr3.yaml"}  # info.json robot -> config file
REPORT = "annotate_report.json"  # per dataset: done / skipped / failed (with errors) episodes


def tracker_config_for(robot: str, params: Path | None = None) -> tuple[TrackerConfig, Path]:
    """The tracker_node parameters for ``robot`` (or from ``params``) and the file used."""
    if params is None:
        if robot not in ROBOT_PARAMS:
            raise ConfigError(f"no default parameter file for robot '{robot}'; pass --params")
        params = config_dir() / ROBOT_PARAMS[robot]
    return load_node_config(TrackerConfig, params, "tracker_node"), params


def traces_done(ep_dir: Path) -> bool:
    """An episode is annotated once both files are in place (trace.json is renamed in last)."""
    return (ep_dir / TRACE_NPZ).is_file() and (ep_dir / TRACE_JSON).is_file()


def annotate_episode(job: tuple[str, TrackerConfig, str]) -> dict[str, Any]:
    """Annotate one episode directory (a :func:`tracevla_ros.parallel.run_tasks` task).

    Idempotent: the files are written into a temporary folder inside the episode and
    renamed into place, trace.json last, so a killed task leaves no finished-looking
    annotation and a repeated one writes the same bytes.
    """
    ep_dir, cfg, used = Path(job[0]), job[1], job[2]
    ep = load_episode(ep_dir)
    # One seed per episode: the tracker seed and the episode's own seed.
    seed = int(np.random.SeedSequence([cfg.seed, ep.seed]).generate_state(1)[0])
    traces = annotate_frames(ep.rgb, cfg, seed=seed)
    for stale in ep_dir.glob(".trace.partial*"):  # left by a killed task of this episode
        shutil.rmtree(stale, ignore_errors=True)
    tmp = ep_dir / f".trace.partial{os.getpid()}"
    tmp.mkdir()
    try:
        save_traces(tmp, traces, {
            "tracker": dict(cfg.as_dict()), "params_file": used,
            "segment_frames": 2 * cfg.history, "seed": seed,
        })
        os.replace(tmp / TRACE_NPZ, ep_dir / TRACE_NPZ)
        os.replace(tmp / TRACE_JSON, ep_dir / TRACE_JSON)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"steps": int(len(traces.valid)), "valid_steps": int(traces.valid.sum())}


def annotate_datasets(roots: Sequence[Path], params: Path | None = None, overwrite: bool = False,
                      workers: int = 1, address: str | None = None,
                      progress: bool = True, stop: StopRequest | None = None
                      ) -> tuple[RunReport, dict[Path, dict[str, Any]]]:
    """Annotate every episode of ``roots`` (in parallel with ``workers``/``address``, see
    :mod:`tracevla_ros.parallel`); episodes already annotated are skipped unless
    ``overwrite``. Writes ``ROOT/annotate_report.json`` per dataset and returns the run
    report and per-dataset counts."""
    jobs: list[tuple[str, tuple[str, TrackerConfig, str]]] = []
    per_root: dict[Path, dict[str, Any]] = {}
    owner: dict[str, Path] = {}
    for root in roots:
        info = load_info(root)
        cfg, used = tracker_config_for(str(info["robot"]), params)
        skipped: list[str] = []
        for ep_dir in list_episodes(root):
            if traces_done(ep_dir) and not overwrite:
                skipped.append(ep_dir.name)
                continue
            key = str(ep_dir)
            owner[key] = root
            jobs.append((key, (key, cfg, str(used))))
        per_root[root] = {"skipped": skipped}
    rep = run_tasks(annotate_episode, jobs, workers=workers, address=address, progress=progress,
                    desc="annotate", stop=stop)
    for root, stats in per_root.items():
        mine = {k: v for k, v in rep.done.items() if owner[k] == root}
        failed = {Path(k).name: f for k, f in rep.failed.items() if owner[k] == root}
        stats.update(
            episodes=len(mine), done=sorted(Path(k).name for k in mine), failed={
                n: {"error": f.error, "traceback": f.traceback} for n, f in sorted(failed.items())},
            not_run=sorted(Path(k).name for k in rep.not_run if owner[k] == root),
            valid_steps=sum(int(v["valid_steps"]) for v in mine.values()),
            steps=sum(int(v["steps"]) for v in mine.values()),
            interrupted=rep.interrupted, backend=rep.backend, workers=rep.workers,
            seconds=round(rep.seconds, 1))
        write_json_atomic(root / REPORT, stats)
    return rep, per_root


def _parser() -> ArgParser:
    ap = ArgParser(PROG, description=__doc__)
    ap.add_argument("--data", type=existing_dir, nargs="+", required=True,
                    help="dataset directories written by tracevla-collect")
    ap.add_argument("--params", type=existing_file, default=None,
                    help="ROS parameter file whose tracker_node section to use "
                         "(default: config/<robot>.yaml)")
    ap.add_argument("--overwrite", action="store_true", help="recompute existing traces")
    add_parallel_args(ap)
    return ap


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, _main, argv)


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    workers = resolve_workers(args.workers, args.address)
    for root in args.data:  # every input checked before the first episode is traced
        try:
            info = load_info(root)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--data {root}: {root / 'info.json'} is not valid JSON ({exc})") \
                from None
        except DatasetError as exc:
            raise UsageError(f"--data {root}: {exc}") from None
        tracker_config_for(str(info.get("robot", "")), args.params)  # ConfigError: exit 2
        if not list_episodes(root):
            raise UsageError(f"--data {root}: no episodes (episode_*/data.npz) in it; collect "
                             "some with tracevla-collect first")
    stop = StopRequest()
    rep, per_root = annotate_datasets(args.data, args.params, args.overwrite, workers,
                                      args.address, stop=stop)
    for root, stats in per_root.items():
        ratio = stats["valid_steps"] / stats["steps"] if stats["steps"] else 0.0
        log.info("%s: %d episodes annotated (%d skipped, %d failed), %.0f%% of steps traced", root,
                 stats["episodes"], len(stats["skipped"]), len(stats["failed"]), 100 * ratio)
    log.info("%d episodes in %.1f s (%.1f per minute, %s, %d workers)", len(rep.done) + len(rep.failed),
             rep.seconds, rep.episodes_per_minute(), rep.backend, rep.workers)
    if rep.interrupted:
        print(f"tracevla-annotate: stopped ({stop.reason or 'interrupted'}); {len(rep.not_run)} "
              "episodes not annotated (rerun the command to finish them)", file=sys.stderr)
        return stop.exit_code if stop else 130
    if rep.failed:
        print(f"tracevla-annotate: {len(rep.failed)} episodes failed (errors in each dataset's "
              f"{REPORT})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
