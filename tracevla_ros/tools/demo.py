"""``tracevla-demo``: the whole loop in simulation, headless, as real rclpy nodes.

    tracevla-demo --robot widowx --steps 200 --out /tmp/demo
    tracevla-demo --robot fr3 --task put_ball_in_box --out /tmp/demo_fr3

``--robot fr3`` runs the TraceGen loop instead (RGB-D sim camera -> tracegen_node -> IK ->
FR3 sim; ``tracegen_ros/demo.py``, found through the ``tracevla_ros.demos`` entry point, see
``tracevla_ros/plugins.py``) with ``--policy tracegen`` (the checkpoint in config/fr3.yaml or
``--checkpoint``), ``tracegen_oracle`` or ``no_motion``.

sim_node (MuJoCo camera + arm) -> tracker_node -> policy_node -> controller node
-> sim_node, plus recorder_node, composed in one process on one executor, over
real DDS (loopback only). Writes:

- ``OUT/summary.json``: robot, task, policy, tracker backend, steps, success,
  per-topic message counts and rates, latency p50/p95 per stage and end to end;
- ``OUT/overlay.mp4``: the trace-overlaid camera stream the policy saw;
- ``OUT/bag/``: a rosbag2 bag (metadata.yaml + MCAP) of every topic;
- ``OUT/params.yaml``: the exact parameters the nodes ran with.

Policy: ``--policy pixelvla`` (the WidowX default) runs the shipped small PixelVLA
(``tracevla_ros/policy/checkpoints/widowx_pixelvla``, or ``--checkpoint``) inside the
real policy_node, built from the YAML like any backend; its visual prompt is the box
sim_node publishes on /visual_prompt from its segmentation render (``oracle_prompt``,
what a user's rviz click or ``tracevla-prompt --box`` gives on the robot), and the
controller runs each 8-step chunk whole (``chunk_steps: 8``). ``--policy local`` runs
the small trace-prompted network (``widowx_trace``); ``--policy scripted`` drives the
loop with the task's scripted expert instead, which reads the simulator's state (the
summary says so).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from tracevla_ros.cli import (
    ArgParser,
    UsageError,
    dumps_json,
    finite_float,
    int_range,
    output_dir,
    require,
    robot_task,
    run_main,
    write_json_atomic,
    write_text_atomic,
)
from tracevla_ros.config import config_dir, load_params_file, node_params
from tracevla_ros.loopstats import percentiles
from tracevla_ros.policy.prompt import PROMPT_KINDS
from tracevla_ros.stopping import StopRequest, install_stop_signals
from tracevla_ros.tools.demo_stats import timing_report

ROBOTS = {"widowx": "widowx.yaml", "fr3": "fr3.yaml"}
POLICIES = ("pixelvla", "local", "scripted", "tracegen", "tracegen_oracle", "no_motion")
DEFAULT_POLICY = {"widowx": "pixelvla", "fr3": "tracegen"}
WIDOWX_POLICIES = ("pixelvla", "local", "scripted")  # learned: the backends of policy_node
TRACKERS = ("lk", "cotracker3")
PROG = "tracevla-demo"
STOP = StopRequest()  # SIGINT/SIGTERM/SIGHUP: finish the outputs, then exit 128 + signal


def _parser() -> ArgParser:
    ap = ArgParser(PROG, description=__doc__.split("\n\n")[0],
                   epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--robot", choices=sorted(ROBOTS), default="widowx", help="robot to simulate")
    ap.add_argument("--task", default="", help="task name ('' = the robot's default task in "
                    "config/<robot>.yaml)")
    ap.add_argument("--steps", type=int_range(1), default=200, help="policy steps to run (widowx)")
    ap.add_argument("--policy", choices=POLICIES, default="",
                    help="widowx: pixelvla (default: the small PixelVLA), local (the small "
                         "trace-prompted network) or scripted; fr3: tracegen (default), "
                         "tracegen_oracle, no_motion")
    ap.add_argument("--checkpoint", default="",
                    help="widowx --policy pixelvla/local: checkpoint dir or shipped name ('' = "
                         "widowx_pixelvla / widowx_trace); fr3 --policy tracegen: checkpoint "
                         "directory ('' = config/fr3.yaml's)")
    ap.add_argument("--prompt", choices=(*PROMPT_KINDS, "affordance", "none"), default="",
                    help="widowx: the visual prompt on /visual_prompt: the kind of ground truth "
                         "sim_node publishes ('' = config/widowx.yaml's oracle_prompt, box), "
                         "affordance (affordance_node's points for the instruction, TRACE) or "
                         "none"),
    ap.add_argument("--rounds", type=int_range(1), default=3,
                    help="fr3: traces predicted and executed at most (stops at success)")
    ap.add_argument("--tracker", choices=TRACKERS, default="lk", help="tracker backend")
    ap.add_argument("--seed", type=int_range(0, 2**31 - 1), default=0, help="simulator seed")
    ap.add_argument("--out", required=True, type=output_dir,
                    help="output directory (created; must not hold a bag yet)")
    ap.add_argument("--timeout", type=finite_float(ge=0), default=0.0,
                    help="wall-clock limit in s (0 = 3 x steps / control rate + 60)")
    return ap


def build_params(robot: str, task: str, seed: int, tracker: str, policy: str,
                 checkpoint: str = "", prompt: str = "") -> dict[str, Any]:
    """config/<robot>.yaml with the demo's overrides (validated by the nodes)."""
    src = config_dir() / ROBOTS[robot]
    load_params_file(src)  # raises ConfigError naming file/key on a malformed file
    data = yaml.safe_load(src.read_text())
    def section(node: str) -> dict[str, Any]:
        return data.setdefault(node, {"ros__parameters": {}})["ros__parameters"]
    sim = section("sim_node")
    if task:
        sim["task"] = task
    sim["seed"] = seed
    section("tracker_node")["backend"] = tracker
    if robot == "widowx":
        section("policy_node")["backend"] = policy
        if checkpoint:
            section("policy_node")["checkpoint"] = checkpoint
        if prompt:
            sim["oracle_prompt"] = "" if prompt in ("none", "affordance") else prompt
        # a prompt-following policy waits for its first prompt rather than run a chunk
        # without one (the prompt of the first frame may arrive after it)
        section("policy_node")["require_prompt"] = bool(
            policy == "pixelvla" and (prompt == "affordance" or sim.get("oracle_prompt")))
    return data


