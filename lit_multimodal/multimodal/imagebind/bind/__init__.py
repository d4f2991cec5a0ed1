"""Binding a modality into ImageBind's space (``lit-mm bind``), exporting it, and measuring it.

``BindModule`` + ``BindDataModule`` train one encoder against frozen anchor embeddings with ImageBind's InfoNCE;
``bind_export`` writes a complete ImageBind state dict; ``evaluate`` holds zero-shot and retrieval evaluation.
The emergence quickstart's data lives in :mod:`lit_multimodal.quickstart.emergence_data`.
"""

from .data import BindDataModule
from .loss import PAPER_TEMPERATURE, infonce_loss, retrieval_recalls
from .module import BindModule

__all__ = ["PAPER_TEMPERATURE", "BindDataModule", "BindModule", "infonce_loss", "retrieval_recalls"]
