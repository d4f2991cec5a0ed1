"""Where a VPT training step spends its GPU time: the torch profiler's kernel table for one variant of vpt_step.

Builds the same model as :mod:`vpt_step` (``build_model``), runs ``--warmup`` untimed steps, then profiles
``--steps`` steps and writes the kernels that take the most CUDA time (name, calls, total and share), grouped into
attention, matrix products, concatenation, optimizer and the rest (elementwise, normalisation, copies), to JSON,
and prints the table. Annotated ranges (``Optimizer.step#SGD.step``) are left out: their time is their kernels'.

Usage::

    python experiments/bench/profile_vpt_step.py --variant vpt_deep_p50@bf16 --batch 128 --out /tmp/profile.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
from contextlib import nullcontext
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
ANNOTATION = re.compile(r"^[\w.]+#[\w.]+$")  # record_function ranges such as Optimizer.step#SGD.step
# Checked in this order: cuDNN's flash kernels carry "wgmma" in their names, so attention comes before matmul.
GROUPS = {
    "attention": ("flash", "fmha", "sdpa", "attention", "softmax", "dot_do_o", "convert_dq"),
    "matmul": ("nvjet", "gemm", "cutlass", "cublas", "xmma", "aten::mm", "aten::addmm", "aten::bmm"),
    "cat": ("catarray", "aten::cat"),
    "optimizer": ("multi_tensor_apply",),
}


def _vpt_step():
    spec = importlib.util.spec_from_file_location("vpt_step_bench", BENCH / "vpt_step.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def group_of(kernel: str) -> str:
    """The coarse class of a kernel name (first matching group, else ``other``)."""
    name = kernel.lower()
    return next((group for group, keys in GROUPS.items() if any(k in name for k in keys)), "elementwise/norm/copy")


def main(argv: list[str] | None = None) -> dict:
    """Profiles the steps and writes the kernel table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="vpt_deep_p50@bf16")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--arch", default="vit_base_patch16_224")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    bench = _vpt_step()
    variant = bench.parse_variant(args.variant, "bf16")
    settings = bench.Settings(args.device, args.arch, args.img_size, args.batch, args.warmup)
    from lit_multimodal.training.optim import OptimConfig, build_optimizer

    torch.manual_seed(0)
    device = torch.device(args.device)
    model = bench.build_model(variant, settings).to(device).train()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizer = build_optimizer(trainable, OptimConfig(name="sgd"), lr=1e-3, tuning=variant.method.tuning)
    images = torch.randn(args.batch, 3, args.img_size, args.img_size, device=device)
    labels = torch.randint(0, bench.NUM_CLASSES, (args.batch,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if variant.precision == "bf16" else nullcontext()

    def step() -> None:
        with autocast:
            loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
        torch.cuda.synchronize()
    with torch.profiler.profile(activities=activities) as profiler:
        for _ in range(args.steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    events = [
        e
        for e in profiler.key_averages()
        if e.device_type == torch.autograd.DeviceType.CUDA and not ANNOTATION.match(e.key)
    ]
    if not events:  # CPU: the operator table instead of kernels
        events = list(profiler.key_averages())
    key = "device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    total = sum(getattr(e, key) for e in events) or 1.0
    rows = sorted(
        (
            {"kernel": e.key, "calls": e.count, "time_ms": getattr(e, key) / 1e3 / args.steps, "group": group_of(e.key)}
            for e in events
        ),
        key=lambda row: -row["time_ms"],
    )
    groups: dict[str, float] = {}
    for row in rows:
        row["share"] = row["time_ms"] * 1e3 * args.steps / total
        groups[row["group"]] = groups.get(row["group"], 0.0) + row["share"]
    report = {
        "variant": variant.name,
        "batch": args.batch,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "time_per_step_ms": total / 1e3 / args.steps,
        "group_shares": groups,
        "top_kernels": rows[: args.top],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{variant.name}: {report['time_per_step_ms']:.1f} ms of kernels per step; groups {groups}")
    for row in rows[: args.top]:
        print(f"{row['share'] * 100:6.2f} %  {row['time_ms']:8.3f} ms  {row['calls']:5d}  {row['kernel'][:110]}")
    return report


if __name__ == "__main__":
    main()
