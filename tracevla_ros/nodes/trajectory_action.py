"""The ``trajectory_action`` command interface both arm controllers share.

A ``control_msgs/action/FollowJointTrajectory`` client on
``/<arm_controller>/follow_joint_trajectory`` (ros2_control's joint_trajectory_controller,
JTC). Each command is one goal (one point, reached in ``step_period_s``) carrying the
configured path/goal tolerances and goal time tolerance.

Preemption: a new command is simply sent as a new goal; the previous one is NOT canceled
first. The JTC replaces the running goal itself (``preempt_active_goal``: the old goal ends
canceled or aborted with an empty, SUCCESSFUL result code), so the new trajectory starts from
where the arm is, without a cancel round trip and without the hold-position the JTC applies
between a cancel and the next goal (a jerk at every chunk step).

Failures: a server that is no longer there when a goal is due, a rejected goal, a result
with a non-SUCCESSFUL error code (path/goal tolerance violated, invalid goal/joints), or the
newest goal ending aborted, calls ``on_failure(why)``:
the controller node holds (its safety layer) and reports ``why`` on /diagnostics. The result
of a goal superseded by a newer one with a SUCCESSFUL code is the normal preemption and ignored.
A failure of a goal that was itself sent as a hold is reported but does not hold again (no
hold loop against a server that aborts everything).

No callback blocks: goals and results are handled through futures' done callbacks on the
node's single-threaded executor. Only the start-up ``wait_for_server`` waits (before spinning).
"""

from __future__ import annotations

from typing import Any, Callable

from rclpy.node import Node

from tracevla_ros.config import ConfigError
from tracevla_ros.nodes.arm_controller_node import trajectory_msg

# control_msgs/action/FollowJointTrajectory result error codes
_CODES = {0: "SUCCESSFUL", -1: "INVALID_GOAL", -2: "INVALID_JOINTS", -3: "OLD_HEADER_TIMESTAMP",
          -4: "PATH_TOLERANCE_VIOLATED", -5: "GOAL_TOLERANCE_VIOLATED"}


def _duration(t: float) -> Any:
    from builtin_interfaces.msg import Duration

    sec = int(t)
    return Duration(sec=sec, nanosec=int(round((t - sec) * 1e9)))


