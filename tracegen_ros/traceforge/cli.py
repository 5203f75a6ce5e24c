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

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

from tracegen_ros.traceforge.chunking import ChunkOptions
from tracegen_ros.traceforge.pipeline import ForgeOptions, run
from tracegen_ros.traceforge.sources import SourceError, discover
from tracegen_ros.traceforge.tracks import TrackOptions
from tracevla_ros.parallel import ADDRESS_HELP, WORKERS_HELP, resolve_workers

log = logging.getLogger("traceforge")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="traceforge", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=Path, nargs="+", required=True,
                    help="tracevla-collect dataset(s) and/or RGB-D episode folder(s)")
    ap.add_argument("--out", type=Path, required=True, help="output dataset directory")
    ap.add_argument("--instruction", default="", help="instruction for folders without instruction.txt")
    ap.add_argument("--ref-stride", type=int, default=ChunkOptions.ref_stride,
                    help="frames between reference frames in a chunk")
    ap.add_argument("--min-future", type=int, default=ChunkOptions.min_future,
                    help="frames a reference frame needs after it")
    ap.add_argument("--max-horizon", type=int, default=ChunkOptions.max_horizon,
                    help="frames per sample at most (0 = to the chunk's end)")
    ap.add_argument("--lk-window", type=int, default=TrackOptions.lk_window, help="LK window, px")
    ap.add_argument("--overwrite", action="store_true", help="redo finished episodes")
    ap.add_argument("--strict", action="store_true", help="exit 1 when an episode failed")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--workers", type=int, default=None, help=WORKERS_HELP)
    ap.add_argument("--address", default=None, help=ADDRESS_HELP)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(levelname)s: %(message)s")
    try:
        opt = ForgeOptions(chunks=replace(ChunkOptions(), ref_stride=args.ref_stride,
                                          min_future=args.min_future, max_horizon=args.max_horizon),
                           tracks=replace(TrackOptions(), lk_window=args.lk_window))
        refs = discover(list(args.episodes), args.instruction)
    except (SourceError, ValueError) as exc:
        print(f"traceforge: error: {exc}", file=sys.stderr)
        return 2
    if not refs:
        print("traceforge: error: no episodes found", file=sys.stderr)
        return 2
    workers = resolve_workers(args.workers, args.address)
    if workers < 1 and not (args.address and workers == 0):
        print("traceforge: error: --workers must be >= 1 (0 = every CPU, only with --address)",
              file=sys.stderr)
        return 2
    rep = run(refs, args.out, opt, overwrite=args.overwrite, progress=not args.no_progress,
              workers=workers, address=args.address)
    log.info("%d episodes done (%d samples), %d already finished, %d failed -> %s",
             len(rep.done), rep.samples, len(rep.skipped), len(rep.failed), args.out)
    if rep.interrupted:
        print(f"traceforge: interrupted; {len(rep.not_run)} episodes left: rerun the command "
              "to finish them", file=sys.stderr)
        return 130
    return 1 if rep.failed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
