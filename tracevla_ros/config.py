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
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

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


def _coerce(spec: FieldSpec, value: Any, where: str) -> Any:
    def bad() -> ConfigError:
        return ConfigError(
            f"{where}: parameter '{spec.name}' expects {spec.kind}, "
            f"got {type(value).__name__} {value!r}"
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
    try:
        return tuple(_coerce(elem, v, where) for v in value)
    except ConfigError:
        raise bad() from None


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


def load_params_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read a ROS 2 parameter YAML file: ``{node_name: {param: value}}``.

    Accepts the standard layout (``node: {ros__parameters: {...}}``, also with
    ``/**`` or namespaced keys) and raises ConfigError naming the file and the
    key for anything else. Nested parameter dicts are flattened with dots.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    return parse_params_text(text, str(path))


def parse_params_text(text: str, where: str) -> dict[str, dict[str, Any]]:
    """``load_params_file`` for YAML text (e.g. stored in a bag); ``where`` names it in errors."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{where}: not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of node names at the top level")
    out: dict[str, dict[str, Any]] = {}
    for node, body in data.items():
        if not isinstance(body, dict) or "ros__parameters" not in body:
            raise ConfigError(f"{where}: key '{node}' must contain a 'ros__parameters' mapping")
        params = body["ros__parameters"]
        if not isinstance(params, dict):
            raise ConfigError(f"{where}: '{node}.ros__parameters' must be a mapping")
        flat: dict[str, Any] = {}
        _flatten(params, "", flat)
        out[str(node).split("/")[-1] if node != "/**" else "/**"] = flat
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
