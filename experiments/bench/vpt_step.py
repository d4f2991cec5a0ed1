"""Training-step benchmark: tuning method x precision x attention kernel x compile x loop.

One step is forward + backward + SGD update of an ``ImageClassifier`` (ViT-B/16, 100 classes, batch 8 at
224 px by default) on a fixed random batch. Every variant (see :class:`Variant`) runs in its own fresh
worker process, so its peak memory is its own; the workers are driven in interleaved rounds (round 1
times every variant, then round 2, ...) so that drift of a shared machine hits all alike. Step times are
medians over ``rounds x steps`` timed steps, after ``warmup`` untimed ones.

Each row is compared with

* ``reference``: VPT-Deep p=50, fp32, with the hand-written attention of :func:`reference_attention`
  (the official VPT code's explicit ``softmax(Q K^T) V``), in a bare loop: ``speedup_vs_reference`` and
  ``memory_vs_reference``; ``reference@bf16``, the same under bf16 autocast: ``speedup_vs_reference_bf16``;
* the same variant with ``+lightning`` (``Trainer.fit`` on the same module and loader, timed start to
  start of each batch): ``lightning_overhead``;
* ``full`` fine-tuning in the same setup: ``ratio_vs_full`` against its FLOP floor ``floor_ratio_vs_full``
  (their quotient ``ratio_over_floor``), and ``memory_vs_full``;
* on CUDA, the GPU's peak dense TFLOP/s: ``mfu`` (counted matmul FLOPs of the step / time / peak).

Memory is the growth of the worker's peak memory over its baseline after the model, optimiser and batch
are built: ``ru_maxrss`` on CPU, ``torch.cuda.max_memory_allocated`` over ``memory_allocated`` on CUDA.
It therefore covers activations, gradients and optimiser state, not the weights.

The FLOP floor of a method's step time relative to full fine-tuning counts the matmul multiply-adds of
the step (see :func:`step_macs`). Prompts lengthen the sequence from ``N`` to ``N + p`` tokens; frozen
weights skip the weight-gradient GEMMs, so a frozen linear layer's backward costs 1x its forward instead
of 2x, while the attention score/value matmuls (activation x activation) still cost 2x in backward.

Usage::

    python experiments/bench/vpt_step.py --device cpu              # default variants, precision per device
    python experiments/bench/vpt_step.py --device cuda --batch 64 --extra vpt_deep_p50@bf16+compile
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_peaks import peak_tflops  # noqa: E402

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
    """Parses ``linear``, ``full``, ``vpt_deep_p50``, ``vpt_shallow_p5`` (``vpt_*`` without ``_pN``: p=50),
    or any other registered tuning method by name (``lora``, ``adapter_plus``, ...; its defaults)."""
    from lit_multimodal.vision.methods import list_methods

    if spec in ("linear", "full"):
        return Method(spec, spec)
    if spec in list_methods() and spec not in PROMPT_TUNINGS:
        return Method(spec, spec, 50 if spec.startswith("vpt_") else 0)
    for tuning in PROMPT_TUNINGS:
        if spec == tuning:
            return Method(f"{tuning}_p50", tuning, 50)
        length = spec.removeprefix(f"{tuning}_p")
        if length != spec and length.isdigit() and int(length) > 0:
            return Method(spec, tuning, int(length))
    raise ValueError(f"unknown method {spec!r}; use a registered method, vpt_deep_pN or vpt_shallow_pN")


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
    * ``partial`` (k=1): the first ``L-1`` blocks forward only, the last block as ``full``.
    * every other method (adapters, LoRA/DoRA, SSF, FacT, RepAdapter, bias, LayerNorm tuning): frozen
      weight GEMMs with input gradients through every block (as ``vpt_*`` with ``p = 0``); the method's own
      small matmuls (a few % of the block GEMMs at the default sizes) are not counted, so this is a floor.

    Element-wise work (norms, GELU, softmax, residual adds) and the optimiser update are not counted.
    """
    g = geometry
    patch = g.patches * g.patch_in * g.dim
    head = g.dim * g.num_classes
    tokens = g.patches + 1
    if tuning == "full":
        weights, attention = block_macs(tokens, g.dim, g.mlp_dim)
        return g.depth * 3 * (weights + attention) + 2 * patch + 3 * head
    if tuning == "linear":
        weights, attention = block_macs(tokens, g.dim, g.mlp_dim)
        return g.depth * (weights + attention) + patch + 2 * head
    if tuning == "partial":
        weights, attention = block_macs(tokens, g.dim, g.mlp_dim)
        return (g.depth - 1) * (weights + attention) + 3 * (weights + attention) + patch + 3 * head
    from lit_multimodal.vision.methods import list_methods

    if tuning not in list_methods():
        raise ValueError(f"no FLOP model for tuning {tuning!r}")
    weights, attention = block_macs(tokens + prompts, g.dim, g.mlp_dim)
    return g.depth * (2 * weights + 3 * attention) + patch + 3 * head


