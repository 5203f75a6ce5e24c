"""Franka FR3: RealSense RGB-D camera -> tracegen_node (TraceGen) -> FR3 controller, with rviz.

    ros2 launch tracevla_ros franka.launch.py instruction:="push the block into the purple region"
    ros2 launch tracevla_ros franka.launch.py use_sim:=true dry_run:=true rviz:=true
    ros2 service call /tracegen_node/predict std_srvs/srv/Trigger   # predict + execute one trace

tracegen_node predicts a 3D trace from the aligned RGB-D frame and the instruction,
publishes it (``/trace3d``, drawn by trace_viz_node on ``/trace3d_markers``) and sends
its gripper's motion to franka_controller_node as ``/ee_waypoints`` plus gripper
actions. Calibrate ``tracegen_node.T_base_cam`` (camera pose in fr3_link0) in
config/fr3.yaml first. In simulation without franka_msgs, the controller is given
``gripper_namespace: ''`` and ``gripper_command_topic: /sim_node/gripper_command`` (as
``tracevla-demo --robot fr3`` does; one warning says so). Parameters: config/fr3.yaml (or config:=...) with
the launch arguments overriding single values; TF as in widowx.launch.py (urdf/fr3.urdf),
including its fallback when tf2_ros, robot_state_publisher or rviz2 is not installed.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

from tracevla_ros.launch_graph import external_nodes, launch_node, stack_nodes

# Every node gets an explicit (root) namespace: launch_ros then writes a node's dict
# parameters (the launch arguments below) under its full name /<name>, so they override
# its section in the config file. Without one they go under /**, and rcl lets the
# file's node-specific section win: bag:=, policy:=, dry_run:= ... would be ignored.
NS = ""
GRIPPER_TOPIC = "/sim_node/gripper_command"  # sim_node's Float64 openness
# launch argument overrides per node: {executable: {parameter: launch argument}}
OVERRIDES = {
    "camera_node": {"device": "camera_serial"},
    "tracegen_node": {"instruction": "instruction", "checkpoint": "checkpoint"},
    "recorder_node": {"output": "bag", "params_file": "config"},
}
ARGS = [
    ("sigterm_timeout", "15", "seconds each node may take after Ctrl-C to finish its files (the "
     "bag, the hold command) before launch sends SIGTERM; launch's own default is 5"),
    ("camera_serial", "", "RealSense serial number (empty = the first device)"),
    ("instruction", "", "language instruction (also settable on /instruction)"),
    ("checkpoint", "tracegen_ros/checkpoints/fr3_small", "TraceGen checkpoint directory"),
    ("use_sim", "false", "run the MuJoCo sim_node instead of the camera + hardware"),
    ("dry_run", "false", "controller publishes the commands it would send, sends none"),
    ("rviz", "false", "start rviz2 with config/rviz/franka.rviz"),
    ("robot_model", "true", "publish the robot model and its TF (robot_state_publisher); "
                            "false when franka_ros2 already does"),
    ("record", "false", "record the stack's topics with recorder_node"),
    ("bag", "", "recording directory (record:=true); empty = ./bag_<date>_<time>"),
]


def _controller(context):  # noqa: ANN001, ANN202 (launch API)
    """franka_controller_node; in simulation without franka_msgs (no franka_gripper
    actions) it commands sim_node's gripper on GRIPPER_TOPIC instead, with one warning,
    as tracevla-demo --robot fr3 does. On hardware a missing franka_msgs stays an error."""
    from launch.logging import get_logger

    from tracevla_ros.viz.frames import missing_packages

    sim = LaunchConfiguration("use_sim").perform(context).lower() == "true"
    sim_gripper = sim and bool(missing_packages(["franka_msgs"]))
    if sim_gripper:
        get_logger("tracevla_ros.launch").warning(
            f"not installed: franka_msgs; in simulation franka_controller_node commands the "
            f"gripper on {GRIPPER_TOPIC} instead of the franka_gripper actions")
    return [launch_node("fr3", "franka_controller_node",
                        [LaunchConfiguration("config"), {"dry_run": LaunchConfiguration("dry_run")}]
                        + ([{"gripper_namespace": "", "gripper_command_topic": GRIPPER_TOPIC}]
                           if sim_gripper else []), namespace=NS)]


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("tracevla_ros")
    default_cfg = PathJoinSubstitution([share, "config", "fr3.yaml"])
    params = [LaunchConfiguration("config")]
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=default_cfg,
                              description="parameter file (default: the package's config/fr3.yaml)"),
        *[DeclareLaunchArgument(n, default_value=d, description=desc) for n, d, desc in ARGS],
        # the nodes and their remappings: tracevla_ros.graph (what tracevla-demo runs too);
        # the controller's gripper interface depends on what is installed (see _controller)
        *stack_nodes("fr3", params, OVERRIDES, namespace=NS,
                     skip=("trace_viz_node", "franka_controller_node")),
        OpaqueFunction(function=_controller),
        # trace_viz_node, camera TF, robot model, rviz: as installed (launch_graph.external_nodes)
        OpaqueFunction(function=external_nodes, kwargs={"robot": "fr3", "namespace": NS}),
    ])
