"""Prompt splicing and deep replacement against hand-computed references."""

from __future__ import annotations

import math

import torch

from lit_multimodal.vision.backbones import BackboneConfig, build_vit
from lit_multimodal.vision.classifier import HEAD_BIAS_PRIOR, ViTClassifier
from lit_multimodal.vision.prompts import VisualPrompts


def _prompts(deep: bool, p: int = 2, dim: int = 3, depth: int = 3) -> VisualPrompts:
    prompts = VisualPrompts(num_tokens=p, embed_dim=dim, depth=depth, deep=deep, patch_area=4)
    with torch.no_grad():
        prompts.prompt_embeddings.copy_(torch.full((1, p, dim), -1.0))
        if deep:
            for i in range(depth - 1):
                prompts.deep_prompt_embeddings[i].fill_(-(i + 2.0))
    return prompts.eval()


def test_insert_places_prompts_after_cls_without_touching_other_tokens():
    tokens = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)  # CLS + 3 patches
    out = _prompts(deep=False).insert(tokens)
    assert out.shape == (2, 6, 3)
    for b in range(2):
        expected = torch.cat([tokens[b, :1], torch.full((2, 3), -1.0), tokens[b, 1:]])
        assert torch.equal(out[b], expected)


def test_replace_overwrites_positions_one_to_p_only():
    prompts = _prompts(deep=True)
    tokens = torch.arange(6 * 3, dtype=torch.float32).reshape(1, 6, 3)  # CLS, 2 prompt outputs, 3 patches
    out = prompts.replace(tokens, block_index=2)
    expected = tokens.clone()
    expected[0, 1:3] = -3.0  # deep set of block 2 is deep_prompt_embeddings[1], filled with -(1 + 2)
    assert torch.equal(out, expected)


def test_prompt_init_bound_matches_official_formula():
    prompts = VisualPrompts(num_tokens=100, embed_dim=768, depth=12, deep=True, patch_area=16 * 16)
    bound = math.sqrt(6.0 / (3 * 16 * 16 + 768))
    assert bound == 0.0625
    for tensor in (prompts.prompt_embeddings, prompts.deep_prompt_embeddings):
        assert tensor.abs().max() <= bound
        assert tensor.abs().max() > 0.9 * bound  # uniform over the full range, not a narrower init
    assert prompts.deep_prompt_embeddings.shape == (11, 100, 768)


def _reference_logits(model: ViTClassifier, images: torch.Tensor, deep: bool) -> torch.Tensor:
    """Independent re-statement of the official forward from the timm modules."""
    vit = model.backbone
    x = vit.patch_embed(images)
    x = x.flatten(1, 2) if x.ndim == 4 else x  # test_vit's dynamic-size patch embed returns NHWC
    cls = vit.cls_token.expand(x.shape[0], -1, -1)
    x = torch.cat([cls, x], dim=1) + vit.pos_embed
    p = model.prompts.num_tokens
    shallow = model.prompts.prompt_embeddings.expand(x.shape[0], -1, -1)
    x = torch.cat([x[:, :1], shallow, x[:, 1:]], dim=1)
    for i, block in enumerate(vit.blocks):
        if deep and i > 0:
            deep_p = model.prompts.deep_prompt_embeddings[i - 1].expand(x.shape[0], -1, -1)
            x = torch.cat([x[:, :1], deep_p, x[:, 1 + p :]], dim=1)
        x = block(x)
    return model.head(vit.norm(x)[:, 0])


def test_forward_matches_reference_for_shallow_and_deep():
    torch.manual_seed(0)
    images = torch.randn(2, 3, 32, 32)
    for tuning in ("vpt_shallow", "vpt_deep"):
        model = ViTClassifier(build_vit(BackboneConfig(arch="test_vit", img_size=32)), 5, tuning, num_prompts=3).eval()
        with torch.no_grad():
            assert torch.allclose(model(images), _reference_logits(model, images, tuning == "vpt_deep"), atol=1e-5)


def test_deep_prompt_outputs_do_not_leak_into_the_next_block():
    torch.manual_seed(0)
    model = ViTClassifier(build_vit(BackboneConfig(arch="test_vit", img_size=32)), 5, "vpt_deep", num_prompts=2).eval()
    seen = {}
    for i, block in enumerate(model.backbone.blocks):
        block.register_forward_pre_hook(lambda mod, args, i=i: seen.__setitem__(i, args[0].clone()))
    with torch.no_grad():
        model(torch.randn(3, 3, 32, 32))
    for i in range(1, len(model.backbone.blocks)):
        # Positions 1..p entering block i are exactly that block's prompt set, for every image.
        assert torch.equal(seen[i][:, 1:3], model.prompts.deep_prompt_embeddings[i - 1].expand(3, -1, -1))
    assert seen[0].shape[1] == 1 + 2 + 4  # CLS + prompts + 2x2 patches of 16 px


def test_mean_pooling_includes_prompts_and_uses_fc_norm():
    torch.manual_seed(0)
    vit = build_vit(BackboneConfig(arch="test_vit", img_size=32, pooling="mean"))
    model = ViTClassifier(vit, 4, "vpt_shallow", num_prompts=2).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        x = vit.patch_embed(images)
        x = x.flatten(1, 2) if x.ndim == 4 else x
        x = torch.cat([vit.cls_token.expand(2, -1, -1), x], 1) + vit.pos_embed
        x = torch.cat([x[:, :1], model.prompts.prompt_embeddings.expand(2, -1, -1), x[:, 1:]], 1)
        for block in vit.blocks:
            x = block(x)
        expected = model.head(vit.fc_norm(x[:, 1:].mean(1)))  # MAE: mean over prompts + patches, no CLS
        assert torch.allclose(model(images), expected, atol=1e-5)


def test_head_uses_official_init():
    torch.manual_seed(0)
    model = ViTClassifier(build_vit(BackboneConfig(arch="test_vit", img_size=32)), 200, "linear")
    assert torch.allclose(model.head.bias, torch.full((200,), -4.59512), atol=1e-5)
    assert abs(HEAD_BIAS_PRIOR + math.log(99)) < 1e-12
    std = model.head.weight.std().item()
    assert abs(std - math.sqrt(2 / 200)) < 0.1 * math.sqrt(2 / 200)  # kaiming normal, fan_out = num_classes
