"""Run a trace predictor on the FR3 sim through the real execution path (no rclpy).

Per round: render RGB-D -> ``predictor.predict`` -> :func:`tracegen_ros.execution.plan_execution`
(gripper keypoints, camera -> base with the camera's extrinsic, waypoints, gripper events)
-> ``ArmController.plan_waypoints`` (the IK and safety layer of ``franka_controller_node``,
same parameters) -> the joint trajectory is played on the simulated arm the way
``sim_node`` plays ``/fr3_arm_controller/joint_trajectory`` (linear interpolation over
``time_from_start``); gripper commands between segments. Used by
``tracevla-bench tracegen-sim`` and its tests.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from tracegen_ros.execution import (
    ExecutionConfig,
    ExecutionError,
    ExecutionPlan,
    TracePredictor,
    plan_execution,
)
from tracegen_ros.traceforge.geometry import GeometryError
from tracegen_ros.traceforge.simgt import camera_pose
from tracevla_ros.control.arm_controller import ArmController
from tracevla_ros.control.controller_config import FrankaControllerConfig
from tracevla_ros.sim.env import SimEnv
from tracevla_ros.sim.trajectory import JointTrajectoryPlan

__all__ = ["SimTraceRunner", "EpisodeResult"]

log = logging.getLogger(__name__)


@dataclass
class EpisodeResult:
    seed: int
    success: bool  # task success at the end
    success_any: bool  # success seen at any check (after each segment)
    rounds: int  # predictions made
    sim_time_s: float
    waypoints: int  # waypoints executed (all rounds)
    ik_incomplete: int  # plans cut short by an unreachable waypoint
    interventions: int  # safety-layer changes
    error: str = ""  # why execution stopped early (no gripper keypoint, bad input, ...)
    grasps: list[int] = field(default_factory=list)
    first_path: np.ndarray | None = None  # (P, 3) waypoints planned from the first frame, m
    first_grasp: np.ndarray | None = None  # (3,) where that plan closes the gripper (None: no grasp)


class SimTraceRunner:
    """Executes predicted traces on a :class:`SimEnv` (fr3) with the controller's IK + safety."""

    def __init__(self, env: SimEnv, controller: FrankaControllerConfig | None = None,
                 execution: ExecutionConfig | None = None, tick_s: float = 0.01,
                 settle_s: float = 0.4, gripper_s: float = 0.6) -> None:
        self.env = env
        self.ccfg = controller or FrankaControllerConfig(dry_run=True, gripper_namespace="")
        self.ecfg = execution or ExecutionConfig()
        spec = env.robot.spec
        self.core = ArmController(spec, self.ccfg.safety_config(spec), self.ccfg.hysteresis(),
                                  self.ccfg.ik_options())
        dt = float(env.model.opt.timestep)
        self.tick = max(1, int(round(tick_s / dt)))
        self.settle = max(1, int(round(settle_s / dt)))
        self.gripper_steps = max(1, int(round(gripper_s / dt)))
        self.T_base_cam = camera_pose(env)
        self.K = env.camera_info().K

    # -- primitives ------------------------------------------------------------------------
    def _gripper(self, is_open: bool) -> None:
        self.env.set_joint_targets(self.env.joint_targets(), 1.0 if is_open else 0.0)
        self.env.advance(self.gripper_steps)

    def _move(self, positions: np.ndarray, res: EpisodeResult) -> None:
        env = self.env
        self.core.update_state(env.joint_positions(), env.sim_time)
        plan = self.core.plan_waypoints(positions, None, env.sim_time, self.ccfg.waypoint_speed)
        res.interventions += sum(1 for r in plan.interventions if r.check != "ik")
        if not plan.complete:
            res.ik_incomplete += 1
            log.info("seed %d: waypoint plan cut short: %s", res.seed,
                     "; ".join(r.reason for r in plan.interventions if r.check == "ik"))
        if len(plan.q) == 0:
            return
        res.waypoints += len(plan.q)
        traj = JointTrajectoryPlan(np.arange(env.robot.spec.dof), plan.times, plan.q,
                                   env.joint_targets(), env.sim_time)
        while not traj.finished(env.sim_time):
            env.set_joint_targets(traj.sample(env.sim_time))
            env.advance(self.tick)
        env.set_joint_targets(traj.positions[-1])
        env.advance(self.settle)

    def execute(self, plan: ExecutionPlan, res: EpisodeResult) -> None:
        """Move through ``plan``'s segments with its gripper events."""
        if plan.gripper_before is not None:
            self._gripper(plan.gripper_before)
        for seg in plan.segments:
            self._move(seg.positions, res)
            if seg.gripper_open_after is not None:
                if not seg.gripper_open_after:
                    res.grasps.append(res.waypoints)
                self._gripper(seg.gripper_open_after)
            res.success_any |= self.env.success()

    # -- episodes --------------------------------------------------------------------------
    def run_episode(self, predictor: TracePredictor, seed: int, rounds: int = 1,
                    reset: bool = True, predict_seed: int = 0) -> EpisodeResult:
        """Reset to ``seed`` (unless ``reset`` is False) and execute up to ``rounds`` predictions,
        stopping early on success."""
        env = self.env
        if reset:
            env.reset(seed)
        res = EpisodeResult(seed=seed, success=False, success_any=False, rounds=0, sim_time_s=0.0,
                            waypoints=0, ik_incomplete=0, interventions=0)
        for r in range(rounds):
            rgb, depth = env.render(), env.render_depth()
            try:
                traj = predictor.predict(rgb, depth, self.K, env.instruction, seed=predict_seed + r)
                res.rounds += 1
                plan = plan_execution(traj, self.K, self.T_base_cam, env.ee_pose()[0],
                                      env.gripper_command > 0.5, self.ecfg, depth_m=depth)
            except (ExecutionError, GeometryError) as exc:
                res.error = f"{type(exc).__name__}: {exc}"
                break
            if res.first_path is None:
                res.first_path = plan.path
                if plan.grasp_index is not None:
                    res.first_grasp = plan.path[plan.grasp_index]
            self.execute(plan, res)
            if env.success():
                break
        res.success = env.success()
        res.success_any |= res.success
        res.sim_time_s = round(env.sim_time, 2)
        return res
