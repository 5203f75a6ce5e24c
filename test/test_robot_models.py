"""The hand-written MJCF models match the published kinematics to < 1 mm.

Reference FK here is independent of MuJoCo: a table of the published URDF joint origins
(xyz, rpy) and axes, transcribed from the vendor descriptions, composed with numpy
homogeneous transforms exactly as a URDF is (T_parent_child = T(origin) * R(axis, q)).
Published reference poses checked too:
  * WidowX-250s: Interbotix's own product-of-exponentials description (interbotix_xs_modules
    ``mr_descriptions.wx250s``: M = ee_gripper_link at zero pose = (0.458325, 0, 0.36065),
    Slist of the 6 screw axes) -- a second, differently written source.
  * FR3: the "ready" pose q = (0, -pi/4, 0, -3pi/4, 0, pi/2, pi/4) gives the hand TCP at
    (0.3069, 0, 0.4869) m with R = diag(1, -1, -1) (libfranka O_T_EE at the ready pose).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

mujoco = pytest.importorskip("mujoco")

from tracevla_ros.robots import UnknownRobotError, get_robot, robot_names  # noqa: E402

PI2 = math.pi / 2
N_CONFIGS = 200


def _rpy(r: float, p: float, y: float) -> np.ndarray:
    """URDF rpy: R = Rz(y) @ Ry(p) @ Rx(r) (fixed-axis X, then Y, then Z)."""
    cr, sr, cp, sp, cy, sy = math.cos(r), math.sin(r), math.cos(p), math.sin(p), math.cos(y), math.sin(y)
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _axis_angle(axis: tuple[float, float, float], q: float) -> np.ndarray:
    k = np.asarray(axis, dtype=float)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(q) * kx + (1 - math.cos(q)) * kx @ kx


def _tf(xyz: tuple[float, ...], rot: np.ndarray) -> np.ndarray:
    t = np.eye(4)
    t[:3, :3] = rot
    t[:3, 3] = xyz
    return t


# (xyz, rpy, axis or None for fixed) from base link to the end-effector frame.
WX250S_CHAIN = [
    ((0, 0, 0.072), (0, 0, 0), (0, 0, 1)),        # waist
    ((0, 0, 0.03865), (0, 0, 0), (0, 1, 0)),      # shoulder
    ((0.04975, 0, 0.25), (0, 0, 0), (0, 1, 0)),   # elbow
    ((0.175, 0, 0), (0, 0, 0), (1, 0, 0)),        # forearm_roll
    ((0.075, 0, 0), (0, 0, 0), (0, 1, 0)),        # wrist_angle
    ((0.065, 0, 0), (0, 0, 0), (1, 0, 0)),        # wrist_rotate -> gripper_link
    ((0.043, 0, 0), (0, 0, 0), None),             # ee_arm -> ee_arm_link
    ((0, 0, 0), (0, 0, 0), None),                 # gripper_bar
    ((0.023, 0, 0), (0, 0, 0), None),             # ee_bar -> fingers_link
    ((0.027575, 0, 0), (0, 0, 0), None),          # ee_gripper -> ee_gripper_link
]

FR3_CHAIN = [
    ((0, 0, 0.333), (0, 0, 0), (0, 0, 1)),
    ((0, 0, 0), (-PI2, 0, 0), (0, 0, 1)),
    ((0, -0.316, 0), (PI2, 0, 0), (0, 0, 1)),
    ((0.0825, 0, 0), (PI2, 0, 0), (0, 0, 1)),
    ((-0.0825, 0.384, 0), (-PI2, 0, 0), (0, 0, 1)),
    ((0, 0, 0), (PI2, 0, 0), (0, 0, 1)),
    ((0.088, 0, 0), (PI2, 0, 0), (0, 0, 1)),
    ((0, 0, 0.107), (0, 0, 0), None),             # joint8 -> link8 (flange)
    ((0, 0, 0), (0, 0, -math.pi / 4), None),      # fr3_hand_joint
    ((0, 0, 0.1034), (0, 0, 0), None),            # fr3_hand_tcp_joint
]
FR3_FLANGE_INDEX = 8  # number of chain entries up to link8


def urdf_fk(chain: list, q: np.ndarray, upto: int | None = None) -> np.ndarray:
    t = np.eye(4)
    qi = 0
    for xyz, rpy, axis in chain[:upto]:
        t = t @ _tf(xyz, _rpy(*rpy))
        if axis is not None:
            t = t @ _tf((0, 0, 0), _axis_angle(axis, float(q[qi])))
            qi += 1
    return t


def mujoco_fk(model, data, spec, q: np.ndarray, site: str) -> np.ndarray:
    data.qpos[:] = 0
    for name, v in zip(spec.arm_joints, q):
        data.qpos[model.joint(name).qposadr[0]] = v
    mujoco.mj_kinematics(model, data)
    t = np.eye(4)
    t[:3, :3] = data.site(site).xmat.reshape(3, 3)
    t[:3, 3] = data.site(site).xpos
    return t


def _rot_err(a: np.ndarray, b: np.ndarray) -> float:
    c = (np.trace(a.T @ b) - 1.0) / 2.0
    return float(math.acos(min(1.0, max(-1.0, c))))


CASES = [("widowx250s", WX250S_CHAIN, "ee_gripper_link"), ("fr3", FR3_CHAIN, "hand_tcp")]


@pytest.mark.parametrize("name,chain,site", CASES)
def test_mujoco_fk_matches_published_chain(name: str, chain: list, site: str) -> None:
    spec = get_robot(name)
    model = mujoco.MjModel.from_xml_path(str(spec.model_path))
    data = mujoco.MjData(model)
    rng = np.random.default_rng(0)
    pos_err, rot_err = [], []
    for _ in range(N_CONFIGS):
        q = rng.uniform(spec.lower, spec.upper)
        ref = urdf_fk(chain, q)
        got = mujoco_fk(model, data, spec, q, site)
        pos_err.append(np.linalg.norm(ref[:3, 3] - got[:3, 3]))
        rot_err.append(_rot_err(ref[:3, :3], got[:3, :3]))
    assert max(pos_err) < 1e-3, f"{name}: max position error {max(pos_err)} m"
    assert max(rot_err) < 1e-3, f"{name}: max rotation error {max(rot_err)} rad"


def test_fr3_flange_matches_published_chain() -> None:
    spec = get_robot("fr3")
    model = mujoco.MjModel.from_xml_path(str(spec.model_path))
    data = mujoco.MjData(model)
    rng = np.random.default_rng(1)
    for _ in range(50):
        q = rng.uniform(spec.lower, spec.upper)
        ref = urdf_fk(FR3_CHAIN, q, upto=FR3_FLANGE_INDEX)
        got = mujoco_fk(model, data, spec, q, spec.flange_site)
        assert np.linalg.norm(ref[:3, 3] - got[:3, 3]) < 1e-3


def _wx250s_poe(q: np.ndarray) -> np.ndarray:
    """Interbotix's published screw description of the wx250s (space frame)."""
    from scipy.linalg import expm

    m_home = np.array([[1, 0, 0, 0.458325], [0, 1, 0, 0], [0, 0, 1, 0.36065], [0, 0, 0, 1.0]])
    slist = np.array([
        [0, 0, 1, 0, 0, 0],
        [0, 1, 0, -0.11065, 0, 0],
        [0, 1, 0, -0.36065, 0, 0.04975],
        [1, 0, 0, 0, 0.36065, 0],
        [0, 1, 0, -0.36065, 0, 0.29975],
        [1, 0, 0, 0, 0.36065, 0],
    ], dtype=float)
    t = np.eye(4)
    for s, qi in zip(slist, q):
        w, v = s[:3], s[3:]
        se3 = np.zeros((4, 4))
        se3[:3, :3] = [[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]]
        se3[:3, 3] = v
        t = t @ expm(se3 * qi)
    return t @ m_home


