"""Recorded runs -> the training dataset ``tracevla-train`` reads (no rclpy).

A bag recorded by the stack (``record:=true``, ``recorder_node``, the demo) holds what a
demonstration needs: the camera frames, ``/joint_states``, the commanded
``/policy/action`` (``ee_delta_7d``, from a policy or a teleoperation node publishing
PolicyAction) and ``/instruction``. One *step* per recorded action, at the camera frame
the action was computed from (the action's header stamp), exactly what the policy saw:

==========================  ==================================================================
data.npz key                from the bag
==========================  ==================================================================
observation.images.scene    the camera frame whose stamp is the action's stamp (RGB)
observation.joint_positions the newest joint state stamped at or before that frame (what
                            policy_node used), arm joints then fingers, the robot's order
observation.state           arm joints + gripper openness from the actuated finger [0..1]
observation.ee_pose         forward kinematics of the arm joints (x y z, qw qx qy qz)
action                      the recorded chunk's first step (what the controller executed)
action.joint_targets        the controller's IK for that action from the measured joints
                            (before its safety filters), the same solver the node runs
timestamp                   seconds since the episode's first frame
success                     the newest ``/success`` (std_msgs/Bool) at that frame, if recorded
==========================  ==================================================================

A bag becomes one episode, or several where ``/instruction`` changes. Traces are then
added with the same offline annotation as ``tracevla-annotate``
(:func:`tracevla_ros.tools.annotate.annotate_episode`), with the ``tracker_node``
parameters the run was recorded with (the bag's parameter file) unless overridden.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from tracevla_ros.bag.reader import BagReader, BagReadError
from tracevla_ros.replay.recorded import RecordedRun, stamp_ns
from tracevla_ros.replay.topics import TopicSelection, image_from_msg, select_topics
from tracevla_ros.robots import RobotSpec
from tracevla_ros.sim.dataset import EpisodeWriter

__all__ = ["BagEpisode", "BagDatasetError", "episodes_from_bag", "detect_robot", "camera_info"]

log = logging.getLogger(__name__)

BOOL = "std_msgs/msg/Bool"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
NEEDED = ("image", "action", "joint_states", "instruction")


class BagDatasetError(BagReadError):
    """A bag lacks what a training episode needs; the message names the bag and the fix."""


@dataclass
class BagEpisode:
    """One episode's steps, ready for :class:`EpisodeWriter` (arrays in data.npz order)."""

    instruction: str
    writer: EpisodeWriter
    steps: int
    success: bool
    first_stamp_ns: int


def detect_robot(joint_names: tuple[str, ...], name: str = "") -> RobotSpec:
    """The registered robot whose arm joints all appear in ``joint_names`` (or ``name``)."""
    from tracevla_ros.robots.base import get_robot, robot_names

    if name:
        return get_robot(name)
    for n in robot_names():
        spec = get_robot(n)
        if set(spec.ros_joint_names) <= set(joint_names):
            return spec
    raise BagDatasetError(f"no registered robot ({robot_names()}) has the joints {list(joint_names)} "
                          "of /joint_states; pass --robot")


def camera_info(bag: BagReader, image_topic: str) -> dict[str, Any]:
    """K, size and frame of the camera (its CameraInfo beside the image topic), or {}."""
    base = image_topic.rsplit("/", 1)[0]
    infos = [t.name for t in bag.topics_of_type(CAMERA_INFO) if t.count and t.known]
    topic = f"{base}/camera_info" if f"{base}/camera_info" in infos else ""
    if not topic:
        return {}
    for _, _, msg in bag.messages([topic]):
        return {"width": int(msg.width), "height": int(msg.height),
                "K": np.asarray(msg.k, np.float64).reshape(3, 3).tolist(),
                "frame_id": str(msg.header.frame_id)}
    return {}


def _needed_topics(bag: BagReader, topics: dict[str, str]) -> TopicSelection:
    sel = select_topics(bag, topics)  # raises when there is no image topic
    missing = [r for r in NEEDED if not getattr(sel, r)]
    if missing:
        raise BagDatasetError(
            f"{bag.path}: no {', '.join(missing)} topic with messages; a training episode needs the "
            f"camera image, /policy/action (PolicyAction), /joint_states and /instruction "
            f"(record them, or name them with --<role>-topic); topics found: {bag.describe_topics()}")
    return sel


