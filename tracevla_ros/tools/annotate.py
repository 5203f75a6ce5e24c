"""``tracevla-annotate``: add offline visual traces to episodes recorded by ``tracevla-collect``.

Example::

    tracevla-annotate --data /work/data/local/widowx/lift_cube /work/data/local/widowx/push_block_right

Writes ``trace.npz`` + ``trace.json`` into every episode directory (format in
``tracevla_ros/sim/DATASET.md``): per step the trace validity, the M x N traced
positions and the overlay image, computed over 2N-frame segments by
``tracevla_ros.tracking.offline`` with the tracker parameters of the robot's
``tracker_node`` section in ``config/<robot>.yaml`` (the ones the online tracker
runs with), unless ``--params`` names another file. Episodes that already have
traces are skipped unless ``--overwrite``. No rclpy.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tracevla_ros.cli import ArgParser, UsageError, existing_dir, existing_file, run_main
from tracevla_ros.config import ConfigError, config_dir, load_node_config
from tracevla_ros.sim.dataset import DatasetError, list_episodes, load_episode, load_info
from tracevla_ros.stopping import StopRequest, install_stop_signals
from tracevla_ros.tracking.config import TrackerConfig
from tracevla_ros.tracking.offline import TRACE_JSON, TRACE_NPZ, annotate_frames, save_traces

log = logging.getLogger("tracevla-annotate")
PROG = "tracevla-annotate"

ROBOT_PARAMS = {"widowx250s": "widowx.yaml", "fr3": "fr3.yaml"}  # info.json robot -> config file


def tracker_config_for(robot: str, params: Path | None = None) -> tuple[TrackerConfig, Path]:
    """The tracker_node parameters for ``robot`` (or from ``params``) and the file used."""
    if params is None:
        if robot not in ROBOT_PARAMS:
            raise ConfigError(f"no default parameter file for robot '{robot}'; pass --params")
        params = config_dir() / ROBOT_PARAMS[robot]
    return load_node_config(TrackerConfig, params, "tracker_node"), params


def annotate_dataset(root: Path, params: Path | None = None, overwrite: bool = False) -> dict[str, float]:
    """Annotate every episode of one dataset directory; returns counts for the log."""
    info = load_info(root)
    cfg, used = tracker_config_for(str(info["robot"]), params)
    episodes = list_episodes(root)
    done = skipped = 0
    valid = steps = 0
    t0 = time.perf_counter()
    for ep_dir in tqdm(episodes, desc=f"annotate {root.name}", unit="ep"):
        # trace.json is written after trace.npz: an episode whose annotation was cut short
        # (a stop signal mid-write) has no trace.json and is redone
        if (ep_dir / TRACE_NPZ).is_file() and (ep_dir / TRACE_JSON).is_file() and not overwrite:
            skipped += 1
            continue
        ep = load_episode(ep_dir)
        # One seed per episode: the tracker seed and the episode's own seed.
        seed = int(np.random.SeedSequence([cfg.seed, ep.seed]).generate_state(1)[0])
        traces = annotate_frames(ep.rgb, cfg, seed=seed)
        save_traces(ep_dir, traces, {
            "tracker": dict(cfg.as_dict()), "params_file": str(used),
            "segment_frames": 2 * cfg.history, "seed": seed,
        })
        done += 1
        valid += int(traces.valid.sum())
        steps += len(traces.valid)
    return {"episodes": done, "skipped": skipped, "valid_steps": valid, "steps": steps,
            "seconds": round(time.perf_counter() - t0, 1)}


def _parser() -> ArgParser:
    ap = ArgParser(PROG, description=__doc__)
    ap.add_argument("--data", type=existing_dir, nargs="+", required=True,
                    help="dataset directories written by tracevla-collect")
    ap.add_argument("--params", type=existing_file, default=None,
                    help="ROS parameter file whose tracker_node section to use "
                         "(default: config/<robot>.yaml)")
    ap.add_argument("--overwrite", action="store_true", help="recompute existing traces")
    return ap


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, _main, argv)


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
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
    # a stop signal interrupts the episode in progress (redone by the rerun); the episodes
    # annotated before it are complete
    stop = StopRequest()
    install_stop_signals(stop, interrupt=True)
    for root in args.data:
        stats = annotate_dataset(root, args.params, args.overwrite)
        ratio = stats["valid_steps"] / stats["steps"] if stats["steps"] else 0.0
        log.info("%s: %d episodes annotated (%d skipped), %.0f%% of steps traced, %.1f s", root,
                 stats["episodes"], stats["skipped"], 100 * ratio, stats["seconds"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
