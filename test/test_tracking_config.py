"""TrackerConfig: presets, explicit overrides, validation."""

from __future__ import annotations

import pytest

from tracevla_ros.config import ConfigError, config_from_params
from tracevla_ros.tracking.config import DEFAULT_PRESET, PRESETS, TrackerConfig


def test_presets_resolve_to_published_values() -> None:
    paper = TrackerConfig(preset="paper")
    assert (paper.grid_size, paper.num_points, paper.history, paper.redraw_steps) == (40, 5, 6, 20)
    authors = TrackerConfig(preset="authors")
    assert (authors.grid_size, authors.num_points, authors.history, authors.redraw_steps) == (30, 5, 10, 25)
    assert authors.kappa_px == 1.0 and authors.draw_length == 10
    assert authors.untraced_retry_steps == 6  # authors retry after > 5 untraced steps


def test_default_preset_is_authors() -> None:
    assert DEFAULT_PRESET == "authors"
    assert TrackerConfig().history == PRESETS["authors"]["history"]


def test_explicit_values_override_the_preset() -> None:
    cfg = TrackerConfig(preset="paper", num_points=8, kappa_px=0.0)
    assert cfg.num_points == 8 and cfg.kappa_px == 0.0 and cfg.grid_size == 40
    assert TrackerConfig.from_preset("authors", history=15, draw_length=15).draw_length == 15


def test_params_mapping_like_a_yaml_section() -> None:
    cfg = config_from_params(TrackerConfig, {"preset": "paper", "grid_size": 20})
    assert cfg.grid_size == 20 and cfg.history == 6


@pytest.mark.parametrize("kwargs, key", [
    ({"preset": "nope"}, "preset"),
    ({"grid_size": 1}, "grid_size"),
    ({"history": -3}, "history"),
    ({"draw_length": 12, "history": 6}, "draw_length"),
    ({"backend": "sift"}, "backend"),
    ({"lk_window": 14}, "lk_window"),
    ({"control_rate_hz": 0.0}, "control_rate_hz"),
])
def test_bad_values_raise_naming_the_parameter(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        TrackerConfig(**kwargs)


def test_from_preset_rejects_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="grid"):
        TrackerConfig.from_preset("paper", grid=3)
