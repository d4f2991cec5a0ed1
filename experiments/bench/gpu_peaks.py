"""Dense peak TFLOP/s per GPU (bf16 tensor cores; fp32 without TF32): the one table behind every benchmark's MFU.

Used by ``vpt_step.py`` and ``pandagpt_lora_step.py``; the figures are the vendors' dense (non-sparse) peaks.
"""

from __future__ import annotations

# The first entry whose words all appear in the device name wins, so the specific names come first.
PEAK_TFLOPS = {
    "H100 SXM": {"bf16": 989.4, "fp32": 66.9},
    "H100 PCIe": {"bf16": 756.0, "fp32": 51.2},
    "H100": {"bf16": 989.4, "fp32": 66.9},
    "H200": {"bf16": 989.4, "fp32": 66.9},
    "A100": {"bf16": 312.0, "fp32": 19.5},
}


def peak_tflops(gpu: str | None) -> dict[str, float] | None:
    """Peak dense TFLOP/s of a GPU by its name (``torch.cuda.get_device_name``), or None when unknown or on CPU."""
    if not gpu:
        return None
    for name, peaks in PEAK_TFLOPS.items():
        if all(part in gpu for part in name.split()):
            return peaks
    return None