class TrajectoryActionSink:
    """Sends arm joint targets as FollowJointTrajectory goals (see the module docstring)."""

    def __init__(self, node: Node, controller: str, joint_names: list[str], step_period_s: float,
                 path_tolerance: float, goal_tolerance: float, goal_time_tolerance_s: float,
                 server_timeout_s: float, on_failure: Callable[[str], None]) -> None:
        try:
            from control_msgs.action import FollowJointTrajectory
            from control_msgs.msg import JointTolerance
            from rclpy.action import ActionClient
        except ImportError:
            raise ConfigError("interface 'trajectory_action' needs control_msgs (ros2_control's "
                              "interfaces: apt install ros-$ROS_DISTRO-control-msgs) or use "
                              "interface 'trajectory' (the JTC's topic)") from None
        self._node = node
        self._action = FollowJointTrajectory
        self._tol = JointTolerance
        self._names = list(joint_names)
        self._step = step_period_s
        self._path_tol, self._goal_tol = path_tolerance, goal_tolerance
        self._goal_time_tol = goal_time_tolerance_s
        self._on_failure = on_failure
        self.name = f"/{controller}/follow_joint_trajectory"
        self._client: Any = ActionClient(node, FollowJointTrajectory, self.name)
        if not self._client.wait_for_server(timeout_sec=server_timeout_s):
            self._client.destroy()
            raise ConfigError(f"no FollowJointTrajectory action server on {self.name} after "
                              f"{server_timeout_s} s (is '{controller}' loaded and active? "
                              "action_server_timeout_s sets the wait)")
        self._seq = 0  # number of the newest goal sent
        self._handles: dict[int, Any] = {}  # accepted goals whose result is pending
        # for /diagnostics
        self.sent = self.accepted = self.rejected = self.aborted = self.succeeded = 0
        self.preempted = 0
        self.last_error = ""

    def diagnostics(self) -> dict[str, str]:
        return {"action.server": self.name, "action.goals_sent": str(self.sent),
                "action.rejected": str(self.rejected), "action.aborted": str(self.aborted),
                "action.succeeded": str(self.succeeded), "action.preempted": str(self.preempted),
                "action.last_error": self.last_error or "none"}

    def send(self, q: Any, hold: bool = False) -> None:
        """New goal: arm joints at ``q`` [rad] in step_period_s; preempts the previous one.
        ``hold``: this goal is a safety hold (its failure does not hold again)."""
        self.send_points([list(q)], [self._step], hold)

    def send_points(self, points: list[list[float]], times: list[float], hold: bool = False) -> None:
        """New goal through ``points`` [rad] at ``times`` [s from now]."""
        traj = trajectory_msg(self._names, points, times, self._node.get_clock().now().to_msg())
        traj.header.stamp.sec = traj.header.stamp.nanosec = 0  # 0 = start now (JTC)
        goal = self._action.Goal(trajectory=traj, goal_time_tolerance=_duration(self._goal_time_tol))
        if self._path_tol > 0:
            goal.path_tolerance = [self._tol(name=n, position=self._path_tol) for n in self._names]
        if self._goal_tol > 0:
            goal.goal_tolerance = [self._tol(name=n, position=self._goal_tol) for n in self._names]
        self._seq += 1
        seq = self._seq
        if not self._client.server_is_ready():  # gone since start-up: the goal would hang
            self.rejected += 1
            self._fail(seq, hold, f"{self.name} not available (controller or driver gone?)")
            return
        self.sent += 1
        fut = self._client.send_goal_async(goal)
        fut.add_done_callback(lambda f: self._on_response(seq, hold, f))
        self._last_goal = fut

    def flush(self, timeout_s: float) -> bool:
        """Shutdown only (no executor is spinning then): spin the node's executor until the
        newest goal's response arrives; True when the server accepted it."""
        import time

        fut = getattr(self, "_last_goal", None)
        executor = self._node.executor
        if fut is None or executor is None:
            return False
        end = time.monotonic() + timeout_s
        while not fut.done() and time.monotonic() < end and self._node.context.ok():
            executor.spin_once(timeout_sec=0.02)
        return bool(fut.done() and fut.exception() is None and fut.result() is not None
                    and fut.result().accepted)

    def _fail(self, seq: int, hold: bool, why: str) -> None:
        self.last_error = why
        if hold:
            self._node.get_logger().error(f"{self.name}: the hold goal failed too: {why}")
            return
        self._on_failure(why)

    def _on_response(self, seq: int, hold: bool, fut: Any) -> None:
        exc = fut.exception()
        handle = fut.result() if exc is None else None
        if handle is None or not handle.accepted:
            self.rejected += 1
            if seq == self._seq:  # an older goal's rejection is moot: a newer one is out
                self._fail(seq, hold, f"goal rejected by {self.name}"
                           + (f" ({exc})" if exc is not None else ""))
            return
        self.accepted += 1
        self._handles[seq] = handle
        handle.get_result_async().add_done_callback(lambda f: self._on_result(seq, hold, f))

    def _on_result(self, seq: int, hold: bool, fut: Any) -> None:
        from action_msgs.msg import GoalStatus

        self._handles.pop(seq, None)
        wrapped = fut.result()
        if wrapped is None:
            return
        status, res = wrapped.status, wrapped.result
        code = int(res.error_code)
        if status == GoalStatus.STATUS_SUCCEEDED and code == 0:
            self.succeeded += 1
            return
        if code == 0 and seq != self._seq:
            self.preempted += 1  # replaced by a newer goal: the normal case between steps
            return
        self.aborted += 1  # the newest goal did not succeed, or a goal failed
        state = {GoalStatus.STATUS_ABORTED: "aborted",
                 GoalStatus.STATUS_CANCELED: "canceled"}.get(status, f"status {status}")
        self._fail(seq, hold, f"goal {state}: {_CODES.get(code, code)}"
                   + (f": {res.error_string}" if res.error_string else ""))

    def close(self) -> None:
        self._client.destroy()