def floor_ratio(geometry: Geometry, tuning: str, prompts: int = 0) -> float:
    """The FLOP floor of ``step_time(method) / step_time(full)``."""
    return step_macs(geometry, tuning, prompts) / step_macs(geometry, "full")


# --------------------------------------------------------------------------------------------------
# Variants: method x precision x attention x compile x loop
# --------------------------------------------------------------------------------------------------

ATTENTIONS = ("auto", "math", "fused", "reference")
OPTIONS = ("math", "fused", "compile", "lightning", "ckpt")


@dataclass(frozen=True)
class Variant:
    """One benchmarked configuration.

    Spelled ``<method>[@fp32|@bf16][+math|+fused][+compile][+ckpt][+lightning]``, e.g. ``vpt_deep_p50@bf16+compile``;
    ``reference`` is VPT-Deep p=50 in fp32 with the hand-written attention below and a bare loop;
    ``reference@bf16`` the same under bf16 autocast.

    Attributes:
        method: tuning method and prompt length.
        precision: ``fp32`` or ``bf16`` (autocast).
        attention: ``auto`` (the framework's choice per device and precision), ``math``, ``fused`` or
            ``reference`` (hand-written, :func:`reference_attention`).
        compile: ``torch.compile`` the classifier.
        checkpointing: activation checkpointing of the blocks.
        loop: ``bare`` (a plain PyTorch loop) or ``lightning`` (``Trainer.fit`` on the ``ImageClassifier``).
    """

    method: Method
    precision: str = "fp32"
    attention: str = "auto"
    compile: bool = False
    checkpointing: bool = False
    loop: str = "bare"

    @property
    def name(self) -> str:
        """The canonical spelling (the JSON key)."""
        if self.attention == "reference":
            return "reference" if self.precision == "fp32" else f"reference@{self.precision}"
        options = [self.attention] if self.attention != "auto" else []
        options += ["compile"] * self.compile + ["ckpt"] * self.checkpointing + ["lightning"] * (self.loop != "bare")
        return f"{self.method.name}@{self.precision}" + "".join(f"+{o}" for o in options)

    def same_setup(self, method: Method) -> Variant:
        """This variant's settings applied to another method."""
        return Variant(method, self.precision, self.attention, self.compile, self.checkpointing, self.loop)


def parse_variant(spec: str, default_precision: str) -> Variant:
    """Parses a variant spelling (see :class:`Variant`); a missing ``@precision`` takes ``default_precision``."""
    if spec in ("reference", "reference@fp32", "reference@bf16"):
        return Variant(parse_method("vpt_deep_p50"), spec.partition("@")[2] or "fp32", "reference")
    head, *options = spec.split("+")
    method_spec, _, precision = head.partition("@")
    precision = precision or default_precision
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"{spec!r}: precision must be fp32 or bf16")
    unknown = [o for o in options if o not in OPTIONS]
    if unknown:
        raise ValueError(f"{spec!r}: unknown options {unknown}; options: {', '.join(OPTIONS)}")
    attention = "math" if "math" in options else "fused" if "fused" in options else "auto"
    return Variant(
        parse_method(method_spec),
        precision,
        attention,
        compile="compile" in options,
        checkpointing="ckpt" in options,
        loop="lightning" if "lightning" in options else "bare",
    )


