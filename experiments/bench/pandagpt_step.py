"""PandaGPT training-step benchmark: live ImageBind in every step versus cached embeddings.

One step is what :class:`~lit_multimodal.multimodal.pandagpt.module.PandaGPT` does in ``training_step`` (the
embedder's embeddings of the batch's images, the LLM forward with the projected soft token, the summed
cross-entropy over the reply tokens), then backward and an AdamW update of the LoRA and ``llama_proj`` tensors
(the official hyper-parameters: lr 5e-4, betas (0.9, 0.95), weight decay 0.001).

Two variants differ only in the embedder:

* ``live``: :class:`~lit_multimodal.multimodal.imagebind.encode.ImageBindEncoder` without a cache; every step
  loads, preprocesses and encodes its images with the frozen ImageBind (the official PandaGPT's way);
* ``cached``: the same encoder with ``cache_only``, reading embeddings that a separate process stored in the
  on-disk cache beforehand (``lit-mm embed``); ImageBind is never built.

The data set holds ``steps x batch`` distinct images, so one round of ``steps`` steps is one epoch. Every variant
runs in its own fresh worker process (its peak memory is its own); the workers are driven in interleaved rounds
(round 1 times every variant, then round 2, ...) so that drift of a shared machine hits both alike. Reported:
the median step time over ``rounds x steps`` timed steps (after ``warmup`` untimed ones), tokens/s (attended
tokens of an epoch over the median epoch time), the median epoch time and the epoch-time ratio cached / live
(also per round).

Memory is the growth of the worker's peak over its baseline, taken after the LLM, the optimiser and the batches
are built (before the first step, so the live variant's ImageBind weights count): peak RSS (``VmHWM`` reset
through ``/proc/self/clear_refs``; ``ru_maxrss`` where that is unavailable) on CPU, and
``torch.cuda.max_memory_allocated`` over ``memory_allocated`` on CUDA.

Usage::

    python experiments/bench/pandagpt_step.py --device cpu --llm tiny --imagebind tiny
    python experiments/bench/pandagpt_step.py --device cuda --llm small --imagebind huge --batch 8
    python experiments/bench/pandagpt_step.py --quick --out /tmp/bench.json    # smoke run
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"
VARIANTS = ("live", "cached")
#: ImageBind sizes: ``tiny`` (tests), ``small`` (the tiny model with a ViT-S-sized vision trunk: width 384,
#: 12 blocks, 6 heads, the only trunk image instructions use), ``huge`` (the released model; CUDA only).
IMAGEBIND_SIZES = {
    "tiny": ("tiny", {}),
    "small": ("tiny", {"vision_embed_dim": 384, "vision_num_blocks": 12, "vision_num_heads": 6}),
    "huge": ("huge", {}),
}

#: LLaMA shapes: ``tiny`` is the quickstart's test model, ``small`` a 4-layer model of width 256.
LLM_SIZES = {
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128},
    "small": {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 688},
}
CONVERSATIONS = [
    [
        {"from": "human", "value": "What is in the image?"},
        {"from": "gpt", "value": "A small cat sits on a red mat next to the window."},
        {"from": "human", "value": "What colour is the cat?"},
        {"from": "gpt", "value": "The cat is black and white, and it looks at the camera."},
    ],
    [
        {"from": "human", "value": "Describe this picture in detail."},
        {"from": "gpt", "value": "Two dogs run across a green field under a blue sky. One dog carries a stick."},
    ],
    [
        {"from": "human", "value": "How many people are there in the image?"},
        {"from": "gpt", "value": "There are three people: a woman, a child and an old man sitting on a bench."},
        {"from": "human", "value": "What are they eating?"},
        {"from": "gpt", "value": "They are eating sandwiches and drinking tea from a large bottle."},
    ],
    [
        {"from": "human", "value": "Can you tell me what the man is doing?"},
        {"from": "gpt", "value": "The man is riding a bicycle down a busy street in the city."},
    ],
]


@dataclass(frozen=True)
class Settings:
    """What every worker builds."""

    device: str
    llm: str
    imagebind: str
    imagebind_checkpoint: str | None
    imagebind_dtype: str
    batch: int
    steps: int
    warmup: int
    image_size: int
    max_tgt_len: int
    lora_r: int
    threads: int | None
    workdir: str

    @property
    def llm_dir(self) -> str:
        return os.path.join(self.workdir, "llm")

    @property
    def cache_dir(self) -> str:
        return os.path.join(self.workdir, "cache")

    def image_paths(self) -> list[str]:
        return [os.path.join(self.workdir, "images", f"{i:05d}.jpg") for i in range(self.batch * self.steps)]


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------


def write_inputs(settings: Settings) -> None:
    """The LLM folder and ``steps x batch`` distinct JPEG images of ``image_size`` pixels."""
    import numpy as np
    from PIL import Image

    from lit_multimodal.multimodal.pandagpt.tiny import write_tiny_llama

    write_tiny_llama(settings.llm_dir, **LLM_SIZES[settings.llm])
    rng = np.random.default_rng(0)
    size = settings.image_size
    for path in settings.image_paths():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        base = rng.integers(0, 256, 3)
        noise = rng.normal(0, 25, (size, size, 3))
        pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(path, quality=90)


def make_encoder(settings: Settings, cached: bool, cache_only: bool):
    from lit_multimodal.multimodal.imagebind.encode import ImageBindEncoder

    preset, overrides = IMAGEBIND_SIZES[settings.imagebind]
    return ImageBindEncoder(
        checkpoint=settings.imagebind_checkpoint,
        preset=preset,
        config={"pandagpt_skip_audio_scale": True, **overrides},
        dtype=settings.imagebind_dtype,
        device=settings.device,
        batch_size=settings.batch,
        cache_dir=settings.cache_dir if cached else None,
        cache_only=cache_only,
        progress=False,
    )


def build_cache(settings: Settings) -> None:
    """Encodes every image once into the on-disk cache (run in its own process)."""
    paths = settings.image_paths()
    make_encoder(settings, cached=True, cache_only=False).embed("vision", paths)


# --------------------------------------------------------------------------------------------------
# Workers
# --------------------------------------------------------------------------------------------------


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Resets ``VmHWM`` to the current RSS (Linux); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return _status_kib("VmHWM") is not None
    except OSError:
        return False


def _max_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


class MemoryMeter:
    """Peak memory growth over a baseline: RSS on CPU, allocated tensors on CUDA."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            self.method = "torch.cuda.max_memory_allocated"
            self.baseline = torch.cuda.memory_allocated(device) / 2**20
        elif _reset_peak_rss():
            self.method = "VmHWM after clear_refs"
            self.baseline = _status_kib("VmRSS") / 2**10
        else:
            self.method = "ru_maxrss"
            self.baseline = _max_rss_mb()

    def growth_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20 - self.baseline
        if self.method.startswith("VmHWM"):
            return _status_kib("VmHWM") / 2**10 - self.baseline
        return _max_rss_mb() - self.baseline


