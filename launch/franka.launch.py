"""Franka FR3: RealSense RGB-D camera -> (TraceGen, not yet) -> FR3 controller.

    ros2 launch tracevla_ros franka.launch.py
    ros2 launch tracevla_ros franka.launch.py use_sim:=true dry_run:=true

The TraceGen node (3D trace prediction) is not part of this release: this file
starts the camera (or the simulator) and the controller, and says so at start.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

ARGS = [
    ("camera_serial", "", "RealSense serial number (empty = the first device)"),
    ("instruction", "", "language instruction (also settable on /instruction)"),
    ("use_sim", "false", "run the MuJoCo sim_node instead of the camera + hardware"),
    ("dry_run", "false", "controller publishes the commands it would send, sends none"),
]


def generate_launch_description() -> LaunchDescription:
    default_cfg = PathJoinSubstitution([FindPackageShare("tracevla_ros"), "config", "fr3.yaml"])
    use_sim = LaunchConfiguration("use_sim")
    params = [LaunchConfiguration("config")]
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=default_cfg,
                              description="parameter file (default: the package's config/fr3.yaml)"),
        *[DeclareLaunchArgument(n, default_value=d, description=desc) for n, d, desc in ARGS],
        Node(package="tracevla_ros", executable="camera_node", name="camera_node",
             parameters=params + [{"device": LaunchConfiguration("camera_serial")}],
             remappings=[("image_raw", "/camera/image_raw"), ("camera_info", "/camera/camera_info"),
                         ("depth/image_raw", "/camera/depth/image_raw"),
                         ("depth/camera_info", "/camera/depth/camera_info")],
             condition=UnlessCondition(use_sim)),
        Node(package="tracevla_ros", executable="sim_node", name="sim_node",
             parameters=params, condition=IfCondition(use_sim)),
        Node(package="tracevla_ros", executable="franka_controller_node",
             name="franka_controller_node",
             parameters=params + [{"dry_run": LaunchConfiguration("dry_run")}]),
        LogInfo(msg="tracevla_ros franka: the TraceGen node (RGB-D + instruction -> Trace3D -> "
                    "waypoints) is not in this release; the controller accepts waypoint "
                    "sequences and single-step actions meanwhile."),
    ])
