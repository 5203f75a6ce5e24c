"""``tracevla-bench loop``: the closed loop as a user runs it, measured from outside.

Examples::

    tracevla-bench loop --robot widowx --seconds 30 --hog 1            # tracevla-demo, one process
    tracevla-bench loop --robot widowx --seconds 30 --hog 1 --launch   # one process per node
    tracevla-bench loop --robot fr3 --seconds 30 --launch

Starts the simulated stack with default parameters (``config/<robot>.yaml``, the
default policy), either as ``tracevla-demo`` (every node in one process) or, with
``--launch``, as one process per node of ``tracevla_ros.graph`` (what
``ros2 launch tracevla_ros <robot>.launch.py use_sim:=true record:=true`` starts,
without needing ``launch``). ``--hog N`` keeps N cores busy with other processes
meanwhile. An observer node in this process timestamps every message of the loop
(raw subscriptions: header stamps only). After the loop's first action and
``--warmup`` seconds, it measures for ``--seconds`` and prints one JSON object:

- ``topics``: configured vs achieved rate, ``ratio``, frames ``dropped`` (missing
  periods between consecutive stamps) per topic;
- ``latency``: per stage and end to end (camera stamp -> arm command), p50/p95/max ms;
- ``processes``: CPU % (of one core) and RSS per process (per node with ``--launch``),
  their exit codes and time to exit (``stop_s``) after the SIGINT that stops them (as a
  terminal's Ctrl-C), and whether any printed a traceback;
- ``real_time``: camera and policy rates within 2 % of the configured ones.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tracevla_ros.cli import ArgParser, finite_float, int_range, output_dir, require
from tracevla_ros.graph import graph
from tracevla_ros.loopstats import Stage, stage_latencies, stamps_are_wall_time, topic_rates
from tracevla_ros.tools.demo import demo_params, node_values

RATE_TOLERANCE = 0.02  # the goal: camera and policy within 2 % of their configured rates

# topic -> (ROS type, sensor QoS?) watched per robot; the command topics are the sim's inputs
_TOPICS: dict[str, dict[str, tuple[str, bool]]] = {
    "widowx": {
        "/camera/image_raw": ("sensor_msgs/msg/Image", True),
        "/joint_states": ("sensor_msgs/msg/JointState", False),
        "/trace": ("tracevla_ros/msg/VisualTrace", False),
        "/image_trace": ("sensor_msgs/msg/Image", True),
        "/policy/action": ("tracevla_ros/msg/PolicyAction", False),
        "/arm_controller/joint_trajectory": ("trajectory_msgs/msg/JointTrajectory", False),
    },
    "fr3": {
        "/camera/image_raw": ("sensor_msgs/msg/Image", True),
        "/camera/depth/image_raw": ("sensor_msgs/msg/Image", True),
        "/joint_states": ("sensor_msgs/msg/JointState", False),
        "/trace": ("tracevla_ros/msg/VisualTrace", False),
        "/trace3d": ("tracevla_ros/msg/Trace3D", False),
        "/ee_waypoints": ("geometry_msgs/msg/PoseArray", False),
        "/fr3_arm_controller/joint_trajectory": ("trajectory_msgs/msg/JointTrajectory", False),
    },
}
_STAGES: dict[str, tuple[Stage, ...]] = {
    "widowx": (
        Stage("camera_to_observer", "/camera/image_raw", "/camera/image_raw", "stamp"),
        Stage("camera_to_tracker", "/trace", "/trace", "stamp"),
        Stage("tracker_to_policy", "/trace", "/policy/action", "same_stamp"),
        Stage("policy_to_command", "/policy/action", "/arm_controller/joint_trajectory", "next"),
        Stage("end_to_end", "/policy/action", "/arm_controller/joint_trajectory", "next_stamp"),
    ),
    "fr3": (
        Stage("camera_to_observer", "/camera/image_raw", "/camera/image_raw", "stamp"),
        Stage("camera_to_tracker", "/trace", "/trace", "stamp"),
        Stage("camera_to_trace3d", "/trace3d", "/trace3d", "stamp"),
        Stage("trace3d_to_waypoints", "/trace3d", "/ee_waypoints", "next"),
        Stage("waypoints_to_command", "/ee_waypoints", "/fr3_arm_controller/joint_trajectory", "next"),
        Stage("end_to_end", "/trace3d", "/fr3_arm_controller/joint_trajectory", "next_stamp"),
    ),
}
# the topic whose first message means "the loop runs", and the policy's output topic
_READY = {"widowx": "/policy/action", "fr3": "/camera/image_raw"}
_POLICY_TOPIC = {"widowx": "/policy/action", "fr3": None}


class LoopBenchError(RuntimeError):
    pass


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    cpu0: float = 0.0
    t0: float = 0.0
    cpu_percent: float | None = None
    rss_mb: float | None = None
    stop_s: float | None = None  # SIGINT -> exit [s]; None = killed after the grace period


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def node_command(executable: str) -> list[str]:
    """How to run a node executable of the stack with this interpreter (its console script's
    module and function), so the bench needs neither ``ros2 run`` nor a colcon install."""
    for ep in importlib.metadata.entry_points(group="console_scripts"):
        if ep.name == executable:
            module, func = ep.value.split(":")
            return [sys.executable, "-c", f"import sys; from {module} import {func}; sys.exit({func}())"]
    path = shutil.which(executable)
    if path is None:
        raise LoopBenchError(f"node executable '{executable}' not found (no console script and "
                             "not on PATH); install the package (./run setup or colcon build)")
    return [path]


def _configured(params: dict[str, Any], robot: str) -> dict[str, float | None]:
    def p(node: str, key: str, default: float) -> float:  # the node's section over /**
        return float(node_values(params, node).get(key, default))

    cam = p("sim_node", "camera_rate_hz", 10.0)
    js = p("sim_node", "joint_state_rate_hz", 50.0)
    ctrl = p("tracker_node", "control_rate_hz", 5.0)
    if robot == "widowx":
        return {"/camera/image_raw": cam, "/joint_states": js, "/trace": ctrl, "/image_trace": ctrl,
                "/policy/action": p("policy_node", "control_rate_hz", ctrl),
                "/arm_controller/joint_trajectory": None}
    return {"/camera/image_raw": cam, "/camera/depth/image_raw": cam, "/joint_states": js,
            "/trace": ctrl, "/trace3d": None, "/ee_waypoints": None,
            "/fr3_arm_controller/joint_trajectory": None}


def start_hogs(n: int) -> list[subprocess.Popen[bytes]]:
    """``n`` CPU-bound processes: another program keeping cores busy, as on a user's machine."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop_hogs(hogs: list[subprocess.Popen[bytes]]) -> None:
    for hog in hogs:
        hog.kill()
        hog.wait()


