"""Typed node configuration, validated once (no rclpy here).

Every node's parameters are one frozen dataclass. Each field carries its
description and unit in ``metadata``; nodes declare ROS parameters from it
(``tracevla_ros.nodes.common.declare_config``) and the YAML files under
``config/`` are checked against it (``load_params_file`` + ``config_from_params``).

Example::

    @dataclass(frozen=True)
    class TrackerConfig:
        grid_size: int = param(30, "dense re-query grid is K x K", unit="points")

        def __post_init__(self) -> None:
            check(self.grid_size >= 2, "grid_size", "must be >= 2")
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import math
import re
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

import yaml

__all__ = [
    "ConfigError",
    "param",
    "check",
    "field_specs",
    "FieldSpec",
    "config_from_params",
    "load_params_file",
    "parse_params_text",
    "load_node_config",
    "node_params",
    "SHARED",
    "config_dir",
    "ParamSource",
    "RosArgs",
    "parse_ros_args",
    "params_file_sources",
    "node_config_from_sources",
    "stack_param_names",
    "ROS_BUILTIN_PARAMS",
    "is_ros_builtin",
]

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value or file is wrong; the message says what to change."""


def param(default: Any, description: str, unit: str = "", read_only: bool = False) -> Any:
    """A dataclass field that is also a documented ROS parameter."""
    meta = {"description": description, "unit": unit, "read_only": read_only}
    if isinstance(default, (list, dict)):
        raise TypeError("use a tuple for sequence defaults (configs are frozen)")
    return dataclasses.field(default=default, metadata=meta)


def check(ok: bool, key: str, message: str) -> None:
    """Raise ConfigError naming ``key`` unless ``ok``; for ``__post_init__``."""
    if not ok:
        raise ConfigError(f"parameter '{key}' {message}")


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """One config field as a ROS parameter: name, Python type, default, docs."""

    name: str
    kind: str  # "bool" | "int" | "float" | "str" | "float[]" | "int[]" | "str[]"
    default: Any
    description: str
    unit: str
    read_only: bool


_SCALARS = {bool: "bool", int: "int", float: "float", str: "str"}


def _kind_of(tp: Any, cls: type, name: str) -> str:
    if tp in _SCALARS:
        return _SCALARS[tp]
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis and args[0] in (float, int, str):
        return _SCALARS[args[0]] + "[]"
    raise TypeError(f"{cls.__name__}.{name}: unsupported parameter type {tp!r}")


def field_specs(cls: type) -> list[FieldSpec]:
    """The parameters a config dataclass declares, in declaration order."""
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        if f.default is dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{f.name}: every parameter needs a default")
        specs.append(
            FieldSpec(
                name=f.name,
                kind=_kind_of(hints[f.name], cls, f.name),
                default=f.default,
                description=str(f.metadata.get("description", "")),
                unit=str(f.metadata.get("unit", "")),
                read_only=bool(f.metadata.get("read_only", False)),
            )
        )
    return specs


def _example(spec: FieldSpec) -> str:
    """How to write a valid value of ``spec``: its default, in YAML."""
    d = spec.default
    if isinstance(d, tuple):
        more = ", ..." if len(d) > 4 else ""
        return "[" + ", ".join(_yaml_scalar(v) for v in d[:4]) + more + "]"
    return _yaml_scalar(d)


def _yaml_scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v)


def _type_hint(spec: FieldSpec, value: Any) -> str:
    kind = spec.kind
    if kind == "str" and isinstance(value, (int, float, bool)):
        return f"quote it for a string ('{value}'), e.g. {_example(spec)}"
    if kind == "float" and isinstance(value, str):
        return f"write a number, e.g. {_example(spec)}"
    if kind == "int" and isinstance(value, float):
        return f"write a whole number without a decimal point, e.g. {_example(spec)}"
    if kind == "int":
        return f"write a whole number, e.g. {_example(spec)}"
    if kind == "bool":
        return "write true or false"
    return f"e.g. {_example(spec)}"


