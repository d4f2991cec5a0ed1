"""Image transforms of the official pipelines (torchvision ``transforms.v2``)."""

from __future__ import annotations

from typing import Literal

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2 as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

TrainTransform = Literal["fgvc", "resize"]
EvalTransform = Literal["center_crop", "resize"]
Interpolation = Literal["bilinear", "bicubic", "nearest"]


def _to_tensor(mean: tuple[float, ...], std: tuple[float, ...]) -> list:
    return [T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Normalize(mean=list(mean), std=list(std))]


def build_transform(
    train: bool,
    mode: str,
    img_size: int,
    resize_size: int,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    interpolation: Interpolation = "bilinear",
) -> T.Compose:
    """Builds a PIL → normalised tensor transform.

    Args:
        train: training split (random augmentation allowed).
        mode: training ``fgvc`` = Resize(short side ``resize_size``) → RandomCrop(``img_size``) →
            horizontal flip (official FGVC); eval ``center_crop`` = Resize → CenterCrop (official FGVC);
            ``resize`` (either) = direct resize to ``img_size`` × ``img_size`` without augmentation
            (official VTAB).
        img_size: output side.
        resize_size: short side before cropping (256 for 224, 438 for 384, 512 for 448 in the official code).
        mean: normalisation mean.
        std: normalisation std.
        interpolation: resampling filter.
    """
    interp = InterpolationMode(interpolation)
    if mode == "resize":
        steps = [T.Resize((img_size, img_size), interpolation=interp, antialias=True)]
    elif mode == "fgvc" and train:
        steps = [
            T.Resize(resize_size, interpolation=interp, antialias=True),
            T.RandomCrop(img_size),
            T.RandomHorizontalFlip(0.5),
        ]
    elif mode == "center_crop" and not train:
        steps = [T.Resize(resize_size, interpolation=interp, antialias=True), T.CenterCrop(img_size)]
    else:
        raise ValueError(f"transform {mode!r} is not valid for {'training' if train else 'evaluation'}")
    return T.Compose([*steps, *_to_tensor(mean, std)])
