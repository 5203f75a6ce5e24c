"""Strict, typed ``from_dict`` for the frozen config dataclasses of every trainer.

    cfg = from_dict(ModelConfig, data, where="ckpt/config.json: model")

Every key must be a field (unknown keys: written by other code), every field
without a default must be present (``require_all``: every field), and every
value must have the field's type: ``bool``, ``int`` (not bool), ``float``
(finite; ints accepted), ``str``, ``tuple[T, ...]`` / ``tuple[T1, T2]`` (from
JSON lists), ``dict[str, Any]`` / ``Any`` (taken as is), ``X | None`` and
nested dataclasses. The first mismatch raises ``FieldError`` naming ``where``
and the key path (``model.depth expects int, got str 'two'``); a
``ValueError`` from the dataclass's own ``__post_init__`` is re-raised as
``FieldError`` with ``where`` in front.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Mapping, TypeVar

from tracetrain.errors import FieldError

__all__ = ["from_dict", "to_dict"]

T = TypeVar("T")


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _bad(key: str, tp: Any, value: Any) -> FieldError:
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return FieldError(f"key '{key}' expects {_name(tp)}, got {type(value).__name__} {shown}")


def _coerce(tp: Any, value: Any, key: str) -> Any:
    if tp is Any:
        return value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        rest = [a for a in args if a is not type(None)]
        errors = []
        for a in rest:
            try:
                return _coerce(a, value, key)
            except FieldError as exc:
                errors.append(exc)
        raise errors[0] if len(rest) == 1 else _bad(key, tp, value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _bad(key, tp, value)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _bad(key, tp, value)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise FieldError(f"key '{key}' is {value} (not finite); give a finite number")
            return float(value)
        raise _bad(key, tp, value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _bad(key, tp, value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _bad(key, tp, value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise FieldError(f"key '{key}' expects {len(args)} values, got {len(value)}")
        return tuple(_coerce(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise _bad(key, tp, value)
        return dict(value)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise _bad(key, tp, value)
        inner = args[0] if args else Any
        return [_coerce(inner, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, Mapping):
            raise _bad(key, tp, value)
        return _build(tp, value, key + ".", require_all=False)
    raise TypeError(f"from_dict: unsupported field type {tp!r} for '{key}'")


def _build(cls: type[T], data: Mapping[str, Any], prefix: str, require_all: bool) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise FieldError(f"unknown key(s) {[prefix + k for k in unknown]} (written by other "
                         f"code?); {cls.__name__} has {sorted(fields)}")
    missing = sorted(k for k, f in fields.items() if k not in data and (
        require_all or (f.default is dataclasses.MISSING
                        and f.default_factory is dataclasses.MISSING)))
    if missing:
        raise FieldError(f"missing key(s) {[prefix + k for k in missing]} (written by older "
                         "code? retrain, or add them explicitly)")
    kwargs = {k: _coerce(hints[k], v, prefix + k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except FieldError:
        raise
    except (ValueError, TypeError) as exc:
        raise FieldError(f"{prefix.rstrip('.') or cls.__name__}: {exc}") from None


def from_dict(cls: type[T], data: Any, where: str, require_all: bool = False) -> T:
    """A validated ``cls`` from ``data`` (see the module docstring); FieldError names ``where``."""
    if not isinstance(data, Mapping):
        raise FieldError(f"{where}: expected a JSON object for {cls.__name__}, "
                         f"got {type(data).__name__}")
    try:
        return _build(cls, data, "", require_all)
    except FieldError as exc:
        raise FieldError(f"{where}: {exc}") from None


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as JSON-ready values (tuples become lists)."""
    def plain(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
