"""The FR3 loop of ``tracevla-demo``: RGB-D sim camera -> tracegen_node -> IK -> FR3 sim.

Registered as the ``fr3`` entry point of group ``tracevla_ros.demos`` (``FR3_DEMO``,
``scripts/entry_points.cfg``): tracevla_ros's ``tracevla-demo`` finds it there and never
imports tracegen_ros.

    tracevla-demo --robot fr3 --task put_ball_in_box --out /tmp/demo_fr3
    tracevla-demo --robot fr3 --policy tracegen_oracle --out /tmp/demo_fr3_oracle

sim_node (MuJoCo, RGB-D at 10 Hz) -> tracegen_node (TraceGen checkpoint, or the oracle /
no-motion trace) -> ``ee_waypoints`` + gripper ``action`` -> franka_controller_node (IK +
safety) -> ``/fr3_arm_controller/joint_trajectory`` -> sim_node, plus recorder_node and a
monitor, as real rclpy nodes over DDS on loopback. tracegen_node predicts whenever the
previous trace has been executed; the demo stops at success, after ``--rounds`` traces or at
the timeout.

Threads: sim_node on its own thread with its own single-threaded executor (MuJoCo's EGL
context belongs to that thread); every other node on one ``SingleThreadedExecutor`` spun by
one thread. tracegen_node's prediction (seconds on a CPU) runs on its own worker thread, not
in a callback, so it does not hold that executor up.

Gripper: the real controller drives the Franka Hand through franka_gripper's Move/Grasp
actions (franka_msgs, part of franka_ros2, not shipped here). In this demo
franka_controller_node runs with ``gripper_namespace: ''`` and ``gripper_command_topic:
/sim_node/gripper_command``: the same open/close decisions (its gripper hysteresis on the
PolicyAction gripper value) reach sim_node's ``~/gripper_command`` (std_msgs/Float64
openness) instead. Where franka_msgs is installed, sim_node also serves Move/Grasp and the
controller's default configuration works unchanged.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Bool
from trajectory_msgs.msg import JointTrajectory

from tracevla_ros.msg import Trace3D
from tracevla_ros.nodes.common import RELIABLE_QOS, SENSOR_QOS, stamp_to_sec
from tracevla_ros.plugins import DemoPlugin
from tracevla_ros.ros_image import image_to_rgb
from tracevla_ros.tools.demo_monitor import start_when_matched, write_mp4
from tracevla_ros.stopping import StopRequest
from tracevla_ros.tools.demo import graph_node_args, node_values
from tracevla_ros.loopstats import percentiles
from tracevla_ros.cli import dumps_json, require, write_json_atomic
from tracevla_ros.tools.demo_stats import shutdown_nodes, timing_report

TRACEGEN_POLICIES = ("tracegen", "tracegen_oracle", "no_motion")
GRIPPER_TOPIC = "/sim_node/gripper_command"


def tracegen_params(data: dict[str, Any], policy: str, checkpoint: str) -> None:
    """Demo overrides of config/fr3.yaml for the TraceGen loop (in place)."""
    def section(node: str) -> dict[str, Any]:
        return data.setdefault(node, {"ros__parameters": {}})["ros__parameters"]
    ctrl = section("franka_controller_node")
    ctrl["gripper_namespace"] = ""
    ctrl["gripper_command_topic"] = GRIPPER_TOPIC
    section("sim_node")["franka_gripper_namespace"] = ""
    tg = section("tracegen_node")
    tg["predictor"] = "model" if policy == "tracegen" else "no_motion"
    if checkpoint:
        require(policy != "tracegen" or Path(checkpoint).expanduser().is_dir(),
                f"--checkpoint '{checkpoint}': not a directory; give a TraceGen checkpoint "
                "directory (model.safetensors + config.json)")
        tg["checkpoint"] = checkpoint
    tg["rate_hz"] = 1.0  # predict again whenever the previous trace has been executed
    # One time base: on a loaded machine the simulator runs slower than the wall clock, and a
    # trajectory's time_from_start is sim time. sim_node publishes /clock; the nodes that time
    # trajectories, watchdogs and segment ends follow it.
    section("sim_node")["stamp_source"] = "sim"
    for node in ("franka_controller_node", "tracegen_node"):
        section(node)["use_sim_time"] = True
    rec = section("recorder_node")
    rec["topics"] = list(dict.fromkeys(list(rec.get("topics", [])) + [
        "/trace3d", "/ee_waypoints", "/fr3_arm_controller/joint_trajectory", "/clock"]))


def _draw(rgb: np.ndarray, trace: np.ndarray | None) -> np.ndarray:
    out = rgb.copy()
    if trace is None:
        return out
    for k in range(trace.shape[0]):
        t = trace[k]
        ok = np.all(np.isfinite(t), axis=1)
        pts = t[ok, :2]
        if len(pts) < 2 or np.linalg.norm(pts[-1] - pts[0]) < 3.0:
            continue
        level = np.array([[k * 255 // trace.shape[0]]], np.uint8)
        col = tuple(int(c) for c in cv2.applyColorMap(level, cv2.COLORMAP_JET)[0, 0])
        cv2.polylines(out, [np.round(pts).astype(np.int32)], False, col, 1, cv2.LINE_AA)
    return out


class TraceGenMonitor(Node):
    """Counts traces and commands, measures latencies, records frames with the trace drawn."""

    def __init__(self, command_topic: str, max_frames: int = 3000, **kwargs: Any) -> None:
        super().__init__("demo_monitor", **kwargs)
        self.traces = 0
        self.commands = 0
        self.success_at_trace: int | None = None
        self._trace: np.ndarray | None = None
        self._trace_rx: float | None = None
        self.lat: dict[str, list[float]] = {"camera_to_trace": [], "trace_to_command": []}
        self._frames: list[np.ndarray] = []
        self._max = max_frames
        self._lock = threading.Lock()
        self.create_subscription(Trace3D, "/trace3d", self._on_trace3d, RELIABLE_QOS)
        self.create_subscription(Image, "/camera/image_raw", self._on_image, SENSOR_QOS)
        self.create_subscription(JointTrajectory, command_topic, self._on_command, RELIABLE_QOS)
        self.create_subscription(Bool, "/success", self._on_success, RELIABLE_QOS)

    def _now(self) -> float:
        return float(self.get_clock().now().nanoseconds) * 1e-9

    def _on_trace3d(self, msg: Trace3D) -> None:
        from tracegen_ros.ros_convert import trace_from_msg

        now = self._now()
        with self._lock:
            self.lat["camera_to_trace"].append(now - stamp_to_sec(msg.header.stamp))
            self._trace, self._trace_rx = trace_from_msg(msg), now
            self.traces += 1

    def _on_command(self, msg: JointTrajectory) -> None:
        with self._lock:
            self.commands += 1
            if self._trace_rx is not None:
                self.lat["trace_to_command"].append(self._now() - self._trace_rx)
                self._trace_rx = None

    def _on_image(self, msg: Image) -> None:
        with self._lock:
            if len(self._frames) < self._max:
                self._frames.append(_draw(image_to_rgb(msg), self._trace))

    def _on_success(self, msg: Bool) -> None:
        if msg.data and self.success_at_trace is None:
            self.success_at_trace = self.traces

    def latency(self) -> dict[str, dict[str, float | int]]:
        with self._lock:
            return {k: percentiles(v) for k, v in self.lat.items()}

    def write_video(self, path: Path, fps: float) -> int:
        with self._lock:
            frames = list(self._frames)
        return write_mp4(frames, path, fps)


def _oracle_predictor(task: str, seed: int) -> Any:
    """The scripted expert's own episode from ``seed``, through TraceForge (privileged)."""
    from tracegen_ros.execution import FixedTracePredictor
    from tracegen_ros.traceforge.pipeline import trace_from_frames
    from tracegen_ros.traceforge.simgt import record_expert
    from tracevla_ros.sim.env import SimEnv

    with SimEnv("fr3", task or None, seed=seed) as env:
        rec = record_expert(env, seed)
    return FixedTracePredictor(trace_from_frames(rec.rgb, rec.depth, rec.K)[0])


