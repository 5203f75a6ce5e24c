"""Backends for the published checkpoints via Hugging Face ``transformers``.

``tracevla-7b``, ``tracevla-phi3`` and ``openvla`` load a checkpoint from a
local directory or the local HF cache (``local_files_only``; nothing is
downloaded), with ``trust_remote_code`` (the checkpoints ship their model
code), bf16 on CUDA (float32 on CPU), and flash attention 2 only when the
``flash_attn`` package is importable. torch/transformers are imported lazily:
without them the factory raises one ConfigError naming requirements-vla.txt.

Unnormalisation, decided once at load time by a probe: ``generate`` (on the
model's classes, so ``self.generate`` and ``super().generate`` both) is
replaced for one call by a stub that returns known action tokens
(``actions.probe_token_ids``), ``predict_action`` runs on a real processed
input, and its answer is compared with the normalised and the unnormalised
decoding of those tokens (``actions.classify_probe_output``).
If the checkpoint unnormalises, its output is used as is; if it returns
normalised values, ``actions.unnormalize`` is applied here; anything else
refuses to load. So no checkpoint is unnormalised twice or not at all, and
the probe also confirms that the checkpoint decodes tokens as OpenVLA does.

A LoRA adapter from ``tracevla-finetune-vla`` (parameter ``adapter``; backends
``openvla`` and ``tracevla-7b``) is applied on top of the base checkpoint with
PEFT's ``PeftModel.from_pretrained`` and merged into the weights unless
``merge_adapter`` is false. Its ``dataset_statistics.json`` replaces the
base's statistics (the actions were tokenised with them) and is also handed to
the model (``norm_stats``), so a ``predict_action`` that unnormalises finds the
key; ``unnorm_key`` names the entry, or the adapter's only one is used.

Example (GPU machine)::

    tracevla-serve --backend tracevla-7b --checkpoint furonghuang-lab/tracevla_7b --port 8765
    tracevla-serve --backend tracevla-7b --checkpoint furonghuang-lab/tracevla_7b \\
        --adapter runs/lora_widowx --port 8765
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from typing import Any, Callable, TypeVar

import numpy as np

from tracevla_ros.config import ConfigError
from tracevla_ros.policy.base import ActionChunk, Observation, PolicyError
from tracevla_ros.policy.config import PolicyNodeConfig
from tracevla_ros.policy.vla.actions import (
    UNNORM_BY_MODEL,
    classify_probe_output,
    finalize_action,
    probe_token_ids,
    unnormalize,
)
from tracevla_ros.policy.vla.checkpoint import (
    resolve_checkpoint,
    validate_adapter,
    validate_checkpoint,
)
from tracevla_ros.policy.vla.models import MODELS, PHI3V, PreparedInputs, VLAModel, prepare_inputs
from tracevla_ros.policy.vla.stats import load_norm_stats, select_action_stats

__all__ = [
    "REQUIREMENTS_FILE",
    "HFVLAPolicy",
    "import_hf_stack",
    "import_peft",
    "prismatic_vocab_size",
    "processor_inputs",
    "load_kwargs",
    "stubbed_generate",
    "make_tracevla_7b",
    "make_tracevla_phi3",
    "make_openvla",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

REQUIREMENTS_FILE = "requirements-vla.txt"


def import_hf_stack(backend: str) -> tuple[Any, Any]:
    """(torch, transformers), or one ConfigError saying what to install.

    Sets HF_HUB_OFFLINE=1 (unless already set) before the import, so no hub call
    is even attempted; checkpoints come from disk only.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise ConfigError(
            f"backend '{backend}' needs torch + transformers (GPU machine): "
            f"`pip install -r {REQUIREMENTS_FILE}` ({exc}). On the robot computer use backend "
            "'remote' and run tracevla-serve on the GPU machine.") from exc
    return torch, transformers


