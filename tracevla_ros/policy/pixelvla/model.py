"""PixelVLA on an OpenVLA-style (Prismatic) base model: the wrapper, LoRA, the parts checkpoint.

The base is what ``AutoModelForVision2Seq.from_pretrained`` returns for an
OpenVLA checkpoint (``trust_remote_code``): ``vision_backbone`` (a timm ViT
``featurizer``, for OpenVLA-7B DINOv2, plus a ``fused_featurizer``, SigLIP,
on the channel-stacked ``pixel_values``), ``projector`` and
``language_model`` (Llama-2). Used from it: ``vision_backbone(pixel_values)``
-> (B, N, D) patches, ``projector``, the LLM's input embeddings and its
decoder (``get_decoder()``, the Llama body without the vocabulary head).

Multiscale features: forward hooks on the featurizers' ``blocks`` (timm
``VisionTransformer``) at the fractions ``layer_fractions`` of the depth of
the layer Prismatic feeds the projector (the second-to-last block; fraction
1.0 = that layer; OpenVLA-7B, 0.25/0.5/1.0: DINOv2 blocks 6/11/22, SigLIP
6/12/25). A block's output minus its ``num_prefix_tokens`` (DINOv2: CLS + 4
registers; SigLIP: none) is a (B, 256, C) patch sequence; the featurizers'
levels are concatenated along channels (OpenVLA-7B: 1024 + 1152 = 2176).

The LLM input of each row, packed without inner padding (then right-padded to
the batch)::

    [BOS, vision tokens (N), prompt tokens (valid ones), pixel tokens (valid ones),
     text tokens after BOS (unpadded), action queries (8)]

so a row without a prompt is just the base model's input plus the queries.
Positions are contiguous from 0 in every row (the base's default positions).
The last hidden states at the 8 queries go to the action head
(``action_head.py``).

Trainable parts per stage (``set_stage``): stage 1 the head only; stage 2 the
prompt encoder, the pixel encoder, the head and LoRA (rank 32) on the LLM's
linear layers (``LLM_LORA_TARGETS``; the vision encoder and the projector stay
frozen, as do the base's embeddings).

Saved (``save_parts`` / ``load_parts``, through the training core's checkpoint
helpers): ``model.safetensors`` with the three parts (``prompt_encoder.*``,
``pixel_encoder.*``, ``head.*``) and ``config.json`` (format
``tracevla_pixelvla/v1``: the ``pixelvla`` architecture section, ``base``
facts, ``stage``, ``unnorm_key``); the LoRA adapter as PEFT's
``adapter_model.safetensors`` + ``adapter_config.json``; the action statistics
as ``dataset_statistics.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from tracetrain.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    check_tensors,
    checkpoint_dir,
    load_tensors,
    read_config,
    save_checkpoint,
)
from tracetrain.errors import CheckpointError

from tracevla_ros.config import ConfigError
from tracevla_ros.policy.base import Observation
from tracevla_ros.policy.pixelvla.action_head import ACTION_DIM, CHUNK, ActionHead
from tracevla_ros.policy.pixelvla.pixel_encoder import PixelEncoder, pixel_masks
from tracevla_ros.policy.pixelvla.prompt_encoder import PromptBatch, PromptEncoder, collate_prompts
from tracevla_ros.policy.vla.checkpoint import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from tracevla_ros.policy.vla.models import MODELS, prepare_inputs
from tracevla_ros.policy.vla.stats import STATS_FILE

__all__ = ["PixelVLAConfig", "PixelVLA", "PixelBatch", "InputBuilder", "VisionTaps",
           "PartsError", "LLM_LORA_TARGETS", "FORMAT_NAME", "FORMAT_VERSION", "PARTS_FILES",
           "STAGE2_FILES", "add_llm_lora", "load_llm_adapter", "save_parts", "read_parts_config",
           "load_parts", "missing_parts_files"]

FORMAT_NAME, FORMAT_VERSION = "tracevla_pixelvla", 1
WRITER = "tracevla-train-pixelvla"
PARTS_FILES = (CONFIG_FILE, WEIGHTS_FILE, STATS_FILE)
STAGE2_FILES = (ADAPTER_CONFIG, ADAPTER_WEIGHTS)
# every linear layer of the LLM's decoder (PEFT matches the full module name with re.fullmatch)
LLM_LORA_TARGETS = (r"language_model\.(?:.*\.)?(?:q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|"
                    r"down_proj)")
PART_NAMES = ("prompt_encoder", "pixel_encoder", "head")


class PartsError(CheckpointError, ConfigError):
    """A PixelVLA parts directory is missing, incomplete or does not fit the base model."""


@dataclass(frozen=True)
class PixelVLAConfig:
    """The PixelVLA parts' architecture (``config.json`` section ``pixelvla``)."""

    llm_dim: int  # the LLM width (Llama-2-7B: 4096)
    level_dims: tuple[int, ...]  # channels of each pixel-encoder level (OpenVLA-7B: 2176 each)
    layer_fractions: tuple[float, ...] = (0.25, 0.5, 1.0)  # of the depth of the projector's layer
    prompt_dim: int = 256  # prompt-encoder width before the projection (SAM: 256)
    mask_size: int = 64  # px, side of the prompt and pixel masks given to the encoders
    mask_grid: int = 4  # mask tokens per side (16 tokens)
    head_width: int = 1024
    head_blocks: int = 2  # residual MLP blocks
    chunk: int = CHUNK  # action steps per inference
    action_dim: int = ACTION_DIM

    def __post_init__(self) -> None:
        object.__setattr__(self, "level_dims", tuple(int(c) for c in self.level_dims))
        object.__setattr__(self, "layer_fractions", tuple(float(f) for f in self.layer_fractions))
        if len(self.level_dims) != len(self.layer_fractions):
            raise PartsError(f"pixelvla config: {len(self.level_dims)} level_dims for "
                             f"{len(self.layer_fractions)} layer_fractions")
        if not all(0.0 <= f <= 1.0 for f in self.layer_fractions):
            raise PartsError(f"pixelvla config: layer_fractions must be in [0, 1], got "
                             f"{self.layer_fractions}")

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> PixelVLAConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise PartsError(f"{where}: unknown pixelvla key(s) {unknown}; written by newer code?")
        try:
            return cls(**d)
        except TypeError as exc:
            raise PartsError(f"{where}: pixelvla section does not fit ({exc})") from None