def test_widowx_matches_interbotix_screw_description() -> None:
    spec = get_robot("widowx250s")
    model = mujoco.MjModel.from_xml_path(str(spec.model_path))
    data = mujoco.MjData(model)
    got0 = mujoco_fk(model, data, spec, np.zeros(6), spec.ee_site)
    np.testing.assert_allclose(got0[:3, 3], [0.458325, 0.0, 0.36065], atol=1e-6)
    rng = np.random.default_rng(2)
    for _ in range(50):
        q = rng.uniform(spec.lower, spec.upper)
        ref = _wx250s_poe(q)
        got = mujoco_fk(model, data, spec, q, spec.ee_site)
        assert np.linalg.norm(ref[:3, 3] - got[:3, 3]) < 1e-3
        assert _rot_err(ref[:3, :3], got[:3, :3]) < 1e-3


def test_fr3_ready_pose_matches_libfranka() -> None:
    spec = get_robot("fr3")
    model = mujoco.MjModel.from_xml_path(str(spec.model_path))
    data = mujoco.MjData(model)
    got = mujoco_fk(model, data, spec, spec.home_q, spec.ee_site)
    np.testing.assert_allclose(got[:3, 3], [0.3069, 0.0, 0.4869], atol=1e-3)
    np.testing.assert_allclose(got[:3, :3], np.diag([1.0, -1.0, -1.0]), atol=1e-6)


