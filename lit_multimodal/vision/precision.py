"""Automatic training precision: ``bf16-mixed`` where the hardware runs bf16 well, ``32-true`` elsewhere.

A run whose ``trainer.precision`` is left empty (``null``) gets :func:`auto_precision`'s choice; any explicit
value (``32-true``, ``bf16-mixed``, ``16-mixed``, ...) is used as given.

"Runs well" means native bf16 matrix units, because bf16 autocast only pays off where the GEMMs run in bf16
at least as fast as in fp32:

* NVIDIA GPUs of compute capability 8.0 or newer (Ampere, Hopper, ...): bf16 tensor cores.
* CPUs with ``avx512_bf16`` (Cooper Lake, Zen 4 and newer) or AMX tiles (Sapphire Rapids and newer): oneDNN
  runs bf16 GEMMs natively. Without them (e.g. AVX2-only CPUs such as AMD Zen 3) PyTorch emulates bf16 GEMMs
  through fp32 conversions, several times slower than plain fp32, so fp32 is chosen.
"""

from __future__ import annotations

import torch

FP32 = "32-true"
BF16_MIXED = "bf16-mixed"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 dot-product instructions (``avx512_bf16``) or AMX tiles."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def cuda_has_bf16_tensor_cores() -> bool:
    """Whether CUDA device 0 exists and is an Ampere-or-newer GPU (compute capability >= 8.0)."""
    if not torch.cuda.is_available():
        return False
    major, _ = torch.cuda.get_device_capability(0)
    return major >= 8


def auto_precision(accelerator: str | None = "auto") -> str:
    """The Lightning precision a run uses when none is configured.

    Args:
        accelerator: ``trainer.accelerator``: ``cpu``, ``gpu``/``cuda`` or ``auto`` (a GPU when CUDA is
            available, as Lightning picks). Other accelerators (``mps``, ``tpu``, ...) keep fp32.

    Returns:
        ``bf16-mixed`` on hardware with native bf16 matrix units, else ``32-true``.
    """
    name = str(accelerator or "auto").lower()
    if name in ("gpu", "cuda") or (name == "auto" and torch.cuda.is_available()):
        return BF16_MIXED if cuda_has_bf16_tensor_cores() else FP32
    if name in ("cpu", "auto"):
        return BF16_MIXED if cpu_has_native_bf16() else FP32
    return FP32