def default_precision(device: str) -> str:
    """The precision the framework picks on this hardware (``trainer.precision`` left empty)."""
    from lit_multimodal.vision.precision import auto_precision

    return "bf16" if auto_precision("gpu" if device == "cuda" else "cpu") == "bf16-mixed" else "fp32"


# --------------------------------------------------------------------------------------------------
# The reference: hand-written attention as in the official VPT code
# --------------------------------------------------------------------------------------------------


def reference_attention(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, **_) -> torch.Tensor:
    """Multi-head self-attention written out as the official VPT ``Attention.forward``.

    ``softmax(Q K^T / sqrt(d)) V`` with explicit matmuls (no fused kernel), bound to a timm ``Attention``
    in place of its ``forward``.
    """
    batch, tokens, width = x.shape
    qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
    query, key, value = qkv.unbind(0)
    scores = torch.matmul(query, key.transpose(-1, -2)) / self.head_dim**0.5
    probs = self.attn_drop(torch.softmax(scores, dim=-1))
    context = torch.matmul(probs, value).transpose(1, 2).reshape(batch, tokens, width)
    return self.proj_drop(self.proj(context))


# --------------------------------------------------------------------------------------------------
# Worker: one variant, one process
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """What every worker builds and runs."""

    device: str
    arch: str
    img_size: int
    batch: int
    warmup: int


def build_model(variant: Variant, settings: Settings):
    """The benchmarked ``ImageClassifier`` (random weights) with its tuning, attention and compile options."""
    import types

    from lit_multimodal.vision.backbones import BackboneConfig
    from lit_multimodal.vision.module import ImageClassifier
    from lit_multimodal.vision.recipe import OptimConfig

    method = variant.method
    model = ImageClassifier(
        num_classes=NUM_CLASSES,
        backbone=BackboneConfig(arch=settings.arch, img_size=settings.img_size),
        tuning=method.tuning,
        num_prompts=max(method.prompts, 1),
        optim=OptimConfig(name="sgd", base_lr=1e-3, scale_lr=False, warmup_epochs=0, schedule="constant"),
        feature_cache=False,
        activation_checkpointing=variant.checkpointing,
        attention="auto" if variant.attention == "reference" else variant.attention,
    )
    if variant.attention == "reference":
        for block in model.net.backbone.blocks:
            block.attn.forward = types.MethodType(reference_attention, block.attn)
    if variant.compile:
        model.net.compile()
    return model


def _peak_memory_mb(device: torch.device) -> float:
    """The process's peak memory so far: max RSS on CPU, max allocated on CUDA (MB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


class _SameBatch(torch.utils.data.IterableDataset):
    """Yields one fixed ``(images, labels)`` batch forever: the data of both loops."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __iter__(self):
        while True:
            yield self.images, self.labels


def _info(model) -> dict:
    from lit_multimodal.vision.tuning import count_parameters

    counts = count_parameters(model.net)
    return {
        "trainable_params": counts.trainable,
        "total_params": counts.total,
        "tuned_percent": counts.tuned_percent,
        "geometry": asdict(Geometry.of(model.net.backbone)),
    }


def _worker(conn, variant: Variant, settings: Settings) -> None:
    """Builds one variant, warms up, then answers ``steps`` requests with step times until ``None``."""
    torch.manual_seed(0)
    device = torch.device(settings.device)
    model = build_model(variant, settings)
    images = torch.randn(settings.batch, 3, settings.img_size, settings.img_size)
    labels = torch.randint(0, NUM_CLASSES, (settings.batch,))
    loader = torch.utils.data.DataLoader(_SameBatch(images, labels), batch_size=None)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if variant.loop == "lightning":
        _lightning_loop(conn, model, loader, variant, settings, device, sync)
    else:
        _bare_loop(conn, model, loader, variant, settings, device, sync)
    conn.close()


