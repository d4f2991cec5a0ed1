"""The GPU suite: one command that measures VPT, PandaGPT and ImageBind-huge on one GPU and writes JSON + a log.

Parts, in order, each a separate process with its own time limit (a part that fails or runs out of time leaves
its error in the summary, and the parts after it still run):

1. ``env``: GPU name, driver, memory; torch / CUDA / cuDNN versions; bf16 support and which SDPA kernels run
   (flash, memory-efficient, cuDNN); versions of the packages the suite uses.
2. ``vpt``: :mod:`vpt_step` on ViT-B/16 at 224 px, batch 128: VPT-Deep p=50, VPT-Shallow p=50, linear and full in
   bf16-mixed, VPT-Deep in fp32, the hand-written fp32 reference and its bf16 autocast, and Lightning's
   ``Trainer.fit`` against a bare loop on the same steps: images/s, peak memory, MFU.
3. ``pandagpt``: :mod:`pandagpt_lora_step` on a LLaMA of Vicuna-7B's shape with random bf16 weights built on the
   GPU, LoRA r 32 on q/k/v/o, 1024 tokens, cached embeddings: single-device bf16 with and without gradient
   checkpointing and Lightning's stock DeepSpeed ZeRO-2: tokens/s, peak memory, MFU.
4. ``imagebind``: :mod:`imagebind_embed` on ImageBind-huge with random bf16 weights: embeddings/s for image, audio
   and text batches.
5. ``qlora``: :mod:`pandagpt_lora_step` again, bf16 LoRA against QLoRA (the LLM in 4-bit NF4 through bitsandbytes,
   read from random weights written to disk first) at one fixed micro-batch: memory of the built model, training
   peak, tokens/s.
6. ``tests``: ``pytest -m gpu``.

Output (``--out``, default ``$OUT`` when set, else ``results/gpu_suite``): ``gpu_suite.json`` (every part's status,
time and JSON, and a headline next to the anchors), ``gpu_suite.log`` (everything the parts printed) and each part's
own JSON. ``--dry-run`` runs every part on the CPU with tiny shapes (the test suite does, so the script cannot rot).

The GPU machine needs the packages of experiments/bench/gpu_wheels.sh beside its own torch/Lightning stack::

    python3 experiments/bench/gpu_suite.py --out results/gpu_suite          # about 8-10 minutes on one H100/H200
    python3 experiments/bench/gpu_suite.py --parts env qlora tests          # the QLoRA measurement alone
    python3 experiments/bench/gpu_suite.py --dry-run --out /tmp/gpu_suite   # CPU, about a minute
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parents[1]
#: Anchors for the same work on an H100-class GPU (see docs/benchmarks.md for their sources).
ANCHORS = {
    "vpt_deep_p50_images_per_s": 4500.0,  # a frozen ViT-B/16 PEFT step at 40 % MFU
    "lora_7b_mfu": 0.41,  # LoRA on a 7-8B LLaMA, one H100 (NVIDIA NeMo AutoModel)
}
VPT_VARIANTS = (
    "reference",
    "reference@bf16",
    "vpt_deep_p50@bf16",
    "vpt_deep_p50@bf16+lightning",
    "vpt_deep_p50@fp32",
    "vpt_shallow_p50@bf16",
    "linear@bf16",
    "full@bf16",
)
VPT_DRY_VARIANTS = ("reference", "vpt_deep_p50", "vpt_deep_p50+lightning")


@dataclass(frozen=True)
class Part:
    """One part of the suite: its time limit and the command that writes ``<out>/<name>.json``."""

    name: str
    timeout_s: float
    command: Callable[[Path, bool], list[str] | None]  # (out folder, dry run) -> argv, or None to skip


def _python(script: str, *args: str) -> list[str]:
    return [sys.executable, str(BENCH / script), *args]


def _vpt(out: Path, dry: bool) -> list[str]:
    if dry:
        return _python("vpt_step.py", "--quick", "--device", "cpu", "--variants", *VPT_DRY_VARIANTS, "--out", str(out))
    return _python(
        "vpt_step.py", "--device", "cuda", "--batch", "128", "--rounds", "2", "--steps", "8", "--warmup", "3",
        "--variants", *VPT_VARIANTS, "--out", str(out),
    )  # fmt: skip


def _pandagpt(out: Path, dry: bool) -> list[str]:
    if dry:
        return _python("pandagpt_lora_step.py", "--dry-run", "--variants", "plain", "deepspeed2", "--out", str(out))
    return _python("pandagpt_lora_step.py", "--device", "cuda", "--timeout", "100", "--out", str(out))


def _qlora(out: Path, dry: bool) -> list[str]:
    if dry:
        return _python("pandagpt_lora_step.py", "--dry-run", "--variants", "qlora", "--out", str(out))
    return _python(
        "pandagpt_lora_step.py", "--device", "cuda", "--variants", "plain", "qlora", "--micro-batch", "4",
        "--steps", "4", "--timeout", "200", "--out", str(out),
    )  # fmt: skip


def _imagebind(out: Path, dry: bool) -> list[str]:
    return _python("imagebind_embed.py", *(["--dry-run"] if dry else ["--device", "cuda"]), "--out", str(out))


def _tests(out: Path, dry: bool) -> list[str] | None:
    if dry:
        return None  # the dry run itself runs inside the test suite
    return [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", f"--junitxml={out}"]


def _env(out: Path, dry: bool) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--environment", str(out)]


PARTS = (
    Part("env", 60, _env),
    Part("vpt", 150, _vpt),
    Part("pandagpt", 330, _pandagpt),
    Part("imagebind", 90, _imagebind),
    Part("qlora", 300, _qlora),
    Part("tests", 150, _tests),
)


def environment() -> dict:
    """What the GPU and the software stack are, and which attention kernels run on them."""
    import importlib.metadata as metadata

    import torch

    info: dict = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available(),
        "cpu_count": os.cpu_count(),
        "packages": {},
    }
    packages = ("lightning", "timm", "peft", "transformers", "deepspeed", "bitsandbytes", "jsonargparse", "safetensors")
    for name in packages:
        try:
            info["packages"][name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            info["packages"][name] = None
    try:
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout.strip()  # fmt: skip
        info["nvidia_smi"] = smi
    except (OSError, subprocess.SubprocessError) as exc:
        info["nvidia_smi"] = f"unavailable ({exc})"
    if not torch.cuda.is_available():
        return info
    props = torch.cuda.get_device_properties(0)
    info.update(
        gpu=props.name,
        compute_capability=f"{props.major}.{props.minor}",
        memory_gib=props.total_memory / 2**30,
        multiprocessors=props.multi_processor_count,
        bf16_supported=torch.cuda.is_bf16_supported(),
    )
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q = torch.randn(2, 8, 256, 64, device="cuda", dtype=torch.bfloat16)
    kernels = {}
    for backend in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION"):
        try:
            with sdpa_kernel(getattr(SDPBackend, backend)):
                torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)
            torch.cuda.synchronize()
            kernels[backend.lower()] = True
        except (RuntimeError, AttributeError) as exc:
            kernels[backend.lower()] = f"no ({str(exc).splitlines()[0][:120]})"
    info["sdpa_bf16"] = kernels
    return info


def _run_part(part: Part, command: list[str], timeout: float, log) -> dict:
    """Runs one part, streaming its output into the log and stdout; returns status, rc and wall time."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    header = f"\n===== {part.name}: {' '.join(command)} (limit {timeout:.0f} s)\n"
    log.write(header)
    print(header, end="", flush=True)
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )

    def copy_output() -> None:
        for line in process.stdout:  # type: ignore[union-attr]
            log.write(line)
            print(line, end="", flush=True)

    reader = threading.Thread(target=copy_output, daemon=True)
    reader.start()
    status = "finished"
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        status = "timeout"
        os.killpg(process.pid, signal.SIGKILL)  # the part and every process it started
        process.wait()
    reader.join(timeout=10)
    rc = process.returncode
    status = status if status == "timeout" else ("ok" if rc == 0 else "failed")
    wall = time.perf_counter() - started
    log.write(f"===== {part.name}: {status} (rc {rc}) in {wall:.1f} s\n")
    log.flush()
    return {"status": status, "rc": rc, "wall_s": wall, "command": command}