@pytest.mark.parametrize("name", ["widowx250s", "fr3"])
def test_pinocchio_loads_mjcf_and_agrees(name: str) -> None:
    pin = pytest.importorskip("pinocchio")
    spec = get_robot(name)
    pmodel = pin.buildModelFromMJCF(str(spec.model_path))
    pdata = pmodel.createData()
    model = mujoco.MjModel.from_xml_path(str(spec.model_path))
    data = mujoco.MjData(model)
    fid = pmodel.getFrameId(spec.ee_site)
    rng = np.random.default_rng(3)
    for _ in range(50):
        q = rng.uniform(spec.lower, spec.upper)
        pq = pin.neutral(pmodel)
        for jn, v in zip(spec.arm_joints, q):
            pq[pmodel.joints[pmodel.getJointId(jn)].idx_q] = v
        pin.framesForwardKinematics(pmodel, pdata, pq)
        got = mujoco_fk(model, data, spec, q, spec.ee_site)
        assert np.linalg.norm(pdata.oMf[fid].translation - got[:3, 3]) < 1e-6
        assert _rot_err(pdata.oMf[fid].rotation, got[:3, :3]) < 1e-6


@pytest.mark.parametrize("name", ["widowx250s", "fr3"])
def test_spec_matches_model(name: str) -> None:
    """Joint names, limits, actuators and sites in the registry exist in the MJCF and agree."""
    spec = get_robot(name)
    model = mujoco.MjModel.from_xml_path(str(spec.model_path))
    for jn, lo, hi in zip(spec.arm_joints, spec.joint_lower, spec.joint_upper):
        np.testing.assert_allclose(model.joint(jn).range, [lo, hi], atol=1e-6)
    for an, jn in zip(spec.arm_actuators, spec.arm_joints):
        act = model.actuator(an)
        assert model.joint(int(act.trnid[0])).name == jn
        np.testing.assert_allclose(act.ctrlrange, model.joint(jn).range, atol=1e-6)
    assert model.joint(int(model.actuator(spec.gripper_actuator).trnid[0])).name == spec.gripper_joints[0]
    model.site(spec.ee_site)
    model.site(spec.flange_site)
    lo, hi = sorted((spec.gripper_open, spec.gripper_closed))
    np.testing.assert_allclose(model.joint(spec.gripper_joints[0]).range, [lo, hi])
    np.testing.assert_allclose(model.key("home").qpos[: spec.dof], spec.home_q, atol=1e-9)