def _worker(conn, variant: str, settings: Settings) -> None:
    """Builds one variant, warms up, then answers each request for a round with its step times until ``None``."""
    import gc

    from transformers import AutoTokenizer

    from lit_multimodal.multimodal.pandagpt.conversation import ConversationTokenizer
    from lit_multimodal.multimodal.pandagpt.module import PandaGPT

    if settings.threads:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(0)
    device = torch.device(settings.device)
    cached = variant == "cached"
    embedder = make_encoder(settings, cached=cached, cache_only=cached)
    model = PandaGPT(llm_path=settings.llm_dir, embedder=embedder, lora_r=settings.lora_r, lora_alpha=settings.lora_r)
    model = model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=5e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.001)
    tokenizer = ConversationTokenizer(
        AutoTokenizer.from_pretrained(settings.llm_dir, local_files_only=True), settings.max_tgt_len
    )
    paths = settings.image_paths()
    batches = []
    for step in range(settings.steps):
        chunk = paths[step * settings.batch : (step + 1) * settings.batch]
        batch = tokenizer([CONVERSATIONS[(step * settings.batch + i) % len(CONVERSATIONS)] for i in range(len(chunk))])
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        batch["image_paths"] = chunk
        batches.append(batch)
    tokens = [int(b["attention_mask"].sum()) for b in batches]
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    gc.collect()
    meter = MemoryMeter(device)

    def step(batch) -> float:
        sync()
        start = time.perf_counter()
        loss_sum, count, _, _ = model._shared_step(batch)  # embeddings + forward + loss, as training_step
        (loss_sum / count.clamp(min=1)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        return time.perf_counter() - start

    for index in range(settings.warmup):
        step(batches[index % len(batches)])
    conn.send(
        {
            "tokens_per_epoch": sum(tokens),
            "trainable_params": sum(p.numel() for p in params),
            "torch_threads": torch.get_num_threads(),
        }
    )
    while conn.recv() is not None:
        conn.send([step(batch) for batch in batches])
    conn.send({"peak_memory_growth_mb": meter.growth_mb(), "memory_method": meter.method})
    conn.close()


# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------


def hardware(device: str) -> dict:
    """CPU model (``lscpu``, else ``/proc/cpuinfo`` or ``platform``), cores, threads, versions and the GPU."""
    cpu, fields = None, {}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=True).stdout
        fields = {
            key.strip(): value.strip()
            for key, value in (line.split(":", 1) for line in out.splitlines() if ":" in line)
        }
        cpu = fields.get("Model name") or None
    except (OSError, subprocess.SubprocessError, ValueError):
        pass
    if cpu is None:
        try:
            with open("/proc/cpuinfo") as handle:
                cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
        except (OSError, StopIteration):
            cpu = platform.processor() or platform.machine()
    info = {
        "cpu": cpu,
        "cpu_vendor": fields.get("Vendor ID"),
        "cpu_family_model": f"{fields['CPU family']}/{fields['Model']}" if "CPU family" in fields else None,
        "hypervisor": fields.get("Hypervisor vendor"),
        "cpu_count": os.cpu_count(),
        "cpu_cores": int(fields["Core(s) per socket"]) * int(fields.get("Socket(s)", 1))
        if fields.get("Core(s) per socket", "").isdigit() and str(fields.get("Socket(s)", 1)).isdigit()
        else None,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def _load_average() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _context():
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["torch", "lit_multimodal.multimodal.pandagpt.module"])
        return ctx
    return mp.get_context("spawn")