def headline(parts: dict) -> dict:
    """The figures docs/benchmarks.md quotes, next to the anchors."""
    out: dict = {}
    vpt = (parts.get("vpt", {}).get("result") or {}).get("methods", {})
    for name in ("vpt_deep_p50@bf16", "vpt_deep_p50@bf16+lightning", "full@bf16", "reference"):
        row = vpt.get(name)
        if row:
            out[f"vpt {name}"] = {k: row.get(k) for k in ("images_per_s", "mfu", "peak_memory_growth_mb")}
    if "vpt_deep_p50@bf16" in vpt:
        images = vpt["vpt_deep_p50@bf16"]["images_per_s"]
        out["vpt_deep_p50 images/s vs anchor"] = images / ANCHORS["vpt_deep_p50_images_per_s"]
    lora = (parts.get("pandagpt", {}).get("result") or {}).get("variants", {})
    for name, row in lora.items():
        keys = ("micro_batch", "tokens_per_s", "mfu", "peak_memory_gib", "error")
        out[f"pandagpt {name}"] = {k: row[k] for k in keys if k in row}
        if "mfu" in row:
            out[f"pandagpt {name}"]["mfu_vs_anchor"] = row["mfu"] / ANCHORS["lora_7b_mfu"]
    qlora = (parts.get("qlora", {}).get("result") or {}).get("variants", {})
    for name, row in qlora.items():
        keys = ("micro_batch", "four_bit", "weights_gib", "peak_memory_gib", "tokens_per_s", "error")
        out[f"qlora {name}"] = {k: row[k] for k in keys if k in row}
    if all("peak_memory_gib" in qlora.get(name, {}) for name in ("plain", "qlora")):
        out["qlora peak memory vs bf16 LoRA"] = qlora["qlora"]["peak_memory_gib"] / qlora["plain"]["peak_memory_gib"]
        out["qlora model memory vs bf16"] = qlora["qlora"]["weights_gib"] / qlora["plain"]["weights_gib"]
    imagebind = (parts.get("imagebind", {}).get("result") or {}).get("modalities", {})
    for modality, row in imagebind.items():
        out[f"imagebind {modality} embeddings/s"] = row["embeddings_per_s"]
    return out


