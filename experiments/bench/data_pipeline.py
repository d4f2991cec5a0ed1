"""Data-pipeline throughput of VTAB-1k: JPEG decode + resize per epoch vs the decoded-image memmap cache.

Writes a synthetic VTAB task (``vtab_synth.py``: 375 x 500 JPEGs, quality 90) and times full passes of the
training loader (batch 64, 224 px, the official TF-style resize) for each worker count, with and without
``decoded_cache``; the one-time cost of building the cache is reported separately. The model-step rate of
``vpt_step.py`` (``--step-json``) is printed next to it: the pipeline must deliver more images/s than the
step consumes, or training waits on data.

Usage::

    python experiments/bench/data_pipeline.py --workers 0 2 --scale 0.25
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vpt_step import RESULTS_DIR, hardware  # noqa: E402
from vtab_synth import write_task  # noqa: E402


def _epoch(loader) -> float:
    start = time.perf_counter()
    for images, _ in loader:
        assert images.dtype == torch.float32
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    """Runs the benchmark and writes ``results/data_pipeline_<device>.json``."""
    from lit_multimodal.data import VTAB1kDataModule

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--scale", type=float, default=0.25, help="fraction of the VTAB-1k split sizes")
    parser.add_argument("--epochs", type=int, default=3, help="timed passes per setting (median)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--step-json", type=Path, default=None, help="a vpt_step.py result to compare with")
    parser.add_argument("--device", default="cpu", help="only recorded (the loaders run on the CPU)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "vtab-1k"
        write_task(root, scale=args.scale)
        rows = {}
        for cached in (False, True):
            for workers in args.workers:
                dm = VTAB1kDataModule(
                    root=str(root), task="kitti", stage="search", batch_size=args.batch, num_workers=workers,
                    decoded_cache=cached, decoded_cache_dir=str(Path(tmp) / "cache"),
                )  # fmt: skip
                start = time.perf_counter()
                dm.setup("fit")
                setup_s = time.perf_counter() - start
                loader = dm.train_dataloader()
                images = len(dm.datasets["train"])
                _epoch(loader)  # starts the (persistent) workers, warms the page cache
                times = [_epoch(loader) for _ in range(args.epochs)]
                name = f"{'memmap' if cached else 'jpeg'}_workers{workers}"
                rows[name] = {
                    "decoded_cache": cached,
                    "num_workers": workers,
                    "images": images,
                    "setup_s": setup_s,
                    "epoch_s": statistics.median(times),
                    "images_per_s": images / statistics.median(times),
                }
                print(f"{name:<20} {rows[name]['images_per_s']:9.1f} images/s  (setup {setup_s:.2f} s)", flush=True)
    report = {
        "benchmark": "data_pipeline",
        "hardware": hardware(args.device),
        "settings": {"scale": args.scale, "batch": args.batch, "img_size": 224, "source_size": [375, 500]},
        "loaders": rows,
    }
    if args.step_json and args.step_json.is_file():
        step = json.loads(args.step_json.read_text())
        report["model_step_images_per_s"] = {k: v["images_per_s"] for k, v in step["methods"].items()}
        report["model_step_source"] = str(args.step_json.name)
    out = args.out or RESULTS_DIR / f"data_pipeline_{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
