"""``tracevla-bench policy``: closed-loop success of the local policy, trace vs no-trace.

Example (the experiment in the README)::

    MUJOCO_GL=egl tracevla-bench policy --episodes 50

For each checkpoint (``--checkpoint``, default the shipped trace-prompted
``widowx_trace``; ``--baseline``, default the shipped no-trace
``widowx_notrace``; ``--baseline none`` skips it) and each WidowX task, runs
``--episodes`` seeded episodes in ``SimEnv``: per 5 Hz policy step the frame
goes through the online ``IncrementalTracker`` with the ``tracker_node``
parameters of ``config/widowx.yaml`` (``--params``), the overlay (when the
trace is valid) and the frame, the task instruction and the joint positions go
to the ``local`` policy, and its action is executed. An episode succeeds when
the task's success check holds at any step within the task's ``max_steps``.
Seeds are ``--seed-offset + i`` (default 100000, disjoint from the training
seeds; the checkpoint's ``training.episode_seeds`` are checked). Both
checkpoints see the same seeds.

Reports per task: success rate, Wilson 95 % interval, episode lengths (steps
until success or the limit), the fraction of steps with a valid trace; per
checkpoint: inference latency of ``LocalPolicy.infer`` (1 torch thread, batch
1) and of the tracker step; the trace-minus-baseline differences.

The small PixelVLA (``--backend pixelvla``, default checkpoint ``widowx_pixelvla``):
no tracker; per policy query the ground-truth prompt is sampled
(``prompt_sampling.sample_prompt``, kind ``--prompt-kind``, seeded by the episode seed)
from the target's mask in the simulator's segmentation render of the current frame -
what a user's click on the target gives (an oracle prompt). ``--prompt both`` (default)
runs the same checkpoint with that prompt ("prompt") and with none ("noprompt"), on the
same seeds; ``--baseline`` is not used. Chunks are executed by
``tracevla_ros.control.chunking.ChunkExecutor`` (``--exec first_k --k K`` or
``--exec ensemble``); ``local`` predicts one action per step (k = 1 either way).

    MUJOCO_GL=egl tracevla-bench policy --backend pixelvla --episodes 50 --exec first_k --k 4

Affordance -> prompt -> arm (``--prompt affordance``, TRACE): the affordance backend
(``--affordance-checkpoint``, the shipped ``sim_small`` by default) answers the episode's
instruction on its first frame, as ``affordance_node`` does on a new instruction; the
``--affordance-points`` best points become the point prompt, held for the episode. It runs
next to the ground-truth prompt of ``--prompt-kind`` (give ``point`` for the same kind) and
no prompt, on the same seeds; ``affordance_points_on_target`` is the fraction of those
points inside the target's mask on that frame.

    MUJOCO_GL=egl tracevla-bench policy --backend pixelvla --prompt affordance --prompt-kind point --k 8
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from tracevla_ros.cli import (
    ArgParser,
    UsageError,
    existing_file,
    finite_float,
    int_range,
    require,
    robot_task,
)
from tracevla_ros.config import config_dir, load_node_config
from tracevla_ros.control.chunking import ChunkConfig, ChunkExecutor
from tracevla_ros.policy.base import Observation, PolicyError
from tracevla_ros.policy.prompt import PROMPT_KINDS, VisualPrompt
from tracevla_ros.policy.prompt_sampling import episode_rng, sample_prompt
from tracevla_ros.sim.env import SimEnv
from tracevla_ros.sim.tasks import tasks_for_robot
from tracevla_ros.tracking import IncrementalTracker, TrackerConfig

ROBOT = "widowx250s"


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95 % for z = 1.96)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    den = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3) if values else float("nan")


def gt_prompt(env: SimEnv, kind: str, rng: np.random.Generator) -> VisualPrompt | None:
    """The oracle prompt on the task's target in the current frame (None when not visible)."""
    target, _ = env.masks()
    return sample_prompt(target, kind, rng, stamp=env.sim_time)


