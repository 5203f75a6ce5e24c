"""What every node shares: typed parameters, QoS profiles, stamps, ``main``.

The only module besides the node files that imports rclpy.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, TypeVar

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions
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
from tracevla_ros.stopping import StopRequest, ignore_stop_signals, install_stop_signals

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


def spin_until_stopped(executor: Any, stop: StopRequest, watch_parent: bool = True,
                       poll_s: float = 0.1) -> None:
    """Spin ``executor`` until a stop signal, rclpy shutdown, or (``watch_parent``) the
    parent process exiting: a node whose ``ros2 launch`` died must not keep driving the arm.
    Checks every ``poll_s`` seconds, so it reacts within ~0.1 s."""
    parent = os.getppid()
    while not stop and executor.context.ok():
        executor.spin_once(timeout_sec=poll_s)
        if watch_parent and os.getppid() != parent:
            stop.request(f"parent process {parent} exited")


def run_node(factory: Callable[[], Node], args: list[str] | None = None,
             fatal: tuple[type[Exception], ...] = (), logger_name: str = "tracevla_ros") -> int:
    """Standard ``main()``: init, spin, clean shutdown; config errors exit 2.

    Stops cleanly, with exit status 0 and no traceback, on SIGINT (Ctrl-C, also when
    ``ros2 launch`` forwards a second one), SIGTERM and SIGHUP, and when its parent
    process exits (an orphan of a failed or killed launch). On the way out the node's
    ``close()`` runs (controllers send a hold command there; the recorder finishes its
    bag), with further stop signals ignored so nothing interrupts it.

    ``fatal``: further exception types (e.g. a device that cannot be opened)
    that also exit 2, logged as one error line under ``logger_name``.
    """
    stop = StopRequest()
    install_stop_signals(stop)
    rclpy.init(args=args if args is not None else sys.argv,
               signal_handler_options=SignalHandlerOptions.NO)
    node: Node | None = None
    code = 0
    try:
        node = factory()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        spin_until_stopped(executor, stop)
        if stop:
            node.get_logger().info(f"stopping ({stop.reason})")
    except ConfigError as exc:
        print(f"[{getattr(node, 'get_name', lambda: 'tracevla_ros')()}] configuration error: {exc}",
              file=sys.stderr)
        code = 2
    except fatal as exc:
        rclpy.logging.get_logger(node.get_name() if node is not None else logger_name).error(
            f"{type(exc).__name__}: {exc}")
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        ignore_stop_signals()
        if node is not None:
            close = getattr(node, "close", None)
            if callable(close):
                close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
    return code
