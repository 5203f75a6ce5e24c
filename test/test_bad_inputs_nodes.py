"""Bad parameters of the node executables: one line naming the input, exit status 2, no
traceback, nothing started (issue: every bad input gets one clear line and a safe state).

The table runs each node's entry point in-process (``check_in_process``): the parameters
are checked before ROS starts, so most cases never init rclpy; the few refused by a node's
constructor (a controller given another robot, a missing bag) init and shut down the
default context. A handful run as the real executables. Then what must hold around them:
the shipped configs and a launch's override file pass the strict checks, a controller
with a bad config never commands the arm, and a failure inside a running controller is
one error line and a hold command, never a traceback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from support.bad_input import Case, check_in_process, run_subprocess
from tracevla_ros.config import STACK_NODE_CONFIGS, ConfigError

REPO = Path(__file__).resolve().parent.parent
WIDOWX_YAML = REPO / "config" / "widowx.yaml"
FR3_YAML = REPO / "config" / "fr3.yaml"


def _file(text: str, name: str = "p.yaml") -> Callable[[Path], None]:
    """A setup that writes ``text`` to ``{tmp}/<name>``."""
    def setup(tmp: Path) -> None:
        (tmp / name).write_text(text)
    return setup


def _section(node: str, body: str, pattern: str | None = None) -> Callable[[Path], None]:
    lines = "".join(f"    {ln}\n" for ln in body.splitlines())
    return _file(f"{pattern or node}:\n  ros__parameters:\n{lines}")


def _binary(tmp: Path) -> None:
    (tmp / "p.yaml").write_bytes(bytes(range(256)) * 4)


PF = "--ros-args --params-file {tmp}/p.yaml"
T, S, W, F = "tracker_node", "sim_node", "widowx_controller_node", "franka_controller_node"

CASES = [
    # --- unknown keys (ROS ignores them; the nodes must not)
    Case(f"{T} {PF}", 2, "unknown parameter 'lk_windw'", _section(T, "lk_windw: 13"),
         "unknown key, node section"),
    Case(f"{T} {PF}", 2, "did you mean 'lk_window'", _section(T, "lk_windw: 13"),
         "unknown key: the near miss is named"),
    Case(f"{T} {PF}", 2, "no node of the stack declares it",
         _section(T, "lk_windw: 13", "/**"), "unknown key in /** (no node declares it)"),
    Case(f"{T} --ros-args -p lk_windw:=13", 2, "unknown parameter 'lk_windw'", None,
         "unknown key, -p"),
    Case(f"{T} {PF}", 2, "unknown parameter 'base_frame'", _section(T, "base_frame: x"),
         "another node's key in this node's own section"),
    Case(f"{F} {PF} -r __ns:=/arm", 2, "unknown parameter 'grasp_forse'",
         _section(F, "grasp_forse: 10.0", "/arm/franka_controller_node"),
         "unknown key, namespaced section"),
    Case(f"{S} --ros-args -p use_sim_tim:=true", 2, "did you mean 'use_sim_time'", None,
         "unknown key near a ROS built-in"),
    # --- types
    Case(f"{T} {PF}", 2, "'lk_window' expects int, got str 'two'",
         _section(T, "lk_window: \"two\""), "wrong type (str for int)"),
    Case(f"{T} --ros-args -p lk_window:=two", 2, "'lk_window' expects int", None,
         "wrong type, -p"),
    Case(f"{T} --ros-args -p lk_window:=11.0", 2, "without a decimal point", None,
         "float for int"),
    Case(f"{W} --ros-args -p robot_name:=5", 2, "quote it", None, "number for str"),
    Case(f"{S} --ros-args -p use_sim_time:=maybe", 2, "'use_sim_time' expects bool", None,
         "ROS built-in of the wrong type"),
    Case(f"{T} --ros-args -p kappa_px:=[1.0]", 2, "'kappa_px' expects float", None,
         "list for a scalar"),
    Case("recorder_node --ros-args -p topics:=[1,2]", 2, "'topics' expects str[]", None,
         "wrong element type"),
    Case(f"{T} --ros-args -p kappa_px:=[]", 2, "cannot type an empty list", None,
         "[] that ROS would turn into the default"),
    Case(f"trace_viz_node {PF}", 2, "mixes float and int",
         _section("trace_viz_node", "camera_xyz: [0, 0.5, 1]"), "mixed list (rcl refuses)"),
    Case(f"{T} --ros-args -p 'lk_window:={{a: 1}}'", 2, "'lk_window' is a mapping", None,
         "a mapping as a -p value"),
    # --- non-finite floats
    Case(f"{T} --ros-args -p lk_epsilon:=nan", 2, "expects a finite float, got nan", None,
         "NaN, -p"),
    Case(f"{T} {PF}", 2, "expects a finite float, got inf", _section(T, "lk_epsilon: .inf"),
         "inf, file"),
    Case(f"{W} --ros-args -p step_period_s:=nan", 2, "'step_period_s' expects a finite", None,
         "NaN for a controller"),
    Case(f"{W} --ros-args -p max_ee_speed:=inf", 2, "'max_ee_speed' expects a finite", None,
         "inf for a safety limit"),
    Case(f"{W} --ros-args -p workspace_max:=[0.5,.inf,0.4]", 2, "expects finite floats", None,
         "inf inside a list"),
    # --- ranges and cross-field checks
    Case(f"{T} --ros-args -p lk_window:=4", 2, "odd number >= 5 (got 4)", None, "out of range"),
    Case(f"{S} --ros-args -p camera_rate_hz:=500.0", 2, "'camera_rate_hz' must be in", None,
         "cross-field (camera above physics rate)"),
    Case(f"{W} --ros-args -p workspace_min:=[0.1,0.2]", 2, "workspace_min", None,
         "wrong list length"),
    Case("policy_node --ros-args -p server_port:=70000", 2, "[1, 65535], got 70000", None,
         "port out of range"),
    Case("policy_node --ros-args -p prompt_max_age_s:=-1.0", 2, "0 = never expires", None,
         "negative age"),
    Case("camera_node --ros-args -p fps:=0.0", 2, "'fps' must be > 0", None, "zero rate"),
    Case("bag_player_node --ros-args -p rate:=-1.0", 2, "'rate' must be in", None,
         "negative playback rate"),
    Case("trace_viz_node --ros-args -p camera_quat_xyzw:=[0.0,0.0,0.0,0.0]", 2,
         "unit quaternion", None, "zero quaternion"),
    Case("tracegen_node --ros-args -p predictor:=no_motion -p T_base_cam:=[1.0,2.0]", 2,
         "'T_base_cam' needs 16 values", None, "wrong matrix size"),
    Case(f"{T} --ros-args --params-file {WIDOWX_YAML} -p lk_window:=13", 2,
         "-p tracker_node:lk_window:=", None, "a -p that the file's node section overrides"),
    # --- names: backends, robots, tasks
    Case(f"{T} --ros-args -p backend:=foo", 2, "'backend' must be one of", None,
         "unknown tracker backend"),
    Case("camera_node --ros-args -p backend:=foo", 2, "'backend' must be one of", None,
         "unknown camera backend"),
    Case("recorder_node --ros-args -p compression:=brotli", 2, "none, zstd or lz4", None,
         "unknown compression"),
    Case("tracegen_node --ros-args -p predictor:=oracle", 2, "'predictor' must be one of",
         None, "unknown predictor"),
    Case(f"{S} --ros-args -p robot:=ur5", 2, "unknown robot 'ur5'", None, "unknown robot"),
    Case("tracegen_node --ros-args -p robot:=ur5 -p predictor:=no_motion", 2,
         "unknown robot 'ur5'", None, "unknown robot (tracegen)"),
    Case(f"{S} --ros-args -p task:=fly", 2, "tasks of 'widowx250s'", None, "unknown task"),
    Case(f"{S} --ros-args -p oracle_prompt:=arrow", 2, "'oracle_prompt' must be one of", None,
         "unknown oracle prompt kind"),
    Case(f"{S} --ros-args -p robot:=fr3 -p task:=put_carrot_on_plate", 2,
         "(a task of another robot)", None, "robot vs task mismatch"),
    Case(f"{W} --ros-args -p robot:=fr3", 2, "drives widowx250s only", None,
         "controller given another robot (refused by the node, before it publishes)"),
    Case("affordance_node --ros-args -p temperature:=5.0", 2, "must be in [0, 2]", None,
         "affordance sampling temperature out of range"),
    Case("affordance_node --ros-args -p backend:=gpt", 2, "unknown affordance backend 'gpt'", None,
         "unknown affordance backend"),
    Case("affordance_node --ros-args -p backend:=robopoint-hf", 2, "needs a local HF-llava", None,
         "robopoint-hf without weights"),
    Case("policy_node --ros-args -p backend:=gpt", 2, "unknown policy backend 'gpt'", None,
         "unknown policy backend (refused by the node)"),
    Case("bag_player_node --ros-args -p bag:={tmp}/nope", 2, "no such bag", None,
         "missing bag (refused by the node)"),
    # --- the files and the rules themselves
    Case(f"{T} --ros-args --params-file {{tmp}}/nope.yaml", 2, "does not exist", None,
         "params file missing"),
    Case(f"{T} --ros-args --params-file {{tmp}}", 2, "is a directory", None,
         "params file is a directory"),
    Case(f"{T} {PF}", 2, "not valid YAML at line", _file("tracker_node: [\n"), "malformed YAML"),
    Case(f"{T} {PF}", 2, "is not a text file", _binary, "binary file"),
    Case(f"{T} {PF}", 2, "must contain a 'ros__parameters' mapping",
         _file("tracker_node:\n  lk_window: 13\n"), "no ros__parameters"),
    Case(f"{T} {PF}", 2, "expected a mapping of node names", _file("- 1\n- 2\n"),
         "a list at the top level"),
    Case(f"{T} --ros-args -p lk_window:=", 2, "no value", None, "-p without a value"),
    Case(f"{T} --ros-args -p lk_window", 2, "not a parameter rule", None, "-p without :="),
    Case(f"{T} --ros-args --params-file", 2, "--params-file needs a value", None,
         "--params-file without a file"),
]


def test_the_table_covers_every_node_and_enough_inputs() -> None:
    nodes = {c.cmd.split()[0] for c in CASES}
    assert nodes >= set(STACK_NODE_CONFIGS) | {"tracegen_node"}
    assert len(CASES) >= 25


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.note or str(c))
def test_bad_node_input_in_process(case: Case, tmp_path: Path) -> None:
    err = check_in_process(case, tmp_path)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    node = case.cmd.split()[0]
    assert lines[-1].startswith(f"{node}: error: "), err
    assert len([ln for ln in lines if ": error: " in ln]) == 1, err


SUBPROCESS = [
    Case(f"{T} {PF}", 2, "unknown parameter 'lk_windw'", _section(T, "lk_windw: 13")),
    Case(f"{T} --ros-args --params-file {{tmp}}/nope.yaml", 2, "does not exist"),
    Case(f"{S} --ros-args -p robot:=fr3 -p task:=lift_cube", 2, "tasks of 'fr3'"),
]


@pytest.mark.ros
@pytest.mark.parametrize("case", SUBPROCESS, ids=str)
def test_bad_node_input_as_the_executable(case: Case, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    err = run_subprocess(case, tmp_path, env=env, timeout=60)
    assert len(err.strip().splitlines()) == 1, err


# ----------------------------------------------------------------- what must still pass
def _config(node: str) -> type:
    if node == "tracegen_node":
        from tracegen_ros.node_config import TraceGenNodeConfig

        return TraceGenNodeConfig
    import importlib

    module, _, attr = STACK_NODE_CONFIGS[node].partition(":")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


ROBOT_NODES = {
    WIDOWX_YAML: ["camera_node", "sim_node", "tracker_node", "policy_node",
                  "widowx_controller_node", "recorder_node", "trace_viz_node", "bag_player_node"],
    FR3_YAML: ["camera_node", "sim_node", "tracker_node", "policy_node", "franka_controller_node",
               "recorder_node", "trace_viz_node", "bag_player_node", "tracegen_node"],
}


@pytest.mark.parametrize("yaml_path,node", [(y, n) for y, ns in ROBOT_NODES.items() for n in ns],
                         ids=lambda v: v.name if isinstance(v, Path) else v)
def test_shipped_configs_and_launch_overrides_pass(yaml_path: Path, node: str,
                                                   tmp_path: Path) -> None:
    """config/<robot>.yaml as every node reads it, plus a file like the one launch_ros writes
    for a node's dict parameters (``/<name>``: use_sim_time and an int for a float)."""
    from tracevla_ros.nodes.common import check_node_args

    launch = tmp_path / "launch_params.yaml"
    launch.write_text(f"/{node}:\n  ros__parameters:\n    use_sim_time: true\n")
    check_node_args(["--ros-args", "--params-file", str(yaml_path), "--params-file", str(launch)],
                    node, _config(node))


