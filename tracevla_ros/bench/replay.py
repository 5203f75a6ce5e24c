"""``tracevla-bench replay``: how much faster than real time ``tracevla-replay`` runs.

Writes a bag of ``--frames`` simulator frames (256 x 256 from the MuJoCo
world, the scripted expert moving the arm, joint states, the instruction; no
recorded traces, so the tracker runs on the node's timers) unless ``--bag``
names one, then times ``tracevla-replay`` on it in a subprocess with the LK
tracker and a policy, and reports the real-time factor = bag duration / replay
wall time (whole process, and the replay loop alone).

The policy is ``local`` (the shipped small learned policy) when that backend is
registered, else a stand-in (``tracevla_ros.bench.replay:standin_policy``: a
fixed random linear map of the 32 x 32 image and overlay -- far cheaper than a
learned policy; the output says which ran).

Examples::

    MUJOCO_GL=egl tracevla-bench replay --frames 1000 --camera-hz 5
    tracevla-bench replay --bag /data/bench_bag --policy local
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from tracevla_ros.cli import (
    ArgParser,
    UsageError,
    existing_path,
    finite_float,
    int_range,
    output_dir,
    require,
)

from tracevla_ros.policy.base import EE_DELTA_7D, ActionChunk, Observation
from tracevla_ros.policy.config import PolicyNodeConfig

STANDIN = "tracevla_ros.bench.replay:standin_policy"


class StandInPolicy:
    """A cheap deterministic policy with the real interface (for timing the replay only)."""

    name = "bench_standin"

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self._w = rng.normal(0.0, 1e-5, (7, 2 * 32 * 32 * 3)).astype(np.float32)

    def infer(self, obs: Observation) -> ActionChunk:
        img = cv2.resize(obs.image, (32, 32), interpolation=cv2.INTER_AREA)
        ov = cv2.resize(obs.overlay, (32, 32), interpolation=cv2.INTER_AREA) \
            if obs.overlay is not None else img
        x = np.concatenate([img.reshape(-1), ov.reshape(-1)]).astype(np.float32)
        a = np.tanh(self._w @ x) * 0.01
        a[6] = 1.0 if a[6] >= 0 else 0.0
        return ActionChunk(values=a.reshape(1, 7), action_space=EE_DELTA_7D,
                           trace_used=obs.overlay is not None)

    def reset(self) -> None:
        pass


def standin_policy(cfg: PolicyNodeConfig) -> StandInPolicy:
    return StandInPolicy()


def write_sim_bag(path: Path, frames: int, camera_hz: float, robot: str = "widowx",
                  seed: int = 0) -> dict[str, object]:
    """``frames`` rendered frames at ``camera_hz`` (stamps in that time base), the expert
    acting once per frame; a new episode (seed + 1) when one ends."""
    from tracevla_ros.bag import messages as bm
    from tracevla_ros.bag.writer import BagRecorder
    from tracevla_ros.sim.env import SimEnv
    from tracevla_ros.sim.experts import ExpertEpisodes

    env = SimEnv(robot=robot, seed=seed, control_hz=camera_hz)
    expert = ExpertEpisodes(env, seed)
    t0 = 1_700_000_000 * 1_000_000_000
    period = int(round(1e9 / camera_hz))
    tw = time.perf_counter()
    with BagRecorder(path) as bag:
        bag.add_topic("/instruction", bm.STRING)
        bag.add_topic("/camera/image_raw", bm.IMAGE)
        bag.add_topic("/joint_states", bm.JOINT_STATE)
        bag.write("/instruction", t0 - period, bm.string_msg(env.instruction)[1])
        for i in range(frames):
            stamp = t0 + i * period
            js = env.joint_state()
            bag.write("/joint_states", stamp + 1_000_000,
                      bm.joint_state_msg(js.names, js.position, stamp)[1])
            bag.write("/camera/image_raw", stamp + 2_000_000, bm.image_msg(env.render(), stamp)[1])
            expert.step()
    env.close()
    return {"frames": frames, "episodes": expert.episodes, "write_s": round(time.perf_counter() - tw, 2)}


def main(argv: list[str]) -> dict:
    ap = ArgParser("tracevla-bench replay", description=__doc__)
    ap.add_argument("--frames", type=int_range(10, 1_000_000), default=1000,
                    help="frames of the written bag")
    ap.add_argument("--camera-hz", type=finite_float(ge=0.5, le=100), default=5.0,
                    help="frame rate of the written bag (the policy runs at 5 Hz)")
    ap.add_argument("--robot", choices=("widowx", "fr3"), default="widowx", help="sim robot")
    ap.add_argument("--bag", type=existing_path, default=None,
                    help="replay this bag instead of writing one")
    ap.add_argument("--keep", type=output_dir, default=None,
                    help="write the bag here (a new path) and keep it")
    ap.add_argument("--policy", default="", help="policy backend ('' = local if registered, "
                    "else the stand-in)")
    ap.add_argument("--tracker", choices=("lk", "cotracker3"), default="lk",
                    help="tracker backend")
    args = ap.parse_args(argv)
    require(args.keep is None or not args.keep.exists(),
            f"--keep {args.keep} already exists; choose a new path")
    from tracevla_ros.policy.registry import BACKENDS

    policy = args.policy or ("local" if "local" in BACKENDS else STANDIN)
    with tempfile.TemporaryDirectory(prefix="bench_replay_") as tmp:
        written: dict[str, object] = {}
        bag = args.bag
        if bag is None:
            bag = args.keep or Path(tmp) / "bag"
            written = write_sim_bag(bag, args.frames, args.camera_hz, args.robot)
        out = Path(tmp) / "out"
        cmd = [sys.executable, "-m", "tracevla_ros.tools.replay", str(bag), "--out", str(out),
               "--quiet", "--policy", policy, "--tracker-param", f"backend={args.tracker}",
               "--robot", args.robot]
        t = time.perf_counter()
        before = os.times()
        r = subprocess.run(cmd, capture_output=True, text=True)
        after = os.times()
        wall = time.perf_counter() - t
        if r.returncode == 2:  # the bag or an option: tracevla-replay's one line says which
            raise UsageError(f"tracevla-replay: {(r.stderr.strip().splitlines() or [''])[-1]}")
        if r.returncode != 0:
            raise RuntimeError(f"tracevla-replay failed ({r.returncode}): {r.stderr[-2000:]}")
        rep = json.loads((out / "report.json").read_text())
    bag_s = float(rep["bag_duration_s"])
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return {
        "benchmark": "replay",
        "bag": {"path": str(args.bag or args.keep or "(written, temporary)"), **written,
                "frames": rep["frames"], "duration_s": bag_s, "size": "256x256"},
        "tracker": args.tracker,
        "policy": policy,
        "policy_note": ("stand-in: a fixed linear map, not a learned policy (the local backend "
                        "is not registered in this checkout)" if policy == STANDIN else ""),
        "control_rate_hz": rep["config"]["tracker"]["control_rate_hz"],
        "steps": rep["steps"], "policy_calls": rep["policy"]["calls"],
        "trace_valid_ratio": rep["trace_valid_ratio"],
        "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
        "loop_wall_s": rep["loop_wall_time_s"],
        "real_time_factor": round(bag_s / wall, 2),
        "real_time_factor_loop": rep["real_time_factor"],
        "latency_ms": rep["latency_ms"],
        "command": " ".join(cmd[1:]),
    }
