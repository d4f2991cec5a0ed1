"""ImageBind: the six modality encoders (official module names), input loaders and the embedding API.

``ImageBindEncoder(checkpoint=...).encode({"image": [...], "audio": [...]})`` → ``{modality: (B, 1024)}``;
``build_imagebind`` gives the bare frozen model; ``preprocess`` holds one loader per modality.
"""

from .cache import EmbeddingCache
from .checkpoint import ImageBindCheckpointError, build_imagebind, load_imagebind_state
from .config import MODALITIES, ImageBindConfig
from .encode import MODALITY_NAMES, ImageBindEncoder
from .model import ImageBindModel
from .preprocess import InputError, load_inputs

__all__ = [
    "MODALITIES",
    "MODALITY_NAMES",
    "EmbeddingCache",
    "ImageBindCheckpointError",
    "ImageBindConfig",
    "ImageBindEncoder",
    "ImageBindModel",
    "InputError",
    "build_imagebind",
    "load_imagebind_state",
    "load_inputs",
]