def demo_params(robot: str, task: str = "", seed: int = 0, tracker: str = "lk", policy: str = "",
                checkpoint: str = "", plugin: Any = None, prompt: str = "") -> dict[str, Any]:
    """The parameters the demo runs ``robot`` with (``config/<robot>.yaml`` + its overrides,
    and those of the robot's demo plugin, loaded here when not given); ``tracevla-bench
    loop`` runs both layouts with exactly these."""
    from tracevla_ros.plugins import load_demo

    policy = policy or DEFAULT_POLICY[robot]
    params = build_params(robot, task, seed, tracker, policy,
                          checkpoint if robot == "widowx" else "", prompt if robot == "widowx" else "")
    if robot != "widowx":
        (plugin or load_demo(robot)).configure(params, policy, checkpoint)
    return params


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, _main, argv)


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    # headless rendering; before the first MuJoCo import (robot_task loads the task registry)
    os.environ.setdefault("MUJOCO_GL", "egl")
    install_stop_signals(STOP)
    args.stop = STOP  # for demo plugins (see tracevla_ros.plugins.DemoPlugin)
    from tracevla_ros.plugins import DemoPlugin, load_demo

    robot_task(args.robot, args.task)  # robot vs task, before anything starts
    plugin: DemoPlugin | None = None
    if args.robot != "widowx":  # provided by another package (fr3: tracegen_ros)
        plugin = load_demo(args.robot)  # PluginMissing: one line, exit 2
    args.policy = args.policy or DEFAULT_POLICY[args.robot]
    if plugin is not None:
        require(args.policy in plugin.policies, f"--policy '{args.policy}': --robot "
                f"{args.robot} {plugin.loop}; give one of {list(plugin.policies)}")
    else:
        require(args.policy in WIDOWX_POLICIES, f"--policy '{args.policy}': --robot widowx "
                "runs pixelvla or local (learned policies) or scripted")
        if args.policy != "scripted":
            _check_checkpoint(args.policy, args.checkpoint)
    # DDS stays on this machine; one domain per run.
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(10, 99)))
    out: Path = args.out
    require(not (out / "bag").exists(),
            f"--out {out}: {out / 'bag'} already exists; remove it or choose another --out")
    params = demo_params(args.robot, args.task, args.seed, args.tracker, args.policy,
                         args.checkpoint, plugin, args.prompt)
    out.mkdir(parents=True, exist_ok=True)
    params_file = out / "params.yaml"
    write_text_atomic(params_file, yaml.safe_dump(params, sort_keys=False))
    try:
        if plugin is not None:
            return plugin.run(args, params, params_file, _sim_thread, _topic_stats)
        return _run(args, params, params_file)
    except BaseException as exc:
        _set_aside_bag(out / "bag", exc)
        raise