class GroundTruthPrompt:
    """Per policy query, the oracle prompt of ``kind`` on the current frame (sim_node's
    ``oracle_prompt``), sampled with the episode's seed."""

    def __init__(self, kind: str) -> None:
        self.label = kind
        self._rng = np.random.default_rng(0)

    def reset(self, seed: int) -> None:
        self._rng = episode_rng(seed)

    def __call__(self, env: SimEnv, image: np.ndarray) -> VisualPrompt | None:
        return gt_prompt(env, self.label, self._rng)


class AffordancePrompt:
    """The affordance backend's answer to the episode's instruction on its first frame, as
    points (``affordance.requests.prompt_from_result``, the node's own conversion), held for
    the episode; counts how many of its points fall on the target."""

    label = "affordance"

    def __init__(self, backend: Any, max_points: int) -> None:
        self.backend, self.max_points = backend, max_points
        self.points = self.on_target = self.no_answer = 0
        self._prompt: VisualPrompt | None = None
        self._asked = False

    def reset(self, seed: int) -> None:
        self._prompt, self._asked = None, False

    def __call__(self, env: SimEnv, image: np.ndarray) -> VisualPrompt | None:
        if self._asked:
            return self._prompt
        from tracevla_ros.affordance.backend import AffordanceError
        from tracevla_ros.affordance.requests import prompt_from_result

        self._asked = True
        try:
            result = self.backend.predict(image, env.instruction)
        except AffordanceError:
            result = None
        h, w = image.shape[:2]
        self._prompt = (prompt_from_result(result, w, h, env.sim_time, self.max_points)[0]
                        if result is not None else None)
        if self._prompt is None:
            self.no_answer += 1
            return None
        target, _ = env.masks()
        px = np.minimum((self._prompt.points * [w, h]).astype(int), [w - 1, h - 1])
        self.points += len(px)
        self.on_target += int(target[px[:, 1], px[:, 0]].sum())
        return self._prompt


class DirectExecution:
    """The simulator executes each action itself (``SimEnv.step_ee_delta``: its IK, the
    joint targets set at once, the gripper value as given), chunks run by ``execution``."""

    label = "direct"

    def __init__(self, execution: ChunkConfig | None = None) -> None:
        self.execution = execution or ChunkConfig()

    def reset(self, env: SimEnv) -> None:
        self._ex = ChunkExecutor(self.execution)

    def needs_chunk(self) -> bool:
        return self._ex.needs_chunk()

    def add(self, values: np.ndarray) -> None:
        self._ex.add(values)

    def step(self, env: SimEnv) -> None:
        env.step_ee_delta(self._ex.next_action())


