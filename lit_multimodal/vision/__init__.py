"""Vision: ViT backbones, checkpoint formats, tuning methods (VPT, baselines, PETL plugins), the classifier module."""

from lit_multimodal.vision.backbones import BackboneConfig, build_vit
from lit_multimodal.vision.classifier import ViTClassifier
from lit_multimodal.vision.module import ImageClassifier
from lit_multimodal.vision.tuning import TUNING_METHODS, ParamCounts, count_parameters

__all__ = [
    "BackboneConfig",
    "ImageClassifier",
    "ParamCounts",
    "TUNING_METHODS",
    "ViTClassifier",
    "build_vit",
    "count_parameters",
]