def _check_checkpoint(policy: str, checkpoint: str) -> None:
    """--checkpoint of a learned WidowX policy: a directory with the checkpoint's files, in
    that policy's format (its config read and checked here, before any node starts)."""
    from tracevla_ros.policy.local.checkpoint import CONFIG_FILE, CheckpointError

    path = Path(_checkpoint_path(policy, checkpoint))
    trainer = "tracevla-train-pixelvla-small" if policy == "pixelvla" else "tracevla-train"
    require(path.is_dir() and (path / CONFIG_FILE).is_file(),
            f"--checkpoint '{checkpoint}': {path} is not a checkpoint directory (no "
            f"{CONFIG_FILE}); give one written by {trainer} or a shipped name")
    from tracevla_ros.policy.local.checkpoint import read_configs as read_local
    from tracevla_ros.policy.pixelvla_small.checkpoint import read_configs as read_pixel

    try:
        (read_pixel if policy == "pixelvla" else read_local)(path)
    except CheckpointError as exc:
        raise UsageError(f"--checkpoint '{checkpoint}' (--policy {policy}): {exc}") from None


def _set_aside_bag(bag: Path, exc: BaseException) -> None:
    """A run that failed must not leave OUT/bag behind (the rerun would refuse it): after a
    bad input nothing was recorded, so it goes; otherwise it is kept as OUT/bag.failed."""
    from tracevla_ros.cli import input_errors

    if not bag.exists() or isinstance(exc, KeyboardInterrupt):
        return
    if isinstance(exc, input_errors()):
        shutil.rmtree(bag, ignore_errors=True)
        return
    failed = bag.with_name("bag.failed")
    shutil.rmtree(failed, ignore_errors=True)
    os.replace(bag, failed)
    print(f"{PROG}: the partial recording of the failed run is in {failed}", file=sys.stderr)


