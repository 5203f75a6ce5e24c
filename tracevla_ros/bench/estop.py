"""``tracevla-bench estop``: how fast the arm holds, in the deployed process layout.

Example::

    tracevla-bench estop --robot widowx --trials 30 --action-rate 50 --hog 1

Starts the robot's controller node as its own process (as ``ros2 launch`` does, one
single-threaded executor), feeds it joint states (50 Hz) and actions at
``--action-rate`` Hz so it keeps solving IK, and measures from this process:

- ``estop``: ``~/estop`` request sent -> the hold command (the measured position)
  received on the arm's command topic, and -> the service response; ``--trials``
  times, with ``~/reset`` in between;
- ``watchdog``: last action sent -> the watchdog's hold command, minus the configured
  ``watchdog_timeout_s`` (how late the watchdog acts).

Prints p50/p95/max in ms for each.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tracevla_ros.cli import ArgParser, finite_float, int_range
from tracevla_ros.config import config_dir
from tracevla_ros.loopstats import percentiles

# The FR3 controller shares the e-stop and watchdog code (ArmControllerNodeBase), but its arm
# follows TraceGen's ee_waypoints, not PolicyAction deltas: the action stream here would not
# load it, and its commands could not be told from holds. So the bench drives the WidowX one.
_ROBOTS = {"widowx": ("widowx_controller_node", "widowx250s", "/arm_controller/joint_trajectory",
                      "widowx.yaml")}


def main(argv: list[str]) -> dict[str, Any]:
    ap = ArgParser("tracevla-bench estop", description=__doc__)
    ap.add_argument("--robot", choices=sorted(_ROBOTS), default="widowx", help="robot to simulate")
    ap.add_argument("--trials", type=int_range(1, 10_000), default=30, help="e-stop requests")
    ap.add_argument("--watchdog-trials", type=int_range(0, 1000), default=5,
                    help="watchdog holds")
    ap.add_argument("--action-rate", type=finite_float(gt=0, le=1000), default=50.0,
                    help="actions per second sent meanwhile, each an IK solve")
    ap.add_argument("--hog", type=int_range(0, 64), default=0,
                    help="CPU-bound processes meanwhile")
    args = ap.parse_args(argv)
    try:
        return _run(args)
    except RuntimeError as exc:  # the controller did not come up or answer: one line, exit 2
        print(f"tracevla-bench estop: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _run(args: argparse.Namespace) -> dict[str, Any]:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions
    from sensor_msgs.msg import JointState
    from std_srvs.srv import Trigger
    from trajectory_msgs.msg import JointTrajectory

    from tracevla_ros.bench.loop import (node_command, start_hogs, start_process, stop_hogs,
                                         stop_processes)
    from tracevla_ros.msg import PolicyAction
    from tracevla_ros.nodes.common import RELIABLE_QOS
    from tracevla_ros.robots import get_robot

    exe, robot, cmd_topic, yaml_name = _ROBOTS[args.robot]
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    env.setdefault("ROS_DOMAIN_ID", str(random.randint(10, 99)))
    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID")})
    spec = get_robot(robot)
    q0 = [float(v) for v in spec.home]
    from tracevla_ros.config import load_params_file, node_params

    params = node_params(load_params_file(config_dir() / yaml_name), exe)
    watchdog_s = float(params.get("watchdog_timeout_s", 1.0))
    base_frame = str(params.get("base_frame", ""))

    # the parameters tracevla-demo runs the controller with
    from tracevla_ros.tools.demo import demo_params

    params_file = Path(tempfile.mkdtemp(prefix="tracevla_estop_")) / "params.yaml"
    params_file.write_text(yaml.safe_dump(demo_params(args.robot), sort_keys=False))
    proc = start_process(exe, node_command(exe) + ["--ros-args", "--params-file", str(params_file),
                                                   "-r", "action:=/policy/action"],
                         params_file.parent, env)
    hogs = start_hogs(args.hog)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("estop_bench", context=ctx)
    holds: list[float] = []  # rx times of commands at the measured position
    lock = threading.Lock()

    def on_cmd(msg: JointTrajectory) -> None:
        pos = np.asarray(msg.points[-1].positions[: len(q0)])
        if np.allclose(pos, q0, atol=1e-6):
            with lock:
                holds.append(time.monotonic())

    node.create_subscription(JointTrajectory, cmd_topic, on_cmd, RELIABLE_QOS)
    js_pub = node.create_publisher(JointState, "/joint_states", RELIABLE_QOS)
    act_pub = node.create_publisher(PolicyAction, "/policy/action", RELIABLE_QOS)
    estop: Any = node.create_client(Trigger, f"/{exe}/estop")
    reset: Any = node.create_client(Trigger, f"/{exe}/reset")
    sending = threading.Event()
    sending.set()
    last_action = [0.0]

    def publish_state() -> None:
        msg = JointState(name=list(spec.ros_joint_names), position=q0)
        msg.header.stamp = node.get_clock().now().to_msg()
        js_pub.publish(msg)

    def publish_action() -> None:
        if not sending.is_set():
            return
        msg = PolicyAction(action_space="ee_delta_7d", chunk_length=1, action_dim=7,
                           values=[0.005, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0])
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.header.frame_id = base_frame
        act_pub.publish(msg)
        last_action[0] = time.monotonic()

    node.create_timer(0.02, publish_state)
    node.create_timer(1.0 / args.action_rate, publish_action)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    spin = threading.Thread(target=ex.spin, daemon=True)
    spin.start()

    def call(client: Any) -> float:
        t = time.monotonic()
        fut = client.call_async(Trigger.Request())
        end = t + 10.0
        while not fut.done() and time.monotonic() < end:
            time.sleep(0.0005)
        if not fut.done():
            raise RuntimeError(f"{client.srv_name} did not answer within 10 s")
        return time.monotonic() - t

    def wait_hold(after: float, timeout: float = 5.0) -> float | None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with lock:
                later = [h for h in holds if h > after]
            if later:
                return later[0]
            time.sleep(0.0005)
        return None

    estop_hold: list[float] = []
    estop_resp: list[float] = []
    wd_late: list[float] = []
    try:
        if not estop.wait_for_service(timeout_sec=60.0) or not reset.wait_for_service(timeout_sec=10.0):
            raise RuntimeError(f"{exe} did not come up within 60 s")
        time.sleep(2.0)  # joint states and actions flowing
        for _ in range(args.trials):
            time.sleep(0.3 + random.random() * 0.2)  # mid-stream, at a random phase
            t = time.monotonic()
            estop_resp.append(call(estop))
            h = wait_hold(t)
            if h is not None:
                estop_hold.append(h - t)
            call(reset)
        for _ in range(args.watchdog_trials):
            time.sleep(1.0)
            sending.clear()
            time.sleep(0.05)
            t = last_action[0]
            h = wait_hold(t, timeout=watchdog_s + 5.0)
            if h is not None:
                wd_late.append(h - t - watchdog_s)
            sending.set()
    finally:
        stop_processes([proc], grace_s=20.0)
        stop_hogs(hogs)
        ex.shutdown(timeout_sec=2.0)
        spin.join(timeout=5.0)
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
    return {
        "benchmark": "estop", "robot": args.robot, "controller": exe,
        "layout": "controller in its own process, single-threaded executor",
        "action_rate_hz": args.action_rate, "hog_processes": args.hog,
        "estop_request_to_hold_command": percentiles(estop_hold),
        "estop_request_to_response": percentiles(estop_resp),
        "estop_trials": args.trials, "estop_holds_seen": len(estop_hold),
        "watchdog_timeout_s": watchdog_s,
        "watchdog_hold_after_timeout": percentiles(wd_late),
        "watchdog_trials": args.watchdog_trials,
        "controller_exit_code": proc.popen.returncode,
    }
