"""Training-step benchmark of the tuning methods: images/s, peak memory and the VPT/full FLOP floor.

One step is forward + backward + SGD update of a ``ViTClassifier`` (ViT-B/16, 100 classes, batch 8 at
224 px by default) on a fixed random batch. Every method runs in its own fresh worker process, so its
peak memory is its own; the workers are driven in interleaved rounds (round 1 times every method, then
round 2, ...) so that drift of a shared machine hits all methods alike. Step times are medians over
``rounds x steps`` timed steps, after ``warmup`` untimed ones.

Memory is the growth of the worker's peak memory over its baseline after the model, optimiser and batch
are built: ``ru_maxrss`` on CPU, ``torch.cuda.max_memory_allocated`` over ``memory_allocated`` on CUDA.
It therefore covers activations, gradients and optimiser state, not the weights.

The FLOP floor of a method's step time relative to full fine-tuning counts the matmul multiply-adds of
the step (see :func:`step_macs`). Prompts lengthen the sequence from ``N`` to ``N + p`` tokens; frozen
weights skip the weight-gradient GEMMs, so a frozen linear layer's backward costs 1x its forward instead
of 2x, while the attention score/value matmuls (activation x activation) still cost 2x in backward.

Usage::

    python experiments/bench/vpt_step.py --device cpu
    python experiments/bench/vpt_step.py --device cuda --precision bf16
    python experiments/bench/vpt_step.py --quick --out /tmp/bench.json   # tiny smoke run
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_METHODS = ("vpt_deep_p50", "vpt_deep_p5", "vpt_shallow_p50", "linear", "full")
PROMPT_TUNINGS = ("vpt_deep", "vpt_shallow")
NUM_CLASSES = 100
TARGET_TOLERANCE = 0.05  # the measured VPT/full ratio should lie within 5 % of its FLOP floor


# --------------------------------------------------------------------------------------------------
# Methods and the analytic FLOP floor
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    """A benchmarked method: ``vpt_deep_p50`` is ``tuning="vpt_deep"`` with 50 prompts."""

    name: str
    tuning: str
    prompts: int = 0


def parse_method(spec: str) -> Method:
    """Parses ``linear``, ``full``, ``vpt_deep_p50``, ``vpt_shallow_p5`` (``vpt_*`` without ``_pN``: p=50)."""
    if spec in ("linear", "full"):
        return Method(spec, spec)
    for tuning in PROMPT_TUNINGS:
        if spec == tuning:
            return Method(f"{tuning}_p50", tuning, 50)
        length = spec.removeprefix(f"{tuning}_p")
        if length != spec and length.isdigit() and int(length) > 0:
            return Method(spec, tuning, int(length))
    raise ValueError(f"unknown method {spec!r}; use linear, full, vpt_deep_pN or vpt_shallow_pN")


@dataclass(frozen=True)
class Geometry:
    """The ViT shape the FLOP count needs.

    Attributes:
        dim: token width ``D``.
        depth: number of blocks ``L``.
        mlp_dim: hidden width of the block MLP (``4 D`` for ViT-B).
        patches: patch tokens per image (196 for ViT-B/16 at 224 px); the sequence is ``1 + patches``.
        patch_in: inputs per patch of the patch embedding (``3 * 16 * 16``).
        num_classes: head outputs.
    """

    dim: int
    depth: int
    mlp_dim: int
    patches: int
    patch_in: int
    num_classes: int = NUM_CLASSES

    @classmethod
    def of(cls, vit, num_classes: int = NUM_CLASSES) -> Geometry:
        """Reads the geometry off a timm ``VisionTransformer``."""
        proj = vit.patch_embed.proj
        return cls(
            dim=vit.embed_dim,
            depth=len(vit.blocks),
            mlp_dim=vit.blocks[0].mlp.fc1.out_features,
            patches=vit.patch_embed.num_patches,
            patch_in=proj.in_channels * proj.kernel_size[0] * proj.kernel_size[1],
            num_classes=num_classes,
        )


def block_macs(tokens: int, dim: int, mlp_dim: int) -> tuple[int, int]:
    """Forward multiply-adds of one transformer block for one image, as ``(weight GEMMs, attention)``.

    Weight GEMMs: qkv ``3 T D^2``, output projection ``T D^2``, MLP ``2 T D H``. Attention: ``Q K^T`` and
    ``A V``, ``T^2 D`` each (summed over heads).
    """
    weights = tokens * (4 * dim * dim + 2 * dim * mlp_dim)
    attention = 2 * tokens * tokens * dim
    return weights, attention


def step_macs(geometry: Geometry, tuning: str, prompts: int = 0) -> int:
    """Matmul multiply-adds of one training step (forward + backward) per image.

    Backward of a GEMM ``y = x W`` costs one forward for ``dx`` and one for ``dW``; ``dW`` is skipped for
    frozen weights and ``dx`` where nothing upstream needs a gradient. The attention matmuls have no
    weights, so both operand gradients are needed whenever anything upstream trains.

    * ``full``: blocks 1x forward + 2x backward (all of it); patch embedding forward + weight gradient
      (the images need no gradient); head forward + both gradients.
    * ``vpt_*``: ``N + p`` tokens; block weight GEMMs forward + input gradient only (2x), attention 3x;
      patch embedding forward only; head 3x (its input gradient reaches the prompts).
    * ``linear``: the backbone runs without autograd (forward only); head forward + weight gradient.

    Element-wise work (norms, GELU, softmax, residual adds) and the optimiser update are not counted.
    """
    g = geometry
    patch = g.patches * g.patch_in * g.dim
    head = g.dim * g.num_classes
    tokens = g.patches + 1
    if tuning == "full":
        weights, attention = block_macs(tokens, g.dim, g.mlp_dim)
        return g.depth * 3 * (weights + attention) + 2 * patch + 3 * head
    if tuning in PROMPT_TUNINGS:
        weights, attention = block_macs(tokens + prompts, g.dim, g.mlp_dim)
        return g.depth * (2 * weights + 3 * attention) + patch + 3 * head
    if tuning == "linear":
        weights, attention = block_macs(tokens, g.dim, g.mlp_dim)
        return g.depth * (weights + attention) + patch + 2 * head
    raise ValueError(f"no FLOP model for tuning {tuning!r}")


def floor_ratio(geometry: Geometry, tuning: str, prompts: int = 0) -> float:
    """The FLOP floor of ``step_time(method) / step_time(full)``."""
    return step_macs(geometry, tuning, prompts) / step_macs(geometry, "full")


# --------------------------------------------------------------------------------------------------
# Worker: one method, one process
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """What every worker builds and runs."""

    device: str
    arch: str
    img_size: int
    batch: int
    precision: str
    warmup: int


def build_model(method: Method, settings: Settings):
    """The benchmarked ``ViTClassifier`` (random weights) with its tuning applied."""
    from lit_multimodal.vision.backbones import BackboneConfig, build_vit
    from lit_multimodal.vision.classifier import ViTClassifier

    vit = build_vit(BackboneConfig(arch=settings.arch, img_size=settings.img_size))
    return ViTClassifier(vit, num_classes=NUM_CLASSES, tuning=method.tuning, num_prompts=method.prompts)


def _peak_memory_mb(device: torch.device) -> float:
    """The process's peak memory so far: max RSS on CPU, max allocated on CUDA (MB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


