"""The PandaGPT quickstart: ``lit-mm fit --config configs/quickstart/pandagpt.yaml``, then chat and export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from lit_multimodal.cli import main

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "quickstart" / "pandagpt.yaml"


@pytest.mark.slow
def test_quickstart_trains_then_chats_and_exports(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LIT_MM_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    main(["fit", "--config", str(CONFIG), "--trainer.default_root_dir", str(run)])
    out = capsys.readouterr().out
    losses = [float(v) for v in re.findall(r"epoch +\d+: train/loss ([0-9.]+)", out)]
    assert len(losses) == 20
    assert losses[-1] < losses[0] - 0.5, losses
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "success"
    assert result["metrics"]["train/loss_epoch"] == pytest.approx(losses[-1], abs=1e-4)
    assert result["params"]["trainable"] > 0

    ckpt = run / "checkpoints" / "last.ckpt"
    images = sorted((tmp_path / "cache" / "quickstart" / "pandagpt" / "data" / "images").glob("digit3_*.jpg"))
    assert images
    args = ["chat", "--config", str(CONFIG), "--ckpt", str(ckpt), "--image", str(images[0])]
    main([*args, "--prompt", "What digit is this?", "--greedy", "true", "--max_new_tokens", "24"])
    captured = capsys.readouterr()
    answers = [line for line in captured.out.splitlines() if line.startswith("Assistant: ")]
    assert len(answers) == 1 and len(answers[0]) > len("Assistant: ")
    assert "emergent" not in captured.err

    main(["export", "--config", str(CONFIG), "--ckpt", str(ckpt), "--out", str(tmp_path / "export")])
    delta = torch.load(tmp_path / "export" / "pytorch_model.pt", map_location="cpu", weights_only=True)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert set(delta) == set(state) and all(torch.equal(delta[k], state[k]) for k in delta)
