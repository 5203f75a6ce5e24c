"""launch_ros ``Node`` actions from ``tracevla_ros.graph``, for ``launch/<robot>.launch.py``.

The launch files name no node and no remapping themselves: they take both from the
graph (the same description ``tracevla-demo`` and ``tracevla-bench loop --launch``
run), and add only what is launch-specific: which launch argument overrides which
parameter. ``launch``/``launch_ros`` are imported when called (they exist where
``ros2 launch`` runs; nothing else in the package needs them).

    stack_nodes("widowx", [LaunchConfiguration("config")],
                {"policy_node": {"backend": "policy"}}, namespace="",
                skip=("trace_viz_node",))
"""

from __future__ import annotations

from typing import Any, Iterable

from tracevla_ros.graph import GRAPHS, NodeSpec

__all__ = ["stack_nodes", "launch_node"]

# when -> the launch argument that switches the node on ("!" = on when it is false)
_SWITCH = {"sim": "use_sim", "hardware": "!use_sim", "record": "record", "affordance": "affordance"}


def _spec(robot: str, executable: str) -> NodeSpec:
    for spec in GRAPHS[robot]:
        if spec.executable == executable:
            return spec
    raise KeyError(f"{executable} is not in tracevla_ros.graph's {robot} graph")


def launch_node(robot: str, executable: str, parameters: list[Any], namespace: str = "",
                condition: Any = None) -> Any:
    """One node of ``robot``'s graph (name and remappings from the graph)."""
    from launch_ros.actions import Node

    spec = _spec(robot, executable)
    return Node(package="tracevla_ros", executable=spec.executable, name=spec.name,
                namespace=namespace, parameters=parameters,
                remappings=list(spec.remappings), condition=condition)


def stack_nodes(robot: str, parameters: list[Any], overrides: dict[str, dict[str, str]],
                namespace: str = "", skip: Iterable[str] = ()) -> list[Any]:
    """Every node of ``robot``'s graph but ``skip``, each with ``parameters`` (the config
    file) plus ``overrides[executable]``: {parameter: launch argument name}. A node's
    ``when`` becomes its condition (``use_sim``, ``record``)."""
    from launch.conditions import IfCondition, UnlessCondition
    from launch.substitutions import LaunchConfiguration

    unknown = set(overrides) - {s.executable for s in GRAPHS[robot]}
    if unknown:
        raise KeyError(f"overrides for nodes not in the {robot} graph: {sorted(unknown)}")
    out = []
    for spec in GRAPHS[robot]:
        if spec.executable in skip:
            continue
        switch = _SWITCH.get(spec.when)
        condition = None
        if switch is not None:
            arg = LaunchConfiguration(switch.lstrip("!"))
            condition = UnlessCondition(arg) if switch.startswith("!") else IfCondition(arg)
        extra = {k: LaunchConfiguration(v) for k, v in overrides.get(spec.executable, {}).items()}
        out.append(launch_node(robot, spec.executable, list(parameters) + ([extra] if extra else []),
                               namespace, condition))
    return out


def external_nodes(context: Any, robot: str = "", namespace: str = "",
                   sim_time: bool = False) -> list[Any]:
    """``OpaqueFunction`` body of every launch file: trace_viz_node, plus what needs other
    ROS packages, each started only where it is installed: tf2_ros' static_transform_publisher
    (the camera extrinsic of the config's trace_viz_node section), robot_state_publisher
    (the URDF; unless ``robot_model:=false``) and rviz2 (``rviz:=true``). One warning names
    the missing ones; without tf2_ros, trace_viz_node publishes the camera transform on
    /tf_static itself (``publish_static_tf``). ``robot`` empty = the ``robot`` launch
    argument (replay); ``sim_time``: every node on /clock (replay)."""
    from pathlib import Path

    from launch.logging import get_logger
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node
    from launch_ros.substitutions import FindPackageShare

    from tracevla_ros.viz.frames import (
        degraded_warning,
        missing_packages,
        static_transform_args,
        urdf_for,
    )

    def arg(name: str, default: str) -> str:
        return str(LaunchConfiguration(name, default=default).perform(context))

    robot = robot or arg("robot", "widowx")
    config = arg("config", "")
    share = FindPackageShare("tracevla_ros").perform(context)
    rviz = Path(share, "config", "rviz", "franka.rviz" if robot == "fr3" else "widowx.rviz")
    sim = [{"use_sim_time": True}] if sim_time else []
    wanted = ["tf2_ros"]
    if arg("robot_model", "true").lower() == "true":
        wanted.append("robot_state_publisher")
    if arg("rviz", "false").lower() == "true":
        wanted.append("rviz2")
    missing = missing_packages(wanted)
    if missing:
        get_logger("tracevla_ros.launch").warning(degraded_warning(missing))
    have = [p for p in wanted if p not in missing]
    out = [launch_node(robot, "trace_viz_node", [LaunchConfiguration("config"), *sim,
                                                 {"publish_static_tf": "tf2_ros" in missing}],
                       namespace)]
    if "tf2_ros" in have:
        out.append(Node(package="tf2_ros", executable="static_transform_publisher",
                        name="camera_tf", namespace=namespace, parameters=sim,
                        arguments=static_transform_args(config)))
    if "robot_state_publisher" in have:
        urdf = Path(share, "urdf", urdf_for(robot)).read_text()
        out.append(Node(package="robot_state_publisher", executable="robot_state_publisher",
                        name="robot_state_publisher", namespace=namespace,
                        parameters=[{"robot_description": urdf, "use_sim_time": sim_time}]))
    if "rviz2" in have:
        out.append(Node(package="rviz2", executable="rviz2", name="rviz2", namespace=namespace,
                        arguments=["-d", str(rviz)], parameters=sim))
    return out
