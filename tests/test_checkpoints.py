"""Backbone weights from local files (timm/torch, JAX .npz, MAE, MoCo-v3): exact load, resampling, errors."""

from __future__ import annotations

import math
import pickle
import re

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from lit_multimodal.vision.backbones import BackboneConfig, build_vit
from lit_multimodal.vision.checkpoints import CheckpointError, detect_format, load_backbone_checkpoint


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
    with pytest.raises(
        CheckpointError,
        match=r"^\S*evil.pth\S* contains pickled objects that are not plain tensors; refusing to load it$",
    ):
        load_backbone_checkpoint(_source(), BackboneConfig(arch="test_vit", img_size=32, checkpoint=str(path)))
    assert "this must never run" not in capsys.readouterr().out


# -- JAX .npz, MAE and MoCo-v3 files, written in their exact on-disk layout --------------------------

GEOMETRY = {"patch_size": 8, "depth": 2, "dynamic_img_size": False}  # test_vit: width 64, 2 heads, MLP 192
DIM, HEADS, MLP, DEPTH, PATCH = 64, 2, 192, 2, 8


def _config(path=None, img_size=32, pooling="cls", fmt="auto", **extra):
    return BackboneConfig(
        arch="test_vit",
        img_size=img_size,
        pooling=pooling,
        checkpoint=None if path is None else str(path),
        checkpoint_format=fmt,
        overrides={**GEOMETRY, **extra},
    )


def _jax_arrays(grid=4, mlp=MLP, seed=0):
    """The key names and shapes of google-research/vision_transformer's imagenet21k_ViT-B_16.npz."""
    rng = np.random.default_rng(seed)

    def dense(*shape, fan_in=None):
        return (rng.standard_normal(shape) / np.sqrt(fan_in or shape[0])).astype(np.float32)

    def small(*shape):
        return (0.1 * rng.standard_normal(shape)).astype(np.float32)

    def scale():
        return (1 + 0.1 * rng.standard_normal(DIM)).astype(np.float32)

    arrays = {
        "embedding/kernel": dense(PATCH, PATCH, 3, DIM, fan_in=PATCH * PATCH * 3),  # HWIO
        "embedding/bias": small(DIM),
        "cls": small(1, 1, DIM),
        "Transformer/posembed_input/pos_embedding": small(1, 1 + grid * grid, DIM),
        "Transformer/encoder_norm/scale": scale(),
        "Transformer/encoder_norm/bias": small(DIM),
        "pre_logits/kernel": dense(DIM, DIM),
        "pre_logits/bias": small(DIM),
        "head/kernel": dense(DIM, 100),  # 21843 classes in the real file
        "head/bias": small(100),
    }
    for i in range(DEPTH):
        block = f"Transformer/encoderblock_{i}/"
        mha = f"{block}MultiHeadDotProductAttention_1/"
        arrays |= {
            f"{block}LayerNorm_0/scale": scale(),
            f"{block}LayerNorm_0/bias": small(DIM),
            f"{block}LayerNorm_2/scale": scale(),
            f"{block}LayerNorm_2/bias": small(DIM),
            f"{mha}out/kernel": dense(HEADS, DIM // HEADS, DIM, fan_in=DIM),
            f"{mha}out/bias": small(DIM),
            f"{block}MlpBlock_3/Dense_0/kernel": dense(DIM, mlp),
            f"{block}MlpBlock_3/Dense_0/bias": small(mlp),
            f"{block}MlpBlock_3/Dense_1/kernel": dense(mlp, DIM),
            f"{block}MlpBlock_3/Dense_1/bias": small(DIM),
        }
        for name in ("query", "key", "value"):
            arrays[f"{mha}{name}/kernel"] = dense(DIM, HEADS, DIM // HEADS)
            arrays[f"{mha}{name}/bias"] = small(HEADS, DIM // HEADS)
    return arrays


def _write_npz(tmp_path, arrays=None, name="imagenet21k_ViT-B_16.npz"):
    path = tmp_path / name
    np.savez(path, **(_jax_arrays() if arrays is None else arrays))
    return path


def _jax_vit_forward(arrays, images):
    """An independent ViT forward straight from the JAX arrays (float64): all tokens after encoder_norm."""
    t = {k: torch.from_numpy(v).double() for k, v in arrays.items()}

    def layer_norm(x, prefix):
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + 1e-6) * t[f"{prefix}/scale"] + t[f"{prefix}/bias"]

    kernel = t["embedding/kernel"]
    p = kernel.shape[0]
    b, c, h, w = images.shape
    patches = images.reshape(b, c, h // p, p, w // p, p)
    x = torch.einsum("bcyixj,ijcd->byxd", patches, kernel) + t["embedding/bias"]
    x = x.reshape(b, -1, x.shape[-1])
    x = torch.cat([t["cls"].expand(b, -1, -1), x], dim=1) + t["Transformer/posembed_input/pos_embedding"]
    blocks = sorted({int(k.split("/")[1].split("_")[1]) for k in arrays if k.startswith("Transformer/encoderblock_")})
    for i in blocks:
        block = f"Transformer/encoderblock_{i}/"
        mha = f"{block}MultiHeadDotProductAttention_1/"
        y = layer_norm(x, f"{block}LayerNorm_0")
        q, k, v = (
            torch.einsum("bnd,dhk->bhnk", y, t[f"{mha}{n}/kernel"]) + t[f"{mha}{n}/bias"][None, :, None, :]
            for n in ("query", "key", "value")
        )
        scores = torch.einsum("bhnk,bhmk->bhnm", q, k) / math.sqrt(q.shape[-1])
        weights = torch.exp(scores - scores.amax(-1, keepdim=True))
        weights = weights / weights.sum(-1, keepdim=True)
        heads = torch.einsum("bhnm,bhmk->bnhk", weights, v)
        x = x + torch.einsum("bnhk,hkd->bnd", heads, t[f"{mha}out/kernel"]) + t[f"{mha}out/bias"]
        y = layer_norm(x, f"{block}LayerNorm_2")
        hidden = y @ t[f"{block}MlpBlock_3/Dense_0/kernel"] + t[f"{block}MlpBlock_3/Dense_0/bias"]
        hidden = 0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2)))
        x = x + hidden @ t[f"{block}MlpBlock_3/Dense_1/kernel"] + t[f"{block}MlpBlock_3/Dense_1/bias"]
    return layer_norm(x, "Transformer/encoder_norm")


