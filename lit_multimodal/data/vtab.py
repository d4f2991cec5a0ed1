"""VTAB-1k: the 19 tasks as data, and a DataModule for the community on-disk export (JPEG + list files).

On disk (as written by NOAH's ``get_vtab1k.py`` and hosted by several PETL projects)::

    <root>/<task>/train800.txt  val200.txt  train800val200.txt  test.txt
    <root>/<task>/images/{train800,val200,train800val200,test}/000000.jpg ...

with list lines ``images/train800/000000.jpg 307`` (path relative to the task folder, 0-based label).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2 as T

from lit_multimodal.data.base import DataError, Sample
from lit_multimodal.data.image_cache import DecodedImageDataset, build_decoded_array, read_skipped
from lit_multimodal.data.list_file import ListFileDataModule
from lit_multimodal.data.transforms import IMAGENET_MEAN, IMAGENET_STD, EvalTransform, Interpolation, TrainTransform

log = logging.getLogger(__name__)

VTABGroup = Literal["Natural", "Specialized", "Structured"]
VTAB_GROUPS: tuple[VTABGroup, ...] = ("Natural", "Specialized", "Structured")


@dataclass(frozen=True)
class VTABTask:
    """One VTAB-1k task.

    Args:
        name: folder name in the community export (``--data.task``).
        display: column name in the VPT paper's tables.
        short: compact name for narrow tables.
        num_classes: classes (``tune_vtab.py:DATA2CLS`` in the official code).
        group: ``Natural``, ``Specialized`` or ``Structured``.
        test_size: images in the task's test split (VPT paper, Table 7).
        vpt_name: the task's ``DATA.NAME`` in the official code, without the ``vtab-`` prefix.
    """

    name: str
    display: str
    short: str
    num_classes: int
    group: VTABGroup
    test_size: int
    vpt_name: str


# In the order of the paper's tables (Natural, Specialized, Structured).
VTAB_TASKS: dict[str, VTABTask] = {
    task.name: task
    for task in (
        VTABTask("cifar", "CIFAR-100", "CIFAR-100", 100, "Natural", 10_000, "cifar(num_classes=100)"),
        VTABTask("caltech101", "Caltech101", "Caltech101", 102, "Natural", 6_084, "caltech101"),
        VTABTask("dtd", "DTD", "DTD", 47, "Natural", 1_880, "dtd"),
        VTABTask("oxford_flowers102", "Flowers102", "Flowers102", 102, "Natural", 6_149, "oxford_flowers102"),
        VTABTask("oxford_iiit_pet", "Pets", "Pets", 37, "Natural", 3_669, "oxford_iiit_pet"),
        VTABTask("svhn", "SVHN", "SVHN", 10, "Natural", 26_032, "svhn"),
        VTABTask("sun397", "Sun397", "Sun397", 397, "Natural", 21_750, "sun397"),
        VTABTask("patch_camelyon", "Patch Camelyon", "PCam", 2, "Specialized", 32_768, "patch_camelyon"),
        VTABTask("eurosat", "EuroSAT", "EuroSAT", 10, "Specialized", 5_400, "eurosat"),
        VTABTask("resisc45", "Resisc45", "Resisc45", 45, "Specialized", 6_300, "resisc45"),
        VTABTask(
            "diabetic_retinopathy",
            "Retinopathy",
            "Retinopathy",
            5,
            "Specialized",
            42_670,
            'diabetic_retinopathy(config="btgraham-300")',
        ),
        VTABTask("clevr_count", "Clevr/count", "Clevr-count", 8, "Structured", 15_000, 'clevr(task="count_all")'),
        VTABTask(
            "clevr_dist",
            "Clevr/distance",
            "Clevr-dist",
            6,
            "Structured",
            15_000,
            'clevr(task="closest_object_distance")',
        ),
        VTABTask("dmlab", "DMLab", "DMLab", 6, "Structured", 22_735, "dmlab"),
        VTABTask(
            "kitti", "KITTI/distance", "KITTI-dist", 4, "Structured", 711, 'kitti(task="closest_vehicle_distance")'
        ),
        VTABTask(
            "dsprites_loc",
            "dSprites/location",
            "dSpr-loc",
            16,
            "Structured",
            73_728,
            'dsprites(predicted_attribute="label_x_position",num_classes=16)',
        ),
        VTABTask(
            "dsprites_ori",
            "dSprites/orientation",
            "dSpr-ori",
            16,
            "Structured",
            73_728,
            'dsprites(predicted_attribute="label_orientation",num_classes=16)',
        ),
        VTABTask(
            "smallnorb_azi",
            "SmallNORB/azimuth",
            "sNORB-azi",
            18,
            "Structured",
            12_150,
            'smallnorb(predicted_attribute="label_azimuth")',
        ),
        VTABTask(
            "smallnorb_ele",
            "SmallNORB/elevation",
            "sNORB-ele",
            9,
            "Structured",
            12_150,
            'smallnorb(predicted_attribute="label_elevation")',
        ),
    )
}

# The only per-task VPT-Deep settings published with the code: the official demo notebook's final runs ("the
# hyperparameters are the same from our paper"). base_lr is before the batch/256 scaling.
VPT_DEEP_DEMO: dict[str, dict[str, float | int]] = {
    "dmlab": {"num_prompts": 100, "batch_size": 64, "base_lr": 1.0, "weight_decay": 0.001},
    "eurosat": {"num_prompts": 100, "batch_size": 64, "base_lr": 1.0, "weight_decay": 0.001},
    "sun397": {"num_prompts": 5, "batch_size": 128, "base_lr": 25.0, "weight_decay": 0.0001},
}

# Built from VTAB_TASKS so that jsonargparse lists (and checks) the choices; the names live only above.
VTABTaskName = Literal[tuple(VTAB_TASKS)]  # type: ignore[valid-type]

VTABStage = Literal["search", "final"]
STAGE_SPLITS: dict[str, dict[str, str | None]] = {
    "search": {"train": "train800", "val": "val200", "test": None},
    "final": {"train": "train800val200", "val": None, "test": "test"},
}
SPLIT_SIZES = {"train800": 800, "val200": 200, "train800val200": 1000}


def vtab_task(name: str) -> VTABTask:
    """The task record of ``name`` (a folder name such as ``dtd``); an unknown name lists the valid ones."""
    try:
        return VTAB_TASKS[name]
    except KeyError:
        raise DataError(f"unknown VTAB-1k task {name!r}; tasks: {', '.join(VTAB_TASKS)}") from None


def tasks_in_group(group: VTABGroup) -> list[str]:
    """Task names of one group in the paper's table order."""
    if group not in VTAB_GROUPS:
        raise ValueError(f"unknown VTAB group {group!r}; groups: {', '.join(VTAB_GROUPS)}")
    return [task.name for task in VTAB_TASKS.values() if task.group == group]