def _coerce(spec: FieldSpec, value: Any, where: str) -> Any:
    """``value`` as ``spec``'s Python type; ints widen to float; NaN/inf are refused."""
    def bad() -> ConfigError:
        return ConfigError(
            f"{where}: parameter '{spec.name}' expects {spec.kind}, "
            f"got {type(value).__name__} {value!r}; {_type_hint(spec, value)}"
        )

    kind = spec.kind
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise bad()
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad()
    if kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{where}: parameter '{spec.name}' expects a finite float, got "
                                  f"{value!r}; give a number, e.g. {_example(spec)}")
            return float(value)
        raise bad()
    if kind == "str":
        if isinstance(value, str):
            return value
        raise bad()
    # arrays
    if not isinstance(value, (list, tuple)):
        raise bad()
    elem = FieldSpec(spec.name, kind[:-2], None, "", "", False)
    out = []
    for v in value:
        if kind == "float[]" and isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{where}: parameter '{spec.name}' expects finite floats, got "
                              f"{list(value)!r}; e.g. {_example(spec)}")
        try:
            out.append(_coerce(elem, v, where))
        except ConfigError:
            raise bad() from None
    return tuple(out)


def config_from_params(cls: type[T], params: Mapping[str, Any], where: str = "parameters",
                       allow_unknown: bool = False) -> T:
    """Build a validated ``cls`` from a name->value mapping.

    Unknown keys are an error (a typo in a YAML file must not be ignored)
    unless ``allow_unknown``. Missing keys take the dataclass default.
    """
    specs = {s.name: s for s in field_specs(cls)}
    unknown = sorted(set(params) - set(specs))
    if unknown and not allow_unknown:
        raise ConfigError(
            f"{where}: unknown parameter(s) {unknown} for {cls.__name__}; "
            f"known: {sorted(specs)}"
        )
    kwargs = {k: _coerce(specs[k], v, where) for k, v in params.items() if k in specs}
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _read_params_file(path: Path) -> str:
    """The text of a parameter file; ConfigError saying what is wrong with the path."""
    if path.is_dir():
        raise ConfigError(f"params file {path} is a directory; give a ROS 2 parameter YAML file")
    if not path.exists():
        raise ConfigError(f"params file {path} does not exist; give the path of a ROS 2 "
                          "parameter YAML file (config/<robot>.yaml)")
    try:
        return path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read params file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"params file {path} is not a text file; give a ROS 2 parameter "
                          "YAML file") from None


