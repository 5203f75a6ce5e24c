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

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

from tracevla_ros.launch_graph import external_nodes, stack_nodes

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
    ("sigterm_timeout", "15", "seconds each node may take after Ctrl-C to finish its files (the "
     "bag, the hold command) before launch sends SIGTERM; launch's own default is 5"),
    ("robot_name", "wx250s", "Interbotix robot name (topic namespace of the xs_sdk driver)"),
    ("camera_device", "/dev/video0", "V4L2 device of the third-person camera"),
    ("instruction", "", "language instruction (also settable on /instruction)"),
    ("policy", "pixelvla", "policy backend: a registered name (pixelvla: the small PixelVLA, "
     "acting on /visual_prompt; local: the trace-prompted network) or module:function"),
    ("checkpoint", "", "checkpoint path for learned policy backends"),
    ("use_sim", "false", "run the MuJoCo sim_node instead of camera + hardware"),
    ("dry_run", "false", "controller publishes the commands it would send, sends none"),
    ("rviz", "false", "start rviz2 with config/rviz/widowx.rviz"),
    ("robot_model", "true", "publish the robot model and its TF (robot_state_publisher)"),
    ("record", "false", "record the stack's topics with recorder_node"),
    ("affordance", "false", "start affordance_node (TRACE): the instruction becomes affordance "
     "points, published as the PixelVLA's /visual_prompt"),
    ("bag", "", "recording directory (record:=true); empty = ./bag_<date>_<time>"),
]


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
        # trace_viz_node, camera TF, robot model, rviz: as installed (launch_graph.external_nodes)
        OpaqueFunction(function=external_nodes, kwargs={"robot": "widowx", "namespace": NS}),
        LogInfo(msg=["tracevla_ros widowx: parameters from ", LaunchConfiguration("config")]),
    ])