def run_tracegen_demo(args: Any, params: dict[str, Any], params_file: Path,
                      sim_thread_fn: Any, topic_stats: Any) -> int:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    out: Path = args.out
    # tracevla-demo's stop request (its signal handlers set it); passed in, since a module-level
    # one would be a second object when tracevla-demo runs as ``python -m`` (__main__)
    stop: StopRequest | None = getattr(args, "stop", None)
    if stop is None:
        stop = StopRequest()
    ctx = rclpy.Context()
    # parameters from the YAML; each node's remappings from tracevla_ros.graph (as the
    # launch file); stop signals are tracevla-demo's (args.stop), not rclpy's
    rclpy.init(args=["--ros-args", "--params-file", str(params_file)], context=ctx,
               signal_handler_options=SignalHandlerOptions.NO)
    node_args = graph_node_args("fr3")
    nodes: list[Any] = []
    # One thread for all nodes but sim_node; tracegen_node predicts on its own worker thread.
    executor = SingleThreadedExecutor(context=ctx)
    sim_box: dict[str, Any] = {}
    sim_ready, sim_stop = threading.Event(), threading.Event()
    sim_box["go"] = threading.Event()  # the sim publishes only once the recorder is matched
    sim_thread = threading.Thread(target=sim_thread_fn, args=(ctx, sim_box, sim_ready, sim_stop),
                                  name="sim_node", daemon=True)
    spin = threading.Thread(target=executor.spin, name="executor", daemon=True)
    summary: dict[str, Any] = {}
    monitor: TraceGenMonitor | None = None
    try:
        from tracegen_ros.nodes.tracegen_node import TraceGenNode
        from tracevla_ros.nodes.franka_controller_node import FrankaControllerNode
        from tracevla_ros.nodes.recorder_node import RecorderNode
        from tracevla_ros.nodes.tracker_node import TrackerNode

        sim_thread.start()
        sim_ready.wait(timeout=120.0)
        if "error" in sim_box:
            raise sim_box["error"]
        sim = sim_box["node"]
        predictor = None
        if args.policy == "tracegen_oracle":
            predictor = _oracle_predictor(sim.env.task.name, args.seed)
        from rclpy.parameter import Parameter

        monitor = TraceGenMonitor(command_topic="/fr3_arm_controller/joint_trajectory", context=ctx,
                                  parameter_overrides=[Parameter("use_sim_time", value=True)])
        recorder = RecorderNode(output=str(out / "bag"), context=ctx,
                                cli_args=node_args["recorder_node"])
        tracegen = TraceGenNode(predictor=predictor, context=ctx, cli_args=node_args["tracegen_node"])
        # the launch file's graph: tracker_node too (the 2D overlay /image_trace for rviz)
        tracker = TrackerNode(context=ctx, cli_args=node_args["tracker_node"])
        nodes += [monitor, recorder, tracegen, tracker,
                  FrankaControllerNode(context=ctx, cli_args=node_args["franka_controller_node"])]
        for n in nodes:
            executor.add_node(n)
        t0 = time.monotonic()
        start_when_matched(spin, [sim, *nodes], recorder, sim_box["go"])
        timeout = args.timeout or 60.0 * args.rounds + 60.0
        last_print = 0.0
        while time.monotonic() - t0 < timeout and not stop:
            time.sleep(0.1)
            if not spin.is_alive() or not sim_thread.is_alive():
                raise RuntimeError("a node crashed (see the traceback above); stopping the demo")
            if monitor.success_at_trace is not None:
                time.sleep(1.0)  # let the scene settle on camera
                break
            if tracegen.predictions >= args.rounds and not tracegen.busy:
                time.sleep(1.0)
                break
            if time.monotonic() - last_print > 5.0:
                last_print = time.monotonic()
                print(f"[demo] {tracegen.predictions} traces, {monitor.commands} arm commands, "
                      f"{time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
        wall = time.monotonic() - t0
        summary = {
            "robot": "fr3", "task": sim.env.task.name, "instruction": sim.env.instruction,
            "policy": args.policy,
            "policy_note": {
                "tracegen": f"TraceGen checkpoint {params['tracegen_node']['ros__parameters']['checkpoint']}",
                "tracegen_oracle": "oracle: the scripted expert's own episode (privileged simulator "
                                   "state) through TraceForge; not a learned model",
                "no_motion": "baseline: nothing moves"}[args.policy],
            "seed": args.seed, "rounds_requested": args.rounds, "traces": tracegen.predictions,
            "arm_commands": monitor.commands,
            "success": monitor.success_at_trace is not None or bool(sim.env.success()),
            "success_at_trace": monitor.success_at_trace, "success_at_end": bool(sim.env.success()),
            "wall_time_s": round(wall, 2), "stopped_by": stop.reason or None,
            "latency": monitor.latency(),
            "gripper_interface": f"franka_controller_node -> {GRIPPER_TOPIC} (std_msgs/Float64)",
            "topics": topic_stats(recorder),
            "outputs": {"overlay": "overlay.mp4", "bag": "bag", "params": "params.yaml"},
        }
    finally:
        shutdown_nodes(executor, spin, sim_stop, nodes, sim_thread, ctx)
    if monitor is not None:
        summary["outputs"]["overlay_frames"] = monitor.write_video(out / "overlay.mp4", fps=10.0)
    cam_hz = float(node_values(params, "sim_node").get("camera_rate_hz", 10.0))
    summary["timing"] = timing_report(summary["topics"], {
        "/camera/image_raw": cam_hz, "/camera/depth/image_raw": cam_hz}, summary["latency"])
    for line in summary["timing"]["warnings"]:
        print(f"tracevla-demo: warning: {line}", file=sys.stderr)
    write_json_atomic(out / "summary.json", summary)
    print(dumps_json({k: summary[k] for k in ("robot", "task", "policy", "traces", "success",
                                              "success_at_end", "wall_time_s")}, indent=None))
    if stop:
        print(f"tracevla-demo: stopped by {stop.reason} after {summary.get('traces')} traces; "
              f"bag, summary and video written to {out}", file=sys.stderr)
        return stop.exit_code
    return 0


FR3_DEMO = DemoPlugin(policies=TRACEGEN_POLICIES, loop="runs the TraceGen loop",
                      configure=tracegen_params, run=run_tracegen_demo)

__all__ = ["FR3_DEMO", "TRACEGEN_POLICIES", "run_tracegen_demo", "tracegen_params"]
