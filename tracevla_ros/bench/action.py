"""``tracevla-bench action``: sim_node's FollowJointTrajectory server, timed from a client.

Example::

    tracevla-bench action --robot widowx --trials 10

Needs control_msgs (ros2_control's interfaces; here the test-only stand-in of
test/standin_interfaces, see its README). Starts sim_node as its own process and measures,
in this process (wall clock, joint states at 100 Hz, so ~10 ms resolution):

- ``accept_to_motion``: goal accepted (goal response received) -> first joint state in
  which the waist moved by > 1 mrad;
- ``preemption``: a new goal sent while one runs -> the old goal's result (aborted,
  SUCCESSFUL code, as the JTC preempts), and -> the new goal accepted;
- ``abort_hold``: a goal aborted on its path tolerance -> the arm stopped (all joint speeds
  < 0.05 rad/s) after the result arrived, and how far it moved after the result [rad].

``checks`` gives the result codes of an invalid-joint goal, an unsorted goal and a goal
that cannot reach its goal tolerance (the tests assert on them).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tracevla_ros.cli import ArgParser, int_range
from tracevla_ros.loopstats import percentiles

_ROBOTS = {"widowx": ("widowx", "arm_controller"), "fr3": ("fr3", "fr3_arm_controller")}


def main(argv: list[str]) -> dict[str, Any]:
    ap = ArgParser("tracevla-bench action", description=__doc__)
    ap.add_argument("--robot", choices=sorted(_ROBOTS), default="widowx", help="robot to simulate")
    ap.add_argument("--trials", type=int_range(1, 10_000), default=10,
                    help="trials of each figure")
    args = ap.parse_args(argv)
    try:
        return _run(args)
    except RuntimeError as exc:
        print(f"tracevla-bench action: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _dur(t: float) -> Any:
    from builtin_interfaces.msg import Duration

    return Duration(sec=int(t), nanosec=int(round((t - int(t)) * 1e9)))


def _run(args: argparse.Namespace) -> dict[str, Any]:
    try:
        from control_msgs.action import FollowJointTrajectory
        from control_msgs.msg import JointTolerance
    except ImportError:
        raise RuntimeError("control_msgs is not installed (ros2_control; for the sim the "
                           "test-only stand-in: test/standin_interfaces/build.sh)") from None
    import rclpy
    from action_msgs.msg import GoalStatus
    from rclpy.action import ActionClient
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from tracevla_ros.bench.loop import start_process, stop_processes
    from tracevla_ros.nodes.common import RELIABLE_QOS
    from tracevla_ros.robots import get_robot

    robot, ctrl = _ROBOTS[args.robot]
    spec = get_robot(robot)
    names = list(spec.ros_joint_names)
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    env.setdefault("ROS_DOMAIN_ID", str(random.randint(10, 99)))
    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID")})
    logdir = Path(tempfile.mkdtemp(prefix="tracevla_action_"))
    sim_code = "import sys; from tracevla_ros.nodes.sim_node import main; sys.exit(main())"
    sim = start_process("sim_node", [sys.executable, "-c", sim_code, "--ros-args",
                                     "-p", f"robot:={robot}", "-p", f"arm_controller:={ctrl}",
                                     "-p", "joint_state_rate_hz:=100.0",
                                     "-p", "camera_rate_hz:=1.0"], logdir, env)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("action_bench", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    js: list[tuple[float, np.ndarray, np.ndarray]] = []

    def on_js(msg: JointState) -> None:
        js.append((time.monotonic(), np.asarray(msg.position[: spec.dof]),
                   np.asarray(msg.velocity[: spec.dof])))
        del js[:-2000]

    node.create_subscription(JointState, "/joint_states", on_js, RELIABLE_QOS)
    client: Any = ActionClient(node, FollowJointTrajectory, f"/{ctrl}/follow_joint_trajectory")

    def spin_until(cond: Callable[[], bool], timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            ex.spin_once(timeout_sec=0.005)
            if cond():
                return True
            if sim.popen.poll() is not None:
                raise RuntimeError(f"sim_node exited ({sim.popen.returncode}); log {sim.log}")
        return False

    def goal(q: Any, t: float, path_tol: float = 0.0, goal_tol: float = 0.0,
             goal_time: float = 0.0, joint_names: list[str] | None = None,
             times: list[float] | None = None) -> Any:
        jn = joint_names or names
        traj = JointTrajectory(joint_names=jn)
        for qq, tt in zip([q] if times is None else q, [t] if times is None else times):
            traj.points.append(JointTrajectoryPoint(positions=[float(v) for v in qq],
                                                    time_from_start=_dur(tt)))
        g = FollowJointTrajectory.Goal(trajectory=traj, goal_time_tolerance=_dur(goal_time))
        if path_tol:
            g.path_tolerance = [JointTolerance(name=n, position=path_tol) for n in jn]
        if goal_tol:
            g.goal_tolerance = [JointTolerance(name=n, position=goal_tol) for n in jn]
        return g

    def send(g: Any) -> tuple[Any, float]:
        fut = client.send_goal_async(g)
        if not spin_until(fut.done, 10.0) or fut.result() is None or not fut.result().accepted:
            raise RuntimeError("goal not accepted")
        return fut.result(), time.monotonic()

    def result(handle: Any, timeout: float = 15.0) -> tuple[int, int, float]:
        fut = handle.get_result_async()
        if not spin_until(fut.done, timeout):
            raise RuntimeError("no result")
        return fut.result().status, int(fut.result().result.error_code), time.monotonic()

    home = [float(v) for v in spec.home]

    def go_home() -> None:
        h, _ = send(goal(home, 1.0))
        result(h)
        spin_until(lambda: False, 0.3)

    try:
        if not spin_until(lambda: bool(js) and client.server_is_ready(), 90.0):
            raise RuntimeError(f"no sim_node action server / joint states; log {sim.log}")
        motion, preempt_result, preempt_accept, hold_s, drift = [], [], [], [], []
        for _ in range(args.trials):
            go_home()
            q0 = js[-1][1].copy()
            target = home.copy()
            target[0] += 0.3
            h, t_acc = send(goal(target, 1.0))
            spin_until(lambda: abs(js[-1][1][0] - q0[0]) > 1e-3, 5.0)
            moved = next((t for t, q, _ in js if t >= t_acc and abs(q[0] - q0[0]) > 1e-3), None)
            if moved is not None:
                motion.append(moved - t_acc)
            result(h)
        # preemption: a new goal while one runs; per-event timestamps
        for _ in range(args.trials):
            go_home()
            target = home.copy()
            target[0] += 0.3
            h, _ = send(goal(target, 2.0))
            spin_until(lambda: False, 0.3)
            res_fut = h.get_result_async()
            t_send = time.monotonic()
            f2 = client.send_goal_async(goal(home, 1.0))
            got: dict[str, float] = {}
            end = time.monotonic() + 10.0
            while len(got) < 2 and time.monotonic() < end:
                ex.spin_once(timeout_sec=0.002)
                if "old" not in got and res_fut.done():
                    got["old"] = time.monotonic()
                if "new" not in got and f2.done():
                    got["new"] = time.monotonic()
            if "old" in got and res_fut.result().status == GoalStatus.STATUS_ABORTED \
                    and int(res_fut.result().result.error_code) == 0:
                preempt_result.append(got["old"] - t_send)
            if "new" in got:
                preempt_accept.append(got["new"] - t_send)
                result(f2.result())
        # hold after a path-tolerance abort
        aborted_codes: list[int] = []
        for _ in range(args.trials):
            go_home()
            target = home.copy()
            target[0] += 0.6
            h, _ = send(goal(target, 0.3, path_tol=0.05))  # aborts mid-motion
            _status, err_code, t_res = result(h)
            aborted_codes.append(err_code)
            q_res = js[-1][1].copy()
            if spin_until(lambda: js[-1][0] > t_res and float(np.max(np.abs(js[-1][2]))) < 0.05, 5.0):
                hold_s.append(js[-1][0] - t_res)
                spin_until(lambda: False, 0.3)
                drift.append(float(np.max(np.abs(js[-1][1] - q_res))))
        # result codes
        go_home()
        checks: dict[str, int] = {}
        h, _ = send(goal([0.1], 0.5, joint_names=["nope"]))
        checks["unknown_joint"] = result(h)[1]
        h, _ = send(goal([home, home], 0.0, times=[0.5, 0.2]))
        checks["unsorted_times"] = result(h)[1]
        beyond = home.copy()
        beyond[0] = float(spec.upper[0]) + 0.5  # past the limit: the sim clips, never arrives
        h, _ = send(goal(beyond, 0.3, goal_tol=0.01, goal_time=0.3))
        checks["unreachable"] = result(h)[1]
        h, _ = send(goal(home, 0.5, goal_tol=0.05, goal_time=1.0))
        checks["reachable"] = result(h)[1]
        checks["path_tolerance"] = min(aborted_codes) if aborted_codes else 1
        return {"robot": spec.name, "trials": args.trials, "clock": "wall, this process",
                "joint_state_rate_hz": 100.0,
                "accept_to_motion": percentiles(motion),
                "preemption_old_result": percentiles(preempt_result),
                "preemption_new_accepted": percentiles(preempt_accept),
                "abort_hold": percentiles(hold_s),
                "abort_drift_rad_max": round(max(drift), 4) if drift else None,
                "checks": checks}
    finally:
        client.destroy()
        ex.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)
        stop_processes([sim], grace_s=20.0)
