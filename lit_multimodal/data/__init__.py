"""Data: one path-list base and the layouts built on it (FGVC json splits, VTAB-1k lists, BCI names)."""

from lit_multimodal.data.base import DataError, ImageClassificationDataModule, ImageListDataset
from lit_multimodal.data.bci import BCIDataModule
from lit_multimodal.data.fgvc import FGVC_DATASETS
from lit_multimodal.data.json_split import JsonSplitDataModule
from lit_multimodal.data.list_file import ListFileDataModule
from lit_multimodal.data.vtab import VTAB_TASKS, VTAB1kDataModule

__all__ = [
    "DataError",
    "ImageClassificationDataModule",
    "ImageListDataset",
    "JsonSplitDataModule",
    "BCIDataModule",
    "ListFileDataModule",
    "VTAB1kDataModule",
    "VTAB_TASKS",
    "FGVC_DATASETS",
]


def __getattr__(name: str):
    """``lit_multimodal.data.QuickstartDigits`` (the class path of older configs), imported only when asked for."""
    if name == "QuickstartDigits":
        from lit_multimodal.data.digits import QuickstartDigits

        return QuickstartDigits
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
