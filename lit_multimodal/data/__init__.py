"""Data: one path-list base and the layouts built on it (json splits, quickstart digits)."""

from lit_multimodal.data.base import DataError, ImageClassificationDataModule, ImageListDataset
from lit_multimodal.data.digits import QuickstartDigits
from lit_multimodal.data.json_split import JsonSplitDataModule

__all__ = ["DataError", "ImageClassificationDataModule", "ImageListDataset", "JsonSplitDataModule", "QuickstartDigits"]