# --- the base model ------------------------------------------------------------------------


def _featurizers(vla: nn.Module) -> list[Any]:
    vb: Any = getattr(vla, "vision_backbone", None)
    feat = getattr(vb, "featurizer", None)
    if feat is None or not hasattr(feat, "blocks") or not hasattr(vla, "language_model"):
        raise PartsError(f"{type(vla).__name__} is not a Prismatic/OpenVLA-layout model (needs "
                         "vision_backbone.featurizer.blocks, projector and language_model)")
    out = [feat]
    if getattr(vb, "use_fused_vision_backbone", False):
        out.append(vb.fused_featurizer)
    return out


class VisionTaps:
    """Forward hooks that keep the outputs of the chosen vision blocks of the last forward."""

    def __init__(self, vla: nn.Module, fractions: Sequence[float]) -> None:
        self.featurizers: list[Any] = _featurizers(vla)
        self.prefix = [int(getattr(f, "num_prefix_tokens", 0)) for f in self.featurizers]
        self.layers: list[list[int]] = []
        for f in self.featurizers:
            used = max(0, len(f.blocks) - 2)  # Prismatic feeds the second-to-last block
            self.layers.append([min(used, max(0, int(round(fr * used)))) for fr in fractions])
        self.n_levels = len(fractions)
        self._store: dict[tuple[int, int], torch.Tensor] = {}
        self._handles: list[Any] = []
        for fi, f in enumerate(self.featurizers):
            for li, bi in enumerate(self.layers[fi]):
                self._handles.append(f.blocks[bi].register_forward_hook(self._hook(fi, li)))

    def _hook(self, fi: int, li: int) -> Any:
        def keep(_m: nn.Module, _inp: Any, out: Any) -> None:
            self._store[(fi, li)] = out[0] if isinstance(out, tuple) else out
        return keep

    @property
    def level_dims(self) -> tuple[int, ...]:
        return tuple(sum(int(f.embed_dim) for f in self.featurizers) for _ in range(self.n_levels))

    def levels(self) -> list[torch.Tensor]:
        """The (B, N, C) patch features of each level from the last vision forward."""
        try:
            out = [torch.cat([self._store[(fi, li)][:, p:] for fi, p in enumerate(self.prefix)],
                             dim=-1) for li in range(self.n_levels)]
        except KeyError as exc:
            raise RuntimeError(f"vision block {exc} did not run in the last forward") from None
        self._store.clear()
        return out

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def llm_width(vla: Any) -> int:
    emb: Any = vla.get_input_embeddings()
    return int(emb.embedding_dim)


