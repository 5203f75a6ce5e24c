"""Replay options and the recorded run's node parameters (tracker, policy).

The tracker must run with the parameters it ran with on the robot, or the
traces differ. They are taken from, in order:

1. ``--config FILE`` (a ROS 2 parameter file, e.g. ``config/widowx.yaml``);
2. the bag's ``metadata.yaml`` ``custom_data`` key ``tracevla_ros.params``
   (the parameter file, stored by ``recorder_node``'s ``params_file`` and by
   ``tracevla-demo``);
3. ``params.yaml`` beside the bag directory (``tracevla-demo --out DIR`` layout);
4. the package's ``config/<robot>.yaml``, ``--robot`` or guessed from the bag
   (FR3 joint names or action frame, else WidowX).

``--tracker-param key=value`` then overrides single tracker values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tracevla_ros.bag.config import PARAMS_KEY
from tracevla_ros.bag.reader import BagReader
from tracevla_ros.config import (
    ConfigError,
    config_dir,
    config_from_params,
    load_params_file,
    node_params,
    parse_params_text,
)
from tracevla_ros.policy.base import Policy
from tracevla_ros.policy.config import PolicyNodeConfig
from tracevla_ros.policy.registry import BACKENDS, IN_PROCESS_ONLY, make_policy
from tracevla_ros.replay.recorded import RecordedRun
from tracevla_ros.tracking import TrackerConfig

__all__ = ["PARAMS_KEY", "ReplayOptions", "RunParams", "choose_policy", "load_run_params",
           "parse_overrides"]

ROBOT_FILES = {"widowx": "widowx.yaml", "fr3": "fr3.yaml"}


@dataclass(frozen=True)
class ReplayOptions:
    """Everything ``tracevla-replay`` takes (see ``tracevla_ros.tools.replay``)."""

    bag: Path
    out: Path
    topics: dict[str, str] = field(default_factory=dict)  # role -> topic; '' = auto-detect
    config: Path | None = None
    robot: str = ""  # '' = from the bag
    tracker_overrides: dict[str, Any] = field(default_factory=dict)
    policy: str = "auto"  # auto | none | registry name | module:function
    checkpoint: str | None = None
    device: str | None = None
    instruction: str | None = None
    schedule: str = "auto"  # auto | recorded | timer
    act_at: str = "auto"  # auto | recorded | steps
    speed: float = 0.0  # 0 = as fast as possible; 1 = recorded rate
    action_tol: float = 1e-5
    video: bool = True
    plots: bool = True
    progress: bool = True


@dataclass(frozen=True)
class RunParams:
    tracker: TrackerConfig
    policy: PolicyNodeConfig
    source: str  # where the parameters came from
    robot: str


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """['lk_window=15', 'backend=lk'] -> {'lk_window': 15, 'backend': 'lk'} (YAML-typed values)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--tracker-param expects KEY=VALUE, got '{item}'")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return out


def _guess_robot(recorded: RecordedRun) -> str:
    text = " ".join(recorded.joint_names) + " " + recorded.action_frame_id
    return "fr3" if "fr3" in text or "panda" in text else "widowx"


def load_run_params(bag: BagReader, opts: ReplayOptions, recorded: RecordedRun) -> RunParams:
    """Resolve the tracker and policy configuration of the recorded run (see module doc)."""
    robot = opts.robot or _guess_robot(recorded)
    if robot not in ROBOT_FILES:
        raise ConfigError(f"--robot must be one of {sorted(ROBOT_FILES)}, got '{robot}'")
    beside = bag.path.parent / "params.yaml" if bag.path.is_dir() else None
    if opts.config is not None:
        sections, source = load_params_file(opts.config), str(opts.config)
    elif PARAMS_KEY in bag.custom_data:
        sections = parse_params_text(bag.custom_data[PARAMS_KEY], f"{bag.path} custom_data")
        source = f"bag metadata custom_data['{PARAMS_KEY}']"
    elif beside is not None and beside.is_file():
        sections, source = load_params_file(beside), str(beside)
    else:
        path = config_dir() / ROBOT_FILES[robot]
        sections, source = load_params_file(path), f"{path} (robot '{robot}')"
    def section(node: str, cls: type) -> dict[str, Any]:
        return node_params(sections, node, {f.name for f in dataclasses.fields(cls)})

    tparams = section("tracker_node", TrackerConfig)
    tparams.update(opts.tracker_overrides)
    tracker = config_from_params(TrackerConfig, tparams, where=f"{source} [tracker_node]")
    pparams = section("policy_node", PolicyNodeConfig)
    if opts.checkpoint is not None:
        pparams["checkpoint"] = opts.checkpoint
    if opts.device is not None:
        pparams["device"] = opts.device
    policy = config_from_params(PolicyNodeConfig, pparams, where=f"{source} [policy_node]")
    return RunParams(tracker=tracker, policy=policy, source=source, robot=robot)


def _runnable(name: str) -> bool:
    return name in BACKENDS or ":" in name


def choose_policy(opts: ReplayOptions, recorded: RecordedRun,
                  cfg: PolicyNodeConfig) -> tuple[Policy | None, PolicyNodeConfig, str]:
    """The policy to replay (None = tracker only), its config, and a note saying why.

    ``auto``: the recorded actions' policy name if it is a loadable backend,
    else the configuration's ``policy_node.backend``; a backend that only runs
    inside the simulator (scripted) is not replayed. Raises ConfigError when
    the named backend cannot be built (unknown name, missing checkpoint).
    """
    name = opts.policy
    if name == "none":
        return None, cfg, "policy not run (--policy none)"
    if name == "auto":
        candidates = recorded.policy_names() + [cfg.backend]
        chosen = next((c for c in candidates if _runnable(c)), None)
        if chosen is None:
            why = "; ".join(f"'{c}': {IN_PROCESS_ONLY[c]}" for c in dict.fromkeys(candidates)
                            if c in IN_PROCESS_ONLY)
            return None, cfg, (f"the recorded policy {sorted(set(candidates))} cannot run offline"
                               f"{' (' + why + ')' if why else ''}; actions were not replayed: pass "
                               f"--policy BACKEND (known: {sorted(BACKENDS)} or module:function)")
        name = chosen
    cfg = dataclasses.replace(cfg, backend=name)
    return make_policy(cfg), cfg, f"backend '{name}'"
