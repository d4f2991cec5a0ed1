"""Backbone weights from local timm/torch files: exact load, resampling, and errors that name tensors."""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file

from lit_multimodal.vision.backbones import BackboneConfig, build_vit
from lit_multimodal.vision.checkpoints import CheckpointError, load_backbone_checkpoint


def _source(img_size=32, **overrides):
    torch.manual_seed(1)
    return build_vit(BackboneConfig(arch="test_vit", img_size=img_size, overrides=overrides)).eval()


@pytest.mark.parametrize("form", ["safetensors", "pth_nested_ddp", "pth_plain"])
def test_loaded_backbone_equals_the_file(tmp_path, form):
    source = _source()
    state = {k: v.clone() for k, v in source.state_dict().items()}
    if form == "safetensors":
        path = tmp_path / "vit.safetensors"
        save_file(state, str(path))
    elif form == "pth_nested_ddp":
        path = tmp_path / "vit.pth"
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    else:
        path = tmp_path / "vit.pth"
        torch.save({**state, "head.weight": torch.zeros(10, 64), "head.bias": torch.zeros(10)}, path)
    target = build_vit(BackboneConfig(arch="test_vit", img_size=32)).eval()
    report = load_backbone_checkpoint(target, BackboneConfig(arch="test_vit", img_size=32, checkpoint=str(path)))
    assert report.loaded == len(state)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(target.forward_features(images), source.forward_features(images))
    if form == "pth_plain":
        assert report.ignored == ["head.weight", "head.bias"]


def test_position_embedding_is_resampled_for_another_image_size(tmp_path):
    source = _source(img_size=32, dynamic_img_size=False)
    path = tmp_path / "vit.safetensors"
    save_file(source.state_dict(), str(path))
    config = BackboneConfig(arch="test_vit", img_size=64, checkpoint=str(path), overrides={"dynamic_img_size": False})
    target = build_vit(config)
    report = load_backbone_checkpoint(target, config)
    assert report.resampled == ["pos_embed (1, 5, 64) -> (1, 17, 64)"]
    assert torch.equal(target.pos_embed[:, 0], source.pos_embed[:, 0])  # the CLS position is kept as is


def test_missing_and_unexpected_keys_are_named(tmp_path):
    state = dict(_source().state_dict())
    del state["blocks.1.attn.qkv.weight"]
    state["blocks.9.mlp.fc1.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        load_backbone_checkpoint(_source(), BackboneConfig(arch="test_vit", img_size=32, checkpoint=str(path)))
    message = str(info.value)
    assert "broken.pth" in message and "blocks.1.attn.qkv.weight" in message and "blocks.9.mlp.fc1.weight" in message


def test_shape_mismatch_names_tensor_and_both_shapes(tmp_path):
    path = tmp_path / "wide.safetensors"
    save_file(_source(embed_dim=32, num_heads=2).state_dict(), str(path))
    with pytest.raises(
        CheckpointError,
        match=r"wide.safetensors: tensor blocks.0.attn.proj.bias has shape \(32,\) in the file but \(64,\)",
    ):
        load_backbone_checkpoint(_source(), BackboneConfig(arch="test_vit", img_size=32, checkpoint=str(path)))


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_objects_are_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with path.open("wb") as handle:
        pickle.dump({"weights": _Payload()}, handle)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_backbone_checkpoint(_source(), BackboneConfig(arch="test_vit", img_size=32, checkpoint=str(path)))
    assert "this must never run" not in capsys.readouterr().out