def _worker(conn, method: Method, settings: Settings) -> None:
    """Builds one method, warms up, then answers ``steps`` requests with step times until ``None``."""
    from lit_multimodal.training.optim import OptimConfig, build_optimizer
    from lit_multimodal.vision.tuning import count_parameters

    torch.manual_seed(0)
    device = torch.device(settings.device)
    model = build_model(method, settings).to(device).train()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizer = build_optimizer(trainable, OptimConfig(name="sgd"), lr=1e-3, tuning=method.tuning)
    images = torch.randn(settings.batch, 3, settings.img_size, settings.img_size, device=device)
    labels = torch.randint(0, NUM_CLASSES, (settings.batch,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if settings.precision == "bf16" else nullcontext()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step() -> float:
        sync()
        start = time.perf_counter()
        with autocast:
            loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        return time.perf_counter() - start

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device) / 2**20
    else:
        baseline = _peak_memory_mb(device)
    for _ in range(settings.warmup):
        step()
    counts = count_parameters(model)
    conn.send(
        {
            "trainable_params": counts.trainable,
            "total_params": counts.total,
            "tuned_percent": counts.tuned_percent,
            "geometry": asdict(Geometry.of(model.backbone)),
        }
    )
    while (steps := conn.recv()) is not None:
        conn.send([step() for _ in range(steps)])
    conn.send(_peak_memory_mb(device) - baseline)
    conn.close()


# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------


def hardware(device: str) -> dict:
    """CPU model and cores, thread count, library versions and the GPU name (if used)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import timm

    info = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def _load_average() -> float | None:
    """The 1-minute load average (``None`` where the OS has none): shows how busy a shared machine was."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def run(methods: list[Method], settings: Settings, rounds: int, steps: int) -> dict:
    """Starts one worker per method (one after another), times interleaved rounds, collects the results."""
    if "forkserver" in mp.get_all_start_methods():
        # Fresh processes forked from a server that imported torch and the model code once (saves ~10 s
        # a worker); the server never runs a tensor op, so no thread pool or CUDA state is inherited.
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["torch", "lit_multimodal.vision.classifier", "lit_multimodal.training.optim"])
    else:
        ctx = mp.get_context("spawn")
    workers = {}
    for method in methods:
        parent, child = ctx.Pipe()
        process = ctx.Process(target=_worker, args=(child, method, settings), daemon=True)
        process.start()
        child.close()
        workers[method.name] = (process, parent, parent.recv())  # wait for its warm-up to end
    times: dict[str, list[list[float]]] = {m.name: [] for m in methods}
    for _ in range(rounds):
        for method in methods:
            _, conn, _ = workers[method.name]
            conn.send(steps)
            times[method.name].append(conn.recv())
    results = {}
    for method in methods:
        process, conn, info = workers[method.name]
        conn.send(None)
        peak = conn.recv()
        process.join()
        flat = [t for r in times[method.name] for t in r]
        median = statistics.median(flat)
        results[method.name] = {
            "tuning": method.tuning,
            "num_prompts": method.prompts,
            **{k: v for k, v in info.items() if k != "geometry"},
            "step_time_s": median,
            "min_step_time_s": min(flat),
            "round_median_s": [statistics.median(r) for r in times[method.name]],
            "step_times_s": flat,
            "images_per_s": settings.batch / median,
            "peak_memory_growth_mb": peak,
        }
    geometry = Geometry(**next(iter(workers.values()))[2]["geometry"])
    for row in results.values():
        row["floor_ratio_vs_full"] = floor_ratio(geometry, row["tuning"], row["num_prompts"])
        row["step_gflops"] = 2 * step_macs(geometry, row["tuning"], row["num_prompts"]) * settings.batch / 1e9
        if "full" in results:
            full = results["full"]
            row["ratio_vs_full"] = row["step_time_s"] / full["step_time_s"]
            row["ratio_vs_full_of_min"] = row["min_step_time_s"] / full["min_step_time_s"]
            pairs = zip(row["round_median_s"], full["round_median_s"], strict=True)
            row["round_ratios_vs_full"] = [a / b for a, b in pairs]
            row["ratio_over_floor"] = row["ratio_vs_full"] / row["floor_ratio_vs_full"]
            if row["tuning"] in PROMPT_TUNINGS:
                row["within_target"] = abs(row["ratio_over_floor"] - 1) <= TARGET_TOLERANCE
    return {"geometry": asdict(geometry), "methods": results}


