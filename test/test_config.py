"""Typed configs: YAML errors name the file, key and expected type; values reach a node."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tracevla_ros.config import (
    ConfigError,
    check,
    config_from_params,
    field_specs,
    load_node_config,
    load_params_file,
    param,
)


@dataclass(frozen=True)
class DemoConfig:
    rate_hz: float = param(5.0, "control rate", unit="Hz")
    grid_size: int = param(30, "dense grid is K x K", unit="points")
    frame_id: str = param("camera_color_optical_frame", "frame of the images")
    enabled: bool = param(True, "run at all")
    limits: tuple[float, ...] = param((1.0, 2.0), "per-joint limits", unit="rad")

    def __post_init__(self) -> None:
        check(self.rate_hz > 0, "rate_hz", f"must be > 0 Hz, got {self.rate_hz}")


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "robot.yaml"
    p.write_text(text)
    return p


def test_specs_carry_types_and_docs() -> None:
    specs = {s.name: s for s in field_specs(DemoConfig)}
    assert specs["rate_hz"].kind == "float" and specs["rate_hz"].unit == "Hz"
    assert specs["grid_size"].kind == "int"
    assert specs["limits"].kind == "float[]"


def test_valid_file_loads_and_ints_widen_to_float(tmp_path: Path) -> None:
    p = _write(tmp_path, "demo_node:\n  ros__parameters:\n    rate_hz: 10\n    limits: [0.5, 1]\n")
    cfg = load_node_config(DemoConfig, p, "demo_node")
    assert cfg.rate_hz == 10.0 and isinstance(cfg.rate_hz, float)
    assert cfg.limits == (0.5, 1.0)
    assert cfg.grid_size == 30  # default


def test_wrong_type_names_file_key_and_type(tmp_path: Path) -> None:
    p = _write(tmp_path, "demo_node:\n  ros__parameters:\n    grid_size: thirty\n")
    with pytest.raises(ConfigError) as e:
        load_node_config(DemoConfig, p, "demo_node")
    msg = str(e.value)
    assert str(p) in msg and "'grid_size'" in msg and "expects int" in msg and "'thirty'" in msg


def test_bool_is_not_an_int(tmp_path: Path) -> None:
    p = _write(tmp_path, "demo_node:\n  ros__parameters:\n    grid_size: true\n")
    with pytest.raises(ConfigError, match="'grid_size' expects int"):
        load_node_config(DemoConfig, p, "demo_node")


def test_unknown_key_is_an_error_not_ignored(tmp_path: Path) -> None:
    p = _write(tmp_path, "demo_node:\n  ros__parameters:\n    gird_size: 3\n")
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['gird_size'\]"):
        load_node_config(DemoConfig, p, "demo_node")


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    p = _write(tmp_path, "demo_node:\n  ros__parameters:\n    rate_hz: [1, 2\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+"):
        load_params_file(p)


def test_missing_ros_parameters_block(tmp_path: Path) -> None:
    p = _write(tmp_path, "demo_node:\n  rate_hz: 3\n")
    with pytest.raises(ConfigError, match="'demo_node' must contain a 'ros__parameters' mapping"):
        load_params_file(p)


def test_validation_message_says_what_to_change(tmp_path: Path) -> None:
    p = _write(tmp_path, "demo_node:\n  ros__parameters:\n    rate_hz: -1.0\n")
    with pytest.raises(ConfigError, match=r"'rate_hz' must be > 0 Hz, got -1.0"):
        load_node_config(DemoConfig, p, "demo_node")


def test_missing_node_section(tmp_path: Path) -> None:
    p = _write(tmp_path, "other_node:\n  ros__parameters:\n    x: 1\n")
    with pytest.raises(ConfigError, match="no section for node 'demo_node'"):
        load_node_config(DemoConfig, p, "demo_node")


def test_wildcard_section_applies_to_declared_keys_only(tmp_path: Path) -> None:
    p = _write(tmp_path, "/**:\n  ros__parameters:\n    rate_hz: 7.0\n    robot_name: wx250s\n")
    assert load_node_config(DemoConfig, p, "demo_node").rate_hz == 7.0


def test_config_from_params_rejects_wrong_array_element() -> None:
    with pytest.raises(ConfigError, match="'limits' expects float\\[\\]"):
        config_from_params(DemoConfig, {"limits": [1.0, "x"]})


@pytest.mark.ros
def test_declare_config_reads_params_file_in_a_real_node(tmp_path: Path) -> None:
    rclpy = pytest.importorskip("rclpy")
    from rclpy.node import Node

    from tracevla_ros.nodes.common import declare_config

    p = _write(tmp_path, "demo_node:\n  ros__parameters:\n    rate_hz: 12.5\n"
                         "    frame_id: cam\n    limits: [3.0, 4.0, 5.0]\n")
    ctx = rclpy.Context()
    rclpy.init(args=["--ros-args", "--params-file", str(p)], context=ctx)
    try:
        node = Node("demo_node", context=ctx)
        cfg = declare_config(node, DemoConfig)
        assert cfg == DemoConfig(rate_hz=12.5, frame_id="cam", limits=(3.0, 4.0, 5.0))
        desc = node.describe_parameter("rate_hz")
        assert "control rate" in desc.description and "[Hz]" in desc.description
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


@pytest.mark.ros
def test_declare_config_rejects_wrong_type_override(tmp_path: Path) -> None:
    rclpy = pytest.importorskip("rclpy")
    from rclpy.node import Node

    from tracevla_ros.nodes.common import declare_config

    p = _write(tmp_path, "demo_node:\n  ros__parameters:\n    grid_size: 'many'\n")
    ctx = rclpy.Context()
    rclpy.init(args=["--ros-args", "--params-file", str(p)], context=ctx)
    try:
        node = Node("demo_node", context=ctx)
        with pytest.raises(ConfigError, match="parameter 'grid_size' expects int"):
            declare_config(node, DemoConfig)
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)
