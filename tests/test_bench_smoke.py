"""Smoke test of the training-step benchmark (experiments/bench/vpt_step.py) and its FLOP floor."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "bench" / "vpt_step.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("vpt_step_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


VIT_B = dict(dim=768, depth=12, mlp_dim=3072, patches=196, patch_in=768, num_classes=100)


def test_floor_ratio_vit_b_by_hand(bench):
    geometry = bench.Geometry(**VIT_B)
    block_weights = 4 * 768 * 768 + 2 * 768 * 3072  # qkv + proj + fc1 + fc2, per token
    patch, head = 196 * 768 * 768, 768 * 100
    full = 12 * 3 * (197 * block_weights + 2 * 197**2 * 768) + 2 * patch + 3 * head
    for p, rounded in ((50, 0.864), (5, 0.698)):
        vpt = 12 * (2 * (197 + p) * block_weights + 3 * 2 * (197 + p) ** 2 * 768) + patch + 3 * head
        assert bench.floor_ratio(geometry, "vpt_deep", p) == pytest.approx(vpt / full, rel=1e-12)
        assert bench.floor_ratio(geometry, "vpt_shallow", p) == pytest.approx(vpt / full, rel=1e-12)
        assert round(vpt / full, 3) == rounded
    assert bench.floor_ratio(geometry, "full") == 1.0
    assert bench.floor_ratio(geometry, "linear") == pytest.approx(1 / 3, abs=0.02)


def test_parse_method(bench):
    assert bench.parse_method("vpt_deep_p50") == bench.Method("vpt_deep_p50", "vpt_deep", 50)
    assert bench.parse_method("vpt_shallow") == bench.Method("vpt_shallow_p50", "vpt_shallow", 50)
    assert bench.parse_method("full") == bench.Method("full", "full", 0)
    with pytest.raises(ValueError):
        bench.parse_method("vpt_deep_px")


def test_parse_variant(bench):
    variant = bench.parse_variant("vpt_deep_p50@bf16+math+compile+lightning", "fp32")
    assert (variant.precision, variant.attention, variant.compile, variant.loop) == ("bf16", "math", True, "lightning")
    assert variant.name == "vpt_deep_p50@bf16+math+compile+lightning"
    assert bench.parse_variant("full", "bf16").name == "full@bf16"
    reference = bench.parse_variant("reference", "bf16")
    assert (reference.name, reference.precision, reference.attention) == ("reference", "fp32", "reference")
    with pytest.raises(ValueError, match="unknown options"):
        bench.parse_variant("full+flash", "fp32")


def test_reference_attention_matches_timm(bench):
    import types

    import torch
    from timm.models.vision_transformer import Attention

    torch.manual_seed(0)
    attention = Attention(64, num_heads=4, qkv_bias=True).eval()
    tokens = torch.randn(2, 7, 64)
    expected = attention(tokens)
    attention.forward = types.MethodType(bench.reference_attention, attention)
    torch.testing.assert_close(attention(tokens), expected, rtol=1e-5, atol=1e-6)


def test_quick_run_writes_json(bench, tmp_path):
    out = tmp_path / "bench.json"
    subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--precision", "fp32", "--out", str(out)], check=True, timeout=600
    )
    report = json.loads(out.read_text())

    assert report["settings"]["arch"] == "test_vit" and report["settings"]["quick"] is True
    assert report["hardware"]["cpu_count"] >= 1 and report["hardware"]["torch"]
    rows = report["methods"]
    names = {bench.parse_variant(v, "fp32").name for v in bench.DEFAULT_VARIANTS}
    assert set(rows) == names and "reference" in rows and "vpt_deep_p50@fp32+lightning" in rows
    for row in rows.values():
        assert row["step_time_s"] > 0 and row["images_per_s"] > 0
        assert len(row["step_times_s"]) == 2 and all(t > 0 for t in row["step_times_s"])
        assert row["peak_memory_growth_mb"] >= 0
        assert 0 < row["tuned_percent"] <= 100
    assert rows["full@fp32"]["tuned_percent"] == 100 and rows["full@fp32"]["ratio_vs_full"] == 1.0
    lightning, bare = rows["vpt_deep_p50@fp32+lightning"], rows["vpt_deep_p50@fp32"]
    assert lightning["lightning_overhead"] == pytest.approx(lightning["step_time_s"] / bare["step_time_s"] - 1)
    assert bare["speedup_vs_reference"] == pytest.approx(rows["reference"]["step_time_s"] / bare["step_time_s"])
    assert set(report["targets"]) >= {"default_precision", "lightning_overhead<=3%", "fp32_time_vs_reference<=1.05"}

    # test_vit at 32 px: D=64, 6 blocks, MLP 192, 4 patches (5 tokens), patch inputs 3*16*16.
    assert report["geometry"] == dict(dim=64, depth=6, mlp_dim=192, patches=4, patch_in=768, num_classes=100)
    full = 6 * 3 * (5 * 40960 + 2 * 5**2 * 64) + 2 * 4 * 768 * 64 + 3 * 64 * 100  # = 4,156,416
    vpt_p50 = 6 * (2 * 55 * 40960 + 3 * 2 * 55**2 * 64) + 4 * 768 * 64 + 3 * 64 * 100  # = 34,219,008
    assert (full, vpt_p50) == (4_156_416, 34_219_008)
    assert rows["vpt_deep_p50@fp32"]["floor_ratio_vs_full"] == pytest.approx(vpt_p50 / full)
    assert rows["vpt_shallow_p50@fp32"]["floor_ratio_vs_full"] == pytest.approx(vpt_p50 / full)
    for name, row in rows.items():
        if name in ("reference", "vpt_deep_p50@fp32+lightning"):
            continue
        assert row["ratio_vs_full"] == pytest.approx(row["step_time_s"] / rows["full@fp32"]["step_time_s"])
        assert row["ratio_over_floor"] == pytest.approx(row["ratio_vs_full"] / row["floor_ratio_vs_full"])
        full_mb = max(rows["full@fp32"]["peak_memory_growth_mb"], 1e-9)
        assert row["memory_vs_full"] == pytest.approx(row["peak_memory_growth_mb"] / full_mb)


def test_sweep_and_pipeline_benchmarks_run(tmp_path):
    folder = SCRIPT.parent
    sweep, pipeline = tmp_path / "sweep.json", tmp_path / "pipeline.json"
    args = ["--arch", "test_vit", "--scale", "0.02", "--epochs", "2", "--lrs", "1", "--wds", "2", "--batch", "8"]
    subprocess.run(
        [sys.executable, str(folder / "linear_sweep.py"), *args, "--workers", "0", "--out", str(sweep)],
        check=True,
        timeout=600,
    )
    report = json.loads(sweep.read_text())
    assert report["grid_points"] == 2 and len(report["runs"]) == 4
    assert report["val_top1_identical"] is True  # cached and uncached runs agree
    assert report["speedup"] == pytest.approx(report["uncached_total_s"] / report["cached_total_s"])
    subprocess.run(
        [sys.executable, str(folder / "data_pipeline.py"), "--scale", "0.02", "--epochs", "1", "--workers", "0"]
        + ["--out", str(pipeline)],
        check=True,
        timeout=600,
    )
    loaders = json.loads(pipeline.read_text())["loaders"]
    assert set(loaders) == {"jpeg_workers0", "memmap_workers0"}
    assert all(row["images_per_s"] > 0 for row in loaders.values())
