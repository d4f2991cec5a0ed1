"""Tuning-method plugins: each method's block against a hand-written forward, init, trainable sets,
ViT-B/16 parameter counts, merging into plain timm weights and a Lightning fit/test round trip per method."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lit_multimodal.vision.backbones import BackboneConfig, build_vit
from lit_multimodal.vision.classifier import ViTClassifier
from lit_multimodal.vision.methods import build_method, list_methods, method_class
from lit_multimodal.vision.methods.merge import merged_state_dict
from lit_multimodal.vision.tuning import count_parameters

TINY = BackboneConfig(arch="test_vit", img_size=48)  # dim 64, 2 heads, MLP 192 (ratio 3), 3x3 patch grid
NEW_METHODS = ("lora", "dora", "houlsby", "pfeiffer", "adapter_plus", "adaptformer", "convpass", "ssf", "fact_tt",
               "fact_tk", "repadapter")  # fmt: skip
MERGEABLE = ("lora", "dora", "lora_bias", "ssf", "fact_tt", "fact_tk", "repadapter")


def _classifier(tuning, seed: int = 0, classes: int = 5, **kwargs) -> tuple[ViTClassifier, dict]:
    """A classifier on a seeded tiny ViT, and the backbone's plain weights before the method attached."""
    torch.manual_seed(seed)
    vit = build_vit(TINY)
    base = {k: v.clone() for k, v in vit.state_dict().items()}
    if isinstance(tuning, str) and tuning.startswith("vpt"):
        kwargs.setdefault("num_prompts", 2)
    return ViTClassifier(vit, classes, tuning, **kwargs), base


@torch.no_grad()
def _perturb_added(model: ViTClassifier, scale: float = 0.2) -> None:
    """Makes every added tensor non-zero, so zero-initialised factors take part in the comparison."""
    for name, param in model.named_parameters():
        if name in model.added_names:
            param.add_(scale * torch.randn_like(param))


# -- a hand-written pre-norm ViT block (the spec's §2 sites) ----------------------------------------------
def _ln(t, w, b):
    return F.layer_norm(t, t.shape[-1:], w, b, eps=1e-6)