def main(argv: list[str] | None = None) -> dict:
    """Runs the parts within the budget and writes ``gpu_suite.json``; exits 0 even when a part failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_out = Path(os.environ["OUT"]) if os.environ.get("OUT") else BENCH / "results" / "gpu_suite"
    parser.add_argument("--out", type=Path, default=default_out, help="folder for the JSON files and the log")
    parser.add_argument("--dry-run", action="store_true", help="every part on the CPU with tiny shapes")
    parser.add_argument("--budget", type=float, default=580, help="seconds for the whole suite")
    parser.add_argument("--parts", nargs="+", choices=[p.name for p in PARTS], default=[p.name for p in PARTS])
    parser.add_argument("--environment", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.environment is not None:  # the env part, run as its own process like the others
        args.environment.write_text(json.dumps(environment(), indent=2) + "\n")
        return {}
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict = {}
    with open(args.out / "gpu_suite.log", "a") as log:
        for part in PARTS:
            if part.name not in args.parts:
                continue
            suffix = ".xml" if part.name == "tests" else ".json"
            target = args.out / f"{part.name}{suffix}"
            command = part.command(target, args.dry_run)
            left = args.budget - (time.perf_counter() - started)
            if command is None:
                results[part.name] = {"status": "skipped (dry run)"}
                continue
            if left < 15:
                results[part.name] = {"status": f"skipped: {left:.0f} s of the budget left"}
                continue
            target.unlink(missing_ok=True)
            results[part.name] = _run_part(part, command, min(part.timeout_s, left), log)
            if suffix == ".json" and target.is_file():
                results[part.name]["result"] = json.loads(target.read_text())
            elif suffix == ".xml" and target.is_file():
                results[part.name]["junit"] = target.name
    summary = {
        "suite": "gpu_suite",
        "dry_run": args.dry_run,
        "wall_s": time.perf_counter() - started,
        "anchors": ANCHORS,
        "headline": headline(results),
        "parts": results,
    }
    (args.out / "gpu_suite.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\n===== summary")
    for name, row in results.items():
        print(f"{name:<10} {row['status']:<10} {row.get('wall_s', 0):7.1f} s")
    print(json.dumps(summary["headline"], indent=2))
    print(f"wrote {args.out / 'gpu_suite.json'}")
    return summary


if __name__ == "__main__":
    main()
