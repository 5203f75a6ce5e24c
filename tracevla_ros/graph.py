"""The stack's node graph per robot, described once (no rclpy, no launch).

``launch/<robot>.launch.py``, ``tracevla-demo`` (all nodes in one process) and
``tracevla-bench loop --launch`` (one process per node) all build their nodes
from these lists: the same executables, node names and remappings, with
parameters from ``config/<robot>.yaml``. ``when`` says in which setups a node
runs: ``always``, ``sim`` (use_sim:=true), ``hardware`` (a real camera),
``record`` (record:=true), ``viz`` (rviz helpers: not needed by the loop) or
``affordance`` (affordance:=true: TRACE points as the PixelVLA's prompt).

Executables belong to the ``tracevla_ros`` ROS package (``lib/tracevla_ros/<exe>``,
or a console script in a venv). ``tracegen_node`` comes from the ``tracegen_ros``
Python package; it is named here only as a string, so this module does not import it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["NodeSpec", "GRAPHS", "graph", "WHEN"]

WHEN = ("always", "sim", "hardware", "record", "viz", "affordance")


@dataclass(frozen=True)
class NodeSpec:
    """One node: executable (= node name) and its topic remappings (from, to)."""

    executable: str
    remappings: tuple[tuple[str, str], ...] = ()
    when: str = "always"

    def __post_init__(self) -> None:
        if self.when not in WHEN:
            raise ValueError(f"NodeSpec {self.executable}: when '{self.when}' not in {WHEN}")

    @property
    def name(self) -> str:
        return self.executable

    def ros_args(self) -> list[str]:
        """``-r from:=to`` arguments for this node's remappings (after ``--ros-args``)."""
        out: list[str] = []
        for src, dst in self.remappings:
            out += ["-r", f"{src}:={dst}"]
        return out


_CAMERA = (("image_raw", "/camera/image_raw"), ("camera_info", "/camera/camera_info"))
_VIZ = NodeSpec("trace_viz_node", (("camera_info", "/camera/camera_info"),
                                   ("depth", "/camera/depth/image_raw"),
                                   ("active_prompt", "/policy_node/active_prompt")), "viz")
_RECORDER = NodeSpec("recorder_node", (), "record")

GRAPHS: dict[str, tuple[NodeSpec, ...]] = {
    "widowx": (
        NodeSpec("camera_node", _CAMERA, "hardware"),
        NodeSpec("sim_node", (), "sim"),
        NodeSpec("tracker_node", (("image", "/camera/image_raw"),)),
        NodeSpec("policy_node", (("image", "/camera/image_raw"), ("action", "/policy/action"))),
        NodeSpec("widowx_controller_node", (("action", "/policy/action"),)),
        # TRACE: the instruction -> affordance points -> the PixelVLA's visual prompt
        NodeSpec("affordance_node", (("image", "/camera/image_raw"), ("prompt", "/visual_prompt")),
                 "affordance"),
        _VIZ,
        _RECORDER,
    ),
    "fr3": (
        NodeSpec("camera_node", _CAMERA + (("depth/image_raw", "/camera/depth/image_raw"),
                                           ("depth/camera_info", "/camera/depth/camera_info")),
                 "hardware"),
        NodeSpec("sim_node", (), "sim"),
        # the 2D trace overlay (/image_trace) for rviz; TraceGen does not use it
        NodeSpec("tracker_node", (("image", "/camera/image_raw"),)),
        NodeSpec("franka_controller_node", (("action", "/policy/action"),)),
        NodeSpec("tracegen_node", (("image", "/camera/image_raw"), ("depth", "/camera/depth/image_raw"),
                                   ("camera_info", "/camera/camera_info"), ("action", "/policy/action"))),
        _VIZ,
        _RECORDER,
    ),
}


def graph(robot: str, sim: bool = True, record: bool = False, viz: bool = True,
          affordance: bool = False) -> list[NodeSpec]:
    """The nodes that run for ``robot`` in this setup, in start order."""
    if robot not in GRAPHS:
        raise ValueError(f"robot '{robot}' has no node graph; one of {sorted(GRAPHS)}")
    keep = {"always", "sim" if sim else "hardware"} | ({"record"} if record else set()) \
        | ({"viz"} if viz else set()) | ({"affordance"} if affordance else set())
    return [n for n in GRAPHS[robot] if n.when in keep]
