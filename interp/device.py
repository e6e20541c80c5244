"""Device and precision choice, shared by training, analysis and the benchmarks.

This module sits on the lowest floor of the package: it imports torch and
:mod:`interp.errors` only, so every other module (training, analysis, measures) can use it
without importing each other.

The rules:

- device ``auto``: CUDA if a CUDA device is visible, else Apple's MPS if available, else
  the CPU. ``cuda`` when none is visible is refused with a :class:`ConfigError`.
- precision ``auto``: on CUDA, bf16 autocast where the GPU supports bf16, else fp16 (which
  needs a gradient scaler in training); on the CPU, bf16 autocast only where the CPU has
  bf16 matmul instructions (AVX512-BF16 or AMX), else plain fp32; elsewhere (MPS) fp32.
  ``fp16`` off CUDA is refused. ``fp32`` means no autocast at all.
- :func:`autocast` turns a chosen dtype into a context: ``torch.autocast`` for a dtype,
  a no-op for ``None`` (fp32).
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch

from interp.errors import ConfigError


def pick_device(name: str) -> torch.device:
    """The device for ``train.device`` = ``auto`` | ``cpu`` | ``cuda`` | ``mps`` (rule above)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but no CUDA device is visible; use train.device=auto or cpu")
    return torch.device(name)


def cpu_has_fast_bf16() -> bool:
    """True where the CPU has bf16 matmul instructions (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``name`` = ``auto`` | ``fp32`` | ``bf16`` | ``fp16`` on
    ``device``, or None for plain fp32 (rule in the module docstring)."""
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if device.type == "cpu" and cpu_has_fast_bf16() else None
    if name == "fp16" and device.type != "cuda":
        raise ConfigError("train.precision=fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast(device.type, dtype)``, or a no-op context when ``dtype`` is None."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
