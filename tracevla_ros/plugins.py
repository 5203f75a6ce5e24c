"""Extensions of ``tracevla-demo`` and ``tracevla-bench`` found through entry points.

Packages built on top of tracevla_ros (tracegen_ros: TraceGen on the Franka FR3) add demo
robots and benchmarks without tracevla_ros importing them; imports run one way only.

- group ``tracevla_ros.demos``: name = the ``--robot`` value, object = a :class:`DemoPlugin`;
- group ``tracevla_ros.benches``: name = the ``tracevla-bench`` subcommand, object = a module
  (or any object) with ``main(argv: list[str]) -> dict``, like the built-in benchmarks.

They are registered by the providing distribution's metadata: ``setup.py`` (``pip install
-e .``) and, for colcon, the ``setup.cfg`` handed to ``ament_python_install_package``; both
read ``scripts/entry_points.cfg``.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from typing import Any, Callable

DEMO_GROUP = "tracevla_ros.demos"
BENCH_GROUP = "tracevla_ros.benches"

# Who provides the extensions this repository knows of: named in the error when none is
# installed. Package names only (a string, never imported from here).
KNOWN_PROVIDERS: dict[str, dict[str, str]] = {
    DEMO_GROUP: {"fr3": "tracegen_ros"},
    BENCH_GROUP: {"tracegen": "tracegen_ros", "tracegen-sim": "tracegen_ros"},
}


class PluginMissing(LookupError):
    """No installed distribution provides this entry point; the message is one line."""


@dataclass(frozen=True)
class DemoPlugin:
    """A ``tracevla-demo --robot NAME`` loop provided by another package.

    ``configure(params, policy, checkpoint)`` edits config/<robot>.yaml's parameters in place;
    ``run(args, params, params_file, sim_thread_fn, topic_stats)`` runs the loop (until
    ``args.stop``, a ``tracevla_ros.stopping.StopRequest``, is set) and returns the
    exit status (``sim_thread_fn`` and ``topic_stats`` are tracevla-demo's own helpers).
    """

    policies: tuple[str, ...]
    loop: str  # "runs the TraceGen loop": the policy error's wording
    configure: Callable[[dict[str, Any], str, str], None]
    run: Callable[..., int]


def entry_points(group: str) -> dict[str, importlib.metadata.EntryPoint]:
    """Installed entry points of ``group`` by name (the first one on sys.path wins)."""
    out: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=group):
        out.setdefault(ep.name, ep)
    return out


def missing_message(group: str, name: str) -> str:
    provider = KNOWN_PROVIDERS.get(group, {}).get(name)
    where = (f"install the {provider} package (pip install -e . in this repository, or colcon "
             f"build)" if provider else "install the package that provides it")
    return f"'{name}' is provided by no installed package (entry point group {group}); {where}"


def load(group: str, name: str) -> Any:
    """The object registered as ``name`` in ``group``; :class:`PluginMissing` if none is."""
    ep = entry_points(group).get(name)
    if ep is None:
        raise PluginMissing(missing_message(group, name))
    return ep.load()


def load_demo(robot: str) -> DemoPlugin:
    plugin = load(DEMO_GROUP, robot)
    if not isinstance(plugin, DemoPlugin):
        raise TypeError(f"entry point {DEMO_GROUP}:{robot} is {type(plugin).__name__}, "
                        f"not a tracevla_ros.plugins.DemoPlugin")
    return plugin


__all__ = ["BENCH_GROUP", "DEMO_GROUP", "DemoPlugin", "KNOWN_PROVIDERS", "PluginMissing",
           "entry_points", "load", "load_demo", "missing_message"]