class ControllerExecution:
    """Each step the way the ROS graph executes it: ``widowx_controller_node``'s core
    (``control.arm_controller.ArmController``: its chunk execution, IK from the measured
    joints, safety filters, gripper hysteresis) with the node's parameters, its arm and
    gripper targets sent as one-point trajectories reached in ``trajectory_time_s`` (the
    gripper only when it changes, as the node sends it), and those executed by sim_node's
    own ``CommandArbiter`` at sim_node's physics tick. A chunk is asked for whenever the
    core takes one, planned from the frame of that moment; in the graph the policy's other
    chunks arrive every period meanwhile, so the watchdog never fires."""

    label = "controller"

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    def reset(self, env: SimEnv) -> None:
        from tracevla_ros.control.arm_controller import ArmController
        from tracevla_ros.nodes.sim_config import SimNodeConfig
        from tracevla_ros.sim.trajectory import CommandArbiter

        spec = env.robot.spec
        self.core = ArmController(spec, self.cfg.safety_config(spec), self.cfg.hysteresis(),
                                  self.cfg.ik_options(), self.cfg.chunk_config(),
                                  settle_s=self.cfg.point_time_s)
        self._names = [*spec.ros_joint_names, spec.gripper_joints[0]]  # sim_node's vector
        self._arbiter = CommandArbiter(self._names)
        self._gripper_sent: bool | None = None
        tick_hz = SimNodeConfig.physics_rate_hz  # sim_node's default physics tick
        self._substeps = max(1, round(1.0 / (tick_hz * env.model.opt.timestep)))
        self._ticks = max(1, round(self.cfg.step_period_s * tick_hz))
        self.t = 0.0
        self.core.update_state(env.joint_positions(), self.t)

    def needs_chunk(self) -> bool:
        return not self.core.commits_chunks or self.core.pending == 0

    def add(self, values: np.ndarray) -> None:
        v = np.asarray(values, np.float32)
        self.core.push_action(v.ravel(), v.shape[0], v.shape[1], self.t, self.t)

    def step(self, env: SimEnv) -> None:
        core, dof = self.core, env.robot.spec.dof
        core.update_state(env.joint_positions(), self.t)
        core.action_time = self.t
        out = core.step(self.t)
        if out is not None and out.command.send and out.command.q is not None:
            point = [self.cfg.point_time_s]
            self._arbiter.add_trajectory("arm", self._names[:dof], point,
                                         [list(out.command.q)], env.command_vector(), env.sim_time)
            if out.gripper_open != self._gripper_sent:
                self._arbiter.add_trajectory("gripper", self._names[dof:], point,
                                             [[out.gripper_position]], env.command_vector(),
                                             env.sim_time)
                self._gripper_sent = out.gripper_open
        for _ in range(self._ticks):  # sim_node's tick: sample the plans, then the physics
            cmd = self._arbiter.sample(env.command_vector(), env.sim_time)
            if cmd is not None:
                env.set_command_vector(cmd)
            env.advance(self._substeps)
        self.t += self.cfg.step_period_s


def run_episode(env: SimEnv, policy: Any, tracker: IncrementalTracker | None, seed: int,
                lat_policy: list[float], lat_tracker: list[float],
                prompt: GroundTruthPrompt | AffordancePrompt | None = None,
                execution: ChunkConfig | None = None,
                execute: DirectExecution | ControllerExecution | None = None) -> dict[str, Any]:
    """One closed-loop episode; returns success, steps, valid-trace steps, error.

    ``tracker`` None: no trace (prompt-based backends); ``prompt``: where each query's
    visual prompt comes from (None: no prompt); ``execution``: how the returned chunks run
    (default: the first action of a new chunk every step); ``execute``: who executes them
    (default: the simulator itself, ``DirectExecution(execution)``)."""
    env.reset(seed)
    if tracker is not None:
        tracker.reset("new episode")
    policy.reset()
    executor = execute or DirectExecution(execution)
    executor.reset(env)
    if prompt is not None:
        prompt.reset(seed)
    draw = tracker.config.draw_length if tracker is not None else 0
    valid = 0
    for step in range(env.task.max_steps):
        if executor.needs_chunk():
            image = env.render()
            overlay = None
            if tracker is not None:
                t0 = time.perf_counter()
                result = tracker.process(image, env.sim_time)
                overlay = (result.overlay(image, draw)
                           if result is not None and result.valid else None)
                lat_tracker.append((time.perf_counter() - t0) * 1e3)
            valid += overlay is not None
            obs = Observation(image=image, overlay=overlay, instruction=env.instruction,
                              proprio=env.joint_state().position.astype(np.float32),
                              stamp=env.sim_time,
                              prompt=prompt(env, image) if prompt is not None else None)
            t1 = time.perf_counter()
            try:
                chunk = policy.infer(obs)
            except PolicyError as exc:
                return {"success": False, "steps": step, "valid": valid, "error": str(exc)}
            lat_policy.append((time.perf_counter() - t1) * 1e3)
            executor.add(chunk.values)
        executor.step(env)
        if env.success():
            return {"success": True, "steps": step + 1, "valid": valid, "error": ""}
    return {"success": False, "steps": env.task.max_steps, "valid": valid, "error": ""}