def _run(args: argparse.Namespace, params: dict[str, Any], params_file: Path) -> int:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from tracevla_ros.bag.config import PARAMS_KEY
    from tracevla_ros.tools.demo_monitor import DemoMonitor, start_when_matched
    from tracevla_ros.tools.demo_stats import shutdown_nodes

    out: Path = args.out
    ctx = rclpy.Context()
    # Parameters from the YAML (global); each node's remappings from tracevla_ros.graph,
    # the description launch/<robot>.launch.py and tracevla-bench loop --launch use too.
    rclpy.init(args=["--ros-args", "--params-file", str(params_file)],
               context=ctx, signal_handler_options=SignalHandlerOptions.NO)
    node_args = graph_node_args(args.robot)
    nodes: list[Any] = []
    tracker: Any = None
    # One single-threaded executor for every node but the sim (rclpy's multi-threaded one
    # busy-spins in the pinned wheels, ros2/rclpy#1452); the tracker and the policy do their
    # work in their own worker threads, so no callback here is longer than ~1 ms.
    executor = SingleThreadedExecutor(context=ctx)
    # MuJoCo's EGL context belongs to the thread that made it: sim_node is built,
    # spun (its own single-threaded executor) and closed on one dedicated thread.
    sim_box: dict[str, Any] = {}
    sim_ready = threading.Event()
    sim_stop = threading.Event()
    sim_box["go"] = threading.Event()  # the sim publishes only once the recorder is matched
    sim_thread = threading.Thread(target=_sim_thread, args=(ctx, sim_box, sim_ready, sim_stop),
                                  name="sim_node", daemon=True)
    spin = threading.Thread(target=executor.spin, name="executor", daemon=True)
    try:
        from tracevla_ros.nodes.policy_node import PolicyNode
        from tracevla_ros.nodes.recorder_node import RecorderNode
        from tracevla_ros.nodes.tracker_node import TrackerNode
        from tracevla_ros.policy.scripted import ScriptedPolicy
        from tracevla_ros.sim.experts import make_expert

        controller_cls = _controller_class(args.robot)
        sim_thread.start()
        sim_ready.wait(timeout=120.0)
        if "error" in sim_box:
            raise sim_box["error"]
        sim = sim_box["node"]
        rate = float(node_values(params, "policy_node").get("control_rate_hz", 5.0))
        monitor = DemoMonitor(context=ctx, command_topic=_command_topic(params, args.robot))
        nodes.append(monitor)
        recorder = RecorderNode(output=str(out / "bag"), context=ctx,
                                cli_args=node_args["recorder_node"])
        recorder.bag.set_custom_data(PARAMS_KEY, params_file.read_text())  # for tracevla-replay
        nodes.append(recorder)
        tracker = TrackerNode(context=ctx, cli_args=node_args["tracker_node"])
        nodes.append(tracker)
        scripted = ScriptedPolicy(make_expert(sim.env)) if args.policy == "scripted" else None
        # policy None: the YAML's backend
        policy = PolicyNode(policy=scripted, context=ctx, cli_args=node_args["policy_node"])
        nodes.append(policy)
        controller = controller_cls(context=ctx, cli_args=node_args[_CONTROLLER[args.robot]])
        nodes.append(controller)
        if args.prompt == "affordance":
            from tracevla_ros.nodes.affordance_node import AffordanceNode

            nodes.append(AffordanceNode(context=ctx, cli_args=node_args["affordance_node"]))
        for n in nodes:
            executor.add_node(n)
        t0 = time.monotonic()
        start_when_matched(spin, [sim, *nodes], recorder, sim_box["go"])
        timeout = args.timeout or (3.0 * args.steps / rate + 60.0)
        last_print = 0.0
        while monitor.actions < args.steps and time.monotonic() - t0 < timeout and not STOP:
            time.sleep(0.05)
            if not spin.is_alive() or not sim_thread.is_alive():
                raise RuntimeError("a node crashed (see the traceback above); stopping the demo")
            if time.monotonic() - last_print > 5.0:
                last_print = time.monotonic()
                print(f"[demo] {monitor.actions}/{args.steps} policy steps, "
                      f"{time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
        wall = time.monotonic() - t0
        success = bool(sim.env.success())  # read-only peek; the sim thread owns the renderer
        finished = monitor.actions >= args.steps
        summary = {
            "robot": args.robot,
            "task": sim.env.task.name,
            "instruction": sim.env.instruction,
            "policy": args.policy,
            "policy_note": ("scripted expert: reads privileged simulator state; not a learned "
                            "policy" if args.policy == "scripted" else
                            f"learned ({args.policy} backend): "
                            f"{_checkpoint_path(args.policy, args.checkpoint)}"),
            # /visual_prompt: sim_node's oracle prompt kind, or affordance_node's points
            "visual_prompt": ("affordance" if args.prompt == "affordance" else
                              str(node_values(params, "sim_node").get("oracle_prompt", ""))
                              or "none"),
            "tracker_backend": args.tracker,
            "steps_requested": args.steps,
            "steps": monitor.actions,
            "finished": finished,
            "success": monitor.success_at_step is not None,
            "success_at_step": monitor.success_at_step,
            "success_at_end": success,
            "wall_time_s": round(wall, 2),
            "stopped_by": STOP.reason or None,
            "control_rate_hz": rate,
            "trace_valid_ratio": monitor.trace_valid_ratio(),
            "topics": _topic_stats(recorder),
            "latency": monitor.clock.summary(),
            # the controller's own view: frame of each action/chunk it used -> its first arm
            # command (with 8-step chunks the observer's end_to_end pairs each command with
            # the newest action, used or not), and what its filters did
            "controller": {"reaction": percentiles(list(controller.core.reaction_s)),
                           "steps": controller.core.steps_done,
                           "interventions": dict(sorted(controller.core.counts.items()))},
            "outputs": {"overlay": "overlay.mp4", "bag": "bag", "params": "params.yaml"},
        }
    finally:
        if tracker is not None:  # traces stop first: the monitor and the bag get the same ones
            executor.remove_node(tracker)
            time.sleep(0.3)
        shutdown_nodes(executor, spin, sim_stop, nodes, sim_thread, ctx)
    summary["trace_valid_ratio"] = monitor.trace_valid_ratio()  # all traces, as in the bag
    summary["timing"] = timing_report(summary["topics"], {
        "/camera/image_raw": float(node_values(params, "sim_node").get("camera_rate_hz", 10.0)),
        "/policy/action": rate}, summary["latency"])
    for line in summary["timing"]["warnings"]:
        print(f"tracevla-demo: warning: {line}", file=sys.stderr)
    n_frames = monitor.write_video(out / "overlay.mp4", fps=rate)
    summary["outputs"]["overlay_frames"] = n_frames
    write_json_atomic(out / "summary.json", summary)
    print(dumps_json({k: summary[k] for k in ("robot", "task", "policy", "steps", "success",
                                              "success_at_step", "success_at_end", "wall_time_s")},
                     indent=None))
    if STOP:
        print(f"tracevla-demo: stopped by {STOP.reason} after {monitor.actions}/{args.steps} "
              f"policy steps; bag, summary and video written to {out}", file=sys.stderr)
        return STOP.exit_code
    if not finished:
        print(f"tracevla-demo: only {monitor.actions}/{args.steps} policy steps ran within "
              f"{timeout:.0f} s; see {out / 'summary.json'}", file=sys.stderr)
        return 1
    return 0


def _sim_thread(ctx: Any, box: dict[str, Any], ready: threading.Event,
                stop: threading.Event) -> None:
    from rclpy.executors import SingleThreadedExecutor

    from tracevla_ros.nodes.sim_node import SimNode

    try:
        node = SimNode(context=ctx)
    except Exception as exc:  # reported to the main thread, which re-raises it
        box["error"] = exc
        ready.set()
        return
    box["node"] = node
    ready.set()
    while not box["go"].wait(0.05) and not stop.is_set():
        pass
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    try:
        while not stop.is_set() and ctx.ok():
            ex.spin_once(timeout_sec=0.05)
    finally:
        ex.shutdown(timeout_sec=1.0)
        node.close()
        node.destroy_node()


def graph_node_args(robot: str) -> dict[str, list[str]]:
    """Per-node ``cli_args`` (remappings) of ``robot``'s simulated graph, by executable name."""
    from tracevla_ros.graph import graph

    return {n.executable: ["--ros-args", *n.ros_args()]
            for n in graph(robot, sim=True, record=True, viz=False, affordance=True)}


def _checkpoint_path(policy: str, checkpoint: str) -> str:
    """The directory ``--checkpoint`` names for ``policy`` ('' = its shipped default)."""
    if policy == "pixelvla":
        from tracevla_ros.policy.pixelvla_small.checkpoint import resolve_checkpoint
    else:
        from tracevla_ros.policy.local.checkpoint import resolve_checkpoint

    return str(resolve_checkpoint(checkpoint))


_CONTROLLER = {"widowx": "widowx_controller_node", "fr3": "franka_controller_node"}


def _controller_class(robot: str) -> Any:
    if robot == "widowx":
        from tracevla_ros.nodes.widowx_controller_node import WidowXControllerNode

        return WidowXControllerNode
    from tracevla_ros.nodes.franka_controller_node import FrankaControllerNode

    return FrankaControllerNode


def node_values(params: dict[str, Any], node: str) -> dict[str, Any]:
    """``node``'s parameters in the params data: its own section over the ``/**`` one."""
    return node_params({k: v.get("ros__parameters", {}) for k, v in params.items()}, node)


def _command_topic(params: dict[str, Any], robot: str) -> str:
    node = "widowx_controller_node" if robot == "widowx" else "franka_controller_node"
    p = node_values(params, node)
    ctrl = p.get("trajectory_controller", p.get("arm_controller", "arm_controller"))
    return f"/{ctrl}/joint_trajectory"


def _topic_stats(recorder: Any) -> dict[str, dict[str, float | int | str]]:
    out: dict[str, dict[str, float | int | str]] = {}
    for topic, st in sorted(recorder.bag.stats.items()):
        out[topic] = {"type": st.msgtype, "count": st.count, "rate_hz": round(st.rate_hz(), 2)}
    return out


if __name__ == "__main__":
    sys.exit(main())