def test_other_nodes_keys_pass_in_the_shared_section(tmp_path: Path) -> None:
    from tracevla_ros.nodes.common import check_node_args
    from tracevla_ros.tracking.config import TrackerConfig

    p = tmp_path / "p.yaml"
    p.write_text("/**:\n  ros__parameters:\n    base_frame: b\n    robot_name: wx\n"
                 "    control_rate_hz: 3\n")
    check_node_args(["--ros-args", "--params-file", str(p)], "tracker_node", TrackerConfig)
    with pytest.raises(ConfigError, match="unknown parameter 'base_frame'"):
        check_node_args(["--ros-args", "-p", "base_frame:=b"], "tracker_node", TrackerConfig)


# ------------------------------------------------ the arm: never moved by a bad config
def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                PYTHONUNBUFFERED="1")


class _Arm:
    """A DDS peer: WidowX joint states out, the controller's arm commands in."""

    def __init__(self) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import JointState
        from trajectory_msgs.msg import JointTrajectory

        from tracevla_ros.msg import PolicyAction
        from tracevla_ros.nodes.common import RELIABLE_QOS
        from tracevla_ros.robots import get_robot

        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node("bad_input_arm_peer", context=self.ctx)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        spec = get_robot("widowx250s")
        self.names, self.q = list(spec.ros_joint_names), [float(v) for v in spec.home]
        self.commands: list[Any] = []
        self._js = self.node.create_publisher(JointState, "/joint_states", RELIABLE_QOS)
        self.actions = self.node.create_publisher(PolicyAction, "/action", RELIABLE_QOS)
        self.node.create_subscription(JointTrajectory, "/arm_controller/joint_trajectory",
                                      self.commands.append, RELIABLE_QOS)
        self.node.create_timer(0.02, lambda: self._js.publish(JointState(
            name=self.names, position=self.q)))

    def spin_until(self, cond: Callable[[], bool], timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.ex.spin_once(timeout_sec=0.05)
            if cond():
                return True
        return False

    def close(self) -> None:
        import rclpy

        self.ex.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)