def _attention(qkv, heads):
    batch, tokens, width = qkv.shape
    q, k, v = qkv.reshape(batch, tokens, 3, heads, width // 3 // heads).permute(2, 0, 3, 1, 4)
    weights = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1)
    return (weights @ v).transpose(1, 2).reshape(batch, tokens, width // 3)


def _ref_block(x, base, heads, linear=None, post=None):
    """``x + Attn(N1)`` then ``+ MLP(N2)``, with ``linear(site, t)`` and ``post(site, t, ctx)`` overrides."""
    plain = lambda site, t: F.linear(t, base[f"{site}.weight"], base[f"{site}.bias"])  # noqa: E731
    linear = linear or plain
    post = post or (lambda site, t, ctx: t)
    n1 = post("norm1", _ln(x, base["norm1.weight"], base["norm1.bias"]), {})
    qkv = post("attn.qkv", linear("attn.qkv", n1), {})
    a = post("attn.proj", linear("attn.proj", _attention(qkv, heads)), {})
    x = x + post("attn", a, {"n1": n1})
    n2 = post("norm2", _ln(x, base["norm2.weight"], base["norm2.bias"]), {})
    h = F.gelu(post("mlp.fc1", linear("mlp.fc1", n2), {}))
    m = post("mlp.fc2", linear("mlp.fc2", h), {})
    x = x + post("mlp", m, {"r1": x, "n2": n2})
    return post("block", x, {})


def _quick_gelu(z):
    return z * torch.sigmoid(1.702 * z)


def _reference(name, model, base, x, index):
    """The method's formula for block ``index`` (spec petl_methods.md §4), from the model's raw tensors."""
    p = {k: v.detach() for k, v in model.named_parameters()}
    blk = f"backbone.blocks.{index}."
    base = {k.removeprefix(f"blocks.{index}."): v for k, v in base.items() if k.startswith(f"blocks.{index}.")}
    heads = model.backbone.blocks[index].attn.num_heads
    method = model.method
    plain = lambda site, t: F.linear(t, base[f"{site}.weight"], base[f"{site}.bias"])  # noqa: E731

    def bottleneck(prefix, t, act, scale):
        hidden = act(F.linear(t, p[f"{prefix}.down.weight"], p[f"{prefix}.down.bias"]))
        return scale * F.linear(hidden, p[f"{prefix}.up.weight"], p[f"{prefix}.up.bias"])

    if name in ("lora", "dora"):
        scale = 1.0  # alpha defaults to r

        def linear(site, t):
            if site not in method.targets:
                return plain(site, t)
            a, b = p[f"{blk}{site}.lora_A.default.weight"], p[f"{blk}{site}.lora_B.default.weight"]
            if name == "lora":
                return plain(site, t) + scale * t @ a.T @ b.T
            v = base[f"{site}.weight"] + scale * b @ a
            m = p[f"{blk}{site}.lora_magnitude_vector.default.weight"]
            return F.linear(t, (m / v.norm(dim=1))[:, None] * v, base[f"{site}.bias"])

        return _ref_block(x, base, heads, linear=linear)
    if name in ("houlsby", "pfeiffer"):
        sites = {"attn": "adapter_attn", "mlp": "adapter_mlp"} if name == "houlsby" else {"mlp": "adapter_mlp"}

        def post(site, t, ctx):
            return t + bottleneck(blk + sites[site], t, F.relu, method.scale) if site in sites else t

        return _ref_block(x, base, heads, post=post)
    if name == "adapter_plus":

        def post(site, t, ctx):
            if site != "block":
                return t
            return t + p[f"{blk}adapter.scaling"] * bottleneck(f"{blk}adapter.bottleneck", t, F.gelu, 1.0)

        return _ref_block(x, base, heads, post=post)
    if name == "adaptformer":

        def post(site, t, ctx):
            return t + bottleneck(f"{blk}adapter_mlp", ctx["r1"], F.relu, method.scale) if site == "mlp" else t

        return _ref_block(x, base, heads, post=post)
    if name == "convpass":
        grid = model.backbone.patch_embed.grid_size

        def bypass(prefix, t):
            h = _quick_gelu(F.linear(t, p[f"{prefix}.down.weight"], p[f"{prefix}.down.bias"]))
            w, b = p[f"{prefix}.conv.weight"], p[f"{prefix}.conv.bias"]
            img = h[:, 1:].transpose(1, 2).reshape(h.shape[0], -1, *grid)
            patches = F.conv2d(img, w, b, padding=1).flatten(2).transpose(1, 2)
            cls = h[:, :1] @ w[:, :, 1, 1].T + b  # a 1x1 image sees the centre tap only
            h = _quick_gelu(torch.cat([cls, patches], 1))
            return method.scale * F.linear(h, p[f"{prefix}.up.weight"], p[f"{prefix}.up.bias"])

        def post(site, t, ctx):
            if site == "attn":
                return t + bypass(f"{blk}adapter_attn", ctx["n1"])
            if site == "mlp":
                return t + bypass(f"{blk}adapter_mlp", ctx["n2"])
            return t

        return _ref_block(x, base, heads, post=post)
    if name == "ssf":

        def post(site, t, ctx):
            key = f"{blk}{site}.ssf"
            return t * p[f"{key}.scale"] + p[f"{key}.shift"] if f"{key}.scale" in p else t

        return _ref_block(x, base, heads, post=post)
    if name in ("fact_tt", "fact_tk"):
        s, dim = method.scale, x.shape[-1]
        u, v = p["backbone.fact.u.weight"], p["backbone.fact.v.weight"]
        r = u.shape[0]
        k = base["mlp.fc1.weight"].shape[0] // dim
        if name == "fact_tt":
            core = f"backbone.fact.cores.{index}."
            attn = [p[f"{core}attn.{j}.weight"] for j in range(4)]
            s1, s2 = p[f"{core}mlp.0.weight"], p[f"{core}mlp.1.weight"]
            fc1 = [v @ s1[j * r : (j + 1) * r] @ u for j in range(k)]
            fc2 = [v @ s2[:, j * r : (j + 1) * r] @ u for j in range(k)]
        else:
            c, pp = p["backbone.fact.core"], p["backbone.fact.p"]
            width = 4 + 2 * k
            t = torch.einsum("abc,cj->abj", c, pp[:, width * index : width * index + 4])
            attn = [t[:, :, j].T for j in range(4)]  # Delta W_q = s V M_q^T U
            tm = torch.einsum("abc,cj->abj", c, pp[:, width * index + 4 : width * (index + 1)])
            f1, f2 = tm[:, :, :k].reshape(r, k * r), tm[:, :, k:].reshape(r, k * r)
            fc1 = [v @ f1[:, j * r : (j + 1) * r].T @ u for j in range(k)]
            fc2 = [v @ f2[:, j * r : (j + 1) * r] @ u for j in range(k)]
        delta = {
            "attn.qkv": torch.cat([v @ m @ u for m in attn[:3]]),
            "attn.proj": v @ attn[3] @ u,
            "mlp.fc1": torch.cat(fc1, 0),
            "mlp.fc2": torch.cat(fc2, 1),
        }
        return _ref_block(x, base, heads, linear=lambda site, t: plain(site, t) + s * t @ delta[site].T)
    if name == "repadapter":

        def linear(site, t):
            if site not in ("attn.qkv", "mlp.fc1"):
                return plain(site, t)
            key = f"{blk}{site}.repadapter."
            a, a_bias = p[key + "conv_A.weight"][:, :, 0], p[key + "conv_A.bias"]
            g = p[key + "conv_B.weight"][:, :, 0]
            groups = method.groups
            rows, cols = g.shape[0] // groups, g.shape[1]
            dense = torch.block_diag(*[g[i * rows : (i + 1) * rows] for i in range(groups)])
            assert dense.shape == (g.shape[0], cols * groups)
            adapted = t + method.scale * (F.linear(F.linear(t, a, a_bias), dense) + p[key + "conv_B.bias"])
            return plain(site, adapted)

        return _ref_block(x, base, heads, linear=linear)
    raise AssertionError(name)


# -- the tests ---------------------------------------------------------------------------------------------
def test_registry_has_every_method_with_label_and_recipe():
    names = list_methods()
    assert len(names) >= 18 and len(set(names)) == len(names)
    assert {"vpt_shallow", "vpt_deep", "linear", "full", "partial", "bias", "layernorm", *NEW_METHODS} <= set(names)
    for name in names:
        cls = method_class(name)
        assert cls.name == name and cls.label and cls.recipe.optimizer in ("sgd", "adamw")
        method = build_method(name)
        assert build_method(method.spec()).options() == method.options()  # the checkpoint hparams round trip
    with pytest.raises(ValueError, match="tuning must be one of .*lora"):
        build_method("loar")


@pytest.mark.parametrize("name", NEW_METHODS)
def test_block_matches_hand_written_formula(name):
    model, base = _classifier(name)
    _perturb_added(model)
    model.eval()
    x = torch.randn(2, 10, 64)  # CLS + 3x3 patches
    index = 1  # not block 0: per-block tensors must be picked by index
    with torch.no_grad():
        out = model.backbone.blocks[index](x)
        ref = _reference(name, model, base, x, index)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("name", list_methods())
def test_identity_at_init_exactly_where_the_paper_says(name):
    model, base = _classifier(name)
    frozen, _ = _classifier("linear")
    frozen.backbone.load_state_dict(base)
    frozen.head.load_state_dict(model.head.state_dict())
    images = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        same = torch.allclose(model.eval()(images), frozen.eval()(images), atol=1e-6)
    assert same == model.method.identity_at_init


@pytest.mark.parametrize("name", NEW_METHODS)
def test_adapters_train_added_tensors_and_head_only_and_all_get_gradients(name):
    model, _ = _classifier(name)
    _perturb_added(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(model.added_names) | {"head.weight", "head.bias"}
    assert model.added_names and not any(".base_layer." in n for n in model.added_names)
    model.train()
    model(torch.randn(2, 3, 48, 48)).logsumexp(-1).sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert no_grad == []
    assert all(p.grad is None for n, p in model.named_parameters() if not p.requires_grad)


def test_subset_methods_train_their_name_rules():
    names = {n for n, _ in _classifier("full")[0].named_parameters()}
    head = {"head.weight", "head.bias"}
    ln = {n for n in names if ".norm1." in n or ".norm2." in n or n.startswith("backbone.norm.")}
    assert {n for n, p in _classifier("layernorm")[0].named_parameters() if p.requires_grad} == head | ln
    combo, _ = _classifier("vpt_deep_bias")
    biases = {n for n in names if n.startswith("backbone.") and n.endswith(".bias")}
    prompts = {"prompts.prompt_embeddings", "prompts.deep_prompt_embeddings"}
    assert {n for n, p in combo.named_parameters() if p.requires_grad} == head | biases | prompts


# ViT-B/16 trainable parameters without the head (spec petl_methods.md §3, obtained from the official modules).
VIT_B16_COUNTS = {
    "lora": 294_912, "dora": 1_262_592, "houlsby": 313_536, "pfeiffer": 156_768, "adapter_plus": 165_984,
    "adaptformer": 1_189_632, "convpass": 327_552, "ssf": 205_824, "fact_tt": 21_504, "fact_tk": 86_528,
    "repadapter": 239_808, "layernorm": 38_400, "bias": 102_912, "vpt_deep": 12 * 50 * 768, "linear": 0,
    "lora_bias": 294_912 + 102_912, "vpt_deep_bias": 12 * 50 * 768 + 102_912,
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(VIT_B16_COUNTS))
def test_vit_b16_parameter_counts_match_the_official_modules(name):
    with torch.device("meta"):
        model = ViTClassifier(build_vit(BackboneConfig()), 6, name, num_prompts=50)
    counts = count_parameters(model)
    assert counts.backbone == 85_798_656  # what a method adds is never backbone
    assert counts.trainable - 769 * 6 == VIT_B16_COUNTS[name]
    assert counts.total == counts.backbone + counts.added + 769 * 6
    assert counts.tuned_percent_of_backbone == pytest.approx(100 * counts.trainable / 85_798_656)


def test_counts_under_zero3_partitioning_use_ds_numel():
    model, _ = _classifier("adapter_plus")
    expected = count_parameters(model)
    for param in model.parameters():  # what ZeRO-3 leaves on a rank: empty tensors with their size in ds_numel
        param.ds_numel = param.numel()
        param.data = torch.empty(0)
    assert count_parameters(model) == expected and expected.added > 0


@pytest.mark.parametrize("name", MERGEABLE)
def test_merge_gives_plain_timm_weights_with_the_same_logits(name):
    model, base = _classifier(name)
    _perturb_added(model)
    model.eval()
    images = torch.randn(3, 3, 48, 48)
    with torch.no_grad():
        tuned = model(images)
    state = merged_state_dict(model)
    plain = build_vit(TINY)
    plain.reset_classifier(5)
    plain.load_state_dict(state)  # strict: exactly timm's keys
    assert set(state) == set(base) | {"head.weight", "head.bias"}
    with torch.no_grad():
        torch.testing.assert_close(plain.eval()(images), tuned, rtol=0, atol=1e-5)
        torch.testing.assert_close(model(images), tuned, rtol=0, atol=0)  # the model itself is left as it was


def test_non_mergeable_method_refuses_to_merge():
    with pytest.raises(ValueError, match="does not merge"):
        merged_state_dict(_classifier("houlsby")[0])


def test_convpass_names_the_token_layout_it_needs():
    model, _ = _classifier("convpass")
    with pytest.raises(ValueError, match="convpass needs one CLS token and a 3x3 patch grid"):
        model.backbone.blocks[0](torch.randn(1, 12, 64))


def test_options_reach_the_method_and_legacy_names_map():
    model, _ = _classifier({"class_path": "LoRA", "init_args": {"r": 2, "targets": ["attn.qkv", "mlp.fc2"]}})
    assert model.tuning == "lora"
    assert model.backbone.blocks[0].attn.qkv.lora_A["default"].weight.shape == (2, 64)
    assert model.backbone.blocks[0].mlp.fc2.lora_B["default"].weight.shape == (64, 2)
    deep, _ = _classifier("vpt_deep", num_prompts=3, prompt_dropout=0.2)
    assert deep.prompts.num_tokens == 3 and deep.prompts.prompt_dropout.p == 0.2
    with pytest.raises(ValueError, match="lora.targets must be among"):
        build_method({"class_path": "lora", "init_args": {"targets": ["attn.q"]}})


# -- one Lightning fit + trainable-only checkpoint + test per method ---------------------------------------
@pytest.fixture(scope="module")
def tiny_split(tmp_path_factory):
    from .conftest import write_json_split_dataset

    return write_json_split_dataset(tmp_path_factory.mktemp("methods") / "tiny", per_class=2, size=48)


@pytest.mark.parametrize("name", list_methods())
def test_fit_checkpoint_and_test_round_trip(name, tiny_split, tmp_path):
    from lightning.pytorch import Trainer, seed_everything

    from lit_multimodal.data import JsonSplitDataModule
    from lit_multimodal.vision.module import ImageClassifier

    def data():
        return JsonSplitDataModule(
            root=str(tiny_split), image_root="images", num_classes=3, batch_size=6, num_workers=0,
            img_size=48, train_transform="resize", eval_transform="resize",
        )  # fmt: skip

    def module():
        return ImageClassifier(
            num_classes=3, backbone=TINY, tuning=name, num_prompts=2, feature_cache=False,
            optim={"base_lr": 0.5, "warmup_epochs": 0, "scale_lr": False},
        )  # fmt: skip

    def trainer(**kwargs):
        return Trainer(
            accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
            default_root_dir=str(tmp_path), **kwargs,
        )  # fmt: skip

    seed_everything(0)
    model = module()
    initial = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    fit = trainer(max_epochs=1, limit_val_batches=1)
    fit.fit(model, datamodule=data())
    ckpt = tmp_path / "tuned.ckpt"
    fit.save_checkpoint(ckpt)
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    trained = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    assert set(saved) == set(trained)  # trainable tensors only, for every method
    method_tensors = [n for n in trained if not n.startswith("net.head.")] or list(trained)
    assert any(not torch.equal(initial[n], trained[n]) for n in method_tensors)  # the method's tensors trained

    seed_everything(1)  # a fresh model with other random method tensors: the checkpoint must restore them
    fresh = module()
    result = trainer().test(fresh, datamodule=data(), ckpt_path=str(ckpt), verbose=False)
    assert 0.0 <= result[0]["test/top1"] <= 1.0
    for n, p in fresh.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.detach(), trained[n], rtol=0, atol=0)


def test_method_configs_layer_over_task_configs():
    from lit_multimodal.sweeps.runner import ConfigRenderer, _method_name

    from .conftest import REPO

    renderer = ConfigRenderer()
    files = sorted((REPO / "configs" / "methods").glob("*.yaml"))
    assert {f.stem for f in files} >= set(NEW_METHODS)
    for path in files:
        config = renderer.parse(["--config", str(REPO / "configs/vtab/vpt_deep.yaml"), "--config", str(path),
                                 "--data.init_args.task=dtd"])  # fmt: skip
        tuning = config.model.init_args.tuning
        assert (tuning if isinstance(tuning, str) else _method_name(tuning)) == path.stem
        sweep = REPO / "experiments" / f"vtab_{path.stem}.yaml"
        assert sweep.is_file(), f"no sweep file for {path.stem}"
    cub, lora_yaml = str(REPO / "configs/vpt_deep_cub.yaml"), str(REPO / "configs/methods/lora.yaml")
    lora = renderer.parse(["--config", cub, "--config", lora_yaml, "--model.init_args.tuning.init_args.r=16"])
    assert lora.model.init_args.tuning.init_args.r == 16 and lora.model.init_args.optim.name == "adamw"


def test_merge_command_writes_a_timm_state_dict_with_the_checkpoint_logits(tiny_split, tmp_path):
    from lightning.pytorch import Trainer
    from safetensors.torch import load_file, save_file

    from lit_multimodal.data import JsonSplitDataModule
    from lit_multimodal.vision.methods.merge import merge
    from lit_multimodal.vision.module import ImageClassifier

    torch.manual_seed(0)
    weights = tmp_path / "backbone.safetensors"
    save_file(build_vit(TINY).state_dict(), str(weights))
    backbone = BackboneConfig(arch="test_vit", img_size=48, checkpoint=str(weights))
    model = ImageClassifier(
        num_classes=3, backbone=backbone, tuning={"class_path": "FacTTK", "init_args": {"rank": 4, "scale": 1.0}},
        optim={"name": "adamw", "base_lr": 0.05, "warmup_epochs": 0, "scale_lr": False},
    )  # fmt: skip
    data = JsonSplitDataModule(
        root=str(tiny_split), image_root="images", num_classes=3, batch_size=6, num_workers=0,
        img_size=48, train_transform="resize", eval_transform="resize",
    )  # fmt: skip
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                      max_epochs=1, limit_val_batches=0, default_root_dir=str(tmp_path))  # fmt: skip
    trainer.fit(model, datamodule=data)
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    summary = merge(str(tmp_path / "last.ckpt"), str(tmp_path / "merged.safetensors"))
    assert summary["tuning"] == "fact_tk"
    plain = build_vit(TINY)
    plain.reset_classifier(3)
    plain.load_state_dict(load_file(str(tmp_path / "merged.safetensors")))
    images = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        tuned = model.net.eval()(images)
        torch.testing.assert_close(plain.eval()(images), tuned, rtol=0, atol=1e-5)
        plain.load_state_dict(load_file(str(weights)), strict=False)  # the backbone without the trained FacT
        assert not torch.allclose(plain(images), tuned, atol=1e-4)


