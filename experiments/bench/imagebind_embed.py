"""ImageBind embedding throughput: embeddings/s of the frozen encoder for image, audio and text batches.

The model is :class:`~lit_multimodal.multimodal.imagebind.model.ImageBindModel` with random weights, built directly
on the device (``huge``: the released architecture, 1.2e9 parameters; ``tiny`` for the CPU dry run) and cast to the
benchmarked dtype. Inputs are the loaders' output shapes: images ``(B, 3, 224, 224)``, audio ``(B, 3, 1, 128, 204)``
(three 2 s clips, averaged per sample as the official), text ``(B, 77)`` token ids. The time covers
``ImageBindModel.encode`` alone (no file decoding); the median of ``--steps`` timed batches after ``--warmup``.

Usage::

    python experiments/bench/imagebind_embed.py --device cuda --dtype bf16
    python experiments/bench/imagebind_embed.py --dry-run --out /tmp/imagebind.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
BATCHES = {"vision": 128, "audio": 64, "text": 256}  # per-modality batch on the GPU


def example_input(modality: str, batch: int, device: torch.device) -> torch.Tensor:
    """A random input of the shape the modality's loader produces."""
    if modality == "vision":
        return torch.randn(batch, 3, 224, 224, device=device)
    if modality == "audio":
        return torch.randn(batch, 3, 1, 128, 204, device=device)
    if modality == "text":
        return torch.randint(1, 49407, (batch, 77), device=device)
    raise ValueError(f"no example input for {modality!r}")


def main(argv: list[str] | None = None) -> dict:
    """Builds the model, times each modality and writes the JSON."""
    from lit_multimodal.multimodal.imagebind import ImageBindConfig, ImageBindModel

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    parser.add_argument("--size", choices=("huge", "tiny"), default="huge")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="bf16")
    parser.add_argument("--batch-scale", type=float, default=1.0, help="multiplies the per-modality batches")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny model, fp32, small batches")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.dry_run:
        args.device, args.size, args.dtype, args.batch_scale, args.warmup, args.steps = (
            "cpu",
            "tiny",
            "fp32",
            1 / 64,
            1,
            1,
        )
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    config = ImageBindConfig.huge() if args.size == "huge" else ImageBindConfig.tiny()
    started = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(device):
        model = ImageBindModel(config)
    model = model.to(device=device, dtype=DTYPES[args.dtype]).eval().requires_grad_(False)
    sync()
    report: dict = {
        "benchmark": "imagebind_embed",
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "build_s": time.perf_counter() - started,
        "parameters": sum(p.numel() for p in model.parameters()),
        "modalities": {},
    }
    if device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(device)
    for modality, base in BATCHES.items():
        batch = max(1, round(base * args.batch_scale))
        inputs = example_input(modality, batch, device)
        times = []
        with torch.inference_mode():
            for step in range(args.warmup + args.steps):
                sync()
                start = time.perf_counter()
                out = model.encode(modality, inputs)
                sync()
                if step >= args.warmup:
                    times.append(time.perf_counter() - start)
        if out.shape != (batch, config.out_embed_dim) or not torch.isfinite(out.float()).all():
            raise RuntimeError(f"{modality}: embeddings of shape {tuple(out.shape)} or not finite")
        median = statistics.median(times)
        report["modalities"][modality] = {
            "batch": batch,
            "input_shape": list(inputs.shape),
            "batch_time_s": median,
            "embeddings_per_s": batch / median,
        }
        print(f"{modality}: batch {batch}, {batch / median:.1f} embeddings/s", flush=True)
    if device.type == "cuda":
        report["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    out_path = args.out or RESULTS_DIR / f"imagebind_embed_{args.device}.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out_path}")
    return report


if __name__ == "__main__":
    main()
