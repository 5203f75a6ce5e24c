"""sim_node's config: defaults valid, YAML sections valid, bad values rejected with the key."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("rclpy")

from tracevla_ros.config import ConfigError, load_node_config  # noqa: E402
from tracevla_ros.nodes.sim_node import SimNodeConfig  # noqa: E402
from tracevla_ros.sim.tasks import get_task  # noqa: E402
from tracevla_ros.robots import get_robot  # noqa: E402


@pytest.mark.parametrize("robot_yaml", ["widowx.yaml", "fr3.yaml"])
def test_yaml_sections_are_valid(repo_root: Path, robot_yaml: str) -> None:
    cfg = load_node_config(SimNodeConfig, repo_root / "config" / robot_yaml, "sim_node")
    spec = get_robot(cfg.robot)
    assert get_task(cfg.task, spec.name).name == cfg.task


@pytest.mark.parametrize("kwargs,key", [
    ({"physics_rate_hz": 5.0}, "physics_rate_hz"),
    ({"camera_rate_hz": 0.0}, "camera_rate_hz"),
    ({"joint_state_rate_hz": 500.0}, "joint_state_rate_hz"),
    ({"stamp_source": "gps"}, "stamp_source"),
    ({"arm_controller": ""}, "arm_controller"),
])
def test_bad_values_name_the_parameter(kwargs: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        SimNodeConfig(**kwargs)  # type: ignore[arg-type]