def import_peft(what: str) -> Any:
    """The ``peft`` module, or one ConfigError saying what to install."""
    try:
        import peft
    except ImportError as exc:
        raise ConfigError(f"{what} needs peft (LoRA adapters): `pip install -r {REQUIREMENTS_FILE}` "
                          f"({exc})") from exc
    return peft


def load_lora_adapter(base: Any, adapter: Any, label: str,
                      error: type[Exception] = ConfigError) -> Any:
    """``peft.PeftModel`` of the saved LoRA ``adapter`` on ``base`` (inference); ``error``
    starting with ``label`` (e.g. "parameter 'adapter': ") when it does not fit the base."""
    peft = import_peft(f"{label}{adapter}")
    try:
        return peft.PeftModel.from_pretrained(base, str(adapter), is_trainable=False)
    except (ValueError, KeyError, RuntimeError, OSError) as exc:
        raise error(f"{label}{adapter} does not fit the base checkpoint "
                    f"({type(exc).__name__}: {' '.join(str(exc).split())[:300]})") from None


def prismatic_vocab_size(vla: Any) -> int:
    """Action-token vocabulary of an OpenVLA-style model: its ``vocab_size`` attribute, else the
    text vocabulary without the padding to a multiple (OpenVLA's own computation)."""
    v = getattr(vla, "vocab_size", None)
    if isinstance(v, int):
        return v
    c = vla.config
    return int(c.text_config.vocab_size) - int(getattr(c, "pad_to_multiple_of", 0) or 0)


def processor_inputs(processor: Any, prepared: PreparedInputs) -> Any:
    """The processor's tensors (CPU, batch of one) for prepared inputs: the prompt and the
    images as PIL images (a list when the model takes two). Inference and fine-tuning both
    call this, so they feed the model the same values."""
    from PIL import Image

    images = [Image.fromarray(i) for i in prepared.images]
    arg: Any = images if len(images) > 1 else images[0]
    return processor(prepared.prompt, arg)