def tf_resize_transform(
    img_size: int,
    interpolation: Interpolation = "bilinear",
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> T.Compose:
    """Direct resize of the decoded image as the official VTAB pipeline: float pixels, no antialiasing.

    ``tf.image.resize(image, [size, size])`` (TF2, bilinear, half-pixel centres, no antialias) on the uint8
    image converted to float, then ``/255`` and normalisation; torch's bilinear interpolation with
    ``align_corners=False`` samples the same points. Scaling to [0, 1] before the resize is equivalent, as
    the resize is linear.
    """
    return T.Compose(
        [
            T.ToImage(),
            T.ToDtype(torch.float32, scale=True),
            T.Resize((img_size, img_size), interpolation=InterpolationMode(interpolation), antialias=False),
            T.Normalize(mean=list(mean), std=list(std)),
        ]
    )


class VTAB1kDataModule(ListFileDataModule):
    """One VTAB-1k task from the community export (``<root>/<task>/{train800,val200,train800val200,test}.txt``).

    Stages follow the official ``tune_vtab.py`` protocol:

    - ``search``: train on ``train800``, validate on ``val200``, no test (the lr/wd search).
    - ``final``: train on ``train800val200``, test on ``test``; no validation unless ``final_val`` (the
      official final runs also evaluate ``val200``, which is part of the training data, so it reads ~100 %).

    Preprocessing is the official one: a direct resize to ``img_size`` × ``img_size`` (aspect not kept, no
    crop, no augmentation for any split) and ImageNet normalisation.

    Args:
        root: the VTAB-1k folder holding one folder per task.
        task: task folder name, e.g. ``dtd`` (the 19 names of :data:`VTAB_TASKS`).
        stage: ``search`` (train800 / val200) or ``final`` (train800val200 / test).
        final_val: in the ``final`` stage, also validate on ``val200`` (a subset of the training data).
        num_classes: leave empty; the task fixes it (a different value is an error).
        batch_size: per-device batch size.
        num_workers: loader worker processes.
        img_size: network input side.
        interpolation: ``bilinear`` as the official TF resize, or ``bicubic`` as most community loaders.
        antialias: ``false`` (default) resizes the float image without antialiasing, as TF2's
            ``tf.image.resize``; ``true`` resizes the PIL image (always antialiased), as the community loaders
            do (``bicubic`` + ``true`` reproduces ``Resize((224, 224), interpolation=bicubic)`` on PIL images).
        train_transform: ``resize`` (official: no augmentation) or ``fgvc`` (random crop + flip).
        eval_transform: ``resize`` (official) or ``center_crop``.
        decoded_cache: decode and resize each split once into a memory-mapped uint8 array and train from it
            (splits with the ``resize`` transform only; see :mod:`lit_multimodal.data.image_cache`). The
            TF-style float resize is then rounded to uint8 (at most 0.5/255 per pixel for bilinear).
        decoded_cache_dir: its folder; default ``$LIT_MM_CACHE/images`` (``~/.cache/lit_multimodal/images``).
        **kwargs: see :class:`~lit_multimodal.data.base.ImageClassificationDataModule`.
    """

    def __init__(
        self,
        root: str,
        task: VTABTaskName,
        stage: VTABStage = "final",
        final_val: bool = False,
        num_classes: int | None = None,
        batch_size: int = 64,
        num_workers: int = 4,
        img_size: int = 224,
        interpolation: Interpolation = "bilinear",
        antialias: bool = False,
        train_transform: TrainTransform = "resize",
        eval_transform: EvalTransform = "resize",
        decoded_cache: bool = False,
        decoded_cache_dir: str | None = None,
        **kwargs,
    ) -> None:
        info = vtab_task(task)
        if num_classes is not None and num_classes != info.num_classes:
            raise DataError(
                f"VTAB-1k task {task!r} has {info.num_classes} classes but num_classes is {num_classes}; "
                "leave data.num_classes empty"
            )
        if stage not in STAGE_SPLITS:
            raise DataError(f"unknown VTAB-1k stage {stage!r}; stages: {', '.join(STAGE_SPLITS)}")
        splits = dict(STAGE_SPLITS[stage])
        if stage == "final" and final_val:
            splits["val"] = "val200"
        super().__init__(
            root=root,
            num_classes=info.num_classes,
            train_split=splits["train"],
            val_split=splits["val"],
            test_split=splits["test"],
            batch_size=batch_size,
            num_workers=num_workers,
            img_size=img_size,
            interpolation=interpolation,
            train_transform=train_transform,
            eval_transform=eval_transform,
            **kwargs,
        )
        self.task = task
        self.task_info = info
        self.stage = stage
        self.final_val = final_val
        self.antialias = antialias
        self.decoded_cache = decoded_cache
        self.decoded_cache_dir = decoded_cache_dir

    @property
    def dataset_name(self) -> str:
        """The task name (``dtd``, ``cifar``, ...)."""
        return self.task

    @property
    def list_dir(self) -> Path:
        """The task folder ``<root>/<task>``."""
        return self.root / self.task

    def present_tasks(self) -> list[str]:
        """VTAB-1k task folders found under ``root``, in the paper's order."""
        return [name for name in VTAB_TASKS if (self.root / name).is_dir()]

    def _check_root(self) -> None:
        super()._check_root()
        if self.list_dir.is_dir():
            return
        present = self.present_tasks()
        if present:
            found = f"task folders present under {self.root}: {', '.join(present)}"
        elif (self.root / "train800.txt").is_file():
            found = f"{self.root} looks like a single task folder; data.root must be the folder holding the tasks"
        else:
            found = f"no VTAB-1k task folders under {self.root}"
        raise DataError(f"VTAB-1k task folder {self.list_dir} does not exist; {found}")

    def read_split(self, split: str) -> list[Sample]:
        """Reads ``<root>/<task>/<split>.txt``; a size other than the VTAB-1k one is logged as a warning."""
        samples = super().read_split(split)
        expected = SPLIT_SIZES.get(split, self.task_info.test_size if split == "test" else None)
        if expected is not None and len(samples) != expected:
            log.warning(
                "%s lists %d images; VTAB-1k %s/%s has %d",
                self.list_path(split),
                len(samples),
                self.task,
                split,
                expected,
            )
        return samples

    def check_classes(self, samples: dict[str, list[Sample]]) -> None:
        """The task fixes the class count (a small split need not show every class); labels are range-checked."""

    def transform_for(self, role: str):
        """Direct resize (TF-like float resize unless ``antialias``), otherwise the shared transforms."""
        mode = self.train_transform if role == "train" else self.eval_transform
        if mode == "resize" and not self.antialias:
            return tf_resize_transform(self.img_size, self.interpolation, self.mean, self.std)
        return super().transform_for(role)

    def _setup_role(self, role: str) -> None:
        """Like the base, but reads a decoded-image array for ``resize`` splits when ``decoded_cache`` is on."""
        mode = self.train_transform if role == "train" else self.eval_transform
        if not (self.decoded_cache and mode == "resize"):
            return super()._setup_role(role)
        split = self.split_names()[role]
        if split is None:
            raise DataError(f"this data module has no {role!r} split (split names: {self.split_names()})")
        self._check_root()
        samples = self.read_split(split)
        self._check_samples(split, samples)
        path = build_decoded_array(
            samples,
            self.img_size,
            self.interpolation,
            self.antialias,
            self.decoded_cache_dir,
            self.num_workers,
            skip_corrupt=self.skip_corrupt,
        )
        skipped = read_skipped(path)
        if skipped and not self.skip_corrupt:  # skipped when another run built the array with skip_corrupt
            index, reason = next(iter(skipped.items()))
            raise DataError(f"cannot read image {samples[index][0]}: {reason} (set skip_corrupt: true to skip it)")
        for index, reason in skipped.items():
            log.warning("skipping unreadable image %s: %s", samples[index][0], reason)
        rows = [i for i in range(len(samples)) if i not in skipped]
        if not rows:
            raise DataError(f"split {split!r}: none of the {len(samples)} listed images can be read")
        resize = f"resize {self.img_size} {self.interpolation} antialias={self.antialias}"
        kept = [samples[i] for i in rows]
        self.datasets[role] = DecodedImageDataset(path, kept, self.mean, self.std, resize, rows=rows)
