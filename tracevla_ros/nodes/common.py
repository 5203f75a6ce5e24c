"""What every node shares: typed parameters, QoS profiles, stamps, ``main``.

The only module besides the node files that imports rclpy.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, TypeVar

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

from tracevla_ros.config import ConfigError, config_from_params, field_specs

T = TypeVar("T")

# Images and other high-rate sensor streams: best effort, keep the latest few.
SENSOR_QOS: QoSProfile = qos_profile_sensor_data
# Traces, actions, commands: reliable, shallow (only the newest matters).
RELIABLE_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                          history=HistoryPolicy.KEEP_LAST)
# The instruction: latched so a late subscriber still gets it.
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL,
                         history=HistoryPolicy.KEEP_LAST)

_ARRAY_TYPES = {
    "float[]": Parameter.Type.DOUBLE_ARRAY,
    "int[]": Parameter.Type.INTEGER_ARRAY,
    "str[]": Parameter.Type.STRING_ARRAY,
}


def declare_config(node: Node, cls: type[T]) -> T:
    """Declare one ROS parameter per field of ``cls`` and return the validated config.

    Values come from the node's parameter overrides (``--params-file
    config/<robot>.yaml`` or launch ``parameters=[...]``), else the defaults.
    Raises ConfigError naming the node, parameter and expected type.
    """
    values: dict[str, Any] = {}
    for spec in field_specs(cls):
        desc = ParameterDescriptor(
            description=f"{spec.description} [{spec.unit}]" if spec.unit else spec.description,
            read_only=spec.read_only,
        )
        default: Any = spec.default
        if spec.kind in _ARRAY_TYPES and len(default) == 0:
            default = _ARRAY_TYPES[spec.kind]  # typed, unset
        elif isinstance(default, tuple):
            default = list(default)
        try:
            p = node.declare_parameter(spec.name, default, desc)
        except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
            raise ConfigError(
                f"node '{node.get_name()}': parameter '{spec.name}' expects {spec.kind} "
                f"({type(exc).__name__}: {exc})"
            ) from None
        value = p.value
        if value is None:
            value = spec.default
        values[spec.name] = list(value) if isinstance(value, (list, tuple)) else value
    return config_from_params(cls, values, where=f"node '{node.get_name()}'")


def stamp_to_sec(stamp: Any) -> float:
    """builtin_interfaces/Time -> float seconds."""
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def sec_to_stamp(t: float) -> Any:
    """Float seconds -> builtin_interfaces/Time."""
    from builtin_interfaces.msg import Time

    sec = int(t // 1)
    return Time(sec=sec, nanosec=int(round((t - sec) * 1e9)) % 1_000_000_000)


def run_node(factory: Callable[[], Node], args: list[str] | None = None,
             fatal: tuple[type[Exception], ...] = (), logger_name: str = "tracevla_ros") -> int:
    """Standard ``main()``: init, spin, clean shutdown on Ctrl-C; config errors exit 2.

    ``fatal``: further exception types (e.g. a device that cannot be opened)
    that also exit 2, logged as one error line under ``logger_name``.
    """
    rclpy.init(args=args if args is not None else sys.argv)
    node: Node | None = None
    try:
        node = factory()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except ConfigError as exc:
        print(f"[{getattr(node, 'get_name', lambda: 'tracevla_ros')()}] configuration error: {exc}",
              file=sys.stderr)
        return 2
    except fatal as exc:
        rclpy.logging.get_logger(node.get_name() if node is not None else logger_name).error(
            f"{type(exc).__name__}: {exc}")
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if callable(close):
                close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
    return 0
