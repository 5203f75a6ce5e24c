"""Franka Research 3: 7 DoF arm + Franka Hand.

Numbers from franka_description robots/fr3/{kinematics,joint_limits}.yaml and
robots/common/franka_hand.xacro (see assets/fr3.xml). The end effector is ``hand_tcp``:
flange (link8) + rotation -45 deg about z + 0.1034 m along the hand's z.
"""

from __future__ import annotations

import math

from tracevla_ros.robots.base import ASSETS, RobotSpec, register

_JOINTS = tuple(f"fr3_joint{i}" for i in range(1, 8))

SPEC = register(
    RobotSpec(
        name="fr3",
        model_path=ASSETS / "fr3.xml",
        base_frame="fr3_link0",
        arm_joints=_JOINTS,
        joint_lower=(-2.7437, -1.7837, -2.9007, -3.0421, -2.8065, 0.5445, -3.0159),
        joint_upper=(2.7437, 1.7837, 2.9007, -0.1518, 2.8065, 4.5169, 3.0159),
        velocity_limits=(2.62, 2.62, 2.62, 2.62, 5.26, 4.18, 5.26),
        # Franka "ready" pose; hand_tcp at (0.3069, 0, 0.4869) m pointing down.
        home=(0.0, -math.pi / 4, 0.0, -3 * math.pi / 4, 0.0, math.pi / 2, math.pi / 4),
        ee_site="hand_tcp",
        flange_site="flange",
        gripper_joints=("fr3_finger_joint1", "fr3_finger_joint2"),
        gripper_open=0.04,
        gripper_closed=0.0,
        arm_actuators=_JOINTS,
        gripper_actuator="fr3_gripper",
        ros_joint_names=_JOINTS,
        source="frankaemika/franka_description robots/fr3/kinematics.yaml, joint_limits.yaml, "
               "robots/common/franka_hand.xacro",
    ),
    aliases=("franka", "fr3_hand"),
)
