"""Tests that need a CUDA GPU (``pytest -m gpu``; deselected by the default ``-m "not gpu"``).

They run what CPU tests cannot: the automatic bf16 choice on a GPU, Lightning's stock DeepSpeed strategy (CPU tests
use a test-only subclass) and the bf16 ImageBind path with the SDPA kernels of the GPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from .conftest import REPO, tiny_config

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _needs_cuda():
    if not torch.cuda.is_available():
        pytest.fail("a test marked gpu ran without a CUDA device; deselect it with -m 'not gpu'")


def _fit(config, cwd) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE")}
    command = [sys.executable, "-m", "lit_multimodal", "fit", "--config", str(config)]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_vpt_fit_picks_bf16_on_the_gpu(tmp_path, tiny_dataset):
    config = tiny_config(tmp_path, tiny_dataset)
    values = yaml.safe_load(config.read_text())
    values["trainer"]["accelerator"] = "gpu"
    config.write_text(yaml.safe_dump(values))
    fit = _fit(config, tmp_path)
    assert fit.returncode == 0, fit.stderr[-4000:]
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["status"] == "success" and result["precision_auto"] is True
    expected = "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    assert result["precision"] == expected
    assert 0.0 <= result["metrics"]["test/top1"] <= 1.0


def test_pandagpt_stock_deepspeed_zero2_on_the_gpu(tmp_path):
    from lit_multimodal.multimodal.pandagpt.tiny import write_tiny_llama
    from tests.pandagpt_fixtures import write_pandagpt_json

    llm = write_tiny_llama(tmp_path / "llm", hidden_size=64, num_hidden_layers=2)
    json_path, images = write_pandagpt_json(tmp_path / "data", n=8)
    run_dir = tmp_path / "run"
    config = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "gpu",
            "devices": 1,
            "precision": "bf16-mixed",
            "strategy": "deepspeed_stage_2",
            "max_steps": 3,
            "gradient_clip_val": 1.0,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "default_root_dir": str(run_dir),
        },
        "model": {
            "class_path": "lit_multimodal.multimodal.pandagpt.module.PandaGPT",
            "init_args": {
                "llm_path": str(llm),
                "embedder": {"class_path": "tests.pandagpt_fixtures.HashEmbedder"},
                "max_tgt_len": 64,
                "dtype": "bfloat16",
            },
        },
        "data": {
            "class_path": "lit_multimodal.data.instructions.InstructionDataModule",
            "init_args": {"json_path": str(json_path), "image_root": str(images), "batch_size": 2, "num_workers": 0},
        },
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    fit = _fit(tmp_path / "config.yaml", REPO)
    assert fit.returncode == 0, (fit.stdout + fit.stderr)[-6000:]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "success" and result["global_step"] == 3
    (states_file,) = sorted((run_dir / "checkpoints" / "last.ckpt").glob("checkpoint/*model_states.pt"))
    module = torch.load(states_file, map_location="cpu", weights_only=True)["module"]
    assert module and all(".lora_" in k or k.startswith("llama_proj.") for k in module)


def test_imagebind_bf16_on_the_gpu_matches_fp32():
    from lit_multimodal.multimodal.imagebind import ImageBindConfig, ImageBindModel

    torch.manual_seed(0)
    model = ImageBindModel(ImageBindConfig.tiny()).cuda().eval().requires_grad_(False)
    inputs = {
        "vision": torch.randn(4, 3, 224, 224, device="cuda"),
        "audio": torch.randn(4, 3, 1, 128, 204, device="cuda"),
        "text": torch.randint(1, 49407, (4, 77), device="cuda"),
    }
    with torch.inference_mode():
        reference = model(inputs)
        low = model.to(torch.bfloat16)(inputs)
    for modality, expected in reference.items():
        cosine = torch.nn.functional.cosine_similarity(low[modality].float(), expected, dim=-1)
        assert low[modality].dtype == torch.bfloat16
        assert cosine.min() > 0.99, (modality, cosine)