@dataclass
class PixelBatch:
    """One micro-batch.

    input_ids, attention_mask: (B, L) int64, right-padded text (processor ids).
    pixel_values:  the processor's images (B, 6, 224, 224 for OpenVLA-7B), base dtype.
    prompts:       the visual prompts (``PromptBatch``).
    pixel_mask:    (B, S, S) float32 the target's mask for the pixel encoder; present (B,) bool.
    target, target_valid: (B, chunk, 7) normalised actions, (B, chunk) bool (training only).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    pixel_values: torch.Tensor
    prompts: PromptBatch
    pixel_mask: torch.Tensor
    pixel_present: torch.Tensor
    target: torch.Tensor | None = None
    target_valid: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> PixelBatch:
        def mv(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)
        return PixelBatch(self.input_ids.to(device), self.attention_mask.to(device),
                          self.pixel_values.to(device), self.prompts.to(device),
                          self.pixel_mask.to(device), self.pixel_present.to(device),
                          mv(self.target), mv(self.target_valid))


class InputBuilder:
    """Observations -> ``PixelBatch``; the same path for training and the backend: the
    OpenVLA prompt and 224 px image (``prepare_inputs`` of ``openvla``), the checkpoint's
    processor, ``obs.prompt`` through ``collate_prompts`` and ``pixel_masks``."""

    def __init__(self, processor: Any, mask_size: int, dtype: torch.dtype) -> None:
        tok = getattr(processor, "tokenizer", None)
        pad = getattr(tok, "pad_token_id", None)
        self.processor, self.mask_size, self.dtype = processor, mask_size, dtype
        self.pad_id = int(pad) if pad is not None else 0

    def features(self, obs: Observation) -> Any:
        from tracevla_ros.policy.vla.hf import processor_inputs

        return processor_inputs(self.processor, prepare_inputs(MODELS["openvla"], obs))

    def batch(self, observations: Sequence[Observation], target: torch.Tensor | None = None,
              target_valid: torch.Tensor | None = None) -> PixelBatch:
        feats = [self.features(o) for o in observations]
        n = max(int(f["input_ids"].shape[1]) for f in feats)
        ids = torch.full((len(feats), n), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(feats), n), dtype=torch.long)
        for i, f in enumerate(feats):
            k = int(f["input_ids"].shape[1])
            ids[i, :k] = f["input_ids"][0]
            mask[i, :k] = 1
        px = torch.cat([f["pixel_values"] for f in feats], dim=0).to(self.dtype)
        prompts = [o.prompt for o in observations]
        pmask, present = pixel_masks(prompts, self.mask_size)
        return PixelBatch(ids, mask, px, collate_prompts(prompts, self.mask_size), pmask, present,
                          target, target_valid)


class PixelVLA(nn.Module):
    """The base VLA plus the prompt encoder, the pixel encoder and the action head;
    ``forward(batch) -> (B, chunk, 7)`` normalised actions (see the module docstring)."""

    def __init__(self, vla: nn.Module, cfg: PixelVLAConfig) -> None:
        super().__init__()
        self.vla = vla
        self.cfg = cfg
        self.taps = VisionTaps(vla, cfg.layer_fractions)
        if self.taps.level_dims != cfg.level_dims or llm_width(vla) != cfg.llm_dim:
            raise PartsError(f"the PixelVLA parts (LLM width {cfg.llm_dim}, levels "
                             f"{cfg.level_dims}) do not fit the base model (LLM width "
                             f"{llm_width(vla)}, levels {self.taps.level_dims}); use the base "
                             "they were trained on")
        self.prompt_encoder = PromptEncoder(cfg.llm_dim, cfg.prompt_dim, cfg.mask_size,
                                            cfg.mask_grid)
        self.pixel_encoder = PixelEncoder(cfg.level_dims, cfg.llm_dim)
        self.head = ActionHead(cfg.llm_dim, cfg.chunk, cfg.action_dim, cfg.head_width,
                               cfg.head_blocks)
        self.__dict__["_peft"] = None  # the PeftModel over ``vla`` (stage 2), not a submodule
        self.stage = 0

    @property
    def base(self) -> Any:
        """The base VLA (``vla``), typed loosely: its classes come with the checkpoint."""
        return self.vla

    @property
    def peft(self) -> Any:
        """The PeftModel over ``vla`` (stage 2 training, unmerged adapters), else None."""
        return self.__dict__["_peft"]

    @classmethod
    def for_base(cls, vla: nn.Module, **kw: Any) -> PixelVLA:
        """New (randomly initialised) parts sized for ``vla``."""
        fr = tuple(kw.pop("layer_fractions", PixelVLAConfig.layer_fractions))
        dims = VisionTaps(vla, fr)
        dims.remove()
        return cls(vla, PixelVLAConfig(llm_width(vla), dims.level_dims, fr, **kw))

    def parts(self) -> dict[str, nn.Module]:
        return {n: getattr(self, n) for n in PART_NAMES}

    def parts_state(self) -> dict[str, torch.Tensor]:
        return {f"{n}.{k}": v for n, m in self.parts().items() for k, v in m.state_dict().items()}

    def load_parts_state(self, state: dict[str, torch.Tensor]) -> None:
        for n, m in self.parts().items():
            own = {k[len(n) + 1:]: v for k, v in state.items() if k.startswith(n + ".")}
            m.load_state_dict(own, strict=True)

    def set_stage(self, stage: int) -> None:
        """Freeze everything but the stage's parts (stage 2 needs ``add_llm_lora`` first)."""
        if stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {stage}")
        if stage == 2 and self.peft is None:
            raise RuntimeError("stage 2 trains LoRA on the LLM: call add_llm_lora first")
        for p in self.parameters():
            p.requires_grad_(False)
        train = [self.head] + ([self.prompt_encoder, self.pixel_encoder] if stage == 2 else [])
        for m in train:
            for p in m.parameters():
                p.requires_grad_(True)
        if stage == 2:
            for n, p in self.vla.named_parameters():
                if ".lora_A." in n or ".lora_B." in n:
                    p.requires_grad_(True)
        self.stage = stage

    # --- forward ----------------------------------------------------------------------------
    def _vision(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        patches = self.base.vision_backbone(pixel_values)
        return self.base.projector(patches), self.taps.levels()

    def forward(self, batch: PixelBatch) -> torch.Tensor:
        emb_layer = self.base.get_input_embeddings()
        emb = emb_layer(batch.input_ids)  # (B, L, H)
        dtype = emb.dtype
        vis, levels = self._vision(batch.pixel_values.to(emb_layer.weight.dtype))
        b, h = emb.shape[0], emb.shape[2]
        none = torch.zeros(b, 0, h, dtype=dtype, device=emb.device)
        no = torch.zeros(b, 0, dtype=torch.bool, device=emb.device)
        ptok, pvalid = none, no
        if bool(batch.prompts.valid.any()) or bool(batch.prompts.has_mask.any()):
            ptok, pvalid = self.prompt_encoder(batch.prompts)
        xtok, xvalid = none, no
        if bool(batch.pixel_present.any()):
            xtok, xvalid = self.pixel_encoder(levels, batch.pixel_mask, batch.pixel_present)
        queries = self.head.queries.to(dtype)
        text_ok = batch.attention_mask.to(torch.bool)
        rows = []
        for i in range(b):
            rows.append(torch.cat([emb[i, :1], vis[i].to(dtype), ptok[i][pvalid[i]].to(dtype),
                                   xtok[i][xvalid[i]].to(dtype), emb[i, 1:][text_ok[i, 1:]],
                                   queries], dim=0))
        lengths = [int(r.shape[0]) for r in rows]
        seq = nn.utils.rnn.pad_sequence(rows, batch_first=True)
        mask = torch.zeros(seq.shape[:2], dtype=torch.long, device=seq.device)
        for i, n in enumerate(lengths):
            mask[i, :n] = 1
        decoder = self.base.language_model.get_decoder()
        hidden = decoder(inputs_embeds=seq, attention_mask=mask, use_cache=False,
                         return_dict=True).last_hidden_state
        c = self.cfg.chunk
        at = torch.stack([hidden[i, n - c:n] for i, n in enumerate(lengths)])  # (B, chunk, H)
        return self.head(at)


# --- LoRA on the LLM --------------------------------------------------------------------------


def add_llm_lora(model: PixelVLA, rank: int = 32, alpha: int = 16) -> Any:
    """LoRA (Gaussian init: starts as the identity, dropout 0) on every linear layer of the
    LLM, the LoRA weights in float32; returns the PeftModel (also ``model.peft``)."""
    from tracevla_ros.policy.vla.hf import import_peft

    peft = import_peft("PixelVLA stage 2")
    lcfg = peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0,
                           target_modules=LLM_LORA_TARGETS, init_lora_weights="gaussian")
    pm = peft.get_peft_model(model.vla, lcfg)
    for p in model.vla.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    model.__dict__["_peft"] = pm
    return pm


