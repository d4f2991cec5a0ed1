"""Linear-probe sweep with and without the backbone-feature cache (one VTAB-1k search stage).

Every grid point is one ``Trainer.fit`` of a fresh ``ImageClassifier(tuning="linear")`` on the search split
(train800 / val200 of a synthetic task from ``vtab_synth.py``), with the same backbone weights in every run
as in a real sweep. Runs alternate: grid point 1 uncached, grid point 1 cached, grid point 2 uncached, ...
The cached sweep starts from an empty cache, so its first run pays for the feature extraction. Both use the
decoded-image cache (the VTAB config default), so the difference is the backbone forward alone.

Usage::

    python experiments/bench/linear_sweep.py --device cuda --lrs 4 --wds 2 --epochs 100
    python experiments/bench/linear_sweep.py --arch vit_tiny_patch16_224 --scale 0.1 --epochs 5   # CPU
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vpt_step import RESULTS_DIR, default_precision, hardware  # noqa: E402
from vtab_synth import write_task  # noqa: E402

OFFICIAL_LRS = (50.0, 25.0, 10.0, 5.0, 2.5, 1.0, 0.5, 0.25, 0.1, 0.05)
OFFICIAL_WDS = (0.01, 0.001, 0.0001, 0.0)


def fit_once(root: Path, cache: Path, args, lr: float, wd: float, cached: bool) -> tuple[float, float]:
    """One grid point: ``(wall seconds, last val top-1)``."""
    from lightning.pytorch import Trainer, seed_everything

    from lit_multimodal.data import VTAB1kDataModule
    from lit_multimodal.training.optim import OptimConfig
    from lit_multimodal.vision.backbones import BackboneConfig
    from lit_multimodal.vision.module import ImageClassifier

    start = time.perf_counter()
    seed_everything(0, verbose=False)  # the same random backbone in every run, as one checkpoint in a sweep
    model = ImageClassifier(
        num_classes=4,
        backbone=BackboneConfig(arch=args.arch, img_size=224),
        tuning="linear",
        optim=OptimConfig(base_lr=lr, weight_decay=wd, warmup_epochs=min(10, args.epochs // 2)),
        feature_cache=cached,
        feature_cache_dir=str(cache / "features"),
    )
    data = VTAB1kDataModule(
        root=str(root), task="kitti", stage="search", batch_size=args.batch, num_workers=args.workers,
        decoded_cache=True, decoded_cache_dir=str(cache / "images"), pin_memory=args.device == "cuda",
    )  # fmt: skip
    trainer = Trainer(
        accelerator="gpu" if args.device == "cuda" else "cpu", devices=1, max_epochs=args.epochs,
        precision="bf16-mixed" if args.precision == "bf16" else "32-true", logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(model, datamodule=data)
    return time.perf_counter() - start, float(trainer.callback_metrics["val/top1"])


def main(argv: list[str] | None = None) -> dict:
    """Runs both sweeps and writes ``results/linear_sweep_<device>.json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--arch", default="vit_base_patch16_224")
    parser.add_argument("--lrs", type=int, default=2, help="first N of the official lr grid")
    parser.add_argument("--wds", type=int, default=2, help="first N of the official wd grid")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the VTAB-1k split sizes")
    parser.add_argument("--batch", type=int, default=2048, help="paper: 2048 (one full-batch step per epoch)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.precision == "auto":
        args.precision = default_precision(args.device)

    grid = [(lr, wd) for lr in OFFICIAL_LRS[: args.lrs] for wd in OFFICIAL_WDS[: args.wds]]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "vtab-1k"
        write_task(root, scale=args.scale)
        cache = Path(tmp) / "cache"
        for lr, wd in grid:
            for cached in (False, True):
                seconds, top1 = fit_once(root, cache, args, lr, wd, cached)
                runs.append({"base_lr": lr, "weight_decay": wd, "cached": cached, "seconds": seconds, "val_top1": top1})
                print(f"lr {lr:<5} wd {wd:<7} {'cached  ' if cached else 'uncached'} {seconds:8.2f} s  val {top1:.4f}")
    uncached = [r for r in runs if not r["cached"]]
    cached = [r for r in runs if r["cached"]]
    same = all(a["val_top1"] == b["val_top1"] for a, b in zip(uncached, cached, strict=True))
    total_plain, total_cached = sum(r["seconds"] for r in uncached), sum(r["seconds"] for r in cached)
    report = {
        "benchmark": "linear_sweep",
        "hardware": hardware(args.device),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "grid_points": len(grid),
        "runs": runs,
        "uncached_total_s": total_plain,
        "cached_total_s": total_cached,
        "speedup": total_plain / total_cached,
        "first_cached_run_s": cached[0]["seconds"],
        "val_top1_identical": same,
    }
    # Extrapolation to the official search (40 grid points x 100 epochs) from this run's parts: a cached run
    # costs its fixed part c (build, setup, head training), an uncached one c plus b per epoch of backbone
    # forwards; the cached sweep pays the extraction once (its first run's excess over c).
    c = statistics.median(r["seconds"] for r in cached[1:]) if len(cached) > 1 else cached[0]["seconds"]
    b = max(statistics.median(r["seconds"] for r in uncached) - c, 0.0) / args.epochs
    extract = max(cached[0]["seconds"] - c, 0.0)
    official_plain, official_cached = 40 * (c + 100 * b), extract + 40 * c
    report["model"] = {
        "cached_run_fixed_s": c,
        "uncached_backbone_s_per_epoch": b,
        "extraction_s": extract,
        "official_search_uncached_s": official_plain,
        "official_search_cached_s": official_cached,
        "official_search_speedup": official_plain / official_cached,
    }
    print(f"uncached {total_plain:.1f} s, cached {total_cached:.1f} s: {report['speedup']:.1f}x; same val: {same}")
    print(f"extrapolated to 40 points x 100 epochs: {report['model']['official_search_speedup']:.1f}x")
    out = args.out or RESULTS_DIR / f"linear_sweep_{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
