"""Trossen/Interbotix WidowX-250s (wx250s): 6 DoF arm + parallel gripper.

Numbers from Interbotix interbotix_xsarm_descriptions/urdf/wx250s.urdf.xacro (see
assets/widowx250s.xml). The end effector is ``ee_gripper_link`` (between the finger pads).
"""

from __future__ import annotations

import math

from tracevla_ros.robots.base import ASSETS, RobotSpec, register

_PI = math.pi - 1e-5  # the URDF's pi_offset

SPEC = register(
    RobotSpec(
        name="widowx250s",
        model_path=ASSETS / "widowx250s.xml",
        base_frame="wx250s/base_link",
        arm_joints=("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate"),
        joint_lower=(-_PI, math.radians(-108), math.radians(-123), -_PI, math.radians(-100), -_PI),
        joint_upper=(_PI, math.radians(114), math.radians(92), _PI, math.radians(123), _PI),
        velocity_limits=(math.pi,) * 6,
        # Ready pose: gripper tilted ~69 deg down, ee_gripper_link at about (0.207, 0, 0.197) m.
        home=(0.0, -0.6, 0.6, 0.0, 1.2, 0.0),
        named_poses={
            "interbotix_home": (0.0,) * 6,  # ee_gripper_link at (0.458325, 0, 0.36065)
            "sleep": (0.0, -1.80, 1.55, 0.0, 0.8, 0.0),
        },
        ee_site="ee_gripper_link",
        flange_site="ee_arm_link",
        gripper_joints=("left_finger", "right_finger"),
        gripper_open=0.037,
        gripper_closed=0.015,
        arm_actuators=("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate"),
        gripper_actuator="gripper",
        ros_joint_names=("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate"),
        source="Interbotix/interbotix_ros_manipulators interbotix_xsarm_descriptions/urdf/wx250s.urdf.xacro",
    ),
    aliases=("widowx", "wx250s"),
)
