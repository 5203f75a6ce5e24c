"""What the launch files need for TF, computed without launch_ros (testable here).

* ``static_transform_args(config)`` -- the command line of tf2_ros'
  ``static_transform_publisher`` for the camera extrinsic in ``config``'s
  ``trace_viz_node`` section (base frame -> camera optical frame);
* ``urdf_for(robot)`` -- the shipped URDF file name for a robot name or alias.
"""

from __future__ import annotations

from pathlib import Path

from tracevla_ros.config import load_node_config
from tracevla_ros.robots.base import get_robot
from tracevla_ros.robots.urdf import SHIPPED
from tracevla_ros.viz.config import TraceVizConfig

__all__ = ["static_transform_args", "urdf_for"]


def static_transform_args(config: str | Path) -> list[str]:
    """['--x', ..., '--qw', ..., '--frame-id', base, '--child-frame-id', camera] from the
    parameter file's trace_viz_node section (ConfigError names the file if it is wrong)."""
    cfg = load_node_config(TraceVizConfig, config, "trace_viz_node")
    x, y, z = cfg.camera_xyz
    qx, qy, qz, qw = cfg.camera_quat_xyzw
    values = {"--x": x, "--y": y, "--z": z, "--qx": qx, "--qy": qy, "--qz": qz, "--qw": qw}
    args = [s for k, v in values.items() for s in (k, repr(float(v)))]
    return args + ["--frame-id", cfg.base_frame, "--child-frame-id", cfg.camera_frame]


def urdf_for(robot: str) -> str:
    """'widowx' / 'wx250s' / 'widowx250s' -> 'wx250s.urdf'; 'fr3' / 'franka' -> 'fr3.urdf'."""
    return SHIPPED[get_robot(robot).name]