def episodes_from_bag(bag: BagReader, spec: RobotSpec | None = None,
                      topics: dict[str, str] | None = None
                      ) -> tuple[list[BagEpisode], RobotSpec, dict[str, Any]]:
    """The bag's steps as episodes (split where the instruction changes), the robot, and the
    camera's K/size (``{}`` without a CameraInfo topic); see the module doc."""
    from scipy.spatial.transform import Rotation

    from tracevla_ros.control.action import integrate_ee_delta
    from tracevla_ros.control.kinematics import load_kinematics

    sel = _needed_topics(bag, topics or {})
    run = RecordedRun.read(bag, sel)
    spec = spec or detect_robot(run.joint_names)
    arm_idx, finger_idx = _joint_columns(run.joint_names, spec)
    spaces = {a.action_space for a in run.actions.values()}
    if spaces != {"ee_delta_7d"}:
        raise BagDatasetError(f"{bag.path}: {sel.action} has action space(s) {sorted(spaces)}; "
                              "a training episode needs ee_delta_7d")
    wanted = sorted(run.actions)
    frames: dict[int, np.ndarray] = {}
    msgtype = bag.topics[sel.image].msgtype
    want = set(wanted)
    for _, _, msg in bag.messages([sel.image]):
        s = stamp_ns(msg.header.stamp)
        if s in want:
            frames[s] = image_from_msg(msg, msgtype)
    lost = [s for s in wanted if s not in frames]
    if lost:
        log.warning("%s: %d of %d actions have no recorded camera frame at their stamp; skipped",
                    bag.path, len(lost), len(wanted))
    steps = [s for s in wanted if s in frames]
    if not steps:
        raise BagDatasetError(f"{bag.path}: none of the {len(wanted)} actions on {sel.action} has "
                              f"its camera frame on {sel.image} (header stamps differ)")
    success_t, success_v = _success(bag)
    kin = load_kinematics(spec)
    span = spec.gripper_open - spec.gripper_closed
    episodes: list[BagEpisode] = []
    current: BagEpisode | None = None
    for s in steps:
        act = run.actions[s]
        text = run.instruction_at(act.t) or ""
        if not text:
            raise BagDatasetError(f"{bag.path}: no instruction before the first action")
        q_all = run.proprio_for(s, act.t)
        if q_all.size == 0:
            raise BagDatasetError(f"{bag.path}: no joint state before the action at {s} ns")
        q_arm = q_all[arm_idx].astype(np.float64)
        q_fingers = q_all[finger_idx]
        opening = float(np.clip((float(q_fingers[0]) - spec.gripper_closed) / span, 0.0, 1.0))
        pos, rot = kin.fk(q_arm)
        a = act.values[0].astype(np.float32)
        t_pos, t_rot = integrate_ee_delta(pos, rot, a)
        q_target = kin.solve_ik(t_pos, t_rot, q_arm).q
        quat = Rotation.from_matrix(rot).as_quat(scalar_first=True)
        i = bisect.bisect_right(success_t, act.t) - 1
        ok = bool(success_v[i]) if i >= 0 else False
        if current is None or current.instruction != text:
            current = BagEpisode(text, EpisodeWriter(with_depth=False), 0, False, s)
            episodes.append(current)
        current.writer.add(
            observation__images__scene=frames[s],
            observation__state=np.concatenate([q_arm, [opening]]).astype(np.float32),
            observation__joint_positions=np.concatenate([q_arm, q_fingers]).astype(np.float32),
            observation__ee_pose=np.concatenate([pos, quat]).astype(np.float32),
            action=a, action__joint_targets=q_target.astype(np.float32),
            timestamp=np.float64((s - current.first_stamp_ns) * 1e-9), success=np.bool_(ok))
        current.steps += 1
        current.success = current.success or ok
    return episodes, spec, camera_info(bag, sel.image)


def _joint_columns(names: tuple[str, ...], spec: RobotSpec) -> tuple[list[int], list[int]]:
    where = {n: i for i, n in enumerate(names)}
    missing = [n for n in (*spec.ros_joint_names, spec.gripper_joints[0]) if n not in where]
    if missing:
        raise BagDatasetError(f"/joint_states lacks {missing} of robot {spec.name} (found "
                              f"{list(names)}); pass the right --robot")
    return ([where[n] for n in spec.ros_joint_names],
            [where[n] for n in spec.gripper_joints if n in where])


def _success(bag: BagReader) -> tuple[list[int], list[bool]]:
    topics = [t.name for t in bag.topics_of_type(BOOL) if t.count and t.name.endswith("success")]
    if not topics:
        return [], []
    t_list, v_list = [], []
    for _, t, msg in bag.messages(topics[:1]):
        t_list.append(t)
        v_list.append(bool(msg.data))
    return t_list, v_list
