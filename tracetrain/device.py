"""Device and precision: one ``resolve_device`` for every trainer and inference backend."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch

from tracetrain.errors import SettingsError

__all__ = ["resolve_device", "autocast_dtype", "autocast", "PRECISIONS"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cpu``, ``cuda``, ``cuda:N``
    and ``mps`` as given. A GPU that is not there raises SettingsError (never a silent CPU)."""
    text = str(name).strip()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise SettingsError(f"device '{text}' is not a device name; use auto, cpu, cuda or "
                            "cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SettingsError(f"device '{text}': torch sees no CUDA device (use auto or cpu, or "
                                "check the driver / the CUDA build of torch)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise SettingsError(f"device '{text}': only {torch.cuda.device_count()} CUDA "
                                "device(s) are present")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise SettingsError(f"device '{text}': MPS is not available here")
    elif dev.type != "cpu":
        raise SettingsError(f"device '{text}' is not supported; use auto, cpu, cuda or cuda:N")
    return dev


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None = plain float32).

    ``auto``: bf16 on a CUDA GPU that supports it, else float32 (on the CPU, bf16 autocast
    is slower than float32 for small models). ``fp16`` needs CUDA (with a GradScaler)."""
    if precision not in PRECISIONS:
        raise SettingsError(f"precision '{precision}' is not one of {PRECISIONS}")
    cuda = device.type == "cuda"
    if precision == "fp32":
        return None
    if precision == "auto":
        return torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else None
    if precision == "bf16":
        if cuda and not torch.cuda.is_bf16_supported():
            raise SettingsError("precision bf16: this GPU does not support bfloat16; use fp16")
        if device.type not in ("cuda", "cpu"):
            raise SettingsError(f"precision bf16 is not supported on {device.type}; use fp32")
        return torch.bfloat16
    if not cuda:
        raise SettingsError(f"precision fp16 needs a CUDA device, not {device.type}; use fp32 "
                            "or bf16")
    return torch.float16


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[Any]:
    """``torch.autocast`` for ``dtype``, or nothing when ``dtype`` is None."""
    if dtype is None:
        yield None
        return
    with torch.autocast(device_type=device.type, dtype=dtype) as ctx:
        yield ctx
