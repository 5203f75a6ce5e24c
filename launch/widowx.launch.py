"""WidowX-250s + TraceVLA: camera -> tracker -> policy -> controller, with rviz.

    ros2 launch tracevla_ros widowx.launch.py instruction:="put the carrot on the plate"
    ros2 launch tracevla_ros widowx.launch.py use_sim:=true dry_run:=true rviz:=true
    ros2 launch tracevla_ros widowx.launch.py policy:=local record:=true bag:=/data/run1

Parameters come from config/widowx.yaml (or config:=...), with the launch
arguments below overriding single values. TF: robot_state_publisher with
urdf/wx250s.urdf (from /joint_states) and the camera extrinsic of the config's
trace_viz_node section as a static transform (base -> camera optical frame).
Set robot_model:=false when the Interbotix driver already publishes the model.
tf2_ros, robot_state_publisher and rviz2 are optional: a missing one gets one
warning and the rest starts (without tf2_ros, trace_viz_node publishes the camera
transform on /tf_static itself).
"""

from pathlib import Path

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from tracevla_ros.launch_graph import launch_node, stack_nodes

# Every node gets an explicit (root) namespace: launch_ros then writes a node's dict
# parameters (the launch arguments below) under its full name /<name>, so they override
# its section in the config file. Without one they go under /**, and rcl lets the
# file's node-specific section win: bag:=, policy:=, dry_run:= ... would be ignored.
NS = ""
# launch argument overrides per node: {executable: {parameter: launch argument}}
OVERRIDES = {
    "camera_node": {"device": "camera_device"},
    "policy_node": {"backend": "policy", "checkpoint": "checkpoint", "instruction": "instruction"},
    "widowx_controller_node": {"robot_name": "robot_name", "dry_run": "dry_run"},
    "recorder_node": {"output": "bag", "params_file": "config"},
}
ARGS = [
    ("robot_name", "wx250s", "Interbotix robot name (topic namespace of the xs_sdk driver)"),
    ("camera_device", "/dev/video0", "V4L2 device of the third-person camera"),
    ("instruction", "", "language instruction (also settable on /instruction)"),
    ("policy", "local", "policy backend: a registered name (e.g. local) or module:function"),
    ("checkpoint", "", "checkpoint path for learned policy backends"),
    ("use_sim", "false", "run the MuJoCo sim_node instead of camera + hardware"),
    ("dry_run", "false", "controller publishes the commands it would send, sends none"),
    ("rviz", "false", "start rviz2 with config/rviz/widowx.rviz"),
    ("robot_model", "true", "publish the robot model and its TF (robot_state_publisher)"),
    ("record", "false", "record the stack's topics with recorder_node"),
    ("bag", "", "recording directory (record:=true); empty = ./bag_<date>_<time>"),
]


def _external(context, urdf: str, rviz: str):  # noqa: ANN001, ANN202 (launch API)
    """What needs other ROS packages, each started only where it is installed.

    tf2_ros' static_transform_publisher (the camera extrinsic of the config's
    trace_viz_node section), robot_state_publisher (URDF) and rviz2. One warning names
    the missing ones; without tf2_ros, trace_viz_node publishes the camera transform
    on /tf_static itself (publish_static_tf).
    """
    from launch.logging import get_logger

    from tracevla_ros.viz.frames import degraded_warning, missing_packages, static_transform_args

    config = LaunchConfiguration("config").perform(context)
    share = FindPackageShare("tracevla_ros").perform(context)
    wanted = ["tf2_ros"]
    if LaunchConfiguration("robot_model").perform(context).lower() == "true":
        wanted.append("robot_state_publisher")
    if LaunchConfiguration("rviz").perform(context).lower() == "true":
        wanted.append("rviz2")
    missing = missing_packages(wanted)
    if missing:
        get_logger("tracevla_ros.launch").warning(degraded_warning(missing))
    have = [p for p in wanted if p not in missing]
    out = [launch_node("widowx", "trace_viz_node", [LaunchConfiguration("config"),
                                                    {"publish_static_tf": "tf2_ros" in missing}],
                       namespace=NS)]
    if "tf2_ros" in have:
        out.append(Node(package="tf2_ros", executable="static_transform_publisher",
                        name="camera_tf", namespace=NS, arguments=static_transform_args(config)))
    if "robot_state_publisher" in have:
        out.append(Node(package="robot_state_publisher", executable="robot_state_publisher",
                        name="robot_state_publisher", namespace=NS,
                        parameters=[{"robot_description": Path(share, "urdf", urdf).read_text()}]))
    if "rviz2" in have:
        out.append(Node(package="rviz2", executable="rviz2", name="rviz2", namespace=NS,
                        arguments=["-d", str(Path(share, "config", "rviz", rviz))]))
    return out


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("tracevla_ros")
    default_cfg = PathJoinSubstitution([share, "config", "widowx.yaml"])
    params = [LaunchConfiguration("config")]
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=default_cfg,
                              description="parameter file (default: the package's config/widowx.yaml)"),
        *[DeclareLaunchArgument(n, default_value=d, description=desc) for n, d, desc in ARGS],
        # the nodes and their remappings: tracevla_ros.graph (what tracevla-demo runs too)
        *stack_nodes("widowx", params, OVERRIDES, namespace=NS, skip=("trace_viz_node",)),
        # trace_viz_node, camera TF, robot model, rviz: as installed (see _external)
        OpaqueFunction(function=_external, kwargs={"urdf": "wx250s.urdf", "rviz": "widowx.rviz"}),
        LogInfo(msg=["tracevla_ros widowx: parameters from ", LaunchConfiguration("config")]),
    ])
