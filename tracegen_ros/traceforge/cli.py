"""``traceforge``: build TraceGen training triplets from RGB-D episodes.

Examples::

    MUJOCO_GL=egl tracevla-collect --robot fr3 --task put_ball_in_box --episodes 60 --out data/ball
    traceforge --episodes data/ball data/push --out /work/data/traceforge/fr3
    traceforge --episodes my_rgbd_videos/ --instruction "open the drawer" --out data/drawer

``--episodes``: tracevla-collect datasets (FR3 sim, RGB-D) and/or plain RGB-D folders
(layout in ``tracegen_ros/traceforge/sources.py``). Writes the ``tracegen_traceforge/v1``
layout (``tracegen_ros/data.py``). Resumable: rerun the same command after an interruption.
A corrupt episode is reported (log + ``OUT/traceforge_report.json``) and skipped; with
``--strict`` the exit status is then 1. ``--workers N`` forges N episodes at a time on a
local Ray cluster started for the run, ``--address HOST:PORT`` on an existing cluster
(``tracevla_ros/parallel.py``)::

    traceforge --episodes data/ball data/push --out /work/data/traceforge/fr3 --workers 8
"""

from __future__ import annotations

import logging
import sys
from dataclasses import replace
from pathlib import Path

from tracegen_ros.traceforge.chunking import ChunkOptions
from tracegen_ros.traceforge.pipeline import REPORT, ForgeOptions, run
from tracegen_ros.traceforge.sources import SourceError, discover
from tracegen_ros.traceforge.tracks import TrackOptions
from tracevla_ros.cli import ArgParser, UsageError, int_range, output_dir, require, run_main
from tracevla_ros.parallel import add_parallel_args, resolve_workers
from tracevla_ros.stopping import StopRequest

log = logging.getLogger("traceforge")
PROG = "traceforge"


def _parser() -> ArgParser:
    ap = ArgParser(PROG, description=__doc__)
    ap.add_argument("--episodes", type=Path, nargs="+", required=True,
                    help="tracevla-collect dataset(s) and/or RGB-D episode folder(s)")
    ap.add_argument("--out", type=output_dir, required=True, help="output dataset directory")
    ap.add_argument("--instruction", default="",
                    help="instruction for folders without instruction.txt")
    ap.add_argument("--ref-stride", type=int_range(1, 10_000), default=ChunkOptions.ref_stride,
                    help="frames between reference frames in a chunk")
    ap.add_argument("--min-future", type=int_range(2, 10_000), default=ChunkOptions.min_future,
                    help="frames a reference frame needs after it")
    ap.add_argument("--max-horizon", type=int_range(0, 100_000),
                    default=ChunkOptions.max_horizon,
                    help="frames per sample at most (0 = to the chunk's end)")
    ap.add_argument("--lk-window", type=int_range(3, 255), default=TrackOptions.lk_window,
                    help="LK window, px")
    ap.add_argument("--overwrite", action="store_true", help="redo finished episodes")
    ap.add_argument("--strict", action="store_true", help="exit 1 when an episode failed")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_parallel_args(ap)
    return ap


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, _main, argv)


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(levelname)s: %(message)s")
    require(not args.instruction or args.instruction.strip(),
            "--instruction is blank; give the task in words or leave it out")
    require(args.max_horizon == 0 or args.max_horizon >= args.min_future,
            f"--max-horizon {args.max_horizon} is shorter than --min-future {args.min_future}; "
            "give 0 (to the chunk's end) or a value >= --min-future")
    workers = resolve_workers(args.workers, args.address)
    try:
        opt = ForgeOptions(chunks=replace(ChunkOptions(), ref_stride=args.ref_stride,
                                          min_future=args.min_future, max_horizon=args.max_horizon),
                           tracks=replace(TrackOptions(), lk_window=args.lk_window))
        refs = discover(list(args.episodes), args.instruction)
    except (SourceError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    require(bool(refs), f"--episodes {' '.join(map(str, args.episodes))}: no episodes found")
    # a stop signal cancels what has not finished (redone on the rerun, which resumes);
    # OUT/traceforge_report.json is then written with "complete": false
    stop = StopRequest()
    rep = run(refs, args.out, opt, overwrite=args.overwrite, progress=not args.no_progress,
              workers=workers, address=args.address, stop=stop)
    log.info("%d episodes done (%d samples), %d already finished, %d failed -> %s",
             len(rep.done), rep.samples, len(rep.skipped), len(rep.failed), args.out)
    if rep.interrupted:
        print(f"{PROG}: stopped ({stop.reason or 'interrupted'}); {len(rep.not_run)} episodes "
              "left: rerun the command to finish them", file=sys.stderr)
        return stop.exit_code if stop else 130
    if not rep.done and not rep.skipped:
        print(f"{PROG}: error: every episode failed ({len(rep.failed)}); see "
              f"{args.out / REPORT}", file=sys.stderr)
        return 1
    return 1 if rep.failed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