def main(argv: list[str] | None = None) -> dict:
    """Parses the command line, runs the benchmark, prints a table and writes the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--arch", default=None, help="timm ViT (default vit_base_patch16_224)")
    parser.add_argument("--img-size", type=int, default=None, help="default 224")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per round (default 10)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per worker (default 2)")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--quick", action="store_true", help="smoke run: test_vit, 32 px, 1 round x 2 steps")
    parser.add_argument("--out", type=Path, default=None, help="default results/vpt_step_<device>[_bf16].json")
    args = parser.parse_args(argv)

    quick = {"arch": "test_vit", "img_size": 32, "rounds": 1, "steps": 2, "warmup": 1}
    full = {"arch": "vit_base_patch16_224", "img_size": 224, "rounds": 3, "steps": 10, "warmup": 2}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but no CUDA device is available")
    suffix = "" if args.precision == "fp32" else f"_{args.precision}"
    out = args.out or RESULTS_DIR / f"vpt_step_{args.device}{suffix}.json"

    methods = [parse_method(m) for m in args.methods]
    settings = Settings(args.device, args.arch, args.img_size, args.batch, args.precision, args.warmup)
    started, load_before = time.time(), _load_average()
    measured = run(methods, settings, args.rounds, args.steps)
    report = {
        "benchmark": "vpt_step",
        "hardware": hardware(args.device),
        "settings": {
            **asdict(settings),
            "rounds": args.rounds,
            "steps": args.steps,
            "num_classes": NUM_CLASSES,
            "optimizer": "SGD momentum 0.9 (build_optimizer, name=sgd)",
            "quick": args.quick,
            "target_tolerance": TARGET_TOLERANCE,
        },
        "wall_s": time.time() - started,
        "load_average_1min": {"start": load_before, "end": _load_average()},  # others sharing the machine
        **measured,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")

    header = f"{'method':<16}{'tuned %':>9}{'step s':>9}{'img/s':>8}{'mem MB':>9}{'ratio':>8}{'floor':>8}"
    print(header)
    for name, row in report["methods"].items():
        ratio = f"{row['ratio_vs_full']:.3f}" if "ratio_vs_full" in row else "-"
        print(
            f"{name:<16}{row['tuned_percent']:>9.3f}{row['step_time_s']:>9.3f}{row['images_per_s']:>8.2f}"
            f"{row['peak_memory_growth_mb']:>9.0f}{ratio:>8}{row['floor_ratio_vs_full']:>8.3f}"
        )
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
