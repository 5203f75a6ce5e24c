"""ArmController (the nodes' algorithm) without ROS: actions, holds, waypoints."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pinocchio")

from tracevla_ros.control.action import ActionError  # noqa: E402
from tracevla_ros.control.arm_controller import ArmController  # noqa: E402
from tracevla_ros.control.controller_config import (  # noqa: E402
    FrankaControllerConfig,
    WidowXControllerConfig,
)
from tracevla_ros.control.safety import Intervention  # noqa: E402
from tracevla_ros.config import ConfigError  # noqa: E402
from tracevla_ros.robots import get_robot  # noqa: E402


def _widowx() -> ArmController:
    cfg = WidowXControllerConfig()
    spec = get_robot("widowx250s")
    return ArmController(spec, cfg.safety_config(spec), cfg.hysteresis(), cfg.ik_options())


def test_chunk_is_executed_step_by_step_from_the_measured_pose() -> None:
    c = _widowx()
    c.update_state(c.spec.home_q, now=0.0)
    p0, _ = c.kin.fk(c.spec.home_q)
    assert c.push_action([0.01, 0, 0, 0, 0, 0, 1.0] + [0, 0.01, 0, 0, 0, 0, 0.0], 2, 7, now=0.0) == 2
    out = c.step(now=0.01)
    assert out is not None and out.command.send and not out.command.hold and out.ik_ok
    np.testing.assert_allclose(c.kin.fk(out.command.q)[0], p0 + [0.01, 0, 0], atol=1e-3)
    c.update_state(out.command.q, now=0.2)  # the arm got there
    out2 = c.step(now=0.2)
    np.testing.assert_allclose(c.kin.fk(out2.command.q)[0], p0 + [0.01, 0.01, 0], atol=1e-3)
    assert out.gripper_open and not out2.gripper_open  # 0.0 < 0.05 closes
    assert out2.gripper_position == pytest.approx(c.spec.gripper_closed)
    assert c.step(now=0.3) is None


def test_no_state_no_command_and_hold() -> None:
    c = _widowx()
    c.push_action([0.01, 0, 0, 0, 0, 0, 1.0], 1, 7, now=0.0)
    out = c.step(now=0.0)
    assert out is not None and not out.command.send and out.command.q is None
    assert c.counts["stale_state"] == 1
    c.update_state(c.spec.home_q, now=1.0)
    t_wd = c.safety.timing.watchdog_timeout_s  # action at t = 0
    assert not c.watchdog_due(t_wd - 0.1) and c.watchdog_due(t_wd + 0.1)
    h = c.hold(now=1.05, why=Intervention("watchdog", "test"))
    assert h.command.hold and h.command.send
    np.testing.assert_allclose(h.command.q, c.spec.home_q)
    assert c.counts["watchdog"] == 1


def test_bad_chunks_raise() -> None:
    c = _widowx()
    with pytest.raises(ActionError):
        c.push_action([0.0] * 6, 1, 7, now=0.0)


def test_unreachable_step_is_clamped_and_reported() -> None:
    c = _widowx()
    c.update_state(c.spec.home_q, now=0.0)
    c.push_action([0.0, 0.0, -5.0, 0, 0, 0, 1.0], 1, 7, now=0.0)
    out = c.step(now=0.0)
    checks = [r.check for r in out.interventions]
    assert "cartesian_step" in checks
    assert np.all(out.command.q >= c.safety.joints.lo) and np.all(out.command.q <= c.safety.joints.hi)


def test_waypoints_fr3() -> None:
    cfg = FrankaControllerConfig(gripper_namespace="")
    spec = get_robot("fr3")
    c = ArmController(spec, cfg.safety_config(spec), cfg.hysteresis(), cfg.ik_options())
    c.update_state(spec.home_q, now=0.0)
    p0, r0 = c.kin.fk(spec.home_q)
    pts = np.array([p0 + [0.1, 0, 0], p0 + [0.1, 0.1, 0], p0 + [5.0, 0, 0]])
    plan = c.plan_waypoints(pts, None, now=0.0, speed=0.1)
    assert plan.q.shape == (2, 7) and not plan.complete  # the 3rd is outside the workspace box...
    # ...and clipped into it, which the arm cannot reach with this orientation: the plan stops
    np.testing.assert_allclose(c.kin.fk(plan.q[1])[0], p0 + [0.1, 0.1, 0], atol=1e-3)
    assert plan.times[0] >= 1.0 and plan.times[1] > plan.times[0]


def test_config_errors_are_actionable() -> None:
    with pytest.raises(ConfigError, match="interface"):
        WidowXControllerConfig(interface="serial")
    with pytest.raises(ConfigError, match="workspace_min"):
        WidowXControllerConfig(workspace_min=(0.5, 0, 0), workspace_max=(0.4, 1, 1))
    with pytest.raises(ConfigError, match="robot"):
        FrankaControllerConfig(robot="ur5")


def test_yaml_sections_validate(repo_root) -> None:
    from tracevla_ros.config import load_node_config

    w = load_node_config(WidowXControllerConfig, repo_root / "config" / "widowx.yaml",
                         "widowx_controller_node")
    f = load_node_config(FrankaControllerConfig, repo_root / "config" / "fr3.yaml",
                         "franka_controller_node")
    assert w.interface == "trajectory" and w.robot == "widowx250s"
    assert f.arm_controller == "fr3_arm_controller" and f.robot == "fr3"
    # every YAML default documents the dataclass default (no silent drift)
    assert w == WidowXControllerConfig() and f == FrankaControllerConfig()


@pytest.mark.parametrize("name", ["widowx250s", "fr3"])
def test_closed_loop_in_mujoco(name: str) -> None:
    """Actions -> controller -> MuJoCo position servos (500 Hz): the simulated ee follows."""
    mujoco = pytest.importorskip("mujoco")
    cfg = WidowXControllerConfig() if name == "widowx250s" else FrankaControllerConfig(gripper_namespace="")
    spec = get_robot(name)
    c = ArmController(spec, cfg.safety_config(spec), cfg.hysteresis(), cfg.ik_options())
    model = mujoco.MjModel.from_xml_path(str(spec.model_path))
    data = mujoco.MjData(model)
    mujoco.mj_resetDataKeyframe(model, data, model.key("home").id)
    mujoco.mj_forward(model, data)
    qadr = [model.joint(j).qposadr[0] for j in spec.arm_joints]
    act = [model.actuator(a).id for a in spec.arm_actuators]
    p_start = data.site(spec.ee_site).xpos.copy()
    period = cfg.step_period_s
    t = 0.0
    for k in range(10):  # 10 steps of +1 cm in x and -0.5 cm in z
        c.update_state(data.qpos[qadr], now=t)
        c.push_action([0.01, 0.0, -0.005, 0.0, 0.0, 0.0, 1.0], 1, 7, now=t)
        out = c.step(now=t)
        assert out is not None and out.command.send and not out.command.hold
        data.ctrl[act] = out.command.q
        for _ in range(int(period / model.opt.timestep)):
            mujoco.mj_step(model, data)
        t += period
    moved = data.site(spec.ee_site).xpos - p_start
    np.testing.assert_allclose(moved, [0.10, 0.0, -0.05], atol=0.005)


def test_chunk_execution_first_k_and_ensemble() -> None:
    """chunk_steps = k runs only the first k steps of each chunk; ensemble averages the
    chunks covering a step (tracevla_ros.control.chunking)."""
    spec = get_robot("widowx250s")
    step = [0.01, 0, 0, 0, 0, 0, 1.0]
    cfg = WidowXControllerConfig(chunk_execution="first_k", chunk_steps=1)
    c = ArmController(spec, cfg.safety_config(spec), cfg.hysteresis(), cfg.ik_options(),
                      cfg.chunk_config())
    c.update_state(c.spec.home_q, now=0.0)
    assert c.push_action(step * 3, 3, 7, now=0.0) == 3 and c.pending == 1
    assert c.step(now=0.01) is not None and c.step(now=0.2) is None
    cfg = WidowXControllerConfig(chunk_execution="first_k", chunk_steps=2)  # two steps open loop, then the next chunk
    c = ArmController(spec, cfg.safety_config(spec), cfg.hysteresis(), cfg.ik_options(),
                      cfg.chunk_config())
    c.update_state(c.spec.home_q, now=0.0)
    assert c.push_action(step * 3, 3, 7, now=0.0) == 3 and c.pending == 2
    assert c.step(now=0.01) is not None
    assert c.push_action(step * 3, 3, 7, now=0.1) == 0 and c.pending == 1  # not used
    assert c.counts["chunk_ignored"] == 1 and c.action_time == 0.1  # the watchdog sees it
    assert c.step(now=0.2) is not None and c.pending == 0
    assert c.push_action(step * 3, 3, 7, now=0.3) == 3
    # with settle_s: the next chunk must come from a frame taken once the last step was
    # reached (sent at 0.4 + 0.1 s); an older one is skipped, for FRESH_WAIT_S at most
    from tracevla_ros.control.arm_controller import FRESH_WAIT_S

    c = ArmController(spec, cfg.safety_config(spec), cfg.hysteresis(), cfg.ik_options(),
                      cfg.chunk_config(), settle_s=0.1)
    c.update_state(c.spec.home_q, now=0.0)
    assert c.push_action(step * 2, 2, 7, now=0.0, stamp=0.0) == 2
    assert c.step(now=0.2) is not None and c.step(now=0.4) is not None and c.pending == 0
    assert c.push_action(step * 2, 2, 7, now=0.45, stamp=0.45) == 0  # planned mid-step
    assert c.counts["chunk_stale"] == 1
    assert c.push_action(step * 2, 2, 7, now=0.56, stamp=0.5) == 2  # from the settled arm
    c.step(now=0.6), c.step(now=0.8)
    late = 0.95 + FRESH_WAIT_S  # no fresh frame for that long: an older chunk is taken
    assert c.push_action(step * 2, 2, 7, now=late, stamp=0.85) == 2
    # a one-action policy under chunk_steps: its action is used at once, however old its frame
    c = ArmController(spec, cfg.safety_config(spec), cfg.hysteresis(), cfg.ik_options(),
                      cfg.chunk_config(), settle_s=0.1)
    c.update_state(c.spec.home_q, now=0.0)
    assert c.push_action(step, 1, 7, now=0.0, stamp=0.0) == 1 and c.step(now=0.0) is not None
    assert c.push_action(step, 1, 7, now=0.05, stamp=0.01) == 1 and c.counts["chunk_stale"] == 0
    cfg = WidowXControllerConfig(chunk_execution="ensemble", ensemble_m=0.0)
    c = ArmController(spec, cfg.safety_config(spec), cfg.hysteresis(), cfg.ik_options(),
                      cfg.chunk_config())
    c.update_state(c.spec.home_q, now=0.0)
    p0, _ = c.kin.fk(c.spec.home_q)
    c.push_action([0.02, 0, 0, 0, 0, 0, 1.0] * 2, 2, 7, now=0.0)
    first = c.step(now=0.01)
    assert first is not None
    c.update_state(c.spec.home_q, now=0.2)  # the arm stayed: the next delta is from home
    c.push_action([0.0, 0, 0, 0, 0, 0, 1.0] * 2, 2, 7, now=0.2)
    out = c.step(now=0.2)  # mean of 0.02 (old chunk, step 1) and 0.0 (new chunk, step 0)
    np.testing.assert_allclose(c.kin.fk(out.command.q)[0], p0 + [0.01, 0, 0], atol=1e-3)
    with pytest.raises(ConfigError, match="chunk_execution"):
        WidowXControllerConfig(chunk_execution="average")
