"""``tracevla-collect``: record scripted-expert episodes in simulation for offline training.

Example::

    MUJOCO_GL=egl tracevla-collect --robot widowx --task put_carrot_on_plate --episodes 20 --out data/carrot
    MUJOCO_GL=egl tracevla-collect --robot fr3 --task put_ball_in_box --episodes 5 --out data/ball --video
    MUJOCO_GL=egl tracevla-collect --robot widowx --task lift_cube --episodes 150 --out data/lift \
        --noise-pos 0.005 --noise-rot 0.02 --only-success

``--noise-pos/--noise-rot`` (DART-style noise injection for behaviour cloning):
the simulator executes the expert's action plus Gaussian noise on the
translation (m) and rotation (rad) components, while ``action`` records the
expert's clean action for the state it saw (the label to imitate) and
``action.executed`` what was executed. The closed-loop expert then corrects
the deviation, so the data shows recoveries a learned policy needs.

Writes the layout of ``tracevla_ros/sim/DATASET.md`` (read it back with
``tracevla_ros.sim.dataset.load_episode``). Episode ``i`` uses seed ``--seed + i``.
No rclpy: this runs anywhere MuJoCo renders (``MUJOCO_GL=egl`` or ``osmesa`` headless).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tracevla_ros.sim.dataset import EpisodeWriter, write_info
from tracevla_ros.sim.env import SimEnv
from tracevla_ros.sim.experts import make_expert
from tracevla_ros.sim.robot import load_sim_robot
from tracevla_ros.sim.tasks import TaskError, tasks_for_robot

log = logging.getLogger("tracevla-collect")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tracevla-collect", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--robot", required=True, help="widowx or fr3 (registry names/aliases)")
    ap.add_argument("--task", required=True, help="task name; see --list-tasks")
    ap.add_argument("--episodes", type=int, default=10, help="number of episodes")
    ap.add_argument("--out", type=Path, required=True, help="output directory (created)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the first episode")
    ap.add_argument("--extra-steps", type=int, default=2,
                    help="steps recorded after the first success (the scene settling)")
    ap.add_argument("--only-success", action="store_true", help="drop failed episodes")
    ap.add_argument("--no-depth", action="store_true", help="skip depth even where the camera has it")
    ap.add_argument("--video", action="store_true", help="also write a lossy rgb.mp4 preview")
    ap.add_argument("--overwrite", action="store_true", help="allow a non-empty --out")
    ap.add_argument("--noise-pos", type=float, default=0.0,
                    help="std of Gaussian noise added to the executed dx, dy, dz (m); 0 = none")
    ap.add_argument("--noise-rot", type=float, default=0.0,
                    help="std of Gaussian noise added to the executed droll, dpitch, dyaw (rad)")
    return ap


def collect_episode(env: SimEnv, seed: int, writer: EpisodeWriter, extra_steps: int,
                    noise_pos: float = 0.0, noise_rot: float = 0.0) -> bool:
    """Run the expert from ``seed``, recording every step into ``writer``; returns success.

    With noise, the executed action is the expert's plus N(0, noise_pos) on dx, dy, dz [m]
    and N(0, noise_rot) on droll, dpitch, dyaw [rad] (seeded by ``seed``); ``action`` is
    the expert's clean action, ``action.executed`` the executed one.
    """
    env.reset(seed)
    expert = make_expert(env)
    noisy = noise_pos > 0.0 or noise_rot > 0.0
    rng = np.random.default_rng([seed, 0x5EED])
    after = -1
    for _ in range(env.task.max_steps):
        action = expert.act().astype(np.float32)
        pos, quat = env.ee_pose()
        js = env.joint_state()
        obs = dict(
            observation__images__scene=env.render(),
            observation__state=np.concatenate([env.joint_positions(), [env.gripper_opening()]]).astype(np.float32),
            observation__joint_positions=js.position.astype(np.float32),
            observation__ee_pose=np.concatenate([pos, quat]).astype(np.float32),
            timestamp=np.float64(env.sim_time),
            success=np.bool_(env.success()),
        )
        if writer.with_depth:
            obs["observation__depth__scene"] = env.render_depth()
        if obs["success"] and after < 0:
            after = 0
        if after >= 0:
            if after >= extra_steps:
                break
            after += 1
        executed = action
        if noisy:
            sigma = np.array([noise_pos] * 3 + [noise_rot] * 3 + [0.0])
            executed = (action + rng.normal(0.0, 1.0, 7) * sigma).astype(np.float32)
            obs["action__executed"] = executed
        q = env.step_ee_delta(executed)
        writer.add(action=action, action__joint_targets=q.astype(np.float32), **obs)
    return env.success()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        robot = load_sim_robot(args.robot).spec.name
    except KeyError as exc:
        print(f"tracevla-collect: {exc}", file=sys.stderr)
        return 2
    if args.episodes < 1:
        print("tracevla-collect: --episodes must be >= 1", file=sys.stderr)
        return 2
    if args.noise_pos < 0 or args.noise_rot < 0:
        print("tracevla-collect: --noise-pos/--noise-rot must be >= 0", file=sys.stderr)
        return 2
    if args.out.exists() and any(args.out.iterdir()) and not args.overwrite:
        print(f"tracevla-collect: {args.out} is not empty; pass --overwrite or another --out",
              file=sys.stderr)
        return 2
    try:
        env = SimEnv(robot=robot, task=args.task, seed=args.seed)
    except TaskError as exc:
        print(f"tracevla-collect: {exc} (tasks for {robot}: {tasks_for_robot(robot)})", file=sys.stderr)
        return 2
    intr = env.camera_info()
    cam_pos, cam_rot = env.camera_pose()
    with_depth = env.has_depth and not args.no_depth
    write_info(args.out, {
        "robot": robot, "task": env.task.name, "instruction": env.instruction,
        "fps": 1.0 / env.control_dt, "physics_timestep_s": float(env.model.opt.timestep),
        "substeps_per_step": env.substeps, "action_space": "ee_delta_7d",
        "action_doc": "dx dy dz [m] in the base frame, droll dpitch dyaw [rad] extrinsic xyz about "
                      "base axes applied to the measured ee orientation, gripper openness 1=open",
        "joint_names": list(env.joint_state().names), "arm_joints": list(env.robot.spec.arm_joints),
        "ee_site": env.robot.spec.ee_site, "base_frame": env.robot.spec.base_frame,
        "noise": {"pos_m": args.noise_pos, "rot_rad": args.noise_rot},
        "camera": {"width": intr.width, "height": intr.height, "K": intr.K.tolist(),
                   "frame_id": intr.frame_id, "position_in_base": cam_pos.tolist(),
                   "rotation_base_optical": cam_rot.tolist(), "depth": with_depth},
    })
    kept = wins = 0
    bar = tqdm(range(args.episodes), desc=f"{robot}/{env.task.name}", unit="ep")
    for i in bar:
        seed = args.seed + i
        writer = EpisodeWriter(with_depth)
        ok = collect_episode(env, seed, writer, args.extra_steps, args.noise_pos, args.noise_rot)
        wins += ok
        if ok or not args.only_success:
            writer.save(args.out / f"episode_{kept:06d}",
                        {"robot": robot, "task": env.task.name, "instruction": env.instruction,
                         "seed": seed, "success": bool(ok)},
                        video_fps=(1.0 / env.control_dt) if args.video else None)
            kept += 1
        bar.set_postfix(success=f"{wins}/{i + 1}")
    env.close()
    log.info("wrote %d episodes to %s (%d/%d successful)", kept, args.out, wins, args.episodes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