METHOD_SWEEPS = ("quickstart_methods", "fgvc_methods", "bci_methods")


def _sweep_file(name: str) -> dict:
    import yaml

    from .conftest import REPO

    return yaml.safe_load((REPO / "experiments" / f"{name}.yaml").read_text())


def _first_points(config: dict) -> dict:
    """The sweep with its first task and each grid (the sweep's and every variant's) cut to its first value."""
    cut = lambda grid: {k: v if v is None else v[:1] for k, v in grid.items()} if grid else grid  # noqa: E731
    variants = {name: {**layer, "grid": cut(layer.get("grid"))} for name, layer in config["variants"].items()}
    return {**config, "tasks": config["tasks"][:1], "grid": cut(config.get("grid")), "variants": variants}


@pytest.mark.parametrize("name", METHOD_SWEEPS)
def test_method_sweep_file_has_every_method_and_each_variant_validates(name, tmp_path, monkeypatch):
    """Every registered method is a variant whose configs parse (first task and grid point; slow test: all)."""
    from lit_multimodal.sweeps.runner import sweep

    from .conftest import REPO

    monkeypatch.chdir(REPO)  # base_config paths are relative to the repository, as for lit-mm sweep
    config = _sweep_file(name)
    assert list(config["variants"]) and set(config["variants"]) == set(list_methods())
    config = {**_first_points(config), "out_dir": str(tmp_path / "sweep")}
    summary = sweep(**config, dry_run=True)
    assert summary["search_runs"] == len(list_methods())  # one point per variant
    assert set(summary["variants"]) == set(list_methods())
    assert not (tmp_path / "sweep").exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", METHOD_SWEEPS)
def test_method_sweep_file_dry_run_validates_every_task_and_grid_value(name, tmp_path, monkeypatch, capsys):
    from lit_multimodal.sweeps.runner import sweep

    from .conftest import REPO

    monkeypatch.chdir(REPO)
    config = _sweep_file(name)
    summary = sweep(**{**config, "out_dir": str(tmp_path / "sweep")}, dry_run=True)
    printed = capsys.readouterr().out
    for variant in config["variants"]:
        assert f"[{variant}]" in printed  # the tuning each variant's configs resolve to is the variant's method
    assert summary["search_runs"] == sum(v["search_runs"] for v in summary["variants"].values())
