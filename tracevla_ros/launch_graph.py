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
_SWITCH = {"sim": "use_sim", "hardware": "!use_sim", "record": "record"}


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