def run(settings: Settings, rounds: int) -> dict:
    """Builds the cache, starts one worker per variant, times interleaved rounds (epochs), collects results."""
    ctx = _context()
    builder = ctx.Process(target=build_cache, args=(settings,))
    builder.start()
    builder.join()
    if builder.exitcode != 0:
        raise RuntimeError(f"building the embedding cache failed (exit code {builder.exitcode})")
    workers = {}
    for variant in VARIANTS:
        parent, child = ctx.Pipe()
        process = ctx.Process(target=_worker, args=(child, variant, settings), daemon=True)
        process.start()
        child.close()
        workers[variant] = (process, parent, parent.recv())  # returns after its warm-up
    times: dict[str, list[list[float]]] = {v: [] for v in VARIANTS}
    for _ in range(rounds):
        for variant in VARIANTS:
            conn = workers[variant][1]
            conn.send(True)
            times[variant].append(conn.recv())
    results = {}
    for variant in VARIANTS:
        process, conn, info = workers[variant]
        conn.send(None)
        memory = conn.recv()
        process.join(timeout=120)
        flat = [t for r in times[variant] for t in r]
        epochs = [sum(r) for r in times[variant]]
        epoch = statistics.median(epochs)
        results[variant] = {
            **info,
            **memory,
            "step_time_s": statistics.median(flat),
            "min_step_time_s": min(flat),
            "epoch_time_s": epoch,
            "round_epoch_time_s": epochs,
            "step_times_s": flat,
            "tokens_per_s": info["tokens_per_epoch"] / epoch,
            "images_per_s": settings.batch * settings.steps / epoch,
        }
    live, cached = results["live"], results["cached"]
    comparison = {
        "epoch_time_ratio_cached_over_live": cached["epoch_time_s"] / live["epoch_time_s"],
        "round_epoch_time_ratios_cached_over_live": [
            c / w for c, w in zip(cached["round_epoch_time_s"], live["round_epoch_time_s"], strict=True)
        ],
        "step_time_ratio_cached_over_live": cached["step_time_s"] / live["step_time_s"],
        "speedup_cached_vs_live": live["epoch_time_s"] / cached["epoch_time_s"],
        "memory_growth_ratio_cached_over_live": cached["peak_memory_growth_mb"]
        / max(live["peak_memory_growth_mb"], 1e-9),
    }
    return {"variants": results, "comparison": comparison}


