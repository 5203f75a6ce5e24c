"""``tracevla-dataset``: turn recorded bags into a training dataset for ``tracevla-train``.

Example (record demonstrations with the stack, convert them, fine-tune on them)::

    ros2 launch tracevla_ros widowx.launch.py record:=true     # or: tracevla-demo ... --out run1
    tracevla-dataset run1/bag run2/bag --out data/demos
    tracevla-train --data data/demos --out ckpt/demos

Writes the ``tracevla-collect`` layout (``tracevla_ros/sim/DATASET.md``): one episode per
bag (split where ``/instruction`` changes), one step per recorded policy action at the
camera frame it was computed from (how each array is obtained: ``tracevla_ros/bag/dataset.py``),
plus the offline visual traces of ``tracevla-annotate`` (``trace.npz``/``trace.json``)
made with the ``tracker_node`` parameters the bag was recorded with (``--params`` to
choose others; ``--no-trace`` to skip). ``--workers N`` annotates N episodes at a time on
a local Ray cluster (``--address`` for an existing one). The output directory appears
only when everything was written; a bag without the needed topics, a path that is not a
bag, or an existing ``--out`` is one line on stderr and exit status 2. No rclpy.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tracevla_ros.cli import (ArgParser, UsageError, atomic_dir, existing_file, existing_path,
                              require, run_main)
from tracevla_ros.parallel import add_parallel_args, resolve_workers, run_tasks

log = logging.getLogger("tracevla-dataset")

PROG = "tracevla-dataset"


def _parser() -> ArgParser:
    ap = ArgParser(PROG, description=__doc__)
    ap.add_argument("bags", type=existing_path, nargs="+",
                    help="bag directories (or .mcap/.db3 files) recorded by the stack")
    ap.add_argument("--out", type=Path, required=True, help="dataset directory to create (must not exist)")
    ap.add_argument("--robot", default="", help="robot of the recording (default: from the joint names)")
    ap.add_argument("--task", default="recorded", help="task name written to info.json/meta.json")
    ap.add_argument("--params", type=existing_file, default=None,
                    help="parameter file whose tracker_node section makes the traces (default: "
                         "the one recorded in the bag, else config/<robot>.yaml)")
    ap.add_argument("--no-trace", action="store_true", help="no trace annotation (tracevla-train --no-trace)")
    add_parallel_args(ap)
    return ap


def _tracker_params(bag_params: str, override: Path | None, tmp: Path) -> tuple[Path | None, str]:
    """The parameter file for the tracker and how to name it: --params, else the bag's own
    (if it has a tracker_node section), else None (= config/<robot>.yaml)."""
    if override is not None:
        return override, str(override)
    if "tracker_node" in bag_params:
        fd, name = tempfile.mkstemp(suffix=".yaml", dir=tmp)
        with open(fd, "w") as fh:
            fh.write(bag_params)
        return Path(name), ""
    return None, ""


def convert(bags: Sequence[Path], out: Path, robot: str = "", task: str = "recorded",
            params: Path | None = None, trace: bool = True, workers: int = 1,
            address: str | None = None) -> dict[str, Any]:
    """Write the dataset (see the module doc); returns a summary."""
    from tracevla_ros.bag.config import PARAMS_KEY
    from tracevla_ros.bag.dataset import detect_robot, episodes_from_bag
    from tracevla_ros.bag.reader import BagReader
    from tracevla_ros.sim.dataset import write_info
    from tracevla_ros.tools.annotate import annotate_episode, tracker_config_for

    spec = detect_robot((), robot) if robot else None
    jobs: list[tuple[str, Any]] = []
    summary: dict[str, Any] = {"episodes": 0, "steps": 0, "bags": []}
    cam: dict[str, Any] = {}
    dts: list[float] = []
    instructions: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tracevla_dataset_") as scratch, atomic_dir(out) as tmp:
        for bag_path in bags:
            with BagReader(bag_path) as bag:
                episodes, found, bag_cam = episodes_from_bag(bag, spec)
                require(spec is None or found.name == spec.name,
                        f"{bag_path}: robot {found.name}, but earlier bags are "
                        f"{spec.name if spec else ''}; convert each robot's bags into its own dataset")
                spec = found
                cam = cam or bag_cam
                bag_params = bag.custom_data.get(PARAMS_KEY, "")
            tparams, label = _tracker_params(bag_params, params, Path(scratch))
            cfg, used = tracker_config_for(spec.name, tparams)
            label = label or (f"{bag_path} (the recorded parameters)" if tparams else str(used))
            for ep in episodes:
                instructions.append(ep.instruction)
                k = summary["episodes"]
                ep_dir = tmp / f"episode_{k:06d}"
                ep.writer.save(ep_dir, {"robot": spec.name, "task": task, "instruction": ep.instruction,
                                        "seed": k, "success": ep.success, "source": str(bag_path)})
                with np.load(ep_dir / "data.npz") as z:
                    stamps = z["timestamp"]
                dts += list(np.diff(stamps))
                jobs.append((ep_dir.name, (str(ep_dir), cfg, label)))
                summary["episodes"] += 1
                summary["steps"] += ep.steps
            summary["bags"].append({"path": str(bag_path), "episodes": len(episodes),
                                    "steps": sum(e.steps for e in episodes)})
        assert spec is not None  # at least one bag, each with at least one episode
        fps = 1.0 / float(np.median(dts)) if dts else 0.0
        write_info(tmp, {
            "robot": spec.name, "task": task,
            "instruction": instructions[0], "instructions": sorted(set(instructions)),
            "fps": round(fps, 3), "action_space": "ee_delta_7d",
            "action_doc": "dx dy dz [m] in the base frame, droll dpitch dyaw [rad] extrinsic xyz about "
                          "base axes applied to the measured ee orientation, gripper openness 1=open",
            "joint_names": [*spec.ros_joint_names, *spec.gripper_joints],
            "arm_joints": list(spec.arm_joints), "ee_site": spec.ee_site,
            "base_frame": spec.base_frame, "camera": cam, "source": "tracevla-dataset",
            "bags": [b["path"] for b in summary["bags"]],
        })
        if trace:
            rep = run_tasks(annotate_episode, jobs, workers=workers, address=address, desc="annotate")
            if rep.interrupted:
                raise KeyboardInterrupt
            if rep.failed:
                name, f = next(iter(sorted(rep.failed.items())))
                raise UsageError(f"trace annotation failed for {len(rep.failed)} episode(s); "
                                 f"{name}: {f.error}")
            summary["traced_steps"] = sum(int(v["valid_steps"]) for v in rep.done.values())
    summary["out"] = str(out)
    return summary


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    workers = resolve_workers(args.workers, args.address)
    require(not args.out.exists(), f"--out {args.out} already exists; remove it or choose another")
    s = convert(args.bags, args.out, args.robot, args.task, args.params, not args.no_trace,
                workers, args.address)
    traced = f", {s['traced_steps']} traced" if "traced_steps" in s else ""
    log.info("wrote %s: %d episodes, %d steps%s, from %d bags", args.out, s["episodes"], s["steps"],
             traced, len(s["bags"]))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _main, argv)


if __name__ == "__main__":
    import sys

    sys.exit(main())
