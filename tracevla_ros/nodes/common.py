"""What every node shares: typed parameters, QoS profiles, stamps, ``main``.

The only module besides the node files that imports rclpy.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from typing import Any, Callable, Sequence, TypeVar

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

from tracevla_ros.config import (
    ConfigError,
    config_from_params,
    field_specs,
    is_ros_builtin,
    node_config_from_sources,
    parse_ros_args,
    stack_param_names,
)
from tracevla_ros.stopping import (
    STOP_SIGNALS,
    StopRequest,
    ignore_stop_signals,
    install_stop_signals,
)

T = TypeVar("T")

# Images and other high-rate sensor streams: best effort, keep the latest few.
SENSOR_QOS: QoSProfile = qos_profile_sensor_data
# Traces, actions, commands: reliable, shallow (only the newest matters).
RELIABLE_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                          history=HistoryPolicy.KEEP_LAST)
# Visual prompts (a command, not sensor data): reliable, only the newest matters.
PROMPT_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
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
    config/<robot>.yaml`` or launch ``parameters=[...]``), else the defaults. An integer
    for a float parameter is widened (ROS would refuse it); a key no node of the stack
    declares is an error (``run_node`` has already checked a node executable's command
    line more strictly, source by source: see ``tracevla_ros.config``).
    Raises ConfigError naming the node, parameter and expected type.
    """
    overrides: dict[str, Parameter] = dict(getattr(node, "_parameter_overrides", {}))
    specs = field_specs(cls)
    own = {s.name for s in specs}
    for key, p in overrides.items():
        if key not in own and not is_ros_builtin(key) and key not in stack_param_names():
            raise ConfigError(f"node '{node.get_name()}': unknown parameter '{key}' "
                              f"(= {p.value!r}): no node of the stack declares it "
                              "(fix the name or remove it)")
    values: dict[str, Any] = {}
    for spec in specs:
        desc = ParameterDescriptor(
            description=f"{spec.description} [{spec.unit}]" if spec.unit else spec.description,
            read_only=spec.read_only,
        )
        default: Any = spec.default
        if spec.kind in _ARRAY_TYPES and len(default) == 0:
            default = _ARRAY_TYPES[spec.kind]  # typed, unset
        elif isinstance(default, tuple):
            default = list(default)
        override = overrides.get(spec.name)
        ignore = False
        if override is not None and override.type_ == Parameter.Type.NOT_SET:
            ignore = True  # `[]` in a YAML file: no type, so no value
        elif override is not None and (spec.kind, override.type_) in _WIDEN:
            v = override.value
            default = float(v) if spec.kind == "float" else [float(x) for x in v]
            ignore = True
        try:
            p = node.declare_parameter(spec.name, default, desc, ignore_override=ignore)
        except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
            got = overrides[spec.name].value if spec.name in overrides else None
            raise ConfigError(
                f"node '{node.get_name()}': parameter '{spec.name}' expects {spec.kind}, "
                f"got {type(got).__name__} {got!r} ({type(exc).__name__})"
            ) from None
        value = p.value
        if value is None:
            value = spec.default
        values[spec.name] = list(value) if isinstance(value, (list, tuple)) else value
    return config_from_params(cls, values, where=f"node '{node.get_name()}'")


# (config kind, override type) an integer value is widened for, as the YAML checks do
_WIDEN = {("float", Parameter.Type.INTEGER), ("float[]", Parameter.Type.INTEGER_ARRAY)}


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


def _one_line(exc: BaseException) -> str:
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(text.split()) or type(exc).__name__


def check_node_args(argv: Sequence[str], name: str, config: type | None) -> None:
    """The node's ``--ros-args`` parameters, checked before ROS starts: params files that
    exist and parse, ``-p`` rules, and (``config``) every value that applies to the node,
    unknown keys included. ConfigError naming the source, the key and the value."""
    ros = parse_ros_args(argv)
    if config is None:
        return
    own = frozenset(s.name for s in field_specs(config))
    shared = any(s.wildcard and not s.strict and set(s.values) - own for s in ros.sources)
    node_config_from_sources(config, ros.sources, ros.node_name or name, ros.namespace or "/",
                             stack_params=(stack_param_names() | own) if shared else own)


