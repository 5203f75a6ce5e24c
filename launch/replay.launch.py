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

from tracevla_ros.launch_graph import external_nodes

# Every node gets an explicit (root) namespace: launch_ros then writes a node's dict
# parameters (the launch arguments below) under its full name /<name>, so they override
# its section in the config file. Without one they go under /**, and rcl lets the
# file's node-specific section win: bag:=, policy:=, dry_run:= ... would be ignored.
NS = ""
ARGS = [
    ("sigterm_timeout", "15", "seconds each node may take after Ctrl-C to finish its files (the "
     "bag, the hold command) before launch sends SIGTERM; launch's own default is 5"),
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


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("tracevla_ros")
    # config/<robot>.yaml: a list of substitutions is concatenated (a nested list inside
    # PathJoinSubstitution is refused by launch: "Failed to normalize given item")
    default_cfg = [PathJoinSubstitution([share, "config", ""]), LaunchConfiguration("robot"), ".yaml"]
    params = [LaunchConfiguration("config"), SIM_TIME]
    return LaunchDescription([
        *[DeclareLaunchArgument(n, default_value=d, description=desc) for n, d, desc in ARGS],
        DeclareLaunchArgument("config", default_value=default_cfg,
                              description="parameter file (default: config/<robot>.yaml); use the "
                                          "recorded run's for the same tracker settings"),
        Node(package="tracevla_ros", executable="bag_player_node", name="bag_player_node", namespace=NS,
             parameters=[LaunchConfiguration("config"),
                         {"bag": LaunchConfiguration("bag"), "rate": LaunchConfiguration("rate")}]),
        Node(package="tracevla_ros", executable="tracker_node", name="tracker_node", namespace=NS,
             parameters=params, remappings=[("image", "/camera/image_raw")]),
        Node(package="tracevla_ros", executable="policy_node", name="policy_node", namespace=NS,
             parameters=params + [{"backend": LaunchConfiguration("policy"),
                                   "checkpoint": LaunchConfiguration("checkpoint")}],
             remappings=[("image", "/camera/image_raw"), ("action", "/policy/action")]),
        Node(package="tracevla_ros", executable="widowx_controller_node",
             name="widowx_controller_node", namespace=NS, parameters=params + [{"dry_run": True}],
             remappings=[("action", "/policy/action")],
             condition=LaunchConfigurationEquals("robot", "widowx")),
        Node(package="tracevla_ros", executable="franka_controller_node",
             name="franka_controller_node", namespace=NS, parameters=params + [{"dry_run": True}],
             remappings=[("action", "/policy/action")],
             condition=LaunchConfigurationEquals("robot", "fr3")),
        Node(package="tracevla_ros", executable="recorder_node", name="recorder_node", namespace=NS,
             parameters=params + [{"output": LaunchConfiguration("record_bag"),
                                   "params_file": LaunchConfiguration("config")}],
             condition=IfCondition(LaunchConfiguration("record"))),
        # trace_viz_node, camera TF, robot model, rviz: as installed (see _external)
        OpaqueFunction(function=external_nodes, kwargs={"namespace": NS, "sim_time": True}),
        LogInfo(msg=["tracevla_ros replay: ", LaunchConfiguration("bag"), " with ",
                     LaunchConfiguration("config")]),
    ])
