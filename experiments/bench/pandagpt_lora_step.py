"""PandaGPT LoRA training step at LLM scale: tokens/s, peak memory and MFU under Lightning.

The module is the real :class:`~lit_multimodal.multimodal.pandagpt.module.PandaGPT` (LoRA r 32 / α 32 on
``q/k/v/o_proj``, ``llama_proj`` and one soft token, AdamW, the official schedule) on a LLaMA-architecture model
with random weights: ``7b`` is Vicuna-7B's shape (4096 wide, 32 layers, 32 heads, MLP 11008, vocabulary 32000),
``tiny`` a two-layer stand-in for the CPU dry run. The weights are built directly on the device in bf16 (nothing
is read from disk: the one place the module loads its LLM, ``AutoModelForCausalLM.from_pretrained``, is replaced by
``from_config`` on the device for the duration of the build). Embeddings come from a
:class:`~lit_multimodal.multimodal.pandagpt.embedder.PrecomputedEmbedder` table, i.e. the cached-embedding path
with no ImageBind in the loop.

Variants (each in its own process, so its peak memory and its distributed state are its own):

* ``plain``: single device, ``bf16-mixed`` (the framework's default precision on such hardware);
* ``plain+ckpt``: the same with the LLM's gradient checkpointing;
* ``deepspeed2`` (``+ckpt``): Lightning's stock ``DeepSpeedStrategy(stage=2)``, bf16, the module's own
  ``torch.optim.AdamW`` (so nothing is JIT-compiled);
* ``qlora`` (``+ckpt``): single device, the LLM in 4-bit NF4 (``--model.load_in_4bit``, bitsandbytes). Quantisation
  happens inside ``from_pretrained``, so this variant writes the random bf16 weights to a safetensors folder first
  and loads them through the module's own path, not ``from_config``. Compare it with ``plain`` at one fixed
  ``--micro-batch``: each row records the memory of the built model (``weights_gib``) and the training peak. In the
  CPU dry run the same folder is written and read without 4-bit (bitsandbytes NF4 needs CUDA), which the row says.

The micro-batch is sized to the memory: one probe step with a micro-batch of 1 measures the peak growth per
sequence, and the largest micro-batch whose estimate fits ``--memory-fraction`` of the device (at most
``--max-micro-batch``) is taken.

FLOPs per token (stated, not measured): ``4 N`` for the frozen matmul weights (``N``: every parameter of the LLM
except the input embedding table, so the LM head counts; forward ``2 N`` plus the input gradient ``2 N``, no
weight gradient), ``6 N_t`` for the trainable LoRA and projection tensors, and ``12 · layers · length · width`` for
the attention score and value matmuls (forward and both operand gradients, the full square counted as the usual
MFU convention does). Recomputation under gradient checkpointing is not counted: MFU is useful work over peak.

Usage::

    python experiments/bench/pandagpt_lora_step.py --device cuda --out results/pandagpt_lora_step_cuda.json
    python experiments/bench/pandagpt_lora_step.py --dry-run --out /tmp/lora.json      # CPU, tiny shapes
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_peaks import peak_tflops  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SHAPES = {
    "7b": dict(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, vocab_size=32000
    ),
    "tiny": dict(hidden_size=64, intermediate_size=172, num_hidden_layers=2, num_attention_heads=4, vocab_size=512),
}
VARIANTS = ("plain", "plain+ckpt", "deepspeed2", "deepspeed2+ckpt", "qlora", "qlora+ckpt")
DEFAULT_VARIANTS = ("plain", "plain+ckpt", "deepspeed2")
WORKER_SETTINGS = ("device", "shape", "length", "micro_batch", "max_micro_batch", "memory_fraction", "warmup", "steps")
EMBED_DIM = 1024
PROMPT_TOKENS = 40  # the human turn before the reply: masked out of the loss like the official labels


def peak_bf16_tflops(gpu: str | None) -> float | None:
    """Dense bf16 peak TFLOP/s of a GPU by name (None when unknown or on CPU)."""
    return (peak_tflops(gpu) or {}).get("bf16")


def flops_per_token(config, trainable: int, length: int) -> dict[str, float]:
    """The FLOP count of one trained token (see the module docstring), split into its terms."""
    width, layers, vocab = config.hidden_size, config.num_hidden_layers, config.vocab_size
    heads, kv_heads = (
        config.num_attention_heads,
        getattr(config, "num_key_value_heads", None) or config.num_attention_heads,
    )
    head_dim = width // heads
    attention_weights = width * head_dim * (2 * heads + 2 * kv_heads)  # q, o: heads; k, v: kv heads
    mlp = 3 * width * config.intermediate_size
    frozen = layers * (attention_weights + mlp) + width * vocab  # + LM head; the embedding lookup is no matmul
    terms = {
        "frozen_4N": 4.0 * frozen,
        "trainable_6Nt": 6.0 * trainable,
        "attention_12Lsd": 12.0 * layers * length * width,
    }
    terms["total"] = sum(terms.values())
    terms["frozen_matmul_params"] = float(frozen)
    return terms


# --------------------------------------------------------------------------------------------------
# Worker: one variant, one process
# --------------------------------------------------------------------------------------------------


def _write_inputs(folder: Path, shape: str, micro_batch_cap: int) -> tuple[Path, list[str]]:
    """The LLM folder (config.json only) and an embedding table with one row per sample of a micro-batch."""
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    llm = folder / f"llama_{shape}"
    LlamaConfig(**SHAPES[shape], max_position_embeddings=2048, tie_word_embeddings=False).save_pretrained(llm)
    keys = [f"sample_{i:04d}.jpg" for i in range(micro_batch_cap)]
    generator = torch.Generator().manual_seed(0)
    save_file({k: torch.randn(EMBED_DIM, generator=generator) for k in keys}, str(folder / "embeddings.safetensors"))
    return llm, keys


def _build_module(llm: Path, table: Path, device: torch.device, checkpointing: bool, four_bit: bool = False):
    """The real PandaGPT module, its LLM built from the config directly on ``device`` in bf16.

    With ``four_bit`` the LLM is read from the weights in ``llm`` by the module's own ``from_pretrained`` (NF4).
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    from lit_multimodal.multimodal.pandagpt.embedder import PrecomputedEmbedder
    from lit_multimodal.multimodal.pandagpt.module import PandaGPT

    def from_config_on_device(path, **kwargs):
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        with torch.device(device):
            return AutoModelForCausalLM.from_config(config, dtype=kwargs.get("dtype"), attn_implementation="sdpa")

    options = dict(
        llm_path=str(llm),
        embedder=PrecomputedEmbedder(str(table)),
        dtype="bfloat16",
        attn_implementation="sdpa",
        gradient_checkpointing=checkpointing,
        lora_dropout=0.1,
    )
    if four_bit:
        return PandaGPT(**options, load_in_4bit=True)  # bitsandbytes places the weights on the current GPU
    if (llm / "model.safetensors.index.json").is_file() or (llm / "model.safetensors").is_file():
        return PandaGPT(**options).to(device)  # the dry run of ``qlora``: the written weights, read without 4-bit
    with mock.patch.object(AutoModelForCausalLM, "from_pretrained", side_effect=from_config_on_device):
        module = PandaGPT(**options)
    return module.to(device)


