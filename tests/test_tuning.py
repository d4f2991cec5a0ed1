"""Which tensors train per method, tuned-percent arithmetic, no-autograd stages."""

from __future__ import annotations

import pytest
import torch

from lit_multimodal.vision.backbones import BackboneConfig, build_vit
from lit_multimodal.vision.classifier import ViTClassifier
from lit_multimodal.vision.tuning import count_parameters


def _model(tuning: str, **kwargs) -> ViTClassifier:
    return ViTClassifier(build_vit(BackboneConfig(arch="test_vit", img_size=32)), 6, tuning, **kwargs)


def _trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_trainable_sets_per_method():
    names = {n for n, _ in _model("full").named_parameters()}
    head = {"head.weight", "head.bias"}
    assert _trainable(_model("linear")) == head
    assert _trainable(_model("vpt_shallow", num_prompts=4)) == head | {"prompts.prompt_embeddings"}
    assert _trainable(_model("vpt_deep", num_prompts=4)) == head | {
        "prompts.prompt_embeddings",
        "prompts.deep_prompt_embeddings",
    }
    assert _trainable(_model("full")) == names
    bias = _trainable(_model("bias"))
    assert bias == head | {n for n in names if n.startswith("backbone.") and n.endswith(".bias")}
    assert "backbone.patch_embed.proj.bias" in bias and "backbone.blocks.0.attn.qkv.bias" in bias
    partial = _trainable(_model("partial", partial_blocks=2))
    assert partial == head | {
        n for n in names if n.startswith(("backbone.blocks.4.", "backbone.blocks.5.", "backbone.norm."))
    }


def test_partial_blocks_out_of_range_is_an_error():
    with pytest.raises(ValueError, match="partial_blocks must be in 1..6"):
        _model("partial", partial_blocks=7)


def test_unknown_tuning_is_an_error():
    with pytest.raises(ValueError, match="tuning must be one of"):
        _model("no_such_method")


def test_tuned_percent_of_vit_b16_deep_p100_six_classes():
    # The official demo's dmlab run: 926,214 trainable of 86,724,870 = 1.0680 %.
    with torch.device("meta"):
        model = ViTClassifier(build_vit(BackboneConfig()), 6, "vpt_deep", num_prompts=100)
    counts = count_parameters(model)
    assert counts.backbone == 85_798_656
    assert counts.trainable == 12 * 100 * 768 + 769 * 6 == 926_214
    assert counts.total == 86_724_870
    assert f"{counts.tuned_percent:.4f}" == "1.0680"
    assert counts.tuned_percent_of_backbone == pytest.approx(100 * 926_214 / 85_798_656)


def test_tuned_percent_of_shallow_and_sun397():
    with torch.device("meta"):
        deep = ViTClassifier(build_vit(BackboneConfig()), 397, "vpt_deep", num_prompts=5)
        shallow = ViTClassifier(build_vit(BackboneConfig()), 397, "vpt_shallow", num_prompts=5)
    assert count_parameters(deep).trainable == 351_373
    assert f"{count_parameters(deep).tuned_percent:.4f}" == "0.4079"
    assert count_parameters(shallow).trainable == 5 * 768 + 769 * 397


def test_linear_runs_backbone_without_autograd_and_vpt_with_it():
    images = torch.randn(2, 3, 32, 32)
    linear = _model("linear").train()
    features = linear.forward_features(images)
    assert not features.requires_grad  # the whole backbone ran under no_grad
    linear(images).sum().backward()
    assert linear.head.weight.grad is not None

    partial = _model("partial", partial_blocks=1).train()
    seen = {}
    partial.backbone.blocks[4].register_forward_hook(lambda m, a, out: seen.__setitem__(4, out.requires_grad))
    partial.backbone.blocks[5].register_forward_hook(lambda m, a, out: seen.__setitem__(5, out.requires_grad))
    partial(images).sum().backward()
    assert seen == {4: False, 5: True}

    deep = _model("vpt_deep", num_prompts=2).train()
    deep(images).sum().backward()
    assert deep.prompts.prompt_embeddings.grad is not None
    assert all(p.grad is None for n, p in deep.named_parameters() if n.startswith("backbone."))


def test_frozen_parts_stay_in_eval_mode_after_train():
    model = _model("vpt_deep", num_prompts=2, prompt_dropout=0.1)
    model.train()
    assert not any(m.training for m in model.backbone.modules())
    assert model.prompts.prompt_dropout.training and model.head.training
    full = _model("full").train()
    assert all(m.training for m in full.backbone.modules())
    partial = _model("partial", partial_blocks=1).train()
    assert partial.backbone.blocks[5].training and not partial.backbone.blocks[4].training
    model.eval()
    assert not model.prompts.prompt_dropout.training


def test_frozen_backbone_stays_in_eval_mode_across_lightning_epochs(tiny_dataset):
    from lightning.pytorch import Callback, Trainer

    from lit_multimodal.data import JsonSplitDataModule
    from lit_multimodal.vision.module import ImageClassifier

    class ModeProbe(Callback):
        def __init__(self):
            self.checked = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            net = pl_module.net
            self.checked.append(
                (
                    trainer.current_epoch,
                    any(m.training for m in net.backbone.modules()),
                    net.prompts.prompt_dropout.training,
                )
            )

    probe = ModeProbe()
    data = JsonSplitDataModule(
        root=str(tiny_dataset), image_root="images", num_classes=3, batch_size=4, num_workers=0,
        img_size=32, train_transform="resize", eval_transform="resize",
    )  # fmt: skip
    model = ImageClassifier(num_classes=3, backbone=BackboneConfig(arch="test_vit", img_size=32), num_prompts=2)
    trainer = Trainer(
        max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[probe],
    )  # fmt: skip
    trainer.fit(model, datamodule=data)
    assert {epoch for epoch, _, _ in probe.checked} == {0, 1, 2}  # validation ran in between
    modes = [(backbone, dropout) for _, backbone, dropout in probe.checked]
    assert all(not backbone and dropout for backbone, dropout in modes), probe.checked


def test_activation_checkpointing_gives_the_same_gradients():
    images = torch.randn(2, 3, 32, 32)
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = _model("vpt_deep", num_prompts=2, activation_checkpointing=checkpointing).train()
        model(images).sum().backward()
        grads.append((model.prompts.deep_prompt_embeddings.grad, model.head.weight.grad))
    for plain, recomputed in zip(*grads, strict=True):
        torch.testing.assert_close(recomputed, plain)


def test_attention_kernels_agree():
    images = torch.randn(2, 3, 32, 32)
    torch.manual_seed(0)
    auto = _model("vpt_deep", num_prompts=2).eval()
    for kernel in ("fused", "math"):
        other = _model("vpt_deep", num_prompts=2, attention=kernel).eval()
        other.load_state_dict(auto.state_dict())
        torch.testing.assert_close(other(images), auto(images), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="attention must be"):
        _model("linear", attention="flash")
