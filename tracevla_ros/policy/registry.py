"""Policy backends by name. Adding a backend = adding a module and one entry.

Entries are ``"module:function"`` strings imported on first use, so heavy
dependencies (torch, transformers) load only for the backend that is chosen.
The function takes the node's ``PolicyNodeConfig`` and returns a ``Policy``.
"""

from __future__ import annotations

import importlib
from typing import Callable, cast

from tracevla_ros.config import ConfigError
from tracevla_ros.policy.base import Policy
from tracevla_ros.policy.config import PolicyNodeConfig

# name -> "module:factory"; the learned backends register here.
BACKENDS: dict[str, str] = {
    "tracevla-7b": "tracevla_ros.policy.vla.hf:make_tracevla_7b",
    "tracevla-phi3": "tracevla_ros.policy.vla.hf:make_tracevla_phi3",
    "openvla": "tracevla_ros.policy.vla.hf:make_openvla",
    "pixelvla-7b": "tracevla_ros.policy.pixelvla.backend:make_pixelvla_7b",
    "remote": "tracevla_ros.policy.remote.client:make_remote",
    "local": "tracevla_ros.policy.local.backend:make",
    "pixelvla": "tracevla_ros.policy.pixelvla_small.backend:make",
}

IN_PROCESS_ONLY = {
    "scripted": "the scripted expert reads the simulator's state, so it only runs inside "
                "tracevla-demo (--policy scripted)",
}


def backend_factory(name: str) -> Callable[[PolicyNodeConfig], Policy]:
    """The factory for a registered name, or for an explicit ``"package.module:function"``
    (a user's own backend, or a test's)."""
    spec = BACKENDS.get(name, name)
    module, _, func = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"parameter 'backend': cannot load '{spec}': {exc}") from exc
    return cast(Callable[[PolicyNodeConfig], Policy], factory)


def make_policy(cfg: PolicyNodeConfig) -> Policy:
    if cfg.backend in BACKENDS or ":" in cfg.backend:
        return backend_factory(cfg.backend)(cfg)
    if cfg.backend in IN_PROCESS_ONLY:
        raise ConfigError(f"parameter 'backend' = '{cfg.backend}': {IN_PROCESS_ONLY[cfg.backend]}")
    known = sorted(BACKENDS) + sorted(IN_PROCESS_ONLY)
    raise ConfigError(f"parameter 'backend': unknown policy backend '{cfg.backend}' (known: {known})")