def _baseline(device: torch.device) -> float:
    return torch.cuda.memory_allocated(device) / 2**20 if device.type == "cuda" else _peak_memory_mb(device)


def _bare_loop(conn, model, loader, variant: Variant, settings: Settings, device, sync) -> None:
    """Forward + backward + SGD update in plain PyTorch on the same module and loader."""
    from lit_multimodal.vision.recipe import OptimConfig, build_optimizer

    model = model.to(device).train()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizer = build_optimizer(trainable, OptimConfig(name="sgd"), lr=1e-3, tuning=variant.method.tuning)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if variant.precision == "bf16" else nullcontext()
    batches = iter(loader)
    baseline = _baseline(device)

    def step() -> float:
        sync()
        start = time.perf_counter()
        images, labels = next(batches)
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with autocast:
            loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        return time.perf_counter() - start

    for _ in range(settings.warmup):
        step()
    conn.send(_info(model))
    while (steps := conn.recv()) is not None:
        conn.send([step() for _ in range(steps)])
    conn.send(_peak_memory_mb(device) - baseline)


def _lightning_loop(conn, model, loader, variant: Variant, settings: Settings, device, sync) -> None:
    """``Trainer.fit`` on the ``ImageClassifier``; a callback times whole loop iterations (start to start)."""
    from lightning.pytorch import Callback, Trainer

    class Driver(Callback):
        def __init__(self) -> None:
            self.seen, self.last, self.pending, self.times = 0, None, 0, []
            self.baseline = _baseline(device)

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            sync()
            now = time.perf_counter()
            if self.last is not None and self.pending:
                self.times.append(now - self.last)
                self.pending -= 1
            self.seen += 1
            if self.seen == settings.warmup + 1:
                conn.send(_info(pl_module))
                self._next(trainer)
            elif self.seen > settings.warmup + 1 and not self.pending:
                conn.send(self.times)
                self._next(trainer)
            self.last = time.perf_counter()

        def _next(self, trainer) -> None:
            steps = conn.recv()
            self.times = []
            if steps is None:
                conn.send(_peak_memory_mb(device) - self.baseline)
                trainer.should_stop = True
                raise StopIteration  # Lightning's data fetcher reads it as the end of the epoch: fit ends
            self.pending = steps

    trainer = Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        precision="bf16-mixed" if variant.precision == "bf16" else "32-true",
        max_epochs=1,
        limit_train_batches=10**9,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Driver()],
    )
    trainer.fit(model, train_dataloaders=loader)


# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------


def hardware(device: str) -> dict:
    """CPU model, cores and bf16 instructions, thread count, library versions and the GPU name (if used)."""
    cpu = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.readlines()
        cpu = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
        flags = set(next(line.split(":", 1)[1].split() for line in lines if line.startswith("flags")))
    except (OSError, StopIteration):
        pass
    import timm

    info = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cpu_bf16_flags": sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile", "avx512f", "avx2"}),
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


