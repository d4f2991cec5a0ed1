"""A synthetic VTAB-1k task in the community on-disk layout (JPEG + list files), for the data and sweep benchmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SPLITS = {"train800": 800, "val200": 200, "train800val200": 1000, "test": 200}


def write_task(
    root: Path, task: str = "kitti", classes: int = 4, scale: float = 1.0, size: tuple[int, int] = (375, 500)
) -> Path:
    """Writes ``<root>/<task>`` with ``scale`` times the VTAB-1k split sizes of random-texture JPEGs.

    Args:
        root: the VTAB-1k folder.
        task: the task folder name (its class count must be ``classes``; kitti has 4).
        classes: labels cycle through ``0..classes-1``.
        scale: fraction of the real split sizes (800 / 200 / 1000 / 200 test images here).
        size: ``(height, width)`` of every image (VTAB sources are mostly a few hundred pixels a side).

    Returns:
        The task folder.
    """
    folder = root / task
    rng = np.random.default_rng(0)
    height, width = size
    for split, count in SPLITS.items():
        images = folder / "images" / split
        images.mkdir(parents=True, exist_ok=True)
        lines = []
        for index in range(max(1, round(count * scale))):
            label = index % classes
            # Smooth colour field plus noise: compresses like a photograph, not like flat colour.
            base = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
            pixels = np.asarray(Image.fromarray(base).resize((width, height), Image.Resampling.BILINEAR))
            noise = rng.normal(0, 12, pixels.shape)
            pixels = np.clip(pixels + noise, 0, 255).astype(np.uint8)
            rel = f"images/{split}/{index:06d}.jpg"
            Image.fromarray(pixels).save(folder / rel, quality=90)
            lines.append(f"{rel} {label}\n")
        (folder / f"{split}.txt").write_text("".join(lines))
    return folder