def _finish(proc: subprocess.Popen[str], arm: _Arm, timeout: float = 60.0) -> str:
    """Spin the peer until ``proc`` exits; its output (killed, and the test failed, if not)."""
    if not arm.spin_until(lambda: proc.poll() is not None, timeout):
        os.killpg(proc.pid, signal.SIGKILL)
        out = proc.communicate()[0]
        pytest.fail(f"the node did not exit:\n{out}")
    return proc.communicate()[0]


@pytest.mark.ros
def test_controller_with_a_bad_config_never_commands_the_arm() -> None:
    """Joint states are there, the config names another robot: exit 2 with one line, and
    not one command reached the arm's controller topic."""
    arm = _Arm()
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from tracevla_ros.nodes.widowx_controller_node "
         "import main; sys.exit(main())", "--ros-args", "--params-file", str(WIDOWX_YAML),
         "-p", "widowx_controller_node:robot:=fr3"],
        cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    try:
        out = _finish(proc, arm)
    finally:
        arm.close()
    assert proc.returncode == 2, out
    assert "Traceback" not in out
    assert "widowx_controller_node: error: parameter 'robot' = 'fr3'" in out
    assert arm.commands == []


_BROKEN = """
import sys, threading
from tracevla_ros.control.controller_config import WidowXControllerConfig
from tracevla_ros.nodes.common import run_node
from tracevla_ros.nodes.widowx_controller_node import WidowXControllerNode

class BrokenController(WidowXControllerNode):
    # a bug in the action path: in the callback itself, or in a thread it starts
    def _on_action(self, msg):
        if sys.argv[1] == "callback":
            raise RuntimeError("injected failure")
        threading.Thread(target=lambda: 1 / 0, name="injected").start()

sys.exit(run_node(BrokenController, sys.argv[2:], name="widowx_controller_node",
                  config=WidowXControllerConfig))
"""


