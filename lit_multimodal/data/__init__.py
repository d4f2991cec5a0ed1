"""Data: one path-list base and the layouts built on it (FGVC json splits, VTAB-1k lists, BCI names, digits)."""

from lit_multimodal.data.base import DataError, ImageClassificationDataModule, ImageListDataset
from lit_multimodal.data.bci import BCIDataModule
from lit_multimodal.data.digits import QuickstartDigits
from lit_multimodal.data.fgvc import FGVC_DATASETS
from lit_multimodal.data.json_split import JsonSplitDataModule
from lit_multimodal.data.list_file import ListFileDataModule
from lit_multimodal.data.vtab import VTAB_TASKS, VTAB1kDataModule

__all__ = [
    "DataError",
    "ImageClassificationDataModule",
    "ImageListDataset",
    "JsonSplitDataModule",
    "QuickstartDigits",
    "BCIDataModule",
    "ListFileDataModule",
    "VTAB1kDataModule",
    "VTAB_TASKS",
    "FGVC_DATASETS",
]