def start_process(name: str, cmd: list[str], logdir: Path, env: dict[str, str]) -> Proc:
    log = logdir / f"{name}.log"
    fh = log.open("wb")
    popen = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env,
                             start_new_session=True)
    fh.close()
    return Proc(name, popen, log)


def stop_processes(procs: list[Proc], grace_s: float = 60.0) -> None:
    """Ctrl-C as a terminal sends it (SIGINT to each process group), then SIGKILL after
    ``grace_s``; each process's time from SIGINT to exit goes into ``stop_s``."""
    t0 = time.monotonic()
    for p in procs:
        if p.popen.poll() is None:
            os.killpg(p.popen.pid, signal.SIGINT)
    end = t0 + grace_s
    pending = [p for p in procs if p.popen.poll() is None]
    while pending and time.monotonic() < end:
        for p in [p for p in pending if p.popen.poll() is not None]:
            p.stop_s = round(time.monotonic() - t0, 2)
            pending.remove(p)
        time.sleep(0.05)
    for p in pending:
        os.killpg(p.popen.pid, signal.SIGKILL)
        p.popen.wait()


def main(argv: list[str]) -> dict[str, Any]:
    ap = ArgParser("tracevla-bench loop", description=__doc__)
    ap.add_argument("--robot", choices=sorted(_TOPICS), default="widowx", help="robot to simulate")
    ap.add_argument("--seconds", type=finite_float(gt=0, le=86400), default=30.0,
                    help="measured time [s]")
    ap.add_argument("--warmup", type=finite_float(ge=0, le=3600), default=5.0,
                    help="seconds after the loop's first output before measuring")
    ap.add_argument("--launch", action="store_true",
                    help="one process per node (the launch file's layout) instead of tracevla-demo")
    ap.add_argument("--policy", choices=("", "pixelvla", "local"), default="",
                    help="widowx: the policy ('' = the demo's default, pixelvla; local = the "
                         "trace-prompted network, one action per step)")
    ap.add_argument("--hog", type=int_range(0, 64), default=0,
                    help="CPU-bound processes kept running meanwhile (1 = one core busy)")
    ap.add_argument("--start-timeout", type=finite_float(gt=0, le=3600), default=240.0,
                    help="seconds to wait for the loop's first output")
    ap.add_argument("--keep", type=output_dir, default=None,
                    help="keep the logs, params and bag in this new directory (default: a temp dir)")
    args = ap.parse_args(argv)
    require(args.keep is None or not args.keep.exists(),
            f"--keep {args.keep} already exists; choose a new path")
    work = args.keep or Path(tempfile.mkdtemp(prefix="tracevla_loop_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _run(args, work)
    except LoopBenchError as exc:  # one line, exit 2: the stack did not come up
        print(f"tracevla-bench loop: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from tracevla_ros.tools.loop_observer import LoopObserver

    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")
    env.setdefault("ROS_DOMAIN_ID", str(random.randint(10, 99)))
    env.setdefault("MUJOCO_GL", "egl")
    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID")})
    robot = args.robot
    require(not args.policy or robot == "widowx", f"--policy {args.policy}: widowx only")
    params = demo_params(robot, policy=args.policy)
    # the recording goes to the work dir: set in the node's own section (a ``-p`` on the command
    # line would lose to it; rcl lets a params file's node section win over the wildcard)
    params.setdefault("recorder_node", {"ros__parameters": {}})["ros__parameters"]["output"] = \
        str(work / "bag")
    params_file = work / "params.yaml"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    configured = _configured(params, robot)

    ctx = rclpy.Context()
    rclpy.init(context=ctx, signal_handler_options=SignalHandlerOptions.NO)
    observer = LoopObserver(_TOPICS[robot], context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(observer)
    spin = threading.Thread(target=executor.spin, name="observer", daemon=True)
    spin.start()
    hogs = start_hogs(args.hog)
    procs: list[Proc] = []
    try:
        if args.launch:
            for spec in graph(robot, sim=True, record=True, viz=True):
                cmd = node_command(spec.executable) + ["--ros-args", "--params-file", str(params_file),
                                                       *spec.ros_args()]
                procs.append(start_process(spec.name, cmd, work, env))
        else:
            cmd = [sys.executable, "-m", "tracevla_ros.tools.demo", "--robot", robot,
                   *(["--policy", args.policy] if args.policy else []),
                   "--steps", "100000", "--rounds", "1000", "--out", str(work / "demo"),
                   "--timeout", str(args.start_timeout + args.warmup + args.seconds + 600)]
            procs.append(start_process("tracevla-demo", cmd, work, env))
        ready = _READY[robot]
        end = time.monotonic() + args.start_timeout
        while observer.count(ready) == 0:
            if time.monotonic() > end:
                raise LoopBenchError(f"no message on {ready} within {args.start_timeout:.0f} s; "
                                     f"logs: {work}" + ("" if args.keep else " (use --keep)"))
            dead = [p for p in procs if p.popen.poll() is not None]
            if dead:
                tail = dead[0].log.read_text(errors="replace")[-2000:]
                raise LoopBenchError(f"{dead[0].name} exited with {dead[0].popen.returncode} "
                                     f"before the loop ran:\n{tail}")
            time.sleep(0.1)
        time.sleep(args.warmup)
        t_start = time.time()
        for p in procs:
            p.cpu0, p.t0 = _cpu_seconds(p.popen.pid), time.monotonic()
        end_m = time.monotonic() + args.seconds
        while time.monotonic() < end_m and all(p.popen.poll() is None for p in procs):
            time.sleep(0.1)
        t_end = time.time()
        for p in procs:
            if p.popen.poll() is None:
                p.cpu_percent = round(100.0 * (_cpu_seconds(p.popen.pid) - p.cpu0)
                                      / (time.monotonic() - p.t0), 1)
                p.rss_mb = round(_rss_mb(p.popen.pid), 1)
        load = os.getloadavg()
    finally:
        stop_processes(procs)
        stop_hogs(hogs)
        executor.shutdown(timeout_sec=2.0)
        spin.join(timeout=5.0)
        observer.destroy_node()
        rclpy.try_shutdown(context=ctx)

    data = observer.snapshot()
    window = (t_start, t_end)
    topics = {t: topic_rates(data.get(t, []), configured.get(t), window) for t in _TOPICS[robot]}
    checks = {"camera": topics["/camera/image_raw"]}
    policy_topic = _POLICY_TOPIC[robot]
    if policy_topic is not None:
        checks["policy"] = topics[policy_topic]
    real_time = {k: (v["ratio"] is not None and abs(float(v["ratio"]) - 1.0) <= RATE_TOLERANCE)
                 for k, v in checks.items()}
    processes = {}
    for p in procs:
        text = p.log.read_text(errors="replace")
        processes[p.name] = {"cpu_percent": p.cpu_percent, "rss_mb": p.rss_mb,
                             "exit_code": p.popen.returncode, "stop_s": p.stop_s,
                             "traceback": "Traceback" in text}
    return {
        "benchmark": "loop", "robot": robot,
        "layout": "one process per node (launch graph)" if args.launch else "tracevla-demo (one process)",
        "policy": str(node_values(params, "policy_node").get("backend", "")) if robot == "widowx"
        else "tracegen",
        "seconds": round(t_end - t_start, 2), "warmup_s": args.warmup, "hog_processes": args.hog,
        "load_average_1min": round(load[0], 2),
        "topics": topics,
        "stamps": ("wall clock: latencies from the camera frame's stamp"
                   if stamps_are_wall_time(data.get("/camera/image_raw", [])) else
                   "sim time: latencies from the observer's receipt of the camera frame"),
        "latency": stage_latencies(data, _STAGES[robot], window),
        "processes": processes,
        "real_time": {**real_time, "tolerance": RATE_TOLERANCE},
    }
