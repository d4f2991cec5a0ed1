"""Smoke test of the PandaGPT training-step benchmark (experiments/bench/pandagpt_step.py): JSON fields, not timings."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "bench" / "pandagpt_step.py"


@pytest.mark.slow  # three fresh Python processes with torch: about 30 s on two busy cores
def test_quick_run_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--out", str(out)],
        check=True,
        timeout=600,
        capture_output=True,
    )
    report = json.loads(out.read_text())
    assert report["benchmark"] == "pandagpt_step"
    hardware = report["hardware"]
    assert hardware["cpu"] and hardware["cpu_count"] >= 1 and hardware["torch"]
    settings = report["settings"]
    assert (settings["device"], settings["llm"], settings["imagebind"]) == ("cpu", "tiny", "tiny")
    assert settings["llm_shape"]["hidden_size"] == 64 and settings["quick"] is True
    rounds, steps, batch = settings["rounds"], settings["steps"], settings["batch"]
    assert settings["images_per_epoch"] == steps * batch

    assert set(report["variants"]) == {"live", "cached"}
    for row in report["variants"].values():
        assert len(row["step_times_s"]) == rounds * steps
        assert len(row["round_epoch_time_s"]) == rounds
        for key in ("step_time_s", "epoch_time_s", "tokens_per_s", "images_per_s"):
            assert row[key] > 0, key
        assert row["tokens_per_epoch"] > 0 and row["trainable_params"] > 0
        assert row["torch_threads"] == 1
        assert isinstance(row["peak_memory_growth_mb"], float) and row["memory_method"]
    # the same model trains in both variants; only the embedder differs
    live, cached = report["variants"]["live"], report["variants"]["cached"]
    assert live["trainable_params"] == cached["trainable_params"]
    assert live["tokens_per_epoch"] == cached["tokens_per_epoch"]

    comparison = report["comparison"]
    assert len(comparison["round_epoch_time_ratios_cached_over_live"]) == rounds
    ratio = comparison["epoch_time_ratio_cached_over_live"]
    assert ratio == cached["epoch_time_s"] / live["epoch_time_s"]
    assert comparison["speedup_cached_vs_live"] == live["epoch_time_s"] / cached["epoch_time_s"]


def test_huge_imagebind_needs_a_gpu(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--imagebind", "huge", "--out", str(tmp_path / "x.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "needs --device cuda" in result.stderr
    assert not (tmp_path / "x.json").exists()