def main(argv: list[str] | None = None) -> dict:
    """Parses the command line, runs the benchmark, prints a summary and writes the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--llm", choices=sorted(LLM_SIZES), default=None, help="LLaMA size (default tiny)")
    parser.add_argument("--imagebind", choices=sorted(IMAGEBIND_SIZES), default="tiny", help="huge: CUDA only")
    parser.add_argument("--imagebind-checkpoint", default=None, help="weights (default: random, fixed seed)")
    parser.add_argument("--imagebind-dtype", choices=("fp32", "bf16", "fp16"), default="fp32")
    parser.add_argument("--batch", type=int, default=None, help="images per step (default 4)")
    parser.add_argument("--steps", type=int, default=None, help="steps per round = one epoch (default 8)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per worker (default 2)")
    parser.add_argument("--image-size", type=int, default=256, help="side of the written JPEGs")
    parser.add_argument("--max-tgt-len", type=int, default=128)
    parser.add_argument("--lora-r", type=int, default=32, help="LoRA rank (alpha = rank, as the official)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads per worker (default: torch's; 1 on a busy machine)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, 1 round x 2 steps of 2")
    parser.add_argument("--out", type=Path, default=None, help="default results/pandagpt_step_<device>.json")
    args = parser.parse_args(argv)

    quick = {"llm": "tiny", "batch": 2, "steps": 2, "rounds": 1, "warmup": 1}
    full = {"llm": "tiny", "batch": 4, "steps": 8, "rounds": 3, "warmup": 2}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but no CUDA device is available")
    if args.imagebind == "huge" and args.device != "cuda":
        parser.error("--imagebind huge needs --device cuda (ImageBind-huge is far too slow on a CPU)")
    if min(args.batch, args.steps, args.rounds) < 1 or args.warmup < 0:
        parser.error("--batch, --steps and --rounds must be at least 1, --warmup at least 0")
    out = args.out or RESULTS_DIR / f"pandagpt_step_{args.device}.json"

    workdir = tempfile.mkdtemp(prefix="pandagpt_step_")
    try:
        settings = Settings(
            device=args.device,
            llm=args.llm,
            imagebind=args.imagebind,
            imagebind_checkpoint=args.imagebind_checkpoint,
            imagebind_dtype=args.imagebind_dtype,
            batch=args.batch,
            steps=args.steps,
            warmup=args.warmup,
            image_size=args.image_size,
            max_tgt_len=args.max_tgt_len,
            lora_r=args.lora_r,
            threads=args.threads,
            workdir=workdir,
        )
        write_inputs(settings)
        started, load_before = time.time(), _load_average()
        measured = run(settings, args.rounds)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report = {
        "benchmark": "pandagpt_step",
        "hardware": hardware(args.device),
        "settings": {
            **{k: v for k, v in asdict(settings).items() if k != "workdir"},
            "llm_shape": LLM_SIZES[args.llm],
            "rounds": args.rounds,
            "images_per_epoch": args.batch * args.steps,
            "optimizer": "AdamW lr 5e-4, betas (0.9, 0.95), weight decay 0.001; LoRA + llama_proj",
            "precision": "fp32 LLM",
            "quick": args.quick,
        },
        "wall_s": time.time() - started,
        "load_average_1min": {"start": load_before, "end": _load_average()},  # others sharing the machine
        **measured,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")

    print(f"{'variant':<10}{'step s':>9}{'epoch s':>9}{'tok/s':>9}{'img/s':>8}{'mem MB':>9}")
    for name, row in report["variants"].items():
        print(
            f"{name:<10}{row['step_time_s']:>9.3f}{row['epoch_time_s']:>9.3f}{row['tokens_per_s']:>9.1f}"
            f"{row['images_per_s']:>8.2f}{row['peak_memory_growth_mb']:>9.1f}"
        )
    print(json.dumps(report["comparison"], indent=2))
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