def evaluate(checkpoint: str, tasks: list[str], seeds: list[int], tracker_cfg: TrackerConfig,
             bar: Any, backend: str = "local",
             prompt: GroundTruthPrompt | AffordancePrompt | None = None,
             execution: ChunkConfig | None = None,
             execute: ControllerExecution | None = None) -> dict[str, Any]:
    policy: Any
    if backend == "pixelvla":
        from tracevla_ros.policy.pixelvla_small.backend import PixelVLAPolicy

        policy = PixelVLAPolicy(checkpoint, device="cpu", num_threads=1)
    else:
        from tracevla_ros.policy.local.backend import LocalPolicy

        policy = LocalPolicy(checkpoint, device="cpu", num_threads=1)
    trained = policy.checkpoint.training.get("episode_seeds", {})
    overlap = sorted({s for t in tasks for s in trained.get(t, [])} & set(seeds))
    if overlap:
        raise SystemExit(f"tracevla-bench policy: evaluation seeds {overlap[:5]}... were used to "
                         f"train {policy.checkpoint.path}; choose another --seed-offset")
    lat_p: list[float] = []
    lat_t: list[float] = []
    per_task: dict[str, Any] = {}
    wins_all = n_all = 0
    for task in tasks:
        env = SimEnv(robot=ROBOT, task=task, seed=seeds[0])
        tracker = IncrementalTracker(tracker_cfg) if backend == "local" else None
        results = []
        for s in seeds:
            results.append(run_episode(env, policy, tracker, s, lat_p, lat_t, prompt,
                                       execution, execute))
            bar.update(1)
        env.close()
        wins = sum(r["success"] for r in results)
        lengths = [r["steps"] for r in results]
        ok_len = [r["steps"] for r in results if r["success"]]
        steps = sum(lengths)
        lo, hi = wilson(wins, len(results))
        per_task[task] = {
            "success_rate": round(wins / len(results), 4), "successes": wins,
            "episodes": len(results), "wilson95": [round(lo, 4), round(hi, 4)],
            "mean_length": round(float(np.mean(lengths)), 2),
            "mean_length_success": round(float(np.mean(ok_len)), 2) if ok_len else None,
            "max_steps": env.task.max_steps,
            "trace_valid_ratio": round(sum(r["valid"] for r in results) / max(1, steps), 4),
            "failed_seeds": [s for s, r in zip(seeds, results) if not r["success"]],
            "errors": sorted({r["error"] for r in results if r["error"]}),
        }
        wins_all += wins
        n_all += len(results)
    lo, hi = wilson(wins_all, n_all)
    extra: dict[str, Any] = ({"decoder": policy.pixel.decoder, "chunk": policy.pixel.chunk,
                              "prompt": prompt.label if prompt is not None else "none"}
                             if backend == "pixelvla" else {})
    if isinstance(prompt, AffordancePrompt):
        extra["affordance_points_on_target"] = (round(prompt.on_target / prompt.points, 4)
                                                if prompt.points else None)
        extra["affordance_no_answer_episodes"] = prompt.no_answer
    return {
        "path": str(policy.checkpoint.path), "backend": backend,
        "use_trace": bool(getattr(policy, "use_trace", False)), **extra,
        "execution": (f"controller {execute.cfg.chunk_config().label()}, trajectory "
                      f"{execute.cfg.point_time_s} s" if execute is not None
                      else (execution or ChunkConfig()).label()),
        "parameters": int(sum(p.numel() for p in policy.checkpoint.model.parameters())),
        "size_bytes": int(sum(f.stat().st_size for f in Path(policy.checkpoint.path).glob("*")
                              if f.name in ("model.safetensors", "config.json"))),
        "tasks": per_task,
        "overall": {"success_rate": round(wins_all / n_all, 4), "successes": wins_all,
                    "episodes": n_all, "wilson95": [round(lo, 4), round(hi, 4)]},
        "latency_ms": {
            "policy_infer": {"p50": _pct(lat_p, 50), "p95": _pct(lat_p, 95),
                             "mean": round(float(np.mean(lat_p)), 3) if lat_p else None,
                             "n": len(lat_p), "torch_threads": 1, "batch": 1},
            "tracker_step": {"p50": _pct(lat_t, 50), "p95": _pct(lat_t, 95),
                             "mean": round(float(np.mean(lat_t)), 3) if lat_t else None},
        },
    }


