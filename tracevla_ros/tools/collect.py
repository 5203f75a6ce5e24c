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

import logging
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tracevla_ros.cli import (
    ArgParser,
    atomic_dir,
    finite_float,
    int_range,
    nonempty_str,
    output_dir,
    require,
    robot_task,
    run_main,
    write_json_atomic,
)
from tracevla_ros.sim.dataset import FORMAT, EpisodeWriter, pack_mask
from tracevla_ros.sim.env import SimEnv
from tracevla_ros.sim.experts import make_expert
from tracevla_ros.stopping import StopRequest, install_stop_signals

log = logging.getLogger("tracevla-collect")
PROG = "tracevla-collect"


def _parser() -> ArgParser:
    ap = ArgParser(PROG, description=__doc__)
    ap.add_argument("--robot", required=True, type=nonempty_str,
                    help="widowx or fr3 (registry names/aliases)")
    ap.add_argument("--task", required=True, type=nonempty_str,
                    help="task name (one of the robot's; an unknown one lists them)")
    ap.add_argument("--episodes", type=int_range(1, 1_000_000), default=10,
                    help="number of episodes")
    ap.add_argument("--out", type=output_dir, required=True,
                    help="output directory (created; must be empty unless --overwrite)")
    ap.add_argument("--seed", type=int_range(0, 2**31 - 1), default=0,
                    help="seed of the first episode")
    ap.add_argument("--extra-steps", type=int_range(0, 1000), default=2,
                    help="steps recorded after the first success (the scene settling)")
    ap.add_argument("--only-success", action="store_true", help="drop failed episodes")
    ap.add_argument("--no-depth", action="store_true", help="skip depth even where the camera has it")
    ap.add_argument("--masks", action="store_true",
                    help="also record the target and gripper segmentation masks per step "
                         "(packed bits; the auto-annotation of the visual prompts)")
    ap.add_argument("--video", action="store_true", help="also write a lossy rgb.mp4 preview")
    ap.add_argument("--overwrite", action="store_true", help="allow a non-empty --out")
    ap.add_argument("--noise-pos", type=finite_float(ge=0, le=1), default=0.0,
                    help="std of Gaussian noise added to the executed dx, dy, dz (m); 0 = none")
    ap.add_argument("--noise-rot", type=finite_float(ge=0, le=3.2), default=0.0,
                    help="std of Gaussian noise added to the executed droll, dpitch, dyaw "
                         "(rad); 0 = none")
    return ap


def collect_episode(env: SimEnv, seed: int, writer: EpisodeWriter, extra_steps: int,
                    noise_pos: float = 0.0, noise_rot: float = 0.0,
                    stop: StopRequest | None = None, masks: bool = False) -> bool:
    """Run the expert from ``seed``, recording every step into ``writer``; returns success.

    With noise, the executed action is the expert's plus N(0, noise_pos) on dx, dy, dz [m]
    and N(0, noise_rot) on droll, dpitch, dyaw [rad] (seeded by ``seed``); ``masks``: the
    target and gripper segmentation masks are recorded too (packed); ``action`` is
    the expert's clean action, ``action.executed`` the executed one. Returns early (the
    episode unfinished) once ``stop`` is set.
    """
    env.reset(seed)
    expert = make_expert(env)
    noisy = noise_pos > 0.0 or noise_rot > 0.0
    rng = np.random.default_rng([seed, 0x5EED])
    after = -1
    for _ in range(env.task.max_steps):
        if stop:
            break
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
        if masks:
            target, gripper = env.masks()
            obs["observation__masks__target"] = pack_mask(target)
            obs["observation__masks__gripper"] = pack_mask(gripper)
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
    return run_main(PROG, _main, argv)


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    robot, task = robot_task(args.robot, args.task)
    out: Path = args.out
    require(args.overwrite or not (out.exists() and any(out.iterdir())),
            f"--out {out} is not empty; pass --overwrite or another --out")
    stop = StopRequest()
    install_stop_signals(stop)  # finish the episode files, then exit 128 + signal
    env = SimEnv(robot=robot, task=task, seed=args.seed)
    intr = env.camera_info()
    cam_pos, cam_rot = env.camera_pose()
    with_depth = env.has_depth and not args.no_depth
    info = {
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
        "format": FORMAT,
    }
    # info.json says how far the collection got: complete only once every episode ran
    run = {"episodes_requested": args.episodes, "episodes_run": 0, "episodes_written": 0,
           "successes": 0, "complete": False, "stopped_by": None}
    write_json_atomic(out / "info.json", dict(info, collection=run))
    kept = wins = 0
    bar = tqdm(range(args.episodes), desc=f"{robot}/{env.task.name}", unit="ep")
    try:
        for i in bar:
            seed = args.seed + i
            writer = EpisodeWriter(with_depth)
            ok = collect_episode(env, seed, writer, args.extra_steps, args.noise_pos,
                                 args.noise_rot, stop, masks=args.masks)
            if stop:  # the unfinished episode is dropped
                break
            wins += ok
            if ok or not args.only_success:
                ep_dir = out / f"episode_{kept:06d}"
                # an episode appears whole or not at all (--overwrite: replaces the old one)
                with atomic_dir(ep_dir, overwrite=True) as tmp:
                    writer.save(tmp, {"robot": robot, "task": env.task.name,
                                      "instruction": env.instruction, "seed": seed,
                                      "success": bool(ok), "target": env.task.target},
                                video_fps=(1.0 / env.control_dt) if args.video else None)
                kept += 1
            run.update(episodes_run=i + 1, episodes_written=kept, successes=wins)
            bar.set_postfix(success=f"{wins}/{i + 1}")
    finally:
        bar.close()
        env.close()
        run.update(complete=not stop and run["episodes_run"] == args.episodes,
                   stopped_by=stop.reason or None)
        write_json_atomic(out / "info.json", dict(info, collection=run))
    if stop:
        print(f"{PROG}: stopped by {stop.reason} after {run['episodes_run']}/{args.episodes} "
              f"episodes; {kept} complete episodes in {out} (info.json: complete false)",
              file=sys.stderr)
        return stop.exit_code
    log.info("wrote %d episodes to %s (%d/%d successful)", kept, out, wins, args.episodes)
    if kept == 0:
        print(f"{PROG}: no episode written: 0/{args.episodes} successful and --only-success "
              "drops the others", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