def run(variants: list[Variant], settings: Settings, rounds: int, steps: int) -> dict:
    """Starts one worker per variant (one after another), times interleaved rounds, collects the results."""
    if "forkserver" in mp.get_all_start_methods():
        # Fresh processes forked from a server that imported torch and the model code once (saves ~10 s
        # a worker); the server never runs a tensor op, so no thread pool or CUDA state is inherited.
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["torch", "lit_multimodal.vision.module", "lit_multimodal.vision.recipe"])
    else:
        ctx = mp.get_context("spawn")
    workers = {}
    for variant in variants:
        parent, child = ctx.Pipe()
        process = ctx.Process(target=_worker, args=(child, variant, settings), daemon=True)
        process.start()
        child.close()
        workers[variant.name] = (process, parent, parent.recv())  # wait for its warm-up to end
    times: dict[str, list[list[float]]] = {v.name: [] for v in variants}
    for _ in range(rounds):
        for variant in variants:
            _, conn, _ = workers[variant.name]
            conn.send(steps)
            times[variant.name].append(conn.recv())
    results = {}
    for variant in variants:
        process, conn, info = workers[variant.name]
        conn.send(None)
        peak = conn.recv()
        process.join(timeout=120)
        flat = [t for r in times[variant.name] for t in r]
        median = statistics.median(flat)
        results[variant.name] = {
            "tuning": variant.method.tuning,
            "num_prompts": variant.method.prompts,
            "method": variant.method.name,
            "precision": variant.precision,
            "attention": variant.attention,
            "compile": variant.compile,
            "checkpointing": variant.checkpointing,
            "loop": variant.loop,
            **{k: v for k, v in info.items() if k != "geometry"},
            "step_time_s": median,
            "min_step_time_s": min(flat),
            "round_median_s": [statistics.median(r) for r in times[variant.name]],
            "step_times_s": flat,
            "images_per_s": settings.batch / median,
            "peak_memory_growth_mb": peak,
        }
    geometry = Geometry(**next(iter(workers.values()))[2]["geometry"])
    by_name = {v.name: v for v in variants}
    gpu = torch.cuda.get_device_name(0) if settings.device == "cuda" else None
    peaks = peak_tflops(gpu)
    reference, reference_bf16 = results.get("reference"), results.get("reference@bf16")
    for name, row in results.items():
        variant = by_name[name]
        row["floor_ratio_vs_full"] = floor_ratio(geometry, row["tuning"], row["num_prompts"])
        row["step_gflops"] = 2 * step_macs(geometry, row["tuning"], row["num_prompts"]) * settings.batch / 1e9
        row["achieved_tflops"] = row["step_gflops"] / row["step_time_s"] / 1e3
        if peaks is not None:
            row["mfu"] = row["achieved_tflops"] / peaks[variant.precision]
        is_reference = variant.attention == "reference"
        full = results.get(variant.same_setup(parse_method("full")).name) if not is_reference else None
        if full is not None:
            row["ratio_vs_full"] = row["step_time_s"] / full["step_time_s"]
            row["ratio_vs_full_of_min"] = row["min_step_time_s"] / full["min_step_time_s"]
            pairs = zip(row["round_median_s"], full["round_median_s"], strict=True)
            row["round_ratios_vs_full"] = [a / b for a, b in pairs]
            row["ratio_over_floor"] = row["ratio_vs_full"] / row["floor_ratio_vs_full"]
            row["memory_vs_full"] = row["peak_memory_growth_mb"] / max(full["peak_memory_growth_mb"], 1e-9)
            if row["tuning"] in PROMPT_TUNINGS:
                row["within_target"] = abs(row["ratio_over_floor"] - 1) <= TARGET_TOLERANCE
        if reference is not None and name != "reference":
            row["speedup_vs_reference"] = reference["step_time_s"] / row["step_time_s"]
            row["memory_vs_reference"] = row["peak_memory_growth_mb"] / max(reference["peak_memory_growth_mb"], 1e-9)
        if reference_bf16 is not None and not is_reference:
            row["speedup_vs_reference_bf16"] = reference_bf16["step_time_s"] / row["step_time_s"]
        if variant.loop == "lightning":
            bare = results.get(Variant(variant.method, variant.precision, variant.attention, variant.compile,
                                       variant.checkpointing).name)  # fmt: skip
            if bare is not None:
                row["lightning_overhead"] = row["step_time_s"] / bare["step_time_s"] - 1
                pairs = zip(row["round_median_s"], bare["round_median_s"], strict=True)
                row["round_lightning_overhead"] = [a / b - 1 for a, b in pairs]
    return {"geometry": asdict(geometry), "methods": results, "targets": targets(results, settings)}


