"""The transformers loading path against a tiny randomly initialised checkpoint.

Needs ``transformers`` (requirements-vla.txt); skipped without it. The
checkpoint is built locally (``support/tiny_vla.py``): a 1-layer Llama with
image patches and an OpenVLA-style ``predict_action`` as trust_remote_code
modules, a word-level tokenizer and a trivial image processor. Two copies
differ only in whether ``predict_action`` unnormalises (like OpenVLA's) or not
(like the TraceVLA repository's copy); the backend must produce the same final actions from both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

transformers = pytest.importorskip("transformers", reason="needs transformers (requirements-vla.txt)")
torch = pytest.importorskip("torch")

from tracevla_ros.policy.config import PolicyNodeConfig  # noqa: E402
from tracevla_ros.policy.vla.actions import UNNORM_BY_MODEL, UNNORM_BY_POLICY  # noqa: E402
from tracevla_ros.policy.vla.hf import make_openvla, make_tracevla_7b  # noqa: E402

from support.tiny_vla import BRIDGE, observation as _obs, write_tiny_checkpoint  # noqa: E402


def test_tiny_checkpoint_through_the_real_loading_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    unnorm_in_model = write_tiny_checkpoint(tmp_path / "a", unnormalize_in_model=True)
    normalized_only = write_tiny_checkpoint(tmp_path / "b", unnormalize_in_model=False)
    pa = make_tracevla_7b(PolicyNodeConfig(checkpoint=str(unnorm_in_model), device="cpu"))
    pb = make_tracevla_7b(PolicyNodeConfig(checkpoint=str(normalized_only), device="cpu"))
    assert (pa.unnorm, pb.unnorm) == (UNNORM_BY_MODEL, UNNORM_BY_POLICY)
    assert pa.vocab_size == 32000 and pa.dtype == torch.float32
    from transformers.generation.utils import GenerationMixin

    assert GenerationMixin.generate.__name__ == "generate"  # the probe put the real generate back
    for trace in (False, True):
        ca, cb = pa.infer(_obs(trace)), pb.infer(_obs(trace))
        assert ca.values.shape == (1, 7) and np.all(np.isfinite(ca.values))
        assert ca.trace_used == trace
        np.testing.assert_allclose(ca.values, cb.values, rtol=1e-6, atol=1e-9)  # unnormalised once
        q01, q99 = np.array(BRIDGE["action"]["q01"]), np.array(BRIDGE["action"]["q99"])
        assert np.all(ca.values[0, :6] >= q01[:6] - 1e-6) and np.all(ca.values[0, :6] <= q99[:6] + 1e-6)
    po = make_openvla(PolicyNodeConfig(checkpoint=str(normalized_only), device="cpu", use_trace=False))
    assert po.infer(_obs(True)).trace_used is False