def _write_random_weights(llm: Path, device: torch.device) -> float:
    """Saves random bf16 weights for the config in ``llm`` (built on ``device``, sharded safetensors); GiB written."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(llm, local_files_only=True)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(llm, max_shard_size="4GB")
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return sum(f.stat().st_size for f in llm.glob("*.safetensors")) / 2**30


def _batch(keys: list[str], micro_batch: int, length: int, vocab: int, seed: int = 0) -> dict:
    """A fixed training batch: random token ids, the soft token at position 1, the first tokens masked."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, vocab, (micro_batch, length), generator=generator)
    targets = input_ids.clone()
    targets[:, :PROMPT_TOKENS] = -100
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "target_ids": targets,
        "image_paths": keys[:micro_batch],
        "image_position": 1,
    }


class _SameBatch(torch.utils.data.IterableDataset):
    def __init__(self, batch: dict) -> None:
        self.batch = batch

    def __iter__(self):
        while True:
            yield self.batch


def _probe_bytes_per_sequence(module, keys, length, vocab, device) -> float:
    """Peak memory growth of one forward + backward with a micro-batch of 1 (bf16 autocast)."""
    batch = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in _batch(keys, 1, length, vocab).items()}
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss_sum, count, _, _ = module._shared_step(batch)
        (loss_sum / count).backward()
    module.zero_grad(set_to_none=True)
    torch.cuda.synchronize(device)
    return float(torch.cuda.max_memory_allocated(device) - base)