def load_params_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read a ROS 2 parameter YAML file: ``{node_name: {param: value}}``.

    Accepts the standard layout (``node: {ros__parameters: {...}}``, also with
    ``/**`` or namespaced keys) and raises ConfigError naming the file and the
    key for anything else. Nested parameter dicts are flattened with dots.
    """
    path = Path(path)
    return parse_params_text(_read_params_file(path), str(path))


def parse_params_text(text: str, where: str) -> dict[str, dict[str, Any]]:
    """``load_params_file`` for YAML text (e.g. stored in a bag); ``where`` names it in errors.
    Sections are keyed by node name without namespace (``/**`` stays ``/**``)."""
    out: dict[str, dict[str, Any]] = {}
    for pattern, flat in parse_params_sections(text, where):
        out.setdefault(pattern if pattern == SHARED else pattern.split("/")[-1], {}).update(flat)
    return out


# --- YAML as rcl reads it ---------------------------------------------------------------
# rcl (not PyYAML's YAML 1.1 rules) types a parameter file's plain scalars: bool words, then
# an integer (strtol, base 0), then a double (strtod: 1e3, nan, inf), else a string; quoted
# scalars are strings. Reading the files the same way gives the node's values (``-p x:=inf``
# is a double there, not the string PyYAML would make of it).
_RCL_TRUE = frozenset("Y y yes Yes YES true True TRUE on On ON".split())
_RCL_FALSE = frozenset("N n no No NO false False FALSE off Off OFF".split())
_RCL_INT = re.compile(r"[+-]?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
_RCL_FLOAT = re.compile(r"[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|inf|infinity|nan)", re.I)
_YAML_SPECIAL = {".nan": math.nan, ".NaN": math.nan, ".NAN": math.nan, ".inf": math.inf,
                 ".Inf": math.inf, ".INF": math.inf, "+.inf": math.inf, "+.Inf": math.inf,
                 "+.INF": math.inf, "-.inf": -math.inf, "-.Inf": -math.inf, "-.INF": -math.inf}


def rcl_scalar(text: str) -> bool | int | float | str:
    """A plain (unquoted) YAML scalar typed as rcl types a parameter value."""
    if text in _RCL_TRUE or text in _RCL_FALSE:
        return text in _RCL_TRUE
    if _RCL_INT.fullmatch(text):
        digits = text.lstrip("+-")
        sign = -1 if text.startswith("-") else 1
        if len(digits) > 1 and digits[0] == "0" and digits[1] not in "xX":
            return sign * int(digits, 8)
        return sign * int(digits, 0)
    if text in _YAML_SPECIAL:
        return _YAML_SPECIAL[text]
    if _RCL_FLOAT.fullmatch(text):
        return float(text)
    return text


class _RclLoader(yaml.SafeLoader):
    """SafeLoader whose scalars are typed by ``rcl_scalar`` (plain) or kept as strings;
    mapping keys (node and parameter names) stay strings (``n:`` is a name, not false)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise yaml.constructor.ConstructorError(
                    None, None, "a key must be a name, not a list or mapping", key_node.start_mark)
            out[str(self.construct_scalar(key_node))] = self.construct_object(value_node, deep=deep)
        return out


_RclLoader.yaml_implicit_resolvers = {}  # every scalar reaches the str constructor below


def _construct_rcl_scalar(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    value = loader.construct_scalar(node)
    return rcl_scalar(str(value)) if node.style is None else value


_RclLoader.add_constructor("tag:yaml.org,2002:str", _construct_rcl_scalar)


def _load_yaml(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_RclLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{where}: not valid YAML{at}: {getattr(exc, 'problem', exc)}; "
                          "fix the file's syntax") from None


def parse_params_sections(text: str, where: str) -> list[tuple[str, dict[str, Any]]]:
    """The sections of a ROS 2 parameter file in order: (node pattern as written, e.g.
    ``/**``, ``tracker_node``, ``/ns/tracker_node``, ``ns/tracker_node`` for a nested
    namespace; flattened parameters)."""
    data = _load_yaml(text, where)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of node names at the top level "
                          "(node_name: {ros__parameters: {...}})")
    out: list[tuple[str, dict[str, Any]]] = []

    def walk(prefix: str, d: Mapping[Any, Any]) -> None:
        for name, body in d.items():
            full = f"{prefix}/{name}" if prefix else str(name)
            if isinstance(body, dict) and "ros__parameters" in body:
                params = body["ros__parameters"]
                if not isinstance(params, dict):
                    raise ConfigError(f"{where}: '{full}.ros__parameters' must be a mapping")
                flat: dict[str, Any] = {}
                _flatten(params, "", flat)
                out.append((full, flat))
            elif isinstance(body, dict) and body \
                    and all(isinstance(v, dict) for v in body.values()):
                walk(full, body)  # a namespace level: ns: {node: {ros__parameters: ...}}
            else:
                raise ConfigError(f"{where}: key '{full}' must contain a 'ros__parameters' mapping")

    walk("", data)
    return out


def _flatten(d: Mapping[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            _flatten(v, key + ".", out)
        else:
            out[key] = v


SHARED = "/**"  # the wildcard section: its parameters apply to every node that declares them


def node_params(sections: Mapping[str, Mapping[str, Any]], node_name: str,
                known: set[str] | None = None) -> dict[str, Any]:
    """The parameters ``node_name`` runs with: the ``/**`` section merged into its own.

    As rclpy/rclcpp do: a node's own value overrides the wildcard's, and a wildcard
    key applies only to nodes that declare it (``known``: the node's parameter
    names; None = keep every wildcard key).
    """
    shared = sections.get(SHARED, {})
    merged = {k: v for k, v in shared.items() if known is None or k in known}
    merged.update(sections.get(node_name, {}))
    return merged


def load_node_config(cls: type[T], path: str | Path, node_name: str) -> T:
    """Validate the ``node_name`` section of a parameter file against ``cls``.

    Parameters under ``/**`` apply to every node; keys a node does not declare
    are ignored there (they belong to other nodes), but not in its own section.
    """
    sections = load_params_file(path)
    if node_name not in sections and SHARED not in sections:
        raise ConfigError(f"{path}: no section for node '{node_name}' (found {sorted(sections)})")
    known = {s.name for s in field_specs(cls)}
    merged = node_params(sections, node_name, known)
    return config_from_params(cls, merged, where=f"{path} [{node_name}]")


def config_dir() -> Path:
    """The directory holding ``<robot>.yaml``: the installed share dir or the checkout's."""
    try:
        from ament_index_python.packages import get_package_share_directory

        share = Path(get_package_share_directory("tracevla_ros")) / "config"
        if share.is_dir():
            return share
    except (ImportError, LookupError, OSError):  # not installed through ament: the checkout
        pass
    return Path(__file__).resolve().parent.parent / "config"


# --- a node's parameters as its command line gives them ---------------------------------
# A node executable checks its parameters before ROS starts (nodes.common.run_node):
# every ``--params-file`` and ``-p`` of its ``--ros-args`` is read here, each value that
# applies to the node is checked against its config class, and an unknown key is an error
# (ROS itself ignores parameters a node does not declare). The rule for unknown keys:
# - in a section naming the node (``tracker_node``, ``/ns/tracker_node``) and in ``-p``:
#   every key must be one of the node's parameters;
# - in a wildcard section (``/**``, ``/**/x``, ``camera_*``), shared by all nodes of a
#   launch: every key must be declared by at least one node of the stack
#   (``stack_param_names``), since the others' keys legitimately pass by.

