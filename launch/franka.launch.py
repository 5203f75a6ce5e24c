"""Franka FR3: RealSense RGB-D camera -> tracegen_node (TraceGen) -> FR3 controller.

    ros2 launch tracevla_ros franka.launch.py
    ros2 launch tracevla_ros franka.launch.py use_sim:=true dry_run:=true
    ros2 service call /tracegen_node/predict std_srvs/srv/Trigger   # predict + execute one trace

tracegen_node predicts a 3D trace from the aligned RGB-D frame and the instruction,
publishes it (``/trace3d``) and sends its gripper's motion to franka_controller_node as
``/ee_waypoints`` plus gripper actions. Calibrate ``tracegen_node.T_base_cam`` (camera
pose in fr3_link0) in config/fr3.yaml first. In simulation without franka_msgs, give the
controller ``gripper_namespace: ''`` and ``gripper_command_topic: /sim_node/gripper_command``
(as ``tracevla-demo --robot fr3`` does).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
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
        Node(package="tracevla_ros", executable="tracegen_node", name="tracegen_node",
             parameters=params + [{"instruction": LaunchConfiguration("instruction")}],
             remappings=[("image", "/camera/image_raw"), ("depth", "/camera/depth/image_raw"),
                         ("camera_info", "/camera/camera_info")]),
    ])