@pytest.mark.ros
@pytest.mark.parametrize("where", ["callback", "thread"])
def test_a_failure_inside_the_controller_holds_the_arm(where: str, tmp_path: Path) -> None:
    """An exception in a callback or a thread of a running controller: one error line, a
    hold command at the measured position, exit 1, no traceback."""
    from tracevla_ros.msg import PolicyAction

    script = tmp_path / "broken_controller.py"
    script.write_text(_BROKEN)
    arm = _Arm()
    proc = subprocess.Popen(
        [sys.executable, str(script), where, "--ros-args", "--params-file", str(WIDOWX_YAML)],
        cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    try:
        assert arm.spin_until(lambda: arm.actions.get_subscription_count() > 0
                              or proc.poll() is not None, 60.0)
        assert proc.poll() is None, proc.communicate()[0]
        arm.spin_until(lambda: False, 0.5)  # the controller has joint states
        arm.actions.publish(PolicyAction(action_space="ee_delta_7d", chunk_length=1,
                                         action_dim=7, values=[0.0] * 6 + [1.0]))
        out = _finish(proc, arm)
        arm.spin_until(lambda: bool(arm.commands), 5.0)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        arm.close()
    assert proc.returncode == 1, out
    assert "Traceback" not in out, out
    failed = [ln for ln in out.splitlines() if "[ERROR]" in ln]
    assert len(failed) == 1, out
    assert ("a callback failed: RuntimeError: injected failure" if where == "callback"
            else "thread 'injected' failed: ZeroDivisionError") in failed[0]
    assert "hold command sent" in out
    assert arm.commands, "no hold command reached the arm"
    assert list(arm.commands[-1].points[-1].positions) == pytest.approx(arm.q, abs=1e-6)


def test_an_unexpected_error_at_start_is_one_line_and_the_traceback_on_request(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in a node's constructor (not a bad input): exit 1, one line, no traceback,
    unless TRACEVLA_DEBUG is set."""
    from tracevla_ros.nodes.common import run_node

    def broken() -> Any:
        raise RuntimeError("injected bug")

    monkeypatch.delenv("TRACEVLA_DEBUG", raising=False)
    assert run_node(broken, ["--ros-args"], name="some_node") == 1
    err = capsys.readouterr().err
    assert err.strip() == ("some_node: internal error: RuntimeError: injected bug "
                           "(set TRACEVLA_DEBUG=1 for the traceback)")
    monkeypatch.setenv("TRACEVLA_DEBUG", "1")
    assert run_node(broken, ["--ros-args"], name="some_node") == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "injected bug" in err