@pytest.mark.parametrize("name", ["widowx250s", "fr3"])
def test_position_servos_track_and_hold(name: str) -> None:
    """500 Hz physics: a 0.2 rad step on every arm joint settles within 1 s to < 5 mrad."""
    spec = get_robot(name)
    model = mujoco.MjModel.from_xml_path(str(spec.model_path))
    data = mujoco.MjData(model)
    assert model.opt.timestep == pytest.approx(0.002)
    mujoco.mj_resetDataKeyframe(model, data, model.key("home").id)
    target = np.clip(spec.home_q + 0.2, spec.lower, spec.upper)
    ids = [model.actuator(a).id for a in spec.arm_actuators]
    qadr = [model.joint(j).qposadr[0] for j in spec.arm_joints]
    data.ctrl[ids] = target
    for _ in range(500):
        mujoco.mj_step(model, data)
    err = np.abs(data.qpos[qadr] - target)
    assert np.all(np.isfinite(data.qpos))
    assert err.max() < 5e-3, f"{name}: tracking error {err}"


@pytest.mark.parametrize("name", ["widowx250s", "fr3"])
def test_gripper_grasps_and_lifts_box(name: str) -> None:
    """A small box between the open fingers is held when the gripper closes and the arm lifts."""
    spec = get_robot(name)
    spec_xml = mujoco.MjSpec.from_file(str(spec.model_path))
    model0 = mujoco.MjModel.from_xml_path(str(spec.model_path))
    data0 = mujoco.MjData(model0)
    mujoco.mj_resetDataKeyframe(model0, data0, model0.key("home").id)
    mujoco.mj_forward(model0, data0)
    ee = data0.site(spec.ee_site).xpos.copy()
    # a free 2.5 cm cube at the TCP, rotated like the hand so it sits between the pads
    body = spec_xml.worldbody.add_body(name="cube", pos=ee.tolist())
    body.add_freejoint()
    body.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.0125] * 3, mass=0.05,
                  friction=[1.0, 0.005, 0.0001], condim=4)
    model = spec_xml.compile()
    data = mujoco.MjData(model)
    key = model.key("home")
    data.qpos[: key.qpos.size] = key.qpos
    data.qpos[-7:-4] = ee
    data.qpos[-4:] = _mat2quat(data0.site(spec.ee_site).xmat)
    data.ctrl[:] = key.ctrl
    model.opt.gravity[:] = 0  # no gravity while closing, so the cube stays between the pads
    g = model.actuator(spec.gripper_actuator).id
    data.ctrl[g] = spec.gripper_closed
    for _ in range(300):
        mujoco.mj_step(model, data)
    model.opt.gravity[:] = (0, 0, -9.81)
    shoulder = model.actuator(spec.arm_actuators[1]).id
    data.ctrl[shoulder] -= 0.15  # lift
    z0 = data.body("cube").xpos[2]
    tcp0 = data.site(spec.ee_site).xpos[2]
    for _ in range(750):
        mujoco.mj_step(model, data)
    lift_tcp = data.site(spec.ee_site).xpos[2] - tcp0
    lift_cube = data.body("cube").xpos[2] - z0
    assert lift_tcp > 0.02, f"{name}: the arm did not lift ({lift_tcp} m)"
    assert abs(lift_cube - lift_tcp) < 0.01, f"{name}: cube slipped (tcp {lift_tcp}, cube {lift_cube})"


def _mat2quat(xmat: np.ndarray) -> np.ndarray:
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, np.asarray(xmat, dtype=np.float64).ravel())
    return q


def test_registry() -> None:
    assert {"widowx250s", "fr3"} <= set(robot_names())
    assert get_robot("widowx").name == "widowx250s"
    with pytest.raises(UnknownRobotError, match="known"):
        get_robot("ur5")
    spec = get_robot("widowx250s")
    assert spec.gripper_position(1.0) == pytest.approx(0.037)
    assert spec.gripper_position(0.0) == pytest.approx(0.015)
    assert spec.gripper_position(7.0) == pytest.approx(0.037)
