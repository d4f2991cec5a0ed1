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


def test_quick_run_writes_json(bench, tmp_path):
    out = tmp_path / "bench.json"
    subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out)], check=True, timeout=400)
    report = json.loads(out.read_text())

    assert report["settings"]["arch"] == "test_vit" and report["settings"]["quick"] is True
    assert report["hardware"]["cpu_count"] >= 1 and report["hardware"]["torch"]
    rows = report["methods"]
    assert set(rows) == set(bench.DEFAULT_METHODS)
    for row in rows.values():
        assert row["step_time_s"] > 0 and row["images_per_s"] > 0
        assert len(row["step_times_s"]) == 2 and all(t > 0 for t in row["step_times_s"])
        assert row["peak_memory_growth_mb"] >= 0
        assert 0 < row["tuned_percent"] <= 100
    assert rows["full"]["tuned_percent"] == 100 and rows["full"]["ratio_vs_full"] == 1.0

    # test_vit at 32 px: D=64, 6 blocks, MLP 192, 4 patches (5 tokens), patch inputs 3*16*16.
    assert report["geometry"] == dict(dim=64, depth=6, mlp_dim=192, patches=4, patch_in=768, num_classes=100)
    full = 6 * 3 * (5 * 40960 + 2 * 5**2 * 64) + 2 * 4 * 768 * 64 + 3 * 64 * 100  # = 4,156,416
    vpt_p50 = 6 * (2 * 55 * 40960 + 3 * 2 * 55**2 * 64) + 4 * 768 * 64 + 3 * 64 * 100  # = 34,219,008
    assert (full, vpt_p50) == (4_156_416, 34_219_008)
    assert rows["vpt_deep_p50"]["floor_ratio_vs_full"] == pytest.approx(vpt_p50 / full)
    assert rows["vpt_shallow_p50"]["floor_ratio_vs_full"] == pytest.approx(vpt_p50 / full)
    for row in rows.values():
        assert row["ratio_vs_full"] == pytest.approx(row["step_time_s"] / rows["full"]["step_time_s"])
        assert row["ratio_over_floor"] == pytest.approx(row["ratio_vs_full"] / row["floor_ratio_vs_full"])