def main(argv: list[str]) -> dict:
    ap = ArgParser("tracevla-bench policy", description=__doc__)
    ap.add_argument("--backend", choices=("local", "pixelvla"), default="local",
                    help="local (trace policy, tracevla-train) or pixelvla (tracevla-train-pixelvla-small)")
    ap.add_argument("--checkpoint", default="",
                    help="checkpoint dir or shipped name (default: widowx_trace for local, "
                         "widowx_pixelvla for pixelvla)")
    ap.add_argument("--prompt", choices=("both", "gt", "none", "affordance"), default="both",
                    help="pixelvla: the ground-truth prompt, none, both runs, or affordance "
                         "(the affordance model's points, the ground-truth prompt and none)")
    ap.add_argument("--affordance-checkpoint", default="",
                    help="--prompt affordance: the small affordance model's checkpoint ('' = "
                         "the shipped sim_small)")
    ap.add_argument("--affordance-points", type=int_range(0, 64), default=3,
                    help="--prompt affordance: best points in the prompt (affordance_node's "
                         "prompt_points; 0 = all)")
    ap.add_argument("--prompt-kind", choices=PROMPT_KINDS, default="mask",
                    help="pixelvla: kind of the ground-truth prompt sampled from the target mask")
    ap.add_argument("--exec", dest="exec_mode", choices=("first_k", "ensemble"), default="first_k",
                    help="chunk execution: the first --k actions then re-plan, or temporal "
                         "ensembling")
    ap.add_argument("--k", type=int_range(1, 64), default=None,
                    help="first_k: actions per chunk (default 1)")
    ap.add_argument("--controller", action="store_true",
                    help="execute through widowx_controller_node's core with its --params "
                         "section (chunk_steps, IK, safety filters, gripper hysteresis, "
                         "trajectory_time_s), as the ROS graph does, instead of the simulator's "
                         "own step; --exec/--k are then the controller's")
    ap.add_argument("--ensemble-m", type=finite_float(ge=0, le=10), default=0.1,
                    help="ensemble: weight exp(-m i), i = 0 the oldest prediction")
    ap.add_argument("--baseline", default="widowx_notrace",
                    help="second checkpoint; 'none' to skip")
    ap.add_argument("--episodes", type=int_range(1, 100_000), default=50,
                    help="episodes per task and checkpoint")
    ap.add_argument("--seed-offset", type=int_range(0, 2**31 - 1), default=100000,
                    help="seed of the first episode")
    ap.add_argument("--tasks", nargs="*", default=None, help="tasks (default: every WidowX task)")
    ap.add_argument("--params", type=existing_file, default=None,
                    help="parameter file for the tracker (default: config/widowx.yaml)")
    args = ap.parse_args(argv)
    from tqdm import tqdm

    from tracevla_ros.policy.local.checkpoint import CONFIG_FILE, resolve_checkpoint
    from tracevla_ros.policy.pixelvla_small.checkpoint import (
        resolve_checkpoint as resolve_px,
    )

    pixel = args.backend == "pixelvla"
    checkpoint = args.checkpoint or ("widowx_pixelvla" if pixel else "widowx_trace")
    for task in args.tasks or ():
        robot_task(ROBOT, task, task_flag="--tasks")
    for flag, ck in (("--checkpoint", checkpoint), ("--baseline", args.baseline)):
        if flag == "--baseline" and (ck.lower() == "none" or pixel):
            continue
        path = (resolve_px if pixel else resolve_checkpoint)(ck)
        require((path / CONFIG_FILE).is_file(), f"{flag} '{ck}': {path} is not a checkpoint "
                f"directory (no {CONFIG_FILE}); give one written by tracevla-train or a "
                "shipped name")

    tasks = args.tasks or tasks_for_robot(ROBOT)
    params = args.params or config_dir() / "widowx.yaml"
    tracker_cfg = load_node_config(TrackerConfig, params, "tracker_node")
    seeds = [args.seed_offset + i for i in range(args.episodes)]
    execution = ChunkConfig(mode=args.exec_mode, k=args.k or 1, ensemble_m=args.ensemble_m)
    execute = None
    if args.controller:
        from tracevla_ros.control.controller_config import WidowXControllerConfig

        require(args.k is None and args.exec_mode == "first_k", "--controller runs chunks as "
                "the controller does (chunk_execution, chunk_steps in --params): drop --exec/--k")
        execute = ControllerExecution(load_node_config(WidowXControllerConfig, params,
                                                       "widowx_controller_node"))
    runs: dict[str, tuple[str, Any]] = {}  # name -> (checkpoint, prompt source)
    if pixel:
        if args.prompt == "affordance":
            runs["affordance"] = (checkpoint, AffordancePrompt(
                _affordance_backend(args.affordance_checkpoint), args.affordance_points))
        if args.prompt in ("both", "gt", "affordance"):
            runs["prompt"] = (checkpoint, GroundTruthPrompt(args.prompt_kind))
        if args.prompt in ("both", "none", "affordance"):
            runs["noprompt"] = (checkpoint, None)
    else:
        runs["trace"] = (checkpoint, None)
        if args.baseline.lower() != "none":
            runs["baseline"] = (args.baseline, None)
    t0 = time.perf_counter()
    bar = tqdm(total=len(runs) * len(tasks) * len(seeds), desc="policy episodes", unit="ep")
    out: dict[str, Any] = {}
    for name, (ck, source) in runs.items():
        bar.set_description(f"policy episodes ({name})")
        out[name] = evaluate(ck, tasks, seeds, tracker_cfg, bar, args.backend, source, execution,
                             execute)
    bar.close()
    result: dict[str, Any] = {
        "benchmark": "policy", "robot": ROBOT, "episodes_per_task": args.episodes,
        "seeds": [seeds[0], seeds[-1]], "control_hz": 5.0, "tasks": tasks,
        "tracker": {"params": str(params), **dict(tracker_cfg.as_dict())},
        "checkpoints": out,
    }
    if "baseline" in out:
        result["trace_minus_baseline"] = {
            t: round(out["trace"]["tasks"][t]["success_rate"]
                     - out["baseline"]["tasks"][t]["success_rate"], 4) for t in tasks}
        result["trace_minus_baseline"]["overall"] = round(
            out["trace"]["overall"]["success_rate"] - out["baseline"]["overall"]["success_rate"], 4)
    if "prompt" in out and "noprompt" in out:
        result["prompt_minus_noprompt"] = {
            t: round(out["prompt"]["tasks"][t]["success_rate"]
                     - out["noprompt"]["tasks"][t]["success_rate"], 4) for t in tasks}
        result["prompt_minus_noprompt"]["overall"] = round(
            out["prompt"]["overall"]["success_rate"] - out["noprompt"]["overall"]["success_rate"],
            4)
    if "affordance" in out:
        result["affordance_minus_noprompt"] = {
            t: round(out["affordance"]["tasks"][t]["success_rate"]
                     - out["noprompt"]["tasks"][t]["success_rate"], 4) for t in tasks}
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    return result


def _affordance_backend(checkpoint: str) -> Any:
    """The small affordance model (``affordance_node``'s default backend) on the CPU."""
    from tracevla_ros.affordance.backend import make_backend
    from tracevla_ros.affordance.config import AffordanceNodeConfig
    from tracevla_ros.config import ConfigError

    try:
        return make_backend(AffordanceNodeConfig(backend="small", checkpoint=checkpoint,
                                                 device="cpu"))
    except ConfigError as exc:
        raise UsageError(f"--affordance-checkpoint '{checkpoint}': {exc}") from None
