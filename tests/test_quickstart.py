"""The quickstart runs from nothing: digits written, backbone pre-trained and cached, VPT-Deep trained."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .conftest import REPO


@pytest.mark.slow
def test_quickstart_vpt_deep_from_scratch(tmp_path):
    env = {**os.environ, "LIT_MM_CACHE": str(tmp_path / "cache")}
    cmd = [
        sys.executable, "-m", "lit_multimodal", "fit", "--config", str(REPO / "configs/quickstart/vpt_deep.yaml"),
        "--trainer.max_epochs", "3", "--trainer.default_root_dir", str(tmp_path / "run"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "tuned percent" in out
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["status"] == "success" and result["hparams"]["task"] == "digits5-9"
    assert result["metrics"]["val/top1"] > 0.3  # above chance (0.2) after 3 epochs from the pre-trained backbone
    cached = list((tmp_path / "cache" / "quickstart").glob("backbone-digits0-4-*.safetensors"))
    assert len(cached) == 1
    assert (tmp_path / "cache" / "quickstart" / "digits5-9" / "train.json").is_file()