ROS_BUILTIN_PARAMS = frozenset({"use_sim_time", "start_type_description_service"})
_ROS_BUILTIN_PREFIXES = ("qos_overrides.",)


def is_ros_builtin(key: str) -> bool:
    """A parameter rclpy itself declares (``use_sim_time``, QoS overrides, ...)."""
    return key in ROS_BUILTIN_PARAMS or key.startswith(_ROS_BUILTIN_PREFIXES)

# Every node config of this package, by node (= executable) name; imported only when a
# wildcard key is not the checking node's own. Nodes of packages built on tracevla_ros
# (tracegen_node) check their own config in addition.
STACK_NODE_CONFIGS: dict[str, str] = {
    "camera_node": "tracevla_ros.camera.config:CameraConfig",
    "tracker_node": "tracevla_ros.tracking.config:TrackerConfig",
    "policy_node": "tracevla_ros.policy.config:PolicyNodeConfig",
    "recorder_node": "tracevla_ros.bag.config:RecorderConfig",
    "bag_player_node": "tracevla_ros.bag.config:BagPlayerConfig",
    "sim_node": "tracevla_ros.nodes.sim_config:SimNodeConfig",
    "widowx_controller_node": "tracevla_ros.control.controller_config:WidowXControllerConfig",
    "franka_controller_node": "tracevla_ros.control.controller_config:FrankaControllerConfig",
    "trace_viz_node": "tracevla_ros.viz.config:TraceVizConfig",
    "affordance_node": "tracevla_ros.affordance.config:AffordanceNodeConfig",
}


def stack_param_names() -> frozenset[str]:
    """Every parameter some node config of ``STACK_NODE_CONFIGS`` declares."""
    global _STACK_NAMES
    if _STACK_NAMES is None:
        names: set[str] = set()
        for target in STACK_NODE_CONFIGS.values():
            module, _, attr = target.partition(":")
            names |= {s.name for s in field_specs(getattr(importlib.import_module(module), attr))}
        _STACK_NAMES = frozenset(names)
    return _STACK_NAMES


_STACK_NAMES: frozenset[str] | None = None


@dataclasses.dataclass(frozen=True)
class ParamSource:
    """One place parameters come from: a section of a params file, or one ``-p``."""

    where: str  # as the user wrote it: "cfg.yaml [tracker_node]" or "-p lk_window:=13"
    pattern: str  # node pattern it applies to: "/**", "tracker_node", "/ns/tracker_node"
    values: Mapping[str, Any]
    strict: bool = False  # -p: an unknown key is an error even though it applies to /**

    @property
    def wildcard(self) -> bool:
        return "*" in self.pattern

    def applies_to(self, fqn: str) -> bool:
        """rcl's rule: ``*`` is one name token, ``**`` any number of them; a pattern without a
        leading ``/`` is relative to the root namespace."""
        tokens = self.pattern.strip("/").split("/")
        rx = "".join("(/[^/]+)*" if t == "**" else "/" + re.escape(t).replace(r"\*", "[^/]*")
                     for t in tokens)
        return re.fullmatch(rx, fqn) is not None