def flash_attention_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def load_kwargs(family: str, cuda: bool, flash: bool) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments; ``torch_dtype`` as a name ("bfloat16"/"float32")."""
    kw: dict[str, Any] = {"torch_dtype": "bfloat16" if cuda else "float32",
                          "trust_remote_code": True, "local_files_only": True,
                          "low_cpu_mem_usage": True}
    use_flash = cuda and flash
    if family == PHI3V:
        # Phi-3-vision's config asks for flash attention itself; say eager explicitly without it.
        kw["_attn_implementation"] = "flash_attention_2" if use_flash else "eager"
        kw["use_cache"] = True
    elif use_flash:
        kw["attn_implementation"] = "flash_attention_2"
    return kw


def resolve_device(device: str, torch: Any) -> str:
    """The training core's ``resolve_device`` (imported here, with torch), as a string;
    its errors become ConfigError naming the parameter."""
    from tracetrain.device import resolve_device as core_resolve
    from tracetrain.errors import SettingsError

    try:
        return str(core_resolve(device))
    except SettingsError as exc:
        raise ConfigError(f"parameter 'device' = '{device}': {exc}") from None


def stubbed_generate(model: Any, token_ids: np.ndarray, call: Callable[[], T], torch: Any,
                     seen: list[Any] | None = None) -> T:
    """Run ``call()`` while ``generate`` returns ``input_ids + token_ids`` (no compute).

    Used by the unnormalisation probe at load time (single-threaded) and by fine-tuning to
    read the exact ids ``predict_action`` generates from (appended to ``seen``). ``generate``
    is replaced on every class of ``type(model).__mro__`` that defines it, so
    ``self.generate(...)`` and ``super().generate(...)`` both reach the stub; the
    originals are restored afterwards.
    """
    calls: list[int] = []

    def fake_generate(_self: Any, *args: Any, **kwargs: Any) -> Any:
        ids = args[0] if args else kwargs.get("input_ids")
        if ids is None:
            raise PolicyError("probe: predict_action called generate without input_ids")
        n = int(kwargs.get("max_new_tokens", len(token_ids)))
        if n != len(token_ids):
            raise PolicyError(f"probe: predict_action asked for {n} new tokens, expected "
                              f"{len(token_ids)} (one per action dimension)")
        calls.append(n)
        if seen is not None:
            seen.append(ids.detach().cpu().clone())
        new = torch.as_tensor(np.asarray(token_ids), dtype=ids.dtype, device=ids.device)[None, :]
        return torch.cat([ids, new], dim=1)

    originals = [(cls, cls.__dict__["generate"]) for cls in type(model).__mro__
                 if "generate" in cls.__dict__]
    if not originals:
        raise PolicyError(f"probe: {type(model).__name__} has no generate method")
    for cls, _ in originals:
        setattr(cls, "generate", fake_generate)
    try:
        out = call()
    finally:
        for cls, original in originals:
            setattr(cls, "generate", original)
    if not calls:
        raise PolicyError("probe: predict_action never called generate; cannot tell whether it "
                          "unnormalises")
    return out


def _to_numpy(out: Any) -> np.ndarray:
    if isinstance(out, tuple):  # some variants return (actions, generated_ids)
        out = out[0]
    if hasattr(out, "detach"):
        out = out.detach().float().cpu().numpy()
    return np.asarray(out, dtype=np.float64)


def _probe_observation() -> Observation:
    """A deterministic textured frame with a trace-like overlay (for the load-time probe)."""
    yy, xx = np.mgrid[0:256, 0:256]
    img = np.stack([(xx + yy) % 256, (2 * xx) % 256, (3 * yy) % 256], axis=-1).astype(np.uint8)
    ovl = img.copy()
    ovl[120:136, 40:216] = (255, 0, 0)
    return Observation(image=img, overlay=ovl, instruction="put the probe on the plate")


class HFVLAPolicy:
    """A published OpenVLA-family checkpoint behind the Policy interface (one step per call)."""

    def __init__(self, model: VLAModel, cfg: PolicyNodeConfig) -> None:
        self.model = model
        self.name = model.name
        ckpt = validate_checkpoint(resolve_checkpoint(cfg.checkpoint, model.default_repo))
        adapter = validate_adapter(cfg.adapter) if cfg.adapter.strip() else None
        if adapter is not None and model.family == PHI3V:
            raise ConfigError(f"parameter 'adapter': backend '{model.name}' takes no LoRA adapter "
                              "(tracevla-finetune-vla trains openvla and tracevla-7b)")
        norm_stats = load_norm_stats(adapter or ckpt)
        unnorm_key = cfg.unnorm_key
        if adapter is not None and unnorm_key not in norm_stats and len(norm_stats) == 1:
            unnorm_key = next(iter(norm_stats))
            log.warning("%s: unnorm_key '%s' is not in the adapter's statistics; using its only "
                        "entry '%s'", model.name, cfg.unnorm_key, unnorm_key)
        self.stats = select_action_stats(norm_stats, unnorm_key, str(adapter or ckpt))
        torch, transformers = import_hf_stack(model.name)
        self._torch = torch
        self.device = resolve_device(cfg.device, torch)
        cuda = self.device.startswith("cuda")
        kw = load_kwargs(model.family, cuda, flash_attention_available())
        kw["torch_dtype"] = getattr(torch, kw["torch_dtype"])
        self.dtype = kw["torch_dtype"]
        t0 = time.monotonic()
        path = str(ckpt)
        if model.family == PHI3V:
            self.processor = transformers.AutoProcessor.from_pretrained(
                path, trust_remote_code=True, local_files_only=True, num_crops=1)
            self.vla = transformers.AutoModelForCausalLM.from_pretrained(path, **kw).to(self.device)
            self.vocab_size = int(self.processor.tokenizer.vocab_size)
            self.vla.prepare_action_inference(norm_stats[cfg.unnorm_key]["action"], self.vocab_size)
        else:
            self.processor = transformers.AutoProcessor.from_pretrained(
                path, trust_remote_code=True, local_files_only=True)
            self.vla = transformers.AutoModelForVision2Seq.from_pretrained(path, **kw).to(self.device)
            if adapter is not None:
                self.vla = self._apply_adapter(adapter, norm_stats, cfg.merge_adapter)
            self.vocab_size = prismatic_vocab_size(self.vla)
        self.vla.eval()
        self.unnorm = classify_probe_output(
            stubbed_generate(self.vla, probe_token_ids(self.vocab_size),
                             lambda: self._predict(self._inputs(self._prepare(_probe_observation()))),
                             torch),
            self.vocab_size, self.stats)
        log.info("%s: loaded %s in %.1f s on %s (%s, attention %s); unnormalisation by the %s "
                 "with '%s'", self.name, path, time.monotonic() - t0, self.device, kw["torch_dtype"],
                 kw.get("attn_implementation", kw.get("_attn_implementation", "default")),
                 self.unnorm, self.stats.key)
        if not model.uses_trace and cfg.use_trace:
            log.warning("%s ignores the trace; set use_trace false so the node does not wait for "
                        "the tracker", self.name)

    def _apply_adapter(self, adapter: Any, norm_stats: dict[str, Any], merge: bool) -> Any:
        """The base model with the LoRA adapter (merged, or as PEFT layers) and the adapter's
        statistics as its ``norm_stats``; returns the transformers model itself (not a
        PeftModel wrapper), so ``predict_action`` and the probe see the model's own class."""
        wrapped = load_lora_adapter(self.vla, adapter, "parameter 'adapter': ")
        vla = wrapped.merge_and_unload() if merge else wrapped.get_base_model()
        merged = {**(getattr(vla.config, "norm_stats", None) or {}), **norm_stats}
        vla.config.norm_stats = merged
        if hasattr(vla, "norm_stats"):
            vla.norm_stats = merged
        log.info("%s: LoRA adapter %s %s", self.name, adapter,
                 "merged into the weights" if merge else "applied as PEFT layers")
        return vla

    def _prepare(self, obs: Observation) -> PreparedInputs:
        return prepare_inputs(self.model, obs, getattr(self.processor, "tokenizer", None))

    def _inputs(self, prepared: PreparedInputs) -> Any:
        return processor_inputs(self.processor, prepared).to(self.device, dtype=self.dtype)

    def _predict(self, inputs: Any) -> np.ndarray:
        try:
            with self._torch.inference_mode():
                if self.model.family == PHI3V:
                    out = self.vla.predict_action(**inputs)
                else:
                    out = self.vla.predict_action(**inputs, unnorm_key=self.stats.key, do_sample=False)
        except (RuntimeError, ValueError) as exc:  # torch errors (CUDA OOM, shapes) are RuntimeErrors
            raise PolicyError(f"{self.name} inference failed: {type(exc).__name__}: {exc}") from exc
        return _to_numpy(out)

    def infer(self, obs: Observation) -> ActionChunk:
        prepared = self._prepare(obs)
        raw = self._predict(self._inputs(prepared))
        action = raw if self.unnorm == UNNORM_BY_MODEL else unnormalize(raw, self.stats)
        return finalize_action(action, prepared.trace_used)

    def reset(self) -> None:
        """Stateless per step (the trace carries the history)."""


def make_tracevla_7b(cfg: PolicyNodeConfig) -> HFVLAPolicy:
    return HFVLAPolicy(MODELS["tracevla-7b"], cfg)


def make_tracevla_phi3(cfg: PolicyNodeConfig) -> HFVLAPolicy:
    return HFVLAPolicy(MODELS["tracevla-phi3"], cfg)


def make_openvla(cfg: PolicyNodeConfig) -> HFVLAPolicy:
    return HFVLAPolicy(MODELS["openvla"], cfg)
