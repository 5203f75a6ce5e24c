"""urdf/*.urdf (for robot_state_publisher/rviz) have the MJCF models' kinematics: pinocchio
FK from the URDF equals MuJoCo FK for every link and site to 1e-6; the files are current."""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np
import pytest

from tracevla_ros.robots.base import get_robot
from tracevla_ros.robots.urdf import SHIPPED, link_prefix, mjcf_to_urdf

pin = pytest.importorskip("pinocchio")


@pytest.mark.parametrize("robot", sorted(SHIPPED))
def test_shipped_urdf_is_generated_from_the_mjcf(repo_root: Path, robot: str) -> None:
    shipped = (repo_root / "urdf" / SHIPPED[robot]).read_text()
    assert shipped == mjcf_to_urdf(get_robot(robot)), (
        f"urdf/{SHIPPED[robot]} is stale: python -m tracevla_ros.robots.urdf --all")


@pytest.mark.parametrize("robot", sorted(SHIPPED))
def test_urdf_fk_matches_mujoco(repo_root: Path, robot: str) -> None:
    spec = get_robot(robot)
    mj = mujoco.MjModel.from_xml_path(str(spec.model_path))
    data = mujoco.MjData(mj)
    model = pin.buildModelFromUrdf(str(repo_root / "urdf" / SHIPPED[robot]))
    pdata = model.createData()
    prefix = link_prefix(spec, mj)
    assert model.existFrame(spec.base_frame)
    base = mj.body(spec.base_frame[len(prefix):]).id  # the root body
    rng = np.random.default_rng(0)
    names = {model.names[j] for j in range(1, model.njoints)}
    mj_joints = {mj.joint(j).name for j in range(mj.njnt)}
    assert names == mj_joints  # every MJCF joint, /joint_states names
    checked = 0
    for _ in range(100):
        q = np.zeros(model.nq)
        for j in range(mj.njnt):
            lo, hi = mj.jnt_range[j]
            v = rng.uniform(lo, hi)
            data.qpos[mj.jnt_qposadr[j]] = v
            q[model.joints[model.getJointId(mj.joint(j).name)].idx_q] = v
        mujoco.mj_kinematics(mj, data)
        pin.framesForwardKinematics(model, pdata, q)
        r0, p0 = data.xmat[base].reshape(3, 3), data.xpos[base]
        targets = [(prefix + mj.body(b).name, data.xpos[b], data.xmat[b]) for b in range(1, mj.nbody)]
        targets += [(prefix + mj.site(s).name, data.site_xpos[s], data.site_xmat[s])
                    for s in range(mj.nsite)]
        for name, pos, mat in targets:
            f = pdata.oMf[model.getFrameId(name)]
            want_p = r0.T @ (pos - p0)
            want_r = r0.T @ mat.reshape(3, 3)
            assert np.abs(f.translation - want_p).max() < 1e-6, name
            assert np.abs(f.rotation - want_r).max() < 1e-6, name
            checked += 1
    assert checked >= 100 * (mj.nbody - 1)
    assert model.existFrame(prefix + spec.ee_site)  # e.g. wx250s/ee_gripper_link


@pytest.mark.parametrize("robot,alias", [("widowx250s", "widowx"), ("fr3", "fr3")])
def test_sim_joint_states_drive_every_urdf_joint(repo_root: Path, robot: str, alias: str) -> None:
    """sim_node's /joint_states names are exactly the URDF's movable joints, so
    robot_state_publisher can place every link in sim."""
    import xml.etree.ElementTree as ET

    from tracevla_ros.sim.env import SimEnv

    root = ET.parse(repo_root / "urdf" / SHIPPED[robot]).getroot()
    movable = {j.get("name") for j in root.iter("joint") if j.get("type") != "fixed"}
    env = SimEnv(robot=alias)
    try:
        names = set(env.joint_state().names)
    finally:
        env.close()
    assert names == movable
