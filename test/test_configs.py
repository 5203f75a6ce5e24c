"""config/<robot>.yaml: every section validates against its node's config class,
and every node the robot runs has a section."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracevla_ros.bag.config import RecorderConfig
from tracevla_ros.camera.config import CameraConfig
from tracevla_ros.config import field_specs, load_node_config, load_params_file
from tracevla_ros.control.controller_config import FrankaControllerConfig, WidowXControllerConfig
from tracevla_ros.policy.config import PolicyNodeConfig
from tracevla_ros.tracking.config import TrackerConfig


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
    "tracegen_node": _tracegen_config,
}
ROBOT_NODES = {
    "widowx.yaml": {"camera_node", "tracker_node", "policy_node", "recorder_node", "sim_node",
                    "widowx_controller_node"},
    "fr3.yaml": {"camera_node", "tracker_node", "policy_node", "recorder_node", "sim_node",
                 "franka_controller_node", "tracegen_node"},
}


@pytest.mark.parametrize("name", sorted(ROBOT_NODES))
def test_every_section_validates_and_is_complete(repo_root: Path, name: str) -> None:
    path = repo_root / "config" / name
    sections = load_params_file(path)
    assert set(sections) == ROBOT_NODES[name]
    for node in sections:
        cls = CLASSES[node]()
        cfg = load_node_config(cls, path, node)  # raises ConfigError naming file/key/type
        declared = {s.name for s in field_specs(cls)}
        missing = declared - set(sections[node])
        assert not missing, f"{name} [{node}] does not set {sorted(missing)}"
        assert cfg is not None


def test_control_rates_agree(repo_root: Path) -> None:
    for name in ROBOT_NODES:
        s = load_params_file(repo_root / "config" / name)
        assert s["tracker_node"]["control_rate_hz"] == s["policy_node"]["control_rate_hz"], name
