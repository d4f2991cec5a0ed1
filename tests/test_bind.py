"""``lit-mm bind``: trainable-only checkpoints, LoRA, export to a full ImageBind state dict loaded strictly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from lit_multimodal.cli import main
from lit_multimodal.multimodal.imagebind import ImageBindEncoder, build_imagebind, load_imagebind_state
from lit_multimodal.multimodal.imagebind.bind.export import bind_export
from lit_multimodal.multimodal.imagebind.bind.module import BindModule, base_imagebind
from lit_multimodal.multimodal.imagebind.config import ImageBindConfig
from lit_multimodal.multimodal.imagebind.preprocess import load_inputs

# Coarse patches keep the tiny encoders cheap on CPU (8x8 tokens of a 224 px input).
FAST = {"kernel_size": [2, 28, 28], "depth_kernel_size": 28, "thermal_kernel_size": 28, "audio_stride": 16}


def _paired_depth(root, n=8):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        pixels = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"img{i}.png")
        np.save(root / f"depth{i}.npy", (1.0 + pixels[..., 0] / 255.0).astype(np.float32))
        rows.append({"anchor": f"img{i}.png", "other": f"depth{i}.npy", "split": "val" if i >= 6 else "train"})
    (root / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "pairs.jsonl"


def _fit(tmp_path, manifest, tuning):
    run = tmp_path / f"run_{tuning}"
    overrides = json.dumps(FAST)
    main([
        "bind", "--seed_everything", "0",
        "--model", "lit_multimodal.multimodal.imagebind.bind.BindModule",
        "--model.modality", "depth", "--model.preset", "tiny", "--model.config", overrides, "--model.tuning", tuning,
        "--model.lr", "0.01",
        "--data", "lit_multimodal.multimodal.imagebind.bind.BindDataModule",
        "--data.manifest", str(manifest), "--data.modality", "depth", "--data.anchor", "image",
        "--data.preset", "tiny", "--data.config", overrides, "--data.batch_size", "3",
        "--data.cache_dir", str(tmp_path / "cache"),
        "--trainer.max_epochs", "2", "--trainer.accelerator", "cpu", "--trainer.precision", "32-true",
        "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(run),
    ])  # fmt: skip
    return run / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("tuning", ["lora", "full"])
def test_bind_checkpoint_exports_to_a_strictly_loadable_imagebind(tmp_path, tuning):
    manifest = _paired_depth(tmp_path)
    ckpt = _fit(tmp_path, manifest, tuning)
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    keys = set(saved["state_dict"])
    assert keys and all("modality_" in k and ".depth" in k for k in keys)  # trainable tensors of depth only
    if tuning == "lora":
        assert any(".lora_A." in k for k in keys) and not any("base_layer" in k for k in keys)

    out = tmp_path / "bound.pth"
    summary = bind_export(str(ckpt), str(out))
    assert summary["bound_modality"] == "depth" and summary["changed_tensors"] > 0
    config = ImageBindConfig.tiny(**FAST)
    bound = build_imagebind(config, out)  # strict: exactly the ImageBind keys and shapes
    base = base_imagebind("tiny", None, FAST)
    state, reference = load_imagebind_state(out), base.state_dict()
    assert set(state) == set(reference)
    changed = {k for k in state if not torch.equal(state[k], reference[k])}
    assert changed and all(".depth" in k for k in changed)  # every other modality is the base's

    # The exported depth encoder computes what the trained module computes (LoRA merged exactly).
    module = BindModule(modality="depth", preset="tiny", config=FAST, tuning=tuning)
    module.load_state_dict(saved["state_dict"], strict=False)
    module.eval()
    x = load_inputs("depth", [str(tmp_path / "depth0.npy"), str(tmp_path / "depth7.npy")])
    with torch.no_grad():
        assert torch.allclose(bound.encode("depth", x), module(x), atol=1e-5)

    # embed / zeroshot read it like the released weights.
    encoder = ImageBindEncoder(checkpoint=str(out), preset="tiny", config=FAST, progress=False)
    assert encoder.encode({"depth": [str(tmp_path / "depth0.npy")]})["depth"].shape == (1, 1024)


def test_binding_raises_retrieval_far_above_chance(tmp_path):
    """Depth maps whose class is a bar's position, bound to the frozen text embeddings of the class names."""
    from lightning.pytorch import Trainer

    from lit_multimodal.multimodal.imagebind.bind import BindDataModule

    names = ["zero", "one", "two", "three", "four"]
    rng = np.random.default_rng(0)
    rows = []
    for i in range(75):
        label = i % 5
        depth = np.full((32, 32), 2.0, dtype=np.float32) + rng.normal(0, 0.02, (32, 32)).astype(np.float32)
        depth[:, 6 * label : 6 * label + 6] -= 0.8  # a raised bar whose position is the class
        np.save(tmp_path / f"d{i}.npy", depth)
        rows.append({"anchor": names[label], "other": f"d{i}.npy", "label": names[label],
                     "split": "val" if i >= 50 else "train"})  # fmt: skip
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = BindDataModule(str(tmp_path / "pairs.jsonl"), modality="depth", anchor="text", preset="tiny", config=FAST,
                          batch_size=10)  # fmt: skip
    model = BindModule(modality="depth", preset="tiny", config=FAST, temperature=0.05, mask_same_label=True, lr=3e-3,
                       weight_decay=0.0)  # fmt: skip
    trainer = Trainer(max_epochs=50, check_val_every_n_epoch=50, accelerator="cpu", logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    before = trainer.validate(model, datamodule=data, verbose=False)[0]["val/class_R@1_m2a"]
    trainer.fit(model, datamodule=data)
    after = float(trainer.callback_metrics["val/class_R@1_m2a"])
    assert before <= 0.4, before  # the untrained encoder: near chance (1/5)
    assert after >= 0.8, (before, after)
    assert after >= before + 0.3, (before, after)
    assert float(trainer.callback_metrics["val/chance_R@1"]) == pytest.approx(1 / 25)
