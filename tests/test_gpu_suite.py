"""The GPU suite (experiments/bench/gpu_suite.py) on the CPU: a dry run of every part, time guards, FLOP counts."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "experiments" / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def suite():
    return _load("gpu_suite")


@pytest.fixture(scope="module")
def dry_run(suite, tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_suite")
    summary = suite.main(["--dry-run", "--out", str(out)])
    return out, summary


@pytest.mark.slow
def test_dry_run_runs_every_part_and_writes_json(dry_run):
    out, summary = dry_run
    parts = summary["parts"]
    assert {name: parts[name]["status"] for name in parts} == {
        "env": "ok",
        "vpt": "ok",
        "pandagpt": "ok",
        "imagebind": "ok",
        "qlora": "ok",
        "tests": "skipped (dry run)",
    }
    assert json.loads((out / "gpu_suite.json").read_text())["headline"] == summary["headline"]
    assert "torch" in parts["env"]["result"] and "packages" in parts["env"]["result"]

    vpt = parts["vpt"]["result"]["methods"]
    assert "reference" in vpt and all("speedup_vs_reference" in row for name, row in vpt.items() if name != "reference")
    assert any(row["loop"] == "lightning" and "lightning_overhead" in row for row in vpt.values())

    lora = parts["pandagpt"]["result"]["variants"]
    assert set(lora) == {"plain", "deepspeed2"}
    for row in lora.values():
        assert "error" not in row, row
        assert row["tokens_per_s"] > 0 and row["tokens_per_step"] == row["micro_batch"] * row["length"]
        assert row["trainable_params"] < row["total_params"]

    # the QLoRA variant's weights go to disk and back through the module's own from_pretrained (4-bit needs CUDA)
    (qlora,) = parts["qlora"]["result"]["variants"].values()
    assert "error" not in qlora, qlora
    assert qlora["four_bit"] is False and "NF4 needs CUDA" in qlora["note"] and qlora["weights_on_disk_gib"] > 0
    assert qlora["tokens_per_s"] > 0
    assert (qlora["total_params"], qlora["trainable_params"]) == (
        lora["plain"]["total_params"],
        lora["plain"]["trainable_params"],
    )

    imagebind = parts["imagebind"]["result"]["modalities"]
    assert set(imagebind) == {"vision", "audio", "text"} and all(r["embeddings_per_s"] > 0 for r in imagebind.values())
    log = (out / "gpu_suite.log").read_text()
    assert "===== pandagpt: ok" in log and "===== imagebind: ok" in log


def test_a_part_past_its_limit_is_stopped_and_the_next_still_runs(suite, tmp_path):
    sleeper = suite.Part(
        "sleeper", 2, lambda out, dry: [sys.executable, "-c", "import time; print('up'); time.sleep(60)"]
    )
    quick = suite.Part("quick", 30, lambda out, dry: [sys.executable, "-c", "print('done')"])
    with open(tmp_path / "log", "w") as log:
        first = suite._run_part(sleeper, sleeper.command(tmp_path, False), 2, log)
        second = suite._run_part(quick, quick.command(tmp_path, False), 30, log)
    assert first["status"] == "timeout" and first["wall_s"] < 20
    assert second["status"] == "ok" and second["rc"] == 0
    text = (tmp_path / "log").read_text()
    assert "up" in text and "done" in text and "sleeper: timeout" in text


def test_lora_flops_per_token_for_the_7b_shape():
    lora_step = _load("pandagpt_lora_step")
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**lora_step.SHAPES["7b"], tie_word_embeddings=False)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    matmul = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert matmul == 32 * (4 * 4096**2 + 3 * 4096 * 11008) + 4096 * 32000  # blocks + LM head
    flops = lora_step.flops_per_token(config, trainable=37_752_832, length=1024)
    assert flops["frozen_4N"] == 4 * matmul
    assert flops["attention_12Lsd"] == 12 * 32 * 1024 * 4096
    assert flops["total"] == 4 * matmul + 6 * 37_752_832 + 12 * 32 * 1024 * 4096


def test_reference_in_bf16_is_a_variant_of_its_own():
    vpt_step = _load("vpt_step")
    fp32 = vpt_step.parse_variant("reference", "bf16")
    bf16 = vpt_step.parse_variant("reference@bf16", "fp32")
    assert (fp32.name, fp32.precision) == ("reference", "fp32")
    assert (bf16.name, bf16.precision, bf16.attention) == ("reference@bf16", "bf16", "reference")


def test_both_step_benchmarks_read_one_peak_table():
    lora_step, vpt_step = _load("pandagpt_lora_step"), _load("vpt_step")
    assert lora_step.peak_tflops is vpt_step.peak_tflops  # experiments/bench/gpu_peaks.py
    # An H100 PCIe has a lower bf16 peak than the SXM part; the LoRA benchmark's MFU once used the SXM figure.
    assert lora_step.peak_bf16_tflops("NVIDIA H100 PCIe") == 756.0 == vpt_step.peak_tflops("NVIDIA H100 PCIe")["bf16"]
    assert lora_step.peak_bf16_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert lora_step.peak_bf16_tflops("NVIDIA H200") == 989.4 and lora_step.peak_bf16_tflops(None) is None