def run_variant(variant: str, args: argparse.Namespace) -> dict:
    """Builds, sizes, trains ``warmup + steps`` steps under Lightning and returns the row of one variant."""
    from lightning.pytorch import Callback, Trainer

    strategy_name, _, option = variant.partition("+")
    checkpointing = option == "ckpt"
    device = torch.device(args.device)
    four_bit = strategy_name == "qlora" and device.type == "cuda"
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        llm, keys = _write_inputs(Path(tmp), args.shape, args.max_micro_batch)
        row: dict = {"variant": variant, "strategy": strategy_name, "gradient_checkpointing": checkpointing}
        if strategy_name == "qlora":
            written = time.perf_counter()
            row["weights_on_disk_gib"] = _write_random_weights(llm, device)
            row["write_s"] = time.perf_counter() - written
            row["four_bit"] = four_bit
            if not four_bit:
                row["note"] = "CPU dry run: the weights are written and read back without 4-bit (NF4 needs CUDA)"
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
        built = time.perf_counter()
        module = _build_module(llm, Path(tmp) / "embeddings.safetensors", device, checkpointing, four_bit)
        build_s = time.perf_counter() - built
        config = module.llama_model.config
        counts = module.count_parameters()
        row.update(build_s=build_s, total_params=counts.total, trainable_params=counts.trainable)
        if device.type == "cuda":
            row["weights_gib"] = (torch.cuda.memory_allocated(device) - before) / 2**30
            per_sequence = _probe_bytes_per_sequence(module, keys, args.length, config.vocab_size, device)
            free = torch.cuda.get_device_properties(device).total_memory * args.memory_fraction
            free -= torch.cuda.memory_allocated(device)
            micro_batch = int(max(1, min(args.max_micro_batch, free // max(per_sequence, 1.0))))
            row.update(probe_bytes_per_sequence=per_sequence, micro_batch_rule="probe")
        else:
            micro_batch = args.micro_batch or 2
            row["micro_batch_rule"] = "fixed (CPU)"
        micro_batch = args.micro_batch or micro_batch
        row["micro_batch"] = micro_batch
        loader = torch.utils.data.DataLoader(
            _SameBatch(_batch(keys, micro_batch, args.length, config.vocab_size)), batch_size=None
        )
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        times: list[float] = []

        class StepClock(Callback):
            """Times whole loop iterations (batch start to batch start) after the warm-up steps."""

            def __init__(self) -> None:
                self.last: float | None = None

            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
                sync()
                now = time.perf_counter()
                if self.last is not None and batch_idx > args.warmup:
                    times.append(now - self.last)
                if batch_idx == args.warmup and device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                self.last = now

        if strategy_name == "deepspeed2":
            if device.type == "cuda":
                from lightning.pytorch.strategies import DeepSpeedStrategy

                strategy = DeepSpeedStrategy(stage=2, logging_batch_size_per_gpu=micro_batch)
            else:  # the dry run: the same ZeRO-2 code path through the CPU test strategy
                from lit_multimodal.testing import CPUDeepSpeedStrategy

                strategy = CPUDeepSpeedStrategy(stage=2, logging_batch_size_per_gpu=micro_batch)
        else:
            strategy = "auto"
        trainer = Trainer(
            accelerator="gpu" if device.type == "cuda" else "cpu",
            devices=1,
            strategy=strategy,
            precision="bf16-mixed" if device.type == "cuda" else "32-true",
            max_steps=args.warmup + args.steps + 1,  # the last step closes the timing of the one before it
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[StepClock()],
            default_root_dir=tmp,
        )
        trainer.fit(module, train_dataloaders=loader)
    median = statistics.median(times)
    tokens = micro_batch * args.length
    flops = flops_per_token(config, counts.trainable, args.length)
    row.update(
        length=args.length,
        step_times_s=times,
        step_time_s=median,
        tokens_per_step=tokens,
        tokens_per_s=tokens / median,
        flops_per_token=flops,
        achieved_tflops=tokens * flops["total"] / median / 1e12,
    )
    if device.type == "cuda":
        row["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        peak = peak_bf16_tflops(torch.cuda.get_device_name(device))
        if peak:
            row["mfu"] = row["achieved_tflops"] / peak
            row["peak_bf16_tflops"] = peak
    return row


# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    parser.add_argument("--shape", choices=tuple(SHAPES), default="7b")
    parser.add_argument("--length", type=int, default=1024, help="tokens per sequence (max_tgt_len 1024)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(DEFAULT_VARIANTS))
    parser.add_argument("--micro-batch", type=int, default=0, help="0: sized to the memory by a probe step")
    parser.add_argument("--max-micro-batch", type=int, default=32)
    parser.add_argument("--memory-fraction", type=float, default=0.85, help="of the device memory the batch may fill")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--timeout", type=float, default=180, help="seconds per variant")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes, 1 + 2 steps: checks the script")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> dict:
    """Runs every variant in its own process and writes one JSON (a failed variant records its error)."""
    args = _parser().parse_args(argv)
    if args.dry_run:
        args.device, args.shape, args.length, args.warmup, args.steps = "cpu", "tiny", 64, 1, 2
        args.micro_batch = args.micro_batch or 2
    if args.worker:
        if args.device == "cpu":
            os.environ.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed's CPU accelerator for the dry run
        try:
            row = run_variant(args.worker, args)
        except Exception as exc:  # the driver records it; the other variants still run
            row = {"variant": args.worker, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        print("RESULT " + json.dumps(row), flush=True)
        return row
    out = args.out or RESULTS_DIR / f"pandagpt_lora_step_{args.device}.json"
    rows = {}
    forwarded = [f"--{key.replace('_', '-')}={getattr(args, key)}" for key in WORKER_SETTINGS]
    forwarded += ["--dry-run"] * args.dry_run
    for variant in args.variants:
        started = time.perf_counter()
        command = [sys.executable, __file__, *forwarded, "--worker", variant]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            row = json.loads(lines[-1][7:]) if lines else {"variant": variant, "error": f"exit {done.returncode}"}
            if "error" in row or not lines:
                row["stderr_tail"] = done.stderr[-3000:]
        except subprocess.TimeoutExpired as exc:
            row = {"variant": variant, "error": f"timed out after {args.timeout:.0f} s"}
            row["stderr_tail"] = (exc.stderr or b"")[-3000:].decode(errors="replace") if exc.stderr else ""
        row["wall_s"] = time.perf_counter() - started
        rows[variant] = row
        summary = {k: row[k] for k in ("micro_batch", "tokens_per_s", "mfu", "peak_memory_gib", "error") if k in row}
        print(f"{variant}: {summary}", flush=True)
    report = {
        "benchmark": "pandagpt_lora_step",
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "worker")},
        "shape": SHAPES[args.shape],
        "flop_convention": "4N frozen matmul weights + 6N trainable + 12*layers*length*width attention, per token",
        "variants": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