def run_node(factory: Callable[[], Node], args: Sequence[str] | None = None,
             fatal: tuple[type[Exception], ...] = (), logger_name: str = "tracevla_ros",
             name: str | None = None, config: type | None = None) -> int:
    """Standard ``main()``: check the parameters, init, spin, clean shutdown.

    Bad input ends with one line on stderr, ``<name>: error: <source>: <what, the value,
    what is expected>``, and exit status 2, before the node does anything: the parameters
    on the command line (``config``: the node's config class; params files, ``-p``,
    unknown keys: see ``tracevla_ros.config``), then the node's own checks in its
    constructor (ConfigError, the stack's other input errors, ``fatal``: e.g. a device
    that cannot be opened). A controller whose configuration is bad never publishes.

    A failure while it runs (an exception in a callback, or a thread of the node dying)
    is logged as one error line, the node's ``close()`` runs (the controllers hold the
    arm there) and it exits 1; an unexpected error in the constructor is one line, exit
    1. ``TRACEVLA_DEBUG=1`` prints the traceback as well.

    Stops cleanly, with exit status 0 and no traceback, on SIGINT (Ctrl-C, also when
    ``ros2 launch`` forwards a second one), SIGTERM and SIGHUP, and when its parent
    process exits (an orphan of a failed or killed launch). On the way out the node's
    ``close()`` runs (controllers send a hold command there; the recorder finishes its
    bag), with further stop signals ignored so nothing interrupts it; run as the process's
    main (``args`` None) they stay ignored until the interpreter has exited. Called with
    ``args`` (in-process), the caller's signal handlers are restored on return.
    """
    from tracevla_ros.cli import input_errors

    argv = list(args if args is not None else sys.argv)
    prog = name or logger_name
    debug = bool(os.environ.get("TRACEVLA_DEBUG"))

    def error(exc: BaseException, code: int = 2, internal: bool = False) -> int:
        if debug:
            traceback.print_exception(exc)
        what = f"internal error: {type(exc).__name__}: " if internal else "error: "
        hint = "" if debug or not internal else " (set TRACEVLA_DEBUG=1 for the traceback)"
        print(f"{prog}: {what}{_one_line(exc)}{hint}", file=sys.stderr)
        return code

    try:
        check_node_args(argv, name or logger_name, config)
    except ConfigError as exc:
        return error(exc)

    stop = StopRequest()
    old_handlers = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    install_stop_signals(stop)
    thread_failed: list[str] = []
    old_hook = threading.excepthook

    def on_thread_error(a: threading.ExceptHookArgs) -> None:
        if a.exc_type is SystemExit or a.exc_value is None:
            return
        thread = a.thread.name if a.thread is not None else "?"
        if debug:
            traceback.print_exception(a.exc_value)
        rclpy.logging.get_logger(prog).error(
            f"thread '{thread}' failed: {type(a.exc_value).__name__}: {_one_line(a.exc_value)}; "
            "stopping the node")
        thread_failed.append(thread)
        stop.request(f"thread '{thread}' failed")

    node: Node | None = None
    code = 0
    try:
        try:
            rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
        except Exception as exc:  # noqa: BLE001 - rcl refused the ROS arguments
            return error(ConfigError(f"ROS arguments: {_one_line(exc)}"))
        threading.excepthook = on_thread_error
        bad_input: tuple[type[BaseException], ...] = (ConfigError, *input_errors(), *fatal)
        try:
            node = factory()
        except bad_input as exc:
            return error(exc)
        except (KeyboardInterrupt, ExternalShutdownException):
            return 0
        except Exception as exc:  # noqa: BLE001 - one line, never a traceback
            return error(exc, 1, internal=True)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        try:
            spin_until_stopped(executor, stop)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        except Exception as exc:  # noqa: BLE001 - a callback failed: log, hold (close), exit 1
            if debug:
                traceback.print_exception(exc)
            node.get_logger().error(f"a callback failed: {type(exc).__name__}: {_one_line(exc)}; "
                                    "stopping the node")
            code = 1
        if thread_failed:
            code = 1
        elif stop:
            node.get_logger().info(f"stopping ({stop.reason})")
        return code
    finally:
        ignore_stop_signals()
        if node is not None:
            close = getattr(node, "close", None)
            try:
                if callable(close):
                    close()
            except Exception as exc:  # noqa: BLE001 - shutting down: say so, go on
                node.get_logger().error(f"close failed: {type(exc).__name__}: {_one_line(exc)}")
            node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
        threading.excepthook = old_hook
        if args is not None:  # called in-process (tests, tools): give the caller its handlers
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
        # else this is the process's own main: stop signals stay ignored until it exits, so
        # a late second SIGINT from ros2 launch cannot raise KeyboardInterrupt in an atexit
        # finalizer (seen: torch's library cleanup printed a traceback after a clean stop)