def load_llm_adapter(model: PixelVLA, adapter: Path, merge: bool) -> None:
    """A saved LoRA adapter onto ``model.vla`` (in place), merged into the weights or kept
    as PEFT layers."""
    from tracevla_ros.policy.vla.hf import load_lora_adapter

    pm = load_lora_adapter(model.vla, adapter, "adapter ", PartsError)
    if merge:
        model.vla = pm.merge_and_unload()
        model.__dict__["_peft"] = None
    else:
        model.__dict__["_peft"] = pm


# --- the parts checkpoint -----------------------------------------------------------------------


def save_parts(out: Path, model: PixelVLA, info: dict[str, Any]) -> None:
    """``model.safetensors`` (the three parts) + ``config.json`` (format, ``pixelvla``,
    ``info``) into ``out``, atomically (the training core's ``save_checkpoint``)."""
    cfg = asdict(model.cfg)
    cfg["level_dims"], cfg["layer_fractions"] = list(cfg["level_dims"]), list(cfg["layer_fractions"])
    save_checkpoint(out, model.parts_state(), {"pixelvla": cfg, **info}, FORMAT_NAME,
                    FORMAT_VERSION)


def missing_parts_files(parts: Path, adapter: Path | None) -> list[str]:
    """Names of the files the parts directory (and the adapter directory, when stage 2) lacks."""
    missing = [n for n in PARTS_FILES if not (parts / n).is_file()]
    if adapter is not None:
        missing += [str(adapter / n) if adapter != parts else n for n in STAGE2_FILES
                    if not (adapter / n).is_file()]
    return missing


def read_parts_config(parts: Path) -> dict[str, Any]:
    """The parts' ``config.json`` (format checked), with ``pixelvla`` as PixelVLAConfig."""
    d = checkpoint_dir(parts, WRITER, error=PartsError)
    body = read_config(d, FORMAT_NAME, FORMAT_VERSION, ("pixelvla",), WRITER, error=PartsError)
    body["pixelvla"] = PixelVLAConfig.from_dict(body["pixelvla"], str(d / CONFIG_FILE))
    return body


def load_parts(parts: Path, vla: nn.Module) -> tuple[PixelVLA, dict[str, Any]]:
    """PixelVLA over ``vla`` with the saved parts (names and shapes checked, strict)."""
    body = read_parts_config(parts)
    model = PixelVLA(vla, body["pixelvla"])
    f = Path(parts) / WEIGHTS_FILE
    state = load_tensors(f, error=PartsError)
    check_tensors(f, state, model.parts_state(), Path(parts) / CONFIG_FILE, error=PartsError)
    model.load_parts_state(state)
    return model, body
