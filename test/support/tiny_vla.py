"""A tiny randomly initialised OpenVLA-style checkpoint, built locally (no download).

Used by the transformers backend tests and the LoRA fine-tuning tests. The
checkpoint directory holds what a published one holds: ``config.json`` with an
``auto_map`` to ``trust_remote_code`` modules, ``model.safetensors``, a
tokenizer and an image processor. The model mimics the Prismatic structure
that matters to the stack:

* a 1-layer Llama whose ``forward(input_ids, attention_mask, pixel_values)``
  inserts image patch embeddings (4 patches of 8 x 8 px per 16 x 16 image,
  through a linear projector) after the first (BOS) token, so its logits are
  longer than ``input_ids``, as OpenVLA's are;
* ``predict_action`` appends a fixed "empty" token when the prompt does not end
  with it (OpenVLA appends id 29871), generates 7 tokens and decodes them with
  the 256-bin OpenVLA scheme, unnormalising with ``config.norm_stats`` or not
  (``unnormalize_in_model``: OpenVLA's copy does, the TraceVLA repository's
  does not);
* ``vocab_size`` = the text vocabulary without the padding to a multiple of 64.

The tokenizer is word-level (the prompts' words), adds ``<s>`` in front, and
the image processor resizes every image to 16 x 16 px.

``write_tiny_prismatic`` writes the Prismatic *layout* instead (PixelVLA tests):
``vision_backbone`` with a ``featurizer`` and a ``fused_featurizer`` (tiny
ViTs with the timm ``VisionTransformer`` contract Prismatic relies on:
``blocks``, ``num_prefix_tokens``, ``embed_dim``, a forward that returns the
second-to-last block's patch tokens; the first has one prefix token as DINOv2,
the second none as SigLIP), channel-stacked 6-channel ``pixel_values`` (32 x
32 px, 8 px patches: a 4 x 4 grid), the 3-layer fused ``projector`` and a
2-layer Llama as ``language_model``; ``forward`` inserts the projected
patches after BOS. It has no ``predict_action`` (PixelVLA decodes actions
with its own head).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

from tracevla_ros.policy.base import Observation

__all__ = ["BRIDGE", "EMPTY_TOKEN", "write_tiny_checkpoint", "write_tiny_prismatic", "observation"]

# BridgeData V2 action statistics as OpenVLA ships them (q01/q99/mask).
BRIDGE = {"action": {
    "q01": [-0.02872725307941437, -0.04170349963009357, -0.026093858778476715,
            -0.08092105075716972, -0.09288699507713317, -0.20718276381492615, 0.0],
    "q99": [0.028309678435325586, 0.040855254605412394, 0.040161586627364146,
            0.08192047759890528, 0.07792850524187081, 0.20382574498653397, 1.0],
    "mask": [True, True, True, True, True, True, False]}}

EMPTY_TOKEN = "<sp>"  # the tokenizer word predict_action appends (OpenVLA: "▁", id 29871)

CONFIG_PY = '''
from transformers import LlamaConfig

class TinyVLAConfig(LlamaConfig):
    model_type = "tiny_vla"

    def __init__(self, norm_stats=None, unnormalize_in_model=True, pad_to_multiple_of=64,
                 empty_token_id=2, **kw):
        self.norm_stats = norm_stats
        self.unnormalize_in_model = unnormalize_in_model
        self.pad_to_multiple_of = pad_to_multiple_of
        self.empty_token_id = empty_token_id
        super().__init__(**kw)
'''

MODELING_PY = '''
import numpy as np
import torch
from torch import nn
from transformers import LlamaForCausalLM
from .configuration_tiny import TinyVLAConfig

PATCH = 8  # px; images are 16 x 16 -> 4 patches each


def _past_len(past):
    if past is None:
        return 0
    if hasattr(past, "get_seq_length"):
        return int(past.get_seq_length())
    return int(past[0][0].shape[2])


class TinyVLAForActionPrediction(LlamaForCausalLM):
    config_class = TinyVLAConfig

    def __init__(self, config):
        super().__init__(config)
        self.projector = nn.Linear(3 * PATCH * PATCH, config.hidden_size)
        self.n_bins = 256
        self.vocab_size = config.vocab_size - config.pad_to_multiple_of  # as OpenVLA's class does
        self.post_init()

    def _patches(self, pixel_values):
        # (B, n_img, 3, 16, 16) -> (B, n_img * 4, 3 * 8 * 8)
        b, n, c, h, w = pixel_values.shape
        x = pixel_values.reshape(b, n, c, h // PATCH, PATCH, w // PATCH, PATCH)
        x = x.permute(0, 1, 3, 5, 2, 4, 6).reshape(b, n * (h // PATCH) * (w // PATCH), -1)
        return self.projector(x)

    def forward(self, input_ids=None, attention_mask=None, pixel_values=None, past_key_values=None,
                inputs_embeds=None, **kw):
        if pixel_values is None or _past_len(past_key_values) > 0:
            return super().forward(input_ids=input_ids, attention_mask=attention_mask,
                                   past_key_values=past_key_values, inputs_embeds=inputs_embeds, **kw)
        emb = self.get_input_embeddings()(input_ids)
        patches = self._patches(pixel_values.to(emb.dtype))
        emb = torch.cat([emb[:, :1], patches, emb[:, 1:]], dim=1)
        if attention_mask is not None:
            ones = attention_mask.new_ones(patches.shape[:2])
            attention_mask = torch.cat([attention_mask[:, :1], ones, attention_mask[:, 1:]], dim=1)
        kw.pop("cache_position", None)
        kw.pop("position_ids", None)
        return super().forward(inputs_embeds=emb, attention_mask=attention_mask,
                               past_key_values=past_key_values, **kw)

    def prepare_inputs_for_generation(self, input_ids, past_key_values=None, attention_mask=None,
                                      pixel_values=None, **kw):
        if _past_len(past_key_values) > 0:
            return {"input_ids": input_ids[:, -1:], "past_key_values": past_key_values,
                    "use_cache": True}
        return {"input_ids": input_ids, "attention_mask": attention_mask,
                "pixel_values": pixel_values, "use_cache": True}

    def predict_action(self, input_ids=None, unnorm_key=None, **kw):
        empty = self.config.empty_token_id
        if int(input_ids[0, -1]) != empty:
            input_ids = torch.cat([input_ids, torch.full_like(input_ids[:, :1], empty)], dim=1)
            if kw.get("attention_mask") is not None:
                m = kw["attention_mask"]
                kw["attention_mask"] = torch.cat([m, torch.ones_like(m[:, :1])], dim=1)
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
        size = int(getattr(self, "size", 16))
        arr = np.stack([np.asarray(i.convert("RGB").resize((size, size)), np.float32) / 255 for i in images])
        px = torch.from_numpy(arr).permute(0, 3, 1, 2)
        if getattr(self, "fused", False):
            # Prismatic's fused backbones: the image twice, channel-stacked, normalised two ways
            return BatchFeature({"pixel_values": torch.cat([px - 0.5, 2 * px - 1], dim=1)})
        return BatchFeature({"pixel_values": px[None]})

class TinyProcessor(ProcessorMixin):
    attributes = ["image_processor", "tokenizer"]
    image_processor_class = "AutoImageProcessor"
    tokenizer_class = "AutoTokenizer"

    def __call__(self, text, images):
        px = self.image_processor(images)["pixel_values"]
        tok = self.tokenizer(text, return_tensors="pt")
        return BatchFeature({**tok, "pixel_values": px})
'''

PRISMATIC_CONFIG_PY = '''
from transformers import LlamaConfig, PretrainedConfig

class TinyPrismaticConfig(PretrainedConfig):
    model_type = "tiny_prismatic"

    def __init__(self, text_config=None, image_size=32, patch_size=8, vision_dims=(12, 8),
                 vision_depths=(4, 5), prefix_tokens=(1, 0), norm_stats=None, pad_to_multiple_of=64,
                 **kw):
        tc = text_config.to_dict() if isinstance(text_config, PretrainedConfig) else (text_config or {})
        self.text_config = LlamaConfig(**tc)
        self.image_size, self.patch_size = image_size, patch_size
        self.vision_dims, self.vision_depths = list(vision_dims), list(vision_depths)
        self.prefix_tokens = list(prefix_tokens)
        self.use_fused_vision_backbone = True
        self.norm_stats = norm_stats
        self.pad_to_multiple_of = pad_to_multiple_of
        super().__init__(**kw)
'''

PRISMATIC_MODELING_PY = '''
import torch
from torch import nn
from transformers import LlamaForCausalLM, PreTrainedModel
from .configuration_tiny_prismatic import TinyPrismaticConfig


class TinyViT(nn.Module):
    # The timm VisionTransformer contract Prismatic uses: blocks, num_prefix_tokens,
    # embed_dim; forward = the second-to-last block's patch tokens (B, N, D).

    def __init__(self, dim, depth, image_size, patch, prefix):
        super().__init__()
        self.embed_dim, self.num_prefix_tokens = dim, prefix
        n = (image_size // patch) ** 2
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.prefix = nn.Parameter(torch.randn(1, prefix, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, prefix + n, dim) * 0.02)
        self.blocks = nn.Sequential(*[nn.TransformerEncoderLayer(
            dim, 2, 2 * dim, dropout=0.0, batch_first=True, norm_first=True) for _ in range(depth)])

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.prefix.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for blk in self.blocks[:len(self.blocks) - 1]:
            x = blk(x)
        return x[:, self.num_prefix_tokens:]


class TinyVisionBackbone(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.use_fused_vision_backbone = True
        args = [(d, n, c.image_size, c.patch_size, p)
                for d, n, p in zip(c.vision_dims, c.vision_depths, c.prefix_tokens)]
        self.featurizer = TinyViT(*args[0])
        self.fused_featurizer = TinyViT(*args[1])
        self.embed_dim = sum(c.vision_dims)

    def forward(self, pixel_values):
        img, fused = torch.split(pixel_values, [3, 3], dim=1)
        return torch.cat([self.featurizer(img), self.fused_featurizer(fused)], dim=2)


class TinyProjector(nn.Module):
    def __init__(self, vision_dim, llm_dim):
        super().__init__()
        self.fc1 = nn.Linear(vision_dim, 4 * vision_dim)
        self.fc2 = nn.Linear(4 * vision_dim, llm_dim)
        self.fc3 = nn.Linear(llm_dim, llm_dim)
        self.act_fn1, self.act_fn2 = nn.GELU(), nn.GELU()

    def forward(self, x):
        return self.fc3(self.act_fn2(self.fc2(self.act_fn1(self.fc1(x)))))


class TinyPrismaticForActionPrediction(PreTrainedModel):
    config_class = TinyPrismaticConfig
    base_model_prefix = "model"
    _supports_sdpa = True

    def __init__(self, config):
        super().__init__(config)
        self.vision_backbone = TinyVisionBackbone(config)
        self.projector = TinyProjector(self.vision_backbone.embed_dim, config.text_config.hidden_size)
        self.language_model = LlamaForCausalLM(config.text_config)
        self.vocab_size = config.text_config.vocab_size - config.pad_to_multiple_of
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.Embedding)):
            module.weight.data.normal_(0.0, 0.02)
            if getattr(module, "bias", None) is not None:
                module.bias.data.zero_()

    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def get_output_embeddings(self):
        return self.language_model.get_output_embeddings()

    def forward(self, input_ids=None, attention_mask=None, pixel_values=None, **kw):
        emb = self.get_input_embeddings()(input_ids)
        if pixel_values is None:
            return self.language_model(inputs_embeds=emb, attention_mask=attention_mask, **kw)
        patches = self.projector(self.vision_backbone(pixel_values.to(emb.dtype)))
        emb = torch.cat([emb[:, :1], patches, emb[:, 1:]], dim=1)
        if attention_mask is not None:
            ones = attention_mask.new_ones(patches.shape[:2])
            attention_mask = torch.cat([attention_mask[:, :1], ones, attention_mask[:, 1:]], dim=1)
        return self.language_model(inputs_embeds=emb, attention_mask=attention_mask, **kw)
'''

WORDS = ("in: what action should the robot take to put carrot on plate probe you are given two "
         "images: one with original observation, and another marked historical traces of end "
         "effector moving objects, separated by a special separator token. ?\nout: pick up red "
         "cube push block right").split()


def _import_remote_code(d: Path, config: str = "configuration_tiny", modeling: str = "modeling_tiny",
                        classes: tuple[str, str] = ("TinyVLAConfig", "TinyVLAForActionPrediction")
                        ) -> tuple[type, type]:
    """(config class, model class) of the modules in ``d``, imported under a package
    named after ``d`` (as transformers' dynamic module loader would)."""
    pkg = f"tiny_vla_{abs(hash(str(d.resolve())))}"
    if pkg not in sys.modules:
        sys.modules[pkg] = type(sys)(pkg)
        sys.modules[pkg].__path__ = [str(d)]  # type: ignore[attr-defined]
    for mod in (config, modeling):
        spec = importlib.util.spec_from_file_location(f"{pkg}.{mod}", d / f"{mod}.py",
                                                      submodule_search_locations=None)
        assert spec is not None and spec.loader is not None
        m = importlib.util.module_from_spec(spec)
        m.__package__ = pkg
        sys.modules[f"{pkg}.{mod}"] = m
        spec.loader.exec_module(m)
    return (getattr(sys.modules[f"{pkg}.{config}"], classes[0]),
            getattr(sys.modules[f"{pkg}.{modeling}"], classes[1]))


def write_tiny_checkpoint(d: Path, unnormalize_in_model: bool = True, seed: int = 0) -> Path:
    """Write the tiny checkpoint into the new directory ``d``; the same seed gives the same
    weights. Statistics: ``bridge_orig`` (BRIDGE) in ``config.json``'s ``norm_stats``."""
    import torch

    d.mkdir(parents=True)
    (d / "configuration_tiny.py").write_text(CONFIG_PY)
    (d / "modeling_tiny.py").write_text(MODELING_PY)
    vocab = _vocab()
    cfg_cls, model_cls = _import_remote_code(d)
    torch.manual_seed(seed)
    cfg = cfg_cls(vocab_size=32064, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                  num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                  norm_stats={"bridge_orig": BRIDGE}, unnormalize_in_model=unnormalize_in_model,
                  empty_token_id=vocab[EMPTY_TOKEN], bos_token_id=1, eos_token_id=0,
                  pad_token_id=0)
    model_cls(cfg).save_pretrained(d, safe_serialization=True)
    conf = json.loads((d / "config.json").read_text())
    conf["auto_map"] = {"AutoConfig": "configuration_tiny.TinyVLAConfig",
                        "AutoModelForVision2Seq": "modeling_tiny.TinyVLAForActionPrediction"}
    (d / "config.json").write_text(json.dumps(conf))
    _write_processor(d, vocab)
    return d


def _vocab() -> dict[str, int]:
    return {"[UNK]": 0, "<s>": 1, EMPTY_TOKEN: 2,
            **{w: i + 3 for i, w in enumerate(dict.fromkeys(WORDS))}}


def _write_processor(d: Path, vocab: dict[str, int], **image: object) -> None:
    """Word-level tokenizer (``<s>`` in front) + the tiny image processor (``image``: its
    ``size`` / ``fused`` settings) + processing_tiny.py."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    (d / "processing_tiny.py").write_text(PROCESSING_PY)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]", "bos_token": "<s>",
         "model_input_names": ["input_ids", "attention_mask"],
         "processor_class": "TinyProcessor",
         "auto_map": {"AutoProcessor": "processing_tiny.TinyProcessor"}}))
    (d / "preprocessor_config.json").write_text(json.dumps(
        {"image_processor_type": "TinyImageProcessor", "processor_class": "TinyProcessor", **image,
         "auto_map": {"AutoImageProcessor": "processing_tiny.TinyImageProcessor",
                      "AutoProcessor": "processing_tiny.TinyProcessor"}}))


def write_tiny_prismatic(d: Path, seed: int = 0, hidden: int = 16, layers: int = 2) -> Path:
    """Write the tiny Prismatic-layout checkpoint (see the module docstring) into the new
    directory ``d``: fused 2-backbone vision (4 x 4 patches of 32 x 32 px images), the
    3-layer projector, a ``layers``-layer Llama of width ``hidden``; the same seed gives
    the same weights."""
    import torch

    d.mkdir(parents=True)
    (d / "configuration_tiny_prismatic.py").write_text(PRISMATIC_CONFIG_PY)
    (d / "modeling_tiny_prismatic.py").write_text(PRISMATIC_MODELING_PY)
    vocab = _vocab()
    cfg_cls, model_cls = _import_remote_code(
        d, "configuration_tiny_prismatic", "modeling_tiny_prismatic",
        ("TinyPrismaticConfig", "TinyPrismaticForActionPrediction"))
    torch.manual_seed(seed)
    text = dict(vocab_size=32064, hidden_size=hidden, intermediate_size=2 * hidden,
                num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=2,
                max_position_embeddings=256, bos_token_id=1, eos_token_id=0, pad_token_id=0)
    cfg = cfg_cls(text_config=text, norm_stats={"bridge_orig": BRIDGE}, bos_token_id=1,
                  eos_token_id=0, pad_token_id=0)
    model_cls(cfg).save_pretrained(d, safe_serialization=True)
    conf = json.loads((d / "config.json").read_text())
    conf["auto_map"] = {"AutoConfig": "configuration_tiny_prismatic.TinyPrismaticConfig",
                        "AutoModelForVision2Seq":
                            "modeling_tiny_prismatic.TinyPrismaticForActionPrediction"}
    (d / "config.json").write_text(json.dumps(conf))
    _write_processor(d, vocab, size=32, fused=True)
    return d


def observation(trace: bool, seed: int = 1) -> Observation:
    """A 640 x 480 random frame, with a trace-like overlay when ``trace``."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    ovl = img.copy()
    ovl[200:210] = 255
    return Observation(image=img, overlay=ovl if trace else None, instruction="Put carrot on plate")
