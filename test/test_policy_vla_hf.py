"""The transformers loading path against a tiny randomly initialised checkpoint.

Needs ``transformers`` (requirements-vla.txt); skipped without it. The
checkpoint is built here: a 1-layer Llama with an OpenVLA-style
``predict_action`` as trust_remote_code modules, a word-level tokenizer and a
trivial image processor. Two copies differ only in whether ``predict_action``
unnormalises (like OpenVLA's) or not (like the TraceVLA repository's copy);
the backend must produce the same final actions from both.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

transformers = pytest.importorskip("transformers", reason="needs transformers (requirements-vla.txt)")
torch = pytest.importorskip("torch")

from tracevla_ros.policy.base import Observation  # noqa: E402
from tracevla_ros.policy.config import PolicyNodeConfig  # noqa: E402
from tracevla_ros.policy.vla.actions import UNNORM_BY_MODEL, UNNORM_BY_POLICY  # noqa: E402
from tracevla_ros.policy.vla.hf import make_openvla, make_tracevla_7b  # noqa: E402

BRIDGE = {"action": {
    "q01": [-0.02872725307941437, -0.04170349963009357, -0.026093858778476715,
            -0.08092105075716972, -0.09288699507713317, -0.20718276381492615, 0.0],
    "q99": [0.028309678435325586, 0.040855254605412394, 0.040161586627364146,
            0.08192047759890528, 0.07792850524187081, 0.20382574498653397, 1.0],
    "mask": [True, True, True, True, True, True, False]}}

CONFIG_PY = '''
from transformers import LlamaConfig

class TinyVLAConfig(LlamaConfig):
    model_type = "tiny_vla"

    def __init__(self, norm_stats=None, unnormalize_in_model=True, pad_to_multiple_of=64, **kw):
        self.norm_stats = norm_stats
        self.unnormalize_in_model = unnormalize_in_model
        self.pad_to_multiple_of = pad_to_multiple_of
        super().__init__(**kw)
'''

MODELING_PY = '''
import numpy as np
from transformers import LlamaForCausalLM
from .configuration_tiny import TinyVLAConfig

class TinyVLAForActionPrediction(LlamaForCausalLM):
    config_class = TinyVLAConfig

    def __init__(self, config):
        super().__init__(config)
        self.n_bins = 256
        self.vocab_size = config.vocab_size - config.pad_to_multiple_of  # as OpenVLA's class does

    def forward(self, input_ids=None, pixel_values=None, **kw):
        return super().forward(input_ids=input_ids, **kw)

    def predict_action(self, input_ids=None, unnorm_key=None, **kw):
        out = self.generate(input_ids, max_new_tokens=7, **kw)
        ids = out[0, -7:].cpu().numpy()
        edges = np.linspace(-1, 1, self.n_bins)
        centres = (edges[:-1] + edges[1:]) / 2
        a = centres[np.clip(self.vocab_size - ids - 1, 0, 254)]
        if not self.config.unnormalize_in_model:
            return a
        s = self.config.norm_stats[unnorm_key]["action"]
        lo, hi = np.array(s["q01"]), np.array(s["q99"])
        return np.where(np.array(s["mask"]), 0.5 * (a + 1) * (hi - lo) + lo, a)
'''

PROCESSING_PY = '''
import numpy as np
import torch
from transformers import BatchFeature
from transformers.image_processing_utils import ImageProcessingMixin
from transformers.processing_utils import ProcessorMixin

class TinyImageProcessor(ImageProcessingMixin):
    model_input_names = ["pixel_values"]

    def __call__(self, images, return_tensors=None):
        images = images if isinstance(images, list) else [images]
        arr = np.stack([np.asarray(i.convert("RGB").resize((16, 16)), np.float32) / 255 for i in images])
        return BatchFeature({"pixel_values": torch.from_numpy(arr).permute(0, 3, 1, 2)[None]})

class TinyProcessor(ProcessorMixin):
    attributes = ["image_processor", "tokenizer"]
    image_processor_class = "AutoImageProcessor"
    tokenizer_class = "AutoTokenizer"

    def __call__(self, text, images):
        px = self.image_processor(images)["pixel_values"]
        tok = self.tokenizer(text, return_tensors="pt")
        return BatchFeature({**tok, "pixel_values": px})
'''


def _write_tiny_checkpoint(d: Path, unnormalize_in_model: bool) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers

    d.mkdir(parents=True)
    (d / "configuration_tiny.py").write_text(CONFIG_PY)
    (d / "modeling_tiny.py").write_text(MODELING_PY)
    (d / "processing_tiny.py").write_text(PROCESSING_PY)
    # import the remote code once to create the weights (same seed -> same weights)
    pkg = f"tiny_vla_{d.name}"
    for mod in ("configuration_tiny", "modeling_tiny"):
        spec = importlib.util.spec_from_file_location(f"{pkg}.{mod}", d / f"{mod}.py",
                                                      submodule_search_locations=None)
        assert spec is not None and spec.loader is not None
        m = importlib.util.module_from_spec(spec)
        m.__package__ = pkg
        sys.modules[f"{pkg}.{mod}"] = m
        if pkg not in sys.modules:
            sys.modules[pkg] = type(sys)(pkg)
            sys.modules[pkg].__path__ = [str(d)]  # type: ignore[attr-defined]
        spec.loader.exec_module(m)
    cfg_cls = sys.modules[f"{pkg}.configuration_tiny"].TinyVLAConfig
    model_cls = sys.modules[f"{pkg}.modeling_tiny"].TinyVLAForActionPrediction
    torch.manual_seed(0)
    cfg = cfg_cls(vocab_size=32064, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                  num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                  norm_stats={"bridge_orig": BRIDGE}, unnormalize_in_model=unnormalize_in_model)
    model_cls(cfg).save_pretrained(d, safe_serialization=True)
    conf = json.loads((d / "config.json").read_text())
    conf["auto_map"] = {"AutoConfig": "configuration_tiny.TinyVLAConfig",
                        "AutoModelForVision2Seq": "modeling_tiny.TinyVLAForActionPrediction"}
    (d / "config.json").write_text(json.dumps(conf))
    words = ("in: what action should the robot take to put carrot on plate probe you are given two "
             "images: one with original observation, and another marked historical traces of end "
             "effector moving objects, separated by a special separator token. ?\nout:").split()
    vocab = {"[UNK]": 0, "<s>": 1, **{w: i + 2 for i, w in enumerate(dict.fromkeys(words))}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]", "bos_token": "<s>",
         "model_input_names": ["input_ids", "attention_mask"],
         "processor_class": "TinyProcessor",
         "auto_map": {"AutoProcessor": "processing_tiny.TinyProcessor"}}))
    (d / "preprocessor_config.json").write_text(json.dumps(
        {"image_processor_type": "TinyImageProcessor", "processor_class": "TinyProcessor",
         "auto_map": {"AutoImageProcessor": "processing_tiny.TinyImageProcessor",
                      "AutoProcessor": "processing_tiny.TinyProcessor"}}))
    return d


def _obs(trace: bool) -> Observation:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    ovl = img.copy()
    ovl[200:210] = 255
    return Observation(image=img, overlay=ovl if trace else None, instruction="Put carrot on plate")


def test_tiny_checkpoint_through_the_real_loading_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    unnorm_in_model = _write_tiny_checkpoint(tmp_path / "a", unnormalize_in_model=True)
    normalized_only = _write_tiny_checkpoint(tmp_path / "b", unnormalize_in_model=False)
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
