"""Precision: automatic choice per hardware, the bf16 vs fp32 logit bound of VPT-Deep, what result.json records."""

from __future__ import annotations

import json

import pytest
import torch

from lit_multimodal.cli import main
from lit_multimodal.vision import precision
from lit_multimodal.vision.backbones import BackboneConfig, build_vit
from lit_multimodal.vision.classifier import ViTClassifier
from tests.conftest import tiny_config


@pytest.mark.parametrize(
    ("accelerator", "cuda", "capability", "cpu_bf16", "expected"),
    [
        ("cpu", True, (9, 0), False, "32-true"),  # an AVX2-only CPU emulates bf16 GEMMs: fp32
        ("cpu", False, None, True, "bf16-mixed"),  # avx512_bf16 / AMX
        ("auto", False, None, False, "32-true"),
        ("auto", True, (8, 0), False, "bf16-mixed"),  # Ampere
        ("gpu", True, (9, 0), False, "bf16-mixed"),  # Hopper
        ("cuda", True, (7, 0), True, "32-true"),  # Volta has no bf16 tensor cores
        ("mps", False, None, True, "32-true"),
    ],
)
def test_auto_precision_per_hardware(monkeypatch, accelerator, cuda, capability, cpu_bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: cpu_bf16)
    assert precision.auto_precision(accelerator) == expected


def test_cpu_probe_reads_the_instruction_sets(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert precision.cpu_has_native_bf16()
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert not precision.cpu_has_native_bf16()


def test_vpt_deep_bf16_logits_stay_close_to_fp32():
    """bf16 keeps 8 mantissa bits (relative rounding 2^-9 = 0.2 %) in every GEMM of the 6-block ViT.

    The errors of ~30 chained GEMMs add up roughly as a random walk, a few tenths of a percent of the logit
    scale; the bound (2 % of the largest |logit|) leaves margin for that and still fails on a real fault
    (e.g. prompts spliced in a different dtype or a missing cast, which moves logits by tens of percent).
    """
    torch.manual_seed(0)
    model = ViTClassifier(build_vit(BackboneConfig(arch="test_vit", img_size=32)), 10, "vpt_deep", num_prompts=4)
    model.eval()
    images = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        fp32 = model(images)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model(images)
    assert bf16.dtype == torch.bfloat16  # the head ran in bf16: autocast reached the whole model
    scale = fp32.abs().max()
    error = (bf16.float() - fp32).abs().max()
    assert error <= 0.02 * scale, (error, scale)
    assert (bf16.float().argmax(-1) == fp32.argmax(-1)).float().mean() >= 0.75


def test_result_json_records_the_precision_that_ran(tmp_path, tiny_dataset, monkeypatch):
    monkeypatch.setattr("lit_multimodal.fit_config.auto_precision", lambda accelerator: "bf16-mixed")
    config = tiny_config(tmp_path, tiny_dataset)  # no trainer.precision: resolved automatically
    main(["fit", "--config", str(config), "--trainer.max_epochs=1"])
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["status"] == "success"
    assert result["precision"] == "bf16-mixed" and result["precision_auto"] is True

    main(["fit", "--config", str(config), "--trainer.max_epochs=1", "--trainer.precision=32-true"])
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["precision"] == "32-true" and result["precision_auto"] is False
