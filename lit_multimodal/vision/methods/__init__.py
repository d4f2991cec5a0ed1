"""Tuning methods as plugins: one file per method (or family) behind :class:`TuningMethod`, found by name.

Adding a method is one new file here (a :class:`TuningMethod` subclass with a ``name``), an import line
below, and its configs; see docs/methods.md and docs/architecture.md.
"""

from typing import Literal

from lit_multimodal.vision.methods.adapter_plus import AdapterPlus
from lit_multimodal.vision.methods.adaptformer import AdaptFormer
from lit_multimodal.vision.methods.base import (
    Recipe,
    TuningMethod,
    build_classifier,
    build_method,
    list_methods,
    method_class,
)
from lit_multimodal.vision.methods.convpass import Convpass
from lit_multimodal.vision.methods.fact import FacTTK, FacTTT
from lit_multimodal.vision.methods.houlsby import Houlsby
from lit_multimodal.vision.methods.lora import DoRA, LoRA, LoRABias
from lit_multimodal.vision.methods.pfeiffer import Pfeiffer
from lit_multimodal.vision.methods.repadapter import RepAdapter
from lit_multimodal.vision.methods.ssf import SSF
from lit_multimodal.vision.methods.subsets import Bias, Full, LayerNormTuning, Linear, Partial
from lit_multimodal.vision.methods.vpt import VPTDeep, VPTDeepBias, VPTShallow

# The registered names as a type: the CLI refuses an unknown ``tuning:`` string while parsing the config.
MethodName = Literal[tuple(list_methods())]  # type: ignore[valid-type]

__all__ = [
    "MethodName",
    "SSF",
    "AdaptFormer",
    "AdapterPlus",
    "Bias",
    "Convpass",
    "DoRA",
    "FacTTK",
    "FacTTT",
    "Houlsby",
    "LoRA",
    "LoRABias",
    "Pfeiffer",
    "RepAdapter",
    "Full",
    "LayerNormTuning",
    "Linear",
    "Partial",
    "Recipe",
    "TuningMethod",
    "VPTDeep",
    "VPTDeepBias",
    "VPTShallow",
    "build_classifier",
    "build_method",
    "list_methods",
    "method_class",
]
