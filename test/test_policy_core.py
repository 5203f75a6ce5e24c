"""Policy interface: observation checks, output validation, stamp pairing, registry errors."""

from __future__ import annotations

import numpy as np
import pytest

from tracevla_ros.config import ConfigError
from tracevla_ros.policy.base import ActionChunk, Observation, PolicyError, validate_chunk
from tracevla_ros.policy.config import PolicyNodeConfig
from tracevla_ros.policy.pairing import ObservationPairer, TraceInfo
from tracevla_ros.policy.registry import make_policy

IMG = np.zeros((8, 8, 3), np.uint8)


def test_observation_rejects_bad_inputs() -> None:
    with pytest.raises(PolicyError, match="instruction is empty"):
        Observation(image=IMG, overlay=None, instruction="   ")
    with pytest.raises(PolicyError, match=r"\(H, W, 3\) uint8 RGB"):
        Observation(image=np.zeros((8, 8), np.uint8), overlay=None, instruction="go")
    with pytest.raises(PolicyError, match="overlay shape"):
        Observation(image=IMG, overlay=np.zeros((4, 4, 3), np.uint8), instruction="go")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_output_is_rejected(bad: float) -> None:
    v = np.zeros((1, 7), np.float32)
    v[0, 3] = bad
    with pytest.raises(PolicyError, match="non-finite value at step 0, dim 3"):
        validate_chunk(ActionChunk(values=v))


def test_shape_and_gripper_checks() -> None:
    with pytest.raises(PolicyError, match=r"\(H>=1, 7\)"):
        validate_chunk(ActionChunk(values=np.zeros((1, 6), np.float32)))
    with pytest.raises(PolicyError, match="gripper values must be in"):
        validate_chunk(ActionChunk(values=np.array([[0, 0, 0, 0, 0, 0, 1.5]], np.float32)))
    ok = validate_chunk(ActionChunk(values=np.array([0, 0, 0, 0, 0, 0, 1.0], np.float32)))
    assert ok.values.shape == (1, 7)


def test_pairer_matches_by_stamp_and_never_reuses_a_frame() -> None:
    p = ObservationPairer(require_trace=True, tolerance_s=1e-4)
    p.add_image(1.0, IMG)
    assert p.latest() is None  # no trace yet for frame 1.0
    p.add_trace(TraceInfo(1.0, valid=False))
    got = p.latest()
    assert got is not None and got.stamp == 1.0 and got.overlay is None and not got.trace_valid
    assert p.latest() is None  # used
    p.add_image(2.0, IMG + 1)
    p.add_trace(TraceInfo(2.0, valid=True))
    assert p.latest() is None  # valid trace needs its overlay
    p.add_overlay(2.0 + 5e-5, IMG + 2)  # within tolerance
    got = p.latest()
    assert got is not None and got.stamp == 2.0 and got.trace_valid
    assert got.overlay is not None and int(got.overlay[0, 0, 0]) == 2


def test_pairer_prefers_newest_complete_frame_and_drops_older() -> None:
    p = ObservationPairer(require_trace=True)
    for t in (1.0, 2.0, 3.0):
        p.add_image(t, IMG)
    p.add_trace(TraceInfo(1.0, False))
    p.add_trace(TraceInfo(2.0, False))
    assert p.latest().stamp == 2.0  # 3.0 incomplete, 2.0 newest complete
    p.add_trace(TraceInfo(1.0, False))
    assert p.latest() is None  # 1.0 is older than the last used frame


def test_pairer_without_trace_uses_newest_image() -> None:
    p = ObservationPairer(require_trace=False)
    p.add_image(1.0, IMG)
    p.add_image(2.0, IMG)
    assert p.latest().stamp == 2.0


def test_registry_errors_are_actionable() -> None:
    with pytest.raises(ConfigError, match="only runs inside tracevla-demo"):
        make_policy(PolicyNodeConfig(backend="scripted"))
    with pytest.raises(ConfigError, match="unknown policy backend 'gpt'"):
        make_policy(PolicyNodeConfig(backend="gpt"))


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="control_rate_hz"):
        PolicyNodeConfig(control_rate_hz=0.0)
