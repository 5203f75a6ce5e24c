"""``tracevla-bench sim``: render time per frame and physics step rate of a SimEnv.

Example::

    MUJOCO_GL=egl tracevla-bench sim --robot fr3 --frames 50

Reports ms per RGB frame (and depth frame where the world has one), physics
steps per second (one ``mj_step``), and ms per policy step (IK + substeps).
"""

from __future__ import annotations

import time

import numpy as np

from tracevla_ros.cli import ArgParser, int_range, robot_task

from tracevla_ros.sim.env import SimEnv


def main(argv: list[str]) -> dict:
    ap = ArgParser("tracevla-bench sim", description=__doc__)
    ap.add_argument("--robot", default="widowx", help="robot name or alias (widowx, fr3)")
    ap.add_argument("--task", default="", help="task ('' = the robot's first task)")
    ap.add_argument("--frames", type=int_range(1, 100_000), default=50,
                    help="frames / policy steps to time")
    args = ap.parse_args(argv)
    robot, task = robot_task(args.robot, args.task)
    env = SimEnv(robot=robot, task=task or None, seed=0)
    env.render()  # first frame creates the GL context
    t = time.perf_counter()
    for _ in range(args.frames):
        env.render()
    rgb_ms = (time.perf_counter() - t) / args.frames * 1e3
    depth_ms = None
    if env.has_depth:
        env.render_depth()
        t = time.perf_counter()
        for _ in range(args.frames):
            env.render_depth()
        depth_ms = (time.perf_counter() - t) / args.frames * 1e3
    n = 2000
    t = time.perf_counter()
    env.advance(n)
    physics_hz = n / (time.perf_counter() - t)
    env.reset(0)
    act = np.array([0.005, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0])
    t = time.perf_counter()
    for _ in range(args.frames):
        env.step_ee_delta(act)
    step_ms = (time.perf_counter() - t) / args.frames * 1e3
    size = env.camera_info()
    env.close()
    return {
        "benchmark": "sim", "robot": env.robot.spec.name, "task": env.task.name,
        "image": f"{size.width}x{size.height}",
        "render_rgb_ms": round(rgb_ms, 2), "render_depth_ms": None if depth_ms is None else round(depth_ms, 2),
        "physics_steps_per_s": round(physics_hz), "timestep_s": float(env.model.opt.timestep),
        "substeps_per_policy_step": env.substeps,
        "policy_step_ms": round(step_ms, 2),
        "policy_step_with_render_ms": round(step_ms + rgb_ms + (depth_ms or 0.0), 2),
    }
