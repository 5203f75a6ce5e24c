"""Robot models and per-arm facts: ``get_robot("widowx250s")``, ``get_robot("fr3")``.

See README_models.md for the sources of every number and the simplifications.
"""

from tracevla_ros.robots.base import (
    ASSETS,
    RobotSpec,
    UnknownRobotError,
    get_robot,
    register,
    robot_names,
)

__all__ = ["ASSETS", "RobotSpec", "UnknownRobotError", "get_robot", "register", "robot_names"]
