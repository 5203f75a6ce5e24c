"""Replay a recorded bag into the stack for offline evaluation (no robot, no camera).

    ros2 launch tracevla_ros replay.launch.py bag:=/data/run1 robot:=widowx rviz:=true
    ros2 launch tracevla_ros replay.launch.py bag:=/tmp/demo/bag policy:=local rate:=0.5

bag_player_node plays the bag's inputs (camera, camera_info, depth, instruction,
joint states) with their recorded timing and stamps and publishes /clock; the
recorded outputs go to /recorded/trace, /recorded/image_trace,
/recorded/policy/action for comparison. tracker_node, policy_node and
trace_viz_node recompute the live outputs on /trace, /image_trace, /policy/action
and the markers; the robot's controller runs in dry_run (it publishes what it
would send on ~/would_send). Every node uses the bag's time (use_sim_time).
For numbers (trace validity, latency, action error) use ``tracevla-replay`` instead:
it replays as fast as possible and writes a report.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
from launch.conditions import IfCondition, LaunchConfigurationEquals
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

ARGS = [
    ("bag", "", "rosbag2 directory (or .mcap/.db3 file) to play (required)"),
    ("robot", "widowx", "robot of the recording: widowx or fr3 (picks config/<robot>.yaml)"),
    ("rate", "1.0", "playback speed factor"),
    ("policy", "local", "policy backend: a registered name (e.g. local) or module:function"),
    ("checkpoint", "", "checkpoint path for learned policy backends"),
    ("rviz", "false", "start rviz2 with the robot's rviz config"),
    ("record", "false", "record the replayed stack's topics with recorder_node"),
    ("record_bag", "", "recording directory (record:=true); empty = ./bag_<date>_<time>"),
]
SIM_TIME = {"use_sim_time": True}


def _frames(context):  # noqa: ANN001, ANN202 (launch API)
    """robot_state_publisher and the camera's static transform, for the chosen robot."""
    from pathlib import Path

    from tracevla_ros.viz.frames import static_transform_args, urdf_for

    config = LaunchConfiguration("config").perform(context)
    robot = LaunchConfiguration("robot").perform(context)
    share = FindPackageShare("tracevla_ros").perform(context)
    urdf = Path(share, "urdf", urdf_for(robot)).read_text()
    rviz = Path(share, "config", "rviz", "franka.rviz" if robot == "fr3" else "widowx.rviz")
    out = [Node(package="tf2_ros", executable="static_transform_publisher", name="camera_tf",
                arguments=static_transform_args(config), parameters=[SIM_TIME]),
           Node(package="robot_state_publisher", executable="robot_state_publisher",
                name="robot_state_publisher",
                parameters=[{"robot_description": urdf, "use_sim_time": True}])]
    if LaunchConfiguration("rviz").perform(context).lower() == "true":
        out.append(Node(package="rviz2", executable="rviz2", name="rviz2",
                        arguments=["-d", str(rviz)], parameters=[SIM_TIME]))
    return out


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("tracevla_ros")
    default_cfg = PathJoinSubstitution([share, "config", [LaunchConfiguration("robot"), ".yaml"]])
    params = [LaunchConfiguration("config"), SIM_TIME]
    return LaunchDescription([
        *[DeclareLaunchArgument(n, default_value=d, description=desc) for n, d, desc in ARGS],
        DeclareLaunchArgument("config", default_value=default_cfg,
                              description="parameter file (default: config/<robot>.yaml); use the "
                                          "recorded run's for the same tracker settings"),
        Node(package="tracevla_ros", executable="bag_player_node", name="bag_player_node",
             parameters=[LaunchConfiguration("config"),
                         {"bag": LaunchConfiguration("bag"), "rate": LaunchConfiguration("rate")}]),
        Node(package="tracevla_ros", executable="tracker_node", name="tracker_node",
             parameters=params, remappings=[("image", "/camera/image_raw")]),
        Node(package="tracevla_ros", executable="policy_node", name="policy_node",
             parameters=params + [{"backend": LaunchConfiguration("policy"),
                                   "checkpoint": LaunchConfiguration("checkpoint")}],
             remappings=[("image", "/camera/image_raw"), ("action", "/policy/action")]),
        Node(package="tracevla_ros", executable="widowx_controller_node",
             name="widowx_controller_node", parameters=params + [{"dry_run": True}],
             remappings=[("action", "/policy/action")],
             condition=LaunchConfigurationEquals("robot", "widowx")),
        Node(package="tracevla_ros", executable="franka_controller_node",
             name="franka_controller_node", parameters=params + [{"dry_run": True}],
             remappings=[("action", "/policy/action")],
             condition=LaunchConfigurationEquals("robot", "fr3")),
        Node(package="tracevla_ros", executable="trace_viz_node", name="trace_viz_node",
             parameters=params,
             remappings=[("camera_info", "/camera/camera_info"),
                         ("depth", "/camera/depth/image_raw")]),
        Node(package="tracevla_ros", executable="recorder_node", name="recorder_node",
             parameters=params + [{"output": LaunchConfiguration("record_bag"),
                                   "params_file": LaunchConfiguration("config")}],
             condition=IfCondition(LaunchConfiguration("record"))),
        OpaqueFunction(function=_frames),
        LogInfo(msg=["tracevla_ros replay: ", LaunchConfiguration("bag"), " with ",
                     LaunchConfiguration("config")]),
    ])
