"""What the launch files need for TF, computed without launch_ros (testable here).

* ``static_transform_args(config)`` -- the command line of tf2_ros'
  ``static_transform_publisher`` for the camera extrinsic in ``config``'s
  ``trace_viz_node`` section (base frame -> camera optical frame);
* ``urdf_for(robot)`` -- the shipped URDF file name for a robot name or alias;
* ``missing_packages(names)`` / ``degraded_warning(missing)`` -- which of the external
  ROS packages the launch files can use (tf2_ros, robot_state_publisher, rviz2) are
  not installed, and the one warning a launch file logs before starting the rest.
  Without tf2_ros, trace_viz_node publishes the camera transform itself
  (``publish_static_tf``).
"""

from __future__ import annotations

from pathlib import Path

from tracevla_ros.config import load_node_config
from tracevla_ros.robots.base import get_robot
from tracevla_ros.robots.urdf import SHIPPED
from tracevla_ros.viz.config import TraceVizConfig

__all__ = ["static_transform_args", "urdf_for", "missing_packages", "degraded_warning",
           "EXTERNAL_ROLES"]

# external package -> what the stack loses without it (the launch files start the rest)
EXTERNAL_ROLES = {
    "tf2_ros": "the camera's static transform: trace_viz_node publishes it on /tf_static instead",
    "robot_state_publisher": "the robot model and its TF (/robot_description, /tf): "
                             "no robot in rviz",
    "rviz2": "rviz: no visualisation window",
}


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


def missing_packages(names: list[str] | tuple[str, ...]) -> list[str]:
    """The names that are not installed ROS packages (ament index, i.e. AMENT_PREFIX_PATH)."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    out = []
    for name in names:
        try:
            get_package_prefix(name)
        except PackageNotFoundError:
            out.append(name)
    return out


def degraded_warning(missing: list[str]) -> str:
    """One warning naming every missing package and what runs without it ('' if none)."""
    if not missing:
        return ""
    lost = "; ".join(f"{name}: {EXTERNAL_ROLES.get(name, 'not started')}" for name in missing)
    return (f"not installed: {', '.join(missing)}; starting the rest without them ({lost}). "
            f"Install them (rosdep install --from-paths src -y --ignore-src) for the full stack.")