def test_jax_npz_backbone_equals_an_independent_forward_of_the_file(tmp_path):
    arrays = _jax_arrays()
    path = _write_npz(tmp_path, arrays)
    config = _config(path)
    vit = build_vit(config).eval()
    report = load_backbone_checkpoint(vit, config)
    assert report.format == "jax" and report.loaded == 6 + 12 * DEPTH
    assert sorted(report.ignored) == ["head/bias", "head/kernel", "pre_logits/bias", "pre_logits/kernel"]
    assert report.kept_init == [] and report.resampled == [] and report.notes == []
    images = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    expected = _jax_vit_forward(arrays, images)
    with torch.no_grad():
        tokens = vit.forward_features(images.float())
        pooled = vit.forward_head(tokens, pre_logits=True)
    torch.testing.assert_close(tokens.double(), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(pooled.double(), expected[:, 0], atol=1e-5, rtol=0)


def test_jax_position_embedding_is_resampled_for_another_image_size(tmp_path):
    arrays = _jax_arrays(grid=4)  # trained at 32 px, patch 8
    path = _write_npz(tmp_path, arrays)
    config = _config(path, img_size=48)
    vit = build_vit(config)
    report = load_backbone_checkpoint(vit, config)
    assert vit.pos_embed.shape == (1, 37, DIM)
    assert report.resampled == ["pos_embed (1, 17, 64) -> (1, 37, 64)"]
    assert "resampled ['pos_embed (1, 17, 64) -> (1, 37, 64)']" in report.summary()
    cls_position = torch.from_numpy(arrays["Transformer/posembed_input/pos_embedding"][:, 0])
    assert torch.equal(vit.pos_embed[:, 0].detach(), cls_position)


@pytest.mark.parametrize(
    ("absent", "timm_key"),
    [
        ("Transformer/encoderblock_1/MlpBlock_3/Dense_0/kernel", "blocks.1.mlp.fc1.weight"),
        ("Transformer/encoderblock_0/MultiHeadDotProductAttention_1/key/kernel", "blocks.0.attn.qkv.weight"),
        ("Transformer/encoder_norm/scale", "norm.weight"),
    ],
)
def test_npz_missing_a_key_names_it(tmp_path, absent, timm_key):
    arrays = _jax_arrays()
    del arrays[absent]
    path = _write_npz(tmp_path, arrays)
    with pytest.raises(CheckpointError) as info:
        load_backbone_checkpoint(build_vit(_config()), _config(path))
    message = str(info.value)
    assert message.startswith(str(path))
    assert f"missing 1 keys ['{timm_key} (npz key {absent} absent)']; unexpected 0 keys" in message


def test_npz_unknown_key_is_an_error_naming_it(tmp_path):
    arrays = _jax_arrays()
    arrays["Transformer/encoderblock_0/LayerNorm_1/scale"] = np.ones(DIM, np.float32)
    path = _write_npz(tmp_path, arrays)
    with pytest.raises(CheckpointError, match=r"unexpected 1 keys \['Transformer/encoderblock_0/LayerNorm_1/scale'\]"):
        load_backbone_checkpoint(build_vit(_config()), _config(path))


def test_npz_shape_mismatch_names_tensor_npz_key_and_both_shapes(tmp_path):
    path = _write_npz(tmp_path, _jax_arrays(mlp=128))
    with pytest.raises(CheckpointError) as info:
        load_backbone_checkpoint(build_vit(_config()), _config(path))
    assert str(info.value).endswith(
        "imagenet21k_ViT-B_16.npz: tensor blocks.0.mlp.fc1.weight (from npz Transformer/encoderblock_0/MlpBlock_3/"
        "Dense_0/kernel (64, 128)) has shape (128, 64) in the file but (192, 64) in the model"
    )


def _random_timm_state(num_classes=0, seed=0):
    torch.manual_seed(seed)
    vit = timm.create_model("test_vit", img_size=32, num_classes=num_classes, **GEOMETRY)
    with torch.no_grad():
        for name, param in vit.named_parameters():
            if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name == "norm.weight":
                param.copy_(1 + 0.1 * torch.randn_like(param))
            else:
                param.copy_(torch.randn_like(param) / math.sqrt(param.shape[-1]))
    return {k: v.clone() for k, v in vit.state_dict().items()}


def _reference_vit(state):
    """timm's own ViT holding the file's tensors (final norm included), loaded strictly."""
    num_classes = state["head.weight"].shape[0] if "head.weight" in state else 0
    vit = timm.create_model("test_vit", img_size=32, num_classes=num_classes, **GEOMETRY).eval()
    vit.load_state_dict(state)
    return vit


def _write_mae(tmp_path, state, name="mae_pretrain_vit_base.pth"):
    path = tmp_path / name
    torch.save({"model": state}, path)
    return path


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_mae_backbone_equals_timm_with_the_files_tensors(tmp_path, pooling):
    state = _random_timm_state()
    assert not any(k.startswith(("fc_norm.", "head.")) for k in state)  # as mae_pretrain_vit_base.pth
    path = _write_mae(tmp_path, state)
    config = _config(path, pooling=pooling)
    vit = build_vit(config).eval()
    report = load_backbone_checkpoint(vit, config)
    reference = _reference_vit(state)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        pooled = vit.forward_head(vit.forward_features(images), pre_logits=True)
        if pooling == "mean":
            # Official MAE path: mean over all tokens but CLS, then a frozen identity-initialised LayerNorm.
            tokens = reference.blocks(reference._pos_embed(reference.patch_embed(images)))
            expected = F.layer_norm(tokens[:, 1:].mean(dim=1), (DIM,), eps=1e-6)
        else:
            expected = reference.forward_features(images)[:, 0]
    torch.testing.assert_close(pooled, expected, atol=1e-5, rtol=1e-5)
    assert report.format == "mae"
    if pooling == "mean":
        assert report.loaded == len(state) - 2
        assert report.ignored == ["norm.weight", "norm.bias"]
        assert report.kept_init == ["fc_norm.weight", "fc_norm.bias"]
        assert report.notes == []
        assert "kept initialisation of ['fc_norm.weight', 'fc_norm.bias']" in report.summary()
    else:
        assert report.loaded == len(state) and report.ignored == [] and report.kept_init == []
        assert report.notes and "pools mae backbones by mean" in report.summary()


def test_mae_decoder_keys_are_ignored(tmp_path):
    state = _random_timm_state()
    extra = {"mask_token": torch.zeros(1, 1, 32), "decoder_embed.weight": torch.zeros(32, DIM)}
    path = _write_mae(tmp_path, {**state, **extra}, name="mae_visualize.pth")
    report = load_backbone_checkpoint(build_vit(_config(pooling="mean")), _config(path, pooling="mean"))
    assert report.format == "mae" and report.ignored[:2] == ["mask_token", "decoder_embed.weight"]


def _write_moco(tmp_path, state, name="linear-vit-b-300ep.pth.tar"):
    path = tmp_path / name
    optimizer = {
        "state": {0: {"momentum_buffer": torch.zeros_like(state["head.weight"])}},
        "param_groups": [{"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "nesterov": False, "params": [0, 1]}],
    }
    checkpoint = {
        "epoch": 300,
        "arch": "vit_base",
        "state_dict": {f"module.{k}": v for k, v in state.items()},
        "best_acc1": 76.7,
        "optimizer": optimizer,
    }
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize("name", ["linear-vit-b-300ep.pth.tar", "any_name.pth"])
def test_mocov3_backbone_equals_timm_with_the_files_tensors(tmp_path, name):
    state = _random_timm_state(num_classes=1000)  # the 1000-way linear probe
    path = _write_moco(tmp_path, state, name)
    config = _config(path)
    vit = build_vit(config).eval()
    report = load_backbone_checkpoint(vit, config)
    reference = _reference_vit(state)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens = vit.forward_features(images)
        assert torch.equal(tokens, reference.forward_features(images))
        assert torch.equal(vit.forward_head(tokens, pre_logits=True), reference.forward_features(images)[:, 0])
    assert report.format == "mocov3" and report.loaded == len(state) - 2
    assert report.ignored == ["epoch", "arch", "best_acc1", "optimizer", "head.weight", "head.bias"]


def _write_file(tmp_path, kind):
    state = _random_timm_state()
    if kind == "jax":
        return _write_npz(tmp_path)
    if kind == "mae":
        return _write_mae(tmp_path, state)
    if kind == "mocov3":
        return _write_moco(tmp_path, {**state, "head.weight": torch.zeros(1000, DIM), "head.bias": torch.zeros(1000)})
    if kind == "safetensors":
        save_file(state, str(tmp_path / "vit.safetensors"))
        return tmp_path / "vit.safetensors"
    if kind == "mae_finetuned":  # fc_norm and a head: a timm state dict under "model", not MAE pre-training
        fine_tuned = {k: v for k, v in state.items() if not k.startswith("norm.")}
        fine_tuned |= {"fc_norm.weight": torch.ones(DIM), "fc_norm.bias": torch.zeros(DIM)}
        fine_tuned |= {"head.weight": torch.zeros(10, DIM), "head.bias": torch.zeros(10)}
        torch.save({"model": fine_tuned}, tmp_path / "mae_finetuned.pth")
        return tmp_path / "mae_finetuned.pth"
    torch.save(state, tmp_path / "vit.pth")
    return tmp_path / "vit.pth"


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("jax", "jax"),
        ("mae", "mae"),
        ("mocov3", "mocov3"),
        ("safetensors", "timm"),
        ("plain_pth", "timm"),
        ("mae_finetuned", "timm"),
    ],
)
def test_format_detection(tmp_path, kind, expected):
    path = _write_file(tmp_path, kind)
    assert detect_format(path) == expected
    pooling = "mean" if kind.startswith("mae") else "cls"
    report = load_backbone_checkpoint(build_vit(_config(pooling=pooling)), _config(path, pooling=pooling))
    assert report.format == expected


@pytest.mark.parametrize(
    ("kind", "fmt", "found"),
    [
        ("mocov3", "mae", r"found top-level keys \['epoch', 'arch', 'state_dict', 'best_acc1', 'optimizer'\]"),
        ("mae", "mocov3", r"found top-level keys \['model'\], which looks like checkpoint_format 'mae'"),
        ("mae", "jax", r"found top-level keys \['model'\]"),
        ("jax", "timm", r"found a \.npz of arrays"),
        ("jax", "mae", r"which looks like checkpoint_format 'jax'"),
    ],
)
def test_explicit_format_that_does_not_match_the_file_is_refused(tmp_path, kind, fmt, found):
    path = _write_file(tmp_path, kind)
    with pytest.raises(CheckpointError, match=rf"{re.escape(path.name)}: checkpoint_format '{fmt}' expects .*{found}"):
        load_backbone_checkpoint(build_vit(_config()), _config(path, fmt=fmt))


def test_explicit_format_that_matches_loads(tmp_path):
    path = _write_moco(tmp_path, _random_timm_state(num_classes=1000))
    assert load_backbone_checkpoint(build_vit(_config()), _config(path, fmt="mocov3")).format == "mocov3"


def test_npz_with_pickled_objects_is_refused(tmp_path, capsys):
    arrays = _jax_arrays()
    arrays["cls"] = np.array([_Payload()], dtype=object)
    path = _write_npz(tmp_path, arrays)
    with pytest.raises(CheckpointError, match="without pickle"):
        load_backbone_checkpoint(build_vit(_config()), _config(path))
    assert "this must never run" not in capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["mae", "mocov3"])
def test_pickled_objects_are_refused_for_every_torch_format(tmp_path, capsys, fmt):
    path = tmp_path / "evil.pth.tar"
    with path.open("wb") as handle:
        pickle.dump({"state_dict": {"module.x": _Payload()}, "model": {"patch_embed.proj.weight": _Payload()}}, handle)
    with pytest.raises(
        CheckpointError,
        match=r"^\S*evil.pth\S* contains pickled objects that are not plain tensors; refusing to load it$",
    ):
        load_backbone_checkpoint(build_vit(_config()), _config(path, fmt=fmt))
    assert "this must never run" not in capsys.readouterr().out