@dataclasses.dataclass(frozen=True)
class RosArgs:
    """What a node's ``--ros-args`` say about its parameters, name and namespace."""

    sources: tuple[ParamSource, ...] = ()
    node_name: str | None = None  # -r __node:=NAME
    namespace: str | None = None  # -r __ns:=/NS


def _check_rcl_value(value: Any, where: str, key: str) -> None:
    """What rcl refuses to parse (it would fail at start-up with a C error)."""
    if isinstance(value, dict):
        raise ConfigError(f"{where}: parameter '{key}' is a mapping; give a value or a list")
    if isinstance(value, list):
        kinds = {type(v).__name__ for v in value}
        if any(isinstance(v, (list, dict)) for v in value):
            raise ConfigError(f"{where}: parameter '{key}' = {value!r}: nested lists are not "
                              "ROS parameters; give a flat list")
        if len(kinds) > 1:
            hint = ("write every number with a decimal point, e.g. 1.0 for 1"
                    if kinds == {"int", "float"} else "give values of one type")
            raise ConfigError(f"{where}: parameter '{key}' = {value!r} mixes "
                              f"{' and '.join(sorted(kinds))}: a ROS list has one type; {hint}")


def params_file_sources(path: str | Path) -> list[ParamSource]:
    """The sections of a ``--params-file``; ConfigError for a missing file, a directory,
    invalid YAML, a wrong layout or a value rcl cannot read."""
    path = Path(path)
    out = []
    for pattern, values in parse_params_sections(_read_params_file(path), str(path)):
        where = f"{path} [{pattern}]"
        for key, value in values.items():
            _check_rcl_value(value, where, key)
        out.append(ParamSource(where, pattern, values))
    return out


def _cli_param(rule: str) -> ParamSource:
    """``-p [node:]name:=value``."""
    where = f"-p {rule}"
    name, sep, text = rule.partition(":=")
    parts = name.split(":")
    fix = "write -p name:=value (a string that is empty: -p \"name:=''\")"
    if not sep or not name or len(parts) > 2 or not all(parts):
        raise ConfigError(f"{where}: not a parameter rule; {fix}")
    if not text.strip():
        raise ConfigError(f"{where}: no value; {fix}")
    value = _load_yaml(text, where)
    key = parts[-1]
    _check_rcl_value(value, where, key)
    return ParamSource(where, "/**" if len(parts) == 1 else parts[0], {key: value}, strict=True)


_TAKES_VALUE = frozenset({"--params-file", "-p", "--param", "-r", "--remap", "--log-level",
                          "--log-config-file", "--log-file-name", "-e", "--enclave"})


def parse_ros_args(argv: Sequence[str]) -> RosArgs:
    """Read the parameter sources, ``__node`` and ``__ns`` of every ``--ros-args`` block."""
    sources: list[ParamSource] = []
    name = ns = None
    in_ros, i = False, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--ros-args":
            in_ros = True
        elif arg == "--":
            in_ros = False
        elif in_ros and arg in _TAKES_VALUE:
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise ConfigError(f"{arg} needs a value after it (e.g. {arg} "
                                  f"{'FILE.yaml' if arg == '--params-file' else 'name:=value'})")
            value = argv[i + 1]
            if arg == "--params-file":
                sources += params_file_sources(value)
            elif arg in ("-p", "--param"):
                sources.append(_cli_param(value))
            elif arg in ("-r", "--remap"):
                lhs, _, rhs = value.partition(":=")
                target = lhs.split(":")[-1]
                if target == "__node":
                    name = rhs
                elif target == "__ns":
                    ns = rhs
            i += 1
        i += 1
    return RosArgs(tuple(sources), name, ns)


