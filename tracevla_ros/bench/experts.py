"""``tracevla-bench experts``: success rate of the scripted experts per task.

Example::

    tracevla-bench experts --robot widowx --episodes 20

Seeds 0..episodes-1 (plus ``--seed-offset``); each episode runs until success or
the task's ``max_steps`` policy steps (5 Hz). Rendering is off (it does not change
the physics).
"""

from __future__ import annotations

import time

from tracevla_ros.cli import ArgParser, int_range, robot_task
from tracevla_ros.sim.env import SimEnv
from tracevla_ros.sim.experts import run_expert_episode
from tracevla_ros.sim.robot import load_sim_robot
from tracevla_ros.sim.tasks import tasks_for_robot


def main(argv: list[str]) -> dict:
    ap = ArgParser("tracevla-bench experts", description=__doc__)
    ap.add_argument("--robot", default="widowx", help="robot name or alias (widowx, fr3)")
    ap.add_argument("--tasks", nargs="*", default=None, help="tasks (default: all for the robot)")
    ap.add_argument("--episodes", type=int_range(1, 100_000), default=20,
                    help="episodes per task")
    ap.add_argument("--seed-offset", type=int_range(0, 2**31 - 1), default=0, help="first seed")
    args = ap.parse_args(argv)
    robot = robot_task(args.robot)[0]
    for task in args.tasks or ():
        robot_task(args.robot, task, task_flag="--tasks")
    robot = load_sim_robot(robot).spec.name
    tasks = args.tasks or tasks_for_robot(robot)
    t0 = time.perf_counter()
    out: dict[str, dict[str, object]] = {}
    for task in tasks:
        env = SimEnv(robot=robot, task=task, seed=args.seed_offset)
        results = [run_expert_episode(env, args.seed_offset + i) for i in range(args.episodes)]
        env.close()
        wins = [s for ok, s in results if ok]
        out[task] = {
            "success_rate": len(wins) / args.episodes,
            "successes": len(wins),
            "failed_seeds": [args.seed_offset + i for i, (ok, _) in enumerate(results) if not ok],
            "mean_steps_to_success": (sum(wins) / len(wins)) if wins else None,
        }
    return {"benchmark": "experts", "robot": robot, "episodes": args.episodes,
            "control_hz": 5.0, "tasks": out, "wall_s": round(time.perf_counter() - t0, 2)}