def targets(results: dict, settings: Settings) -> dict:
    """The issue's targets, checked on this run's medians (None where a needed row is missing)."""
    default = default_precision(settings.device)

    def check(name: str, key: str, test) -> bool | None:
        row = results.get(name)
        return bool(test(row[key])) if row is not None and key in row else None

    floors = [r["within_target"] for r in results.values() if "within_target" in r]
    return {
        "default_precision": default,
        "default_speedup_vs_reference>=2.5": check(
            f"vpt_deep_p50@{default}", "speedup_vs_reference", lambda v: v >= 2.5
        ),
        "default_memory_vs_reference<=0.8": check(f"vpt_deep_p50@{default}", "memory_vs_reference", lambda v: v <= 0.8),
        "fp32_time_vs_reference<=1.05": check("vpt_deep_p50@fp32", "speedup_vs_reference", lambda v: 1 / v <= 1.05),
        "prompt_methods_within_5%_of_floor": all(floors) if floors else None,
        "lightning_overhead<=3%": check(f"vpt_deep_p50@{default}+lightning", "lightning_overhead", lambda v: v <= 0.03),
    }


DEFAULT_VARIANTS = (
    "reference",
    "vpt_deep_p50",
    "vpt_deep_p50+lightning",
    "vpt_deep_p50@fp32",
    "vpt_deep_p5",
    "vpt_shallow_p50",
    "linear",
    "full",
)


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
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(DEFAULT_VARIANTS),
        help="<method>[@fp32|@bf16][+math|+fused][+compile][+ckpt][+lightning], or reference",
    )
    parser.add_argument("--extra", nargs="*", default=[], help="variants added to --variants")
    parser.add_argument("--all-methods", action="store_true", help="add every registered tuning method")
    parser.add_argument(
        "--precision", choices=("auto", "fp32", "bf16"), default="auto", help="for variants without @precision"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: test_vit, 32 px, 1 round x 2 steps")
    parser.add_argument("--out", type=Path, default=None, help="default results/vpt_step_<device>.json")
    args = parser.parse_args(argv)

    quick = {"arch": "test_vit", "img_size": 32, "rounds": 1, "steps": 2, "warmup": 1}
    full = {"arch": "vit_base_patch16_224", "img_size": 224, "rounds": 3, "steps": 10, "warmup": 2}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but no CUDA device is available")
    out = args.out or RESULTS_DIR / f"vpt_step_{args.device}.json"

    precision = default_precision(args.device) if args.precision == "auto" else args.precision
    variants: dict[str, Variant] = {}
    if args.all_methods:
        from lit_multimodal.vision.methods import list_methods

        args.extra = [*args.extra, *list_methods()]
    for spec in [*args.variants, *args.extra]:
        variant = parse_variant(spec, precision)
        variants.setdefault(variant.name, variant)  # e.g. vpt_deep_p50 and vpt_deep_p50@fp32 on an fp32 CPU
    settings = Settings(args.device, args.arch, args.img_size, args.batch, args.warmup)
    started, load_before = time.time(), _load_average()
    measured = run(list(variants.values()), settings, args.rounds, args.steps)
    report = {
        "benchmark": "vpt_step",
        "hardware": hardware(args.device),
        "settings": {
            **asdict(settings),
            "default_precision": precision,
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

    header = (
        f"{'variant':<30}{'step s':>9}{'img/s':>8}{'mem MB':>9}{'vs full':>8}{'floor':>7}{'x ref':>7}{'mem/ref':>8}"
    )
    print(header)
    for name, row in report["methods"].items():
        cells = [f"{row[k]:.3f}" if k in row else "-" for k in ("ratio_vs_full", "floor_ratio_vs_full")]
        ref = [f"{row[k]:.2f}" if k in row else "-" for k in ("speedup_vs_reference", "memory_vs_reference")]
        print(
            f"{name:<30}{row['step_time_s']:>9.3f}{row['images_per_s']:>8.2f}{row['peak_memory_growth_mb']:>9.0f}"
            f"{cells[0]:>8}{cells[1]:>7}{ref[0]:>7}{ref[1]:>8}"
        )
    print(json.dumps(report["targets"], indent=2))
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
