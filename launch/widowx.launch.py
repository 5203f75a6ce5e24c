"""WidowX-250s + TraceVLA: camera -> tracker -> policy -> controller.

    ros2 launch tracevla_ros widowx.launch.py instruction:="put the carrot on the plate"
    ros2 launch tracevla_ros widowx.launch.py use_sim:=true dry_run:=true

Parameters come from config/widowx.yaml (or config:=...), with the launch
arguments below overriding single values.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

ARGS = [
    ("robot_name", "wx250s", "Interbotix robot name (topic namespace of the xs_sdk driver)"),
    ("camera_device", "/dev/video0", "V4L2 device of the third-person camera"),
    ("instruction", "", "language instruction (also settable on /instruction)"),
    ("policy", "scripted", "policy backend (see tracevla_ros.policy.registry)"),
    ("checkpoint", "", "checkpoint path for learned policy backends"),
    ("use_sim", "false", "run the MuJoCo sim_node instead of camera + hardware"),
    ("dry_run", "false", "controller publishes the commands it would send, sends none"),
]


def generate_launch_description() -> LaunchDescription:
    default_cfg = PathJoinSubstitution([FindPackageShare("tracevla_ros"), "config", "widowx.yaml"])
    use_sim = LaunchConfiguration("use_sim")
    params = [LaunchConfiguration("config")]
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=default_cfg,
                              description="parameter file (default: the package's config/widowx.yaml)"),
        *[DeclareLaunchArgument(n, default_value=d, description=desc) for n, d, desc in ARGS],
        Node(package="tracevla_ros", executable="camera_node", name="camera_node",
             parameters=params + [{"device": LaunchConfiguration("camera_device")}],
             remappings=[("image_raw", "/camera/image_raw"), ("camera_info", "/camera/camera_info")],
             condition=UnlessCondition(use_sim)),
        Node(package="tracevla_ros", executable="sim_node", name="sim_node",
             parameters=params, condition=IfCondition(use_sim)),
        Node(package="tracevla_ros", executable="tracker_node", name="tracker_node",
             parameters=params, remappings=[("image", "/camera/image_raw")]),
        Node(package="tracevla_ros", executable="policy_node", name="policy_node",
             parameters=params + [{"backend": LaunchConfiguration("policy"),
                                   "checkpoint": LaunchConfiguration("checkpoint"),
                                   "instruction": LaunchConfiguration("instruction")}],
             remappings=[("image", "/camera/image_raw"), ("action", "/policy/action")]),
        Node(package="tracevla_ros", executable="widowx_controller_node",
             name="widowx_controller_node",
             parameters=params + [{"robot_name": LaunchConfiguration("robot_name"),
                                   "dry_run": LaunchConfiguration("dry_run")}]),
        LogInfo(msg=["tracevla_ros widowx: parameters from ", LaunchConfiguration("config")]),
    ])
