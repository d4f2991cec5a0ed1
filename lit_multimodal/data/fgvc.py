"""The five FGVC datasets of VPT in one table: class counts, on-disk layout and the paper's split sizes.

Configs, docs and ``lit-mm prepare fgvc`` read these values from here; nothing else should repeat them.
"""

from __future__ import annotations

from dataclasses import dataclass

from lit_multimodal.data.base import DataError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class FGVCInfo:
    """One FGVC dataset as VPT uses it.

    Attributes:
        name: display name.
        num_classes: number of classes (``NUMBER_CLASSES`` in the official configs).
        image_root: folder the split-file keys are relative to, relative to the dataset root
            (``""``: the dataset root itself).
        vpt_folder: the dataset folder name in the official README (``DATA.DATAPATH``'s last component).
        vpt_name: the official ``DATA.NAME``.
        official_val: whether the dataset ships its own validation split (otherwise 10 % of the official
            train split is held out).
        paper_sizes: images in train/val/test as reported in the VPT paper.
        archives: the original files to download and extract into the dataset folder (Stanford Cars: the
            files of both layouts, devkit and all-in-one; either layout is enough).
    """

    name: str
    num_classes: int
    image_root: str
    vpt_folder: str
    vpt_name: str
    official_val: bool
    paper_sizes: tuple[int, int, int]
    archives: tuple[str, ...]

    @property
    def split_sizes(self) -> dict[str, int]:
        """The paper's split sizes as ``{"train": n, "val": n, "test": n}``."""
        return dict(zip(SPLITS, self.paper_sizes, strict=True))


FGVC_DATASETS: dict[str, FGVCInfo] = {
    "cub": FGVCInfo(
        name="CUB-200-2011",
        num_classes=200,
        image_root="images",
        vpt_folder="CUB_200_2011",
        vpt_name="CUB",
        official_val=False,
        paper_sizes=(5394, 600, 5794),
        archives=("CUB_200_2011.tgz",),
    ),
    "nabirds": FGVCInfo(
        name="NABirds",
        num_classes=555,
        image_root="images",
        vpt_folder="nabirds",
        vpt_name="nabirds",
        official_val=False,
        paper_sizes=(21536, 2393, 24633),
        archives=("nabirds.tar.gz",),
    ),
    "flowers": FGVCInfo(
        name="Oxford Flowers-102",
        num_classes=102,
        image_root="",
        vpt_folder="OxfordFlower",
        vpt_name="OxfordFlowers",
        official_val=True,
        paper_sizes=(1020, 1020, 6149),
        archives=("102flowers.tgz", "imagelabels.mat", "setid.mat"),
    ),
    "dogs": FGVCInfo(
        name="Stanford Dogs",
        num_classes=120,
        image_root="Images",
        vpt_folder="Stanford-dogs",
        vpt_name="StanfordDogs",
        official_val=False,
        paper_sizes=(10800, 1200, 8580),
        archives=("images.tar", "lists.tar"),
    ),
    "cars": FGVCInfo(
        name="Stanford Cars",
        num_classes=196,
        image_root="",
        vpt_folder="Stanford-cars",
        vpt_name="StanfordCars",
        official_val=False,
        paper_sizes=(7329, 815, 8041),
        archives=(
            "cars_train.tgz",
            "cars_test.tgz",
            "car_devkit.tgz",
            "cars_test_annos_withlabels.mat",
            "car_ims.tgz",
            "cars_annos.mat",
        ),
    ),
}


def fgvc_info(dataset: str) -> FGVCInfo:
    """The table entry of ``dataset`` (case-insensitive key of :data:`FGVC_DATASETS`).

    Raises:
        DataError: the name is not in the table (the message lists the known names).
    """
    info = FGVC_DATASETS.get(dataset.strip().lower())
    if info is None:
        raise DataError(f"unknown FGVC dataset {dataset!r}; choose one of {', '.join(FGVC_DATASETS)}")
    return info
