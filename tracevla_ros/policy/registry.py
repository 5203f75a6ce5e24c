"""Policy backends by name. Adding a backend = adding a module and one entry."""

from __future__ import annotations

from typing import Callable

from tracevla_ros.config import ConfigError
from tracevla_ros.policy.base import Policy
from tracevla_ros.policy.config import PolicyNodeConfig

# name -> factory(config) ; learned backends (local, remote, tracevla-7b, openvla)
# register here as they land.
BACKENDS: dict[str, Callable[[PolicyNodeConfig], Policy]] = {}

IN_PROCESS_ONLY = {
    "scripted": "the scripted expert reads the simulator's state, so it only runs inside "
                "tracevla-demo (--policy scripted)",
}


def make_policy(cfg: PolicyNodeConfig) -> Policy:
    if cfg.backend in BACKENDS:
        return BACKENDS[cfg.backend](cfg)
    if cfg.backend in IN_PROCESS_ONLY:
        raise ConfigError(f"parameter 'backend' = '{cfg.backend}': {IN_PROCESS_ONLY[cfg.backend]}")
    known = sorted(BACKENDS) + sorted(IN_PROCESS_ONLY)
    raise ConfigError(f"parameter 'backend': unknown policy backend '{cfg.backend}' (known: {known})")
