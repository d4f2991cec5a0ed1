"""The official optimisation recipe: groups, decay exemptions, lr scaling and the per-epoch schedule."""

from __future__ import annotations

import math

import pytest
import torch

from lit_multimodal.vision.recipe import (
    OptimConfig,
    build_optimizer,
    build_scheduler,
    scaled_lr,
    warmup_cosine_factor,
)


def _named():
    return [
        ("prompts.prompt_embeddings", torch.nn.Parameter(torch.zeros(1, 2, 4))),
        ("backbone.norm.weight", torch.nn.Parameter(torch.ones(4))),
        ("head.weight", torch.nn.Parameter(torch.zeros(3, 4))),
        ("head.bias", torch.nn.Parameter(torch.zeros(3))),
    ]


def test_sgd_one_group_per_tensor_with_head_bias_undecayed():
    opt = build_optimizer(_named(), OptimConfig(weight_decay=0.01), lr=0.5, tuning="vpt_deep")
    assert isinstance(opt, torch.optim.SGD)
    decays = {g["name"]: g["weight_decay"] for g in opt.param_groups}
    assert decays == {
        "prompts.prompt_embeddings": 0.01,
        "backbone.norm.weight": 0.01,
        "head.weight": 0.01,
        "head.bias": 0.0,
    }
    assert all(g["momentum"] == 0.9 and g["lr"] == 0.5 and not g["nesterov"] for g in opt.param_groups)


def test_adamw_for_full_honours_weight_decay_and_skips_biases_and_norms():
    opt = build_optimizer(_named(), OptimConfig(weight_decay=0.05), lr=1e-3, tuning="full")
    assert isinstance(opt, torch.optim.AdamW)
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.05 and plain["weight_decay"] == 0.0
    assert len(decayed["params"]) == 2 and len(plain["params"]) == 2  # prompt + head.weight vs norm + bias
    assert opt.defaults["eps"] == 1e-6


def test_zero_weight_decay_keeps_adamw_for_full():
    # The official code silently switched to SGD when weight decay was 0.
    assert isinstance(build_optimizer(_named(), OptimConfig(weight_decay=0.0), 1e-3, "full"), torch.optim.AdamW)


def test_lr_scaling():
    assert scaled_lr(25.0, 128, True) == 12.5
    assert scaled_lr(1.0, 64, True) == 0.25
    assert scaled_lr(1.0, 64, False) == 1.0


def test_warmup_cosine_matches_official_values():
    assert warmup_cosine_factor(0, 10, 100) == 0.0
    assert warmup_cosine_factor(1, 10, 100) == pytest.approx(0.1)
    assert warmup_cosine_factor(10, 10, 100) == pytest.approx(1.0)
    assert warmup_cosine_factor(55, 10, 100) == pytest.approx(0.5)
    assert warmup_cosine_factor(99, 10, 100) == pytest.approx(0.5 * (1 + math.cos(math.pi * 89 / 90)))
    assert warmup_cosine_factor(99, 10, 100) == pytest.approx(3.05e-4, rel=0.01)


def test_scheduler_steps_per_epoch():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=2.0)
    sched = build_scheduler(opt, OptimConfig(warmup_epochs=2), total_epochs=6)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [2.0 * warmup_cosine_factor(e, 2, 6) for e in range(6)]
    assert lrs == pytest.approx(expected)
    assert lrs[0] == 0.0 and lrs[2] == pytest.approx(2.0)


def test_old_import_paths_of_the_recipes_still_resolve_to_the_moved_objects():
    import lit_multimodal.multimodal.pandagpt.schedule as schedule
    import lit_multimodal.training.optim as old_optim
    import lit_multimodal.training.warmup_decay as old_schedule
    import lit_multimodal.vision.recipe as recipe

    with pytest.warns(DeprecationWarning, match="vision.recipe"):
        assert old_optim.OptimConfig is recipe.OptimConfig
    with pytest.warns(DeprecationWarning, match="pandagpt.schedule"):
        assert old_schedule.build_warmup_decay_scheduler is schedule.build_warmup_decay_scheduler
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        old_optim.nothing  # noqa: B018