def _did_you_mean(key: str, names: Any) -> str:
    close = difflib.get_close_matches(key, sorted(names), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _check_value(specs: Mapping[str, FieldSpec], src: ParamSource, key: str, value: Any,
                 node_name: str, stack_params: frozenset[str] | None) -> None:
    """One value of a source that applies to the node: a known key of the right type, or a
    ROS built-in, or (in a wildcard section) another node's parameter."""
    spec = specs.get(key)
    if spec is not None:
        if isinstance(value, list) and not value:
            if spec.default != ():
                raise ConfigError(
                    f"{src.where}: parameter '{key}' = []: ROS cannot type an empty list, so "
                    f"the node would run with the default {_example(spec)}; give the values or "
                    "remove the line")
            return
        _coerce(spec, value, src.where)
    elif is_ros_builtin(key):
        if key == "use_sim_time" and not isinstance(value, bool):
            raise ConfigError(f"{src.where}: parameter 'use_sim_time' expects bool, got "
                              f"{value!r}; write true or false")
    elif src.wildcard and not src.strict and (stack_params is None or key in stack_params):
        return  # another node's parameter
    elif src.wildcard and not src.strict:
        raise ConfigError(
            f"{src.where}: unknown parameter '{key}' (= {value!r}): no node of the stack "
            f"declares it{_did_you_mean(key, set(specs) | set(stack_params or ()))} "
            "(fix the name or remove it)")
    else:
        raise ConfigError(
            f"{src.where}: unknown parameter '{key}' (= {value!r}): {node_name} has no such "
            f"parameter{_did_you_mean(key, set(specs) | ROS_BUILTIN_PARAMS)} (fix the name or "
            "remove it; "
            "config/<robot>.yaml lists every parameter)")


def node_config_from_sources(cls: type[T], sources: Sequence[ParamSource], node_name: str,
                             namespace: str = "/",
                             stack_params: frozenset[str] | None = None) -> T:
    """``node_name``'s validated config from its parameter sources, resolved as rcl/rclpy
    resolve them (see below).

    Raises ConfigError naming the source (file and section, or the ``-p``), the key, the
    value and what is expected, for: a wrong type (an int is accepted for a float), a
    non-finite float, ``[]`` where the default is not empty (ROS would silently use the
    default), an unknown key (see the rule above; ``stack_params`` None: wildcard keys the
    node does not declare are skipped), a ``-p`` that a later-applied section overrides
    (ROS would silently ignore it) and the config's own checks.
    """
    specs = {s.name: s for s in field_specs(cls)}
    fqn = f"{'/' + namespace.strip('/') if namespace.strip('/') else ''}/{node_name}"
    # rcl keeps one entry per node pattern, ordered by its first appearance on the command
    # line; a later source updates its pattern's entry, and rclpy applies the matching
    # entries in that order (so a plain -p after a file with /** first and then the node's
    # section does NOT win: the node's entry comes later).
    entries: dict[str, dict[str, tuple[Any, ParamSource]]] = {}
    for src in sources:
        if not src.applies_to(fqn):
            continue
        entry = entries.setdefault("/" + src.pattern.lstrip("/"), {})
        for key, value in src.values.items():
            _check_value(specs, src, key, value, node_name, stack_params)
            entry[key] = (value, src)
    merged: dict[str, Any] = {}
    origin: dict[str, ParamSource] = {}
    for entry in entries.values():
        for key, (value, src) in entry.items():
            if key not in specs:
                continue
            if isinstance(value, list) and not value:  # [] has no type: rcl leaves it unset
                merged.pop(key, None)
                origin.pop(key, None)
                continue
            if key in origin and origin[key].strict and origin[key] is not src \
                    and merged[key] != _coerce(specs[key], value, src.where):
                raise ConfigError(
                    f"{origin[key].where}: has no effect: {src.where} sets '{key}' for "
                    f"{node_name} and ROS applies it later; write -p {node_name}:{key}:=... "
                    "after --params-file (or edit the file)")
            merged[key] = _coerce(specs[key], value, src.where)
            origin[key] = src
    try:
        return cls(**merged)
    except ConfigError as exc:
        m = re.search(r"parameter '([^']+)'", str(exc))
        key = m.group(1) if m else ""
        msg = str(exc)
        if key in origin:
            v = merged[key]
            got = "" if "got" in msg or f"'{v}'" in msg else f" (got {v!r})"
            raise ConfigError(f"{origin[key].where}: {msg}{got}") from None
        if key in specs:
            raise ConfigError(f"{msg} (not set: default {_example(specs[key])}; set it in the "
                              f"params file's {node_name} section or with -p {key}:=...)") from None
        raise
