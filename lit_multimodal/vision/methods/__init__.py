"""Tuning methods as plugins: one file per method (or family) behind :class:`TuningMethod`, found by name.

Adding a method is one new file here (a :class:`TuningMethod` subclass with a ``name``), an import line
below, and its configs; see docs/methods.md and docs/architecture.md.
"""

from lit_multimodal.vision.methods.base import (
    Recipe,
    TuningMethod,
    build_method,
    list_methods,
    method_class,
)
from lit_multimodal.vision.methods.subsets import Bias, Full, LayerNormTuning, Linear, Partial
from lit_multimodal.vision.methods.vpt import VPTDeep, VPTDeepBias, VPTShallow

__all__ = [
    "Bias",
    "Full",
    "LayerNormTuning",
    "Linear",
    "Partial",
    "Recipe",
    "TuningMethod",
    "VPTDeep",
    "VPTDeepBias",
    "VPTShallow",
    "build_method",
    "list_methods",
    "method_class",
]
