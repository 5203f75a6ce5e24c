"""config/<robot>.yaml: every section validates against its node's config class,
every node the robot runs has a section, and the ``/**`` section holds the values
several nodes share (each key declared by two or more of the robot's nodes, set once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracevla_ros.affordance.config import AffordanceNodeConfig
from tracevla_ros.bag.config import BagPlayerConfig, RecorderConfig
from tracevla_ros.camera.config import CameraConfig
from tracevla_ros.config import SHARED, field_specs, load_node_config, load_params_file, node_params
from tracevla_ros.control.controller_config import FrankaControllerConfig, WidowXControllerConfig
from tracevla_ros.policy.config import PolicyNodeConfig
from tracevla_ros.tracking.config import TrackerConfig
from tracevla_ros.viz.config import TraceVizConfig


def _sim_config() -> type:
    from tracevla_ros.nodes.sim_node import SimNodeConfig

    return SimNodeConfig


def _tracegen_config() -> type:
    from tracegen_ros.node_config import TraceGenNodeConfig

    return TraceGenNodeConfig


CLASSES = {
    "camera_node": lambda: CameraConfig,
    "tracker_node": lambda: TrackerConfig,
    "policy_node": lambda: PolicyNodeConfig,
    "recorder_node": lambda: RecorderConfig,
    "sim_node": _sim_config,
    "widowx_controller_node": lambda: WidowXControllerConfig,
    "franka_controller_node": lambda: FrankaControllerConfig,
    "trace_viz_node": lambda: TraceVizConfig,
    "bag_player_node": lambda: BagPlayerConfig,
    "tracegen_node": _tracegen_config,
    "affordance_node": lambda: AffordanceNodeConfig,
}
ROBOT_NODES = {
    "widowx.yaml": {"camera_node", "tracker_node", "policy_node", "recorder_node", "sim_node",
                    "widowx_controller_node", "trace_viz_node", "bag_player_node", "affordance_node"},
    "fr3.yaml": {"camera_node", "tracker_node", "policy_node", "recorder_node", "sim_node",
                 "franka_controller_node", "trace_viz_node", "bag_player_node", "tracegen_node"},
}


@pytest.mark.parametrize("name", sorted(ROBOT_NODES))
def test_every_section_validates_and_is_complete(repo_root: Path, name: str) -> None:
    path = repo_root / "config" / name
    sections = load_params_file(path)
    assert set(sections) == ROBOT_NODES[name] | {SHARED}
    for node in ROBOT_NODES[name]:
        cls = CLASSES[node]()
        cfg = load_node_config(cls, path, node)  # raises ConfigError naming file/key/type
        declared = {s.name for s in field_specs(cls)}
        missing = declared - set(node_params(sections, node, declared))
        assert not missing, f"{name} [{node}] does not set {sorted(missing)}"
        assert cfg is not None


@pytest.mark.parametrize("name", sorted(ROBOT_NODES))
def test_shared_values_are_set_once(repo_root: Path, name: str) -> None:
    """Every /** key is declared by >= 2 of the robot's nodes (else it belongs in that
    node's section), and no node's section repeats a /** key (it would override it)."""
    sections = load_params_file(repo_root / "config" / name)
    declared = {node: {s.name for s in field_specs(CLASSES[node]())} for node in ROBOT_NODES[name]}
    shared = sections[SHARED]
    assert {"control_rate_hz", "base_frame", "arm_controller"} <= set(shared)
    for key in shared:
        users = sorted(n for n, keys in declared.items() if key in keys)
        assert len(users) >= 2, f"{name}: /** {key} is used by {users} only"
        repeated = [n for n in ROBOT_NODES[name] if key in sections[n]]
        assert not repeated, f"{name}: {repeated} set /** {key} again"


def test_control_rates_agree(repo_root: Path) -> None:
    for name in ROBOT_NODES:
        s = load_params_file(repo_root / "config" / name)
        assert node_params(s, "tracker_node")["control_rate_hz"] == \
            node_params(s, "policy_node")["control_rate_hz"], name


def test_node_section_overrides_the_wildcard(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text("/**:\n  ros__parameters:\n    control_rate_hz: 5.0\n    base_frame: a\n"
                 "policy_node:\n  ros__parameters:\n    control_rate_hz: 2.0\n")
    policy = load_node_config(PolicyNodeConfig, p, "policy_node")
    tracker = load_node_config(TrackerConfig, p, "tracker_node")  # base_frame: not its key
    assert (policy.control_rate_hz, policy.base_frame) == (2.0, "a")
    assert tracker.control_rate_hz == 5.0
