"""Decoded-image cache for splits without augmentation (VTAB-1k): decode and resize once, then read a memmap.

Each split's images are decoded and resized once into one ``(N, H, W, 3)`` uint8 ``.npy`` file under
``<cache dir>/images/``; later epochs, runs and seeds read it through ``numpy.load(mmap_mode="r")`` (the OS
page cache keeps it in memory), so a step costs a slice, a cast and a normalisation instead of a JPEG decode
and a resize.

The file name is a SHA-256 of the split (every image's path, size, modification time), the output size, the
interpolation and the antialias mode, so a changed image or setting gives a new file. Labels are not stored:
they come from the list file as before.

Exactness: with ``antialias: true`` the resize is PIL's on the uint8 image, so the cached pixels are exactly
those of the uncached path. The official TF-style resize (``antialias: false``) works on float pixels; the
cache rounds its result to uint8, an error of at most 0.5/255 per pixel before normalisation (below the JPEG
quantisation the images already carry).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2 as T

from lit_multimodal.data.base import UNREADABLE_IMAGE, DataError, Sample, open_rgb, samples_digest
from lit_multimodal.files import atomic_path, write_json_atomic
from lit_multimodal.paths import cache_dir

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


def default_image_cache_dir() -> Path:
    """``<framework cache>/images`` (``$LIT_MM_CACHE/images`` when the variable is set)."""
    return cache_dir() / "images"


class _Decode(Dataset):
    """Decodes and resizes one image to ``(size, size, 3)`` uint8 (what the cache stores).

    Yields ``(pixels, error)``: ``error`` is None, or (with ``skip_corrupt``) why the image could not be read, its
    pixels then being zeros.
    """

    def __init__(
        self, samples: Sequence[Sample], size: int, interpolation: str, antialias: bool, skip_corrupt: bool = False
    ) -> None:
        self.samples = list(samples)
        self.size = size
        self.antialias = antialias
        self.skip_corrupt = skip_corrupt
        mode = InterpolationMode(interpolation)
        if antialias:  # PIL resize of the uint8 image: exactly the uncached transform's pixels
            self.resize = T.Resize((size, size), interpolation=mode, antialias=True)
        else:  # TF-style float resize without antialiasing, then rounded
            self.resize = T.Compose(
                [T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Resize((size, size), mode, antialias=False)]
            )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[np.ndarray, str | None]:
        path = self.samples[index][0]
        try:
            image = open_rgb(path)
        except UNREADABLE_IMAGE as err:
            if not self.skip_corrupt:
                raise DataError(f"cannot read image {path}: {err} (set skip_corrupt: true to skip it)") from None
            return np.zeros((self.size, self.size, 3), np.uint8), f"{type(err).__name__}: {err}"
        out = self.resize(image)
        if self.antialias:
            return np.asarray(out, dtype=np.uint8), None
        return (out.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy(), None


def _collate(items: list[tuple[np.ndarray, str | None]]) -> tuple[np.ndarray, list[str | None]]:
    return np.stack([pixels for pixels, _ in items]), [error for _, error in items]


def skipped_path(array_path: Path) -> Path:
    """The ``<digest>.skipped.json`` next to a decoded array: the images that could not be read when it was built."""
    return array_path.with_suffix(".skipped.json")


def read_skipped(array_path: Path) -> dict[int, str]:
    """Row index → reason of every image skipped as unreadable when ``array_path`` was built (empty: none)."""
    sidecar = skipped_path(array_path)
    if not sidecar.is_file():
        return {}
    return {int(row["index"]): str(row["error"]) for row in json.loads(sidecar.read_text())["skipped"]}


def build_decoded_array(
    samples: Sequence[Sample],
    size: int,
    interpolation: str = "bilinear",
    antialias: bool = False,
    directory: str | Path | None = None,
    num_workers: int = 0,
    skip_corrupt: bool = False,
) -> Path:
    """The ``.npy`` file of a split's decoded, resized images; built on first use (atomically).

    An unreadable image is an error naming it, or with ``skip_corrupt`` a row of zeros listed (with the reason)
    in :func:`skipped_path`, written before the array appears; :func:`read_skipped` returns those rows.

    Args:
        samples: the split's ``(path, label)`` list.
        size: output side.
        interpolation: ``bilinear``, ``bicubic`` or ``nearest``.
        antialias: PIL resize (antialiased) instead of the TF-style float resize.
        directory: cache folder (default :func:`default_image_cache_dir`).
        num_workers: decoding processes.
        skip_corrupt: record unreadable images instead of failing.

    Returns:
        The path of the ``(N, size, size, 3)`` uint8 array.
    """
    key = {
        "samples": samples_digest(samples),
        "size": size,
        "interpolation": interpolation,
        "antialias": antialias,
        "format": FORMAT_VERSION,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    folder = Path(directory).expanduser() if directory else default_image_cache_dir()
    path = folder / f"{digest}.npy"
    if path.is_file():
        return path
    with atomic_path(path) as tmp:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(samples), size, size, 3))
        loader = DataLoader(
            _Decode(samples, size, interpolation, antialias, skip_corrupt),
            batch_size=32,
            num_workers=num_workers,
            collate_fn=_collate,
            generator=torch.Generator(),  # leave the global RNG as an uncached run leaves it
        )
        start = 0
        skipped = []
        for batch, errors in loader:
            array[start : start + len(batch)] = batch
            skipped += [
                {"index": start + i, "path": str(samples[start + i][0]), "error": error}
                for i, error in enumerate(errors)
                if error is not None
            ]
            start += len(batch)
        array.flush()
        del array
        if skipped:
            write_json_atomic(skipped_path(path), {"skipped": skipped}, indent=1, sort_keys=False)
        elif skipped_path(path).exists():  # left by an earlier build that did not finish
            skipped_path(path).unlink()
    log.info("decoded %d images into %s", len(samples), path)
    return path


class DecodedImageDataset(Dataset):
    """Images from a decoded uint8 array (memory-mapped), normalised on the fly.

    Args:
        array_path: ``.npy`` from :func:`build_decoded_array`.
        samples: the split's ``(path, label)`` list (labels, and the fingerprint).
        mean: normalisation mean.
        std: normalisation std.
        resize: description of the resize that made the array (for the fingerprint).
        rows: the array row of each sample (default: row i for sample i); skipped images leave rows out.
    """

    def __init__(
        self,
        array_path: Path,
        samples: Sequence[Sample],
        mean: Sequence[float],
        std: Sequence[float],
        resize: str,
        rows: Sequence[int] | None = None,
    ) -> None:
        self.array_path = Path(array_path)
        self.samples = list(samples)
        self.rows = list(range(len(self.samples))) if rows is None else list(rows)
        if len(self.rows) != len(self.samples):
            raise ValueError(f"{len(self.rows)} rows for {len(self.samples)} samples")
        self.labels = [label for _, label in self.samples]
        self.mean, self.std = list(mean), list(std)
        # The same torchvision ops as the uncached transform's tail, so the PIL-resize path is bit-exact.
        self.normalise = T.Compose([T.ToDtype(torch.float32, scale=True), T.Normalize(mean=self.mean, std=self.std)])
        self.resize = resize
        self._array: np.ndarray | None = None  # opened lazily, once per (worker) process

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def array(self) -> np.ndarray:
        """The memory-mapped ``(N, H, W, 3)`` uint8 array."""
        if self._array is None:
            self._array = np.load(self.array_path, mmap_mode="r")
        return self._array

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_array"] = None  # workers map the file themselves
        return state

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        pixels = torch.from_numpy(np.array(self.array[self.rows[index]])).permute(2, 0, 1)
        return self.normalise(pixels), self.labels[index]

    def fingerprint(self) -> dict[str, str]:
        """What this dataset yields (for the feature cache's key)."""
        normalise = f"mean={self.mean}, std={self.std}"
        return {"kind": "decoded", "samples": samples_digest(self.samples), "transform": f"{self.resize}; {normalise}"}
