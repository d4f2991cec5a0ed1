"""PandaGPT module: schedule, trainable set, loss equivalence, gradient reductions, fits and checkpoints."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint

from lit_multimodal.data.instructions import InstructionDataModule
from lit_multimodal.multimodal.pandagpt.conversation import ConversationTokenizer
from lit_multimodal.multimodal.pandagpt.embedder import PrecomputedEmbedder
from lit_multimodal.multimodal.pandagpt.module import PandaGPT, apply_lora
from lit_multimodal.multimodal.pandagpt.tiny import write_tiny_llama
from lit_multimodal.training.checkpointing import CheckpointFileError
from lit_multimodal.training.warmup_decay import (
    build_warmup_decay_scheduler,
    pandagpt_lr_factor,
    pandagpt_warmup_steps,
)
from tests.conftest import REPO
from tests.pandagpt_fixtures import CONVERSATIONS, HashEmbedder, write_pandagpt_json

HIDDEN, LAYERS = 64, 2


# -- schedule --------------------------------------------------------------------------------------
def test_schedule_matches_the_spec_formula():
    ln = math.log
    # W = 10, T = 100: ln(s+1)/ln(W) during warmup, (T - s)/(T - W) after.
    assert pandagpt_lr_factor(0, 10, 100) == 0.0
    assert pandagpt_lr_factor(1, 10, 100) == pytest.approx(ln(2) / ln(10))  # 0.30103
    assert pandagpt_lr_factor(4, 10, 100) == pytest.approx(0.69897, abs=1e-5)
    assert pandagpt_lr_factor(9, 10, 100) == pytest.approx(1.0)
    assert pandagpt_lr_factor(10, 10, 100) == pytest.approx(1.0)
    assert pandagpt_lr_factor(55, 10, 100) == pytest.approx(0.5)
    assert pandagpt_lr_factor(100, 10, 100) == 0.0
    assert pandagpt_lr_factor(120, 10, 100) == 0.0
    # The official 160k-sample run: T = 2 * 160000 // 64 = 5000, W = 500.
    assert pandagpt_warmup_steps(5000) == 500
    assert pandagpt_warmup_steps(50) == 10
    assert pandagpt_lr_factor(250, 500, 5000) == pytest.approx(ln(251) / ln(500))


def test_scheduler_reproduces_deepspeed_warmup_decay_update_by_update():
    deepspeed = pytest.importorskip("deepspeed.runtime.lr_schedules")
    warmup, total = 10, 40

    def lrs_used(make):
        param = torch.nn.Parameter(torch.zeros(1))
        optimizer = torch.optim.SGD([param], lr=5e-4)
        scheduler = make(optimizer)
        used = []
        for _ in range(total + 3):
            used.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return used

    ours = lrs_used(lambda opt: build_warmup_decay_scheduler(opt, warmup, total))
    reference = lrs_used(
        lambda opt: deepspeed.WarmupDecayLR(
            opt, total_num_steps=total, warmup_min_lr=0.0, warmup_max_lr=5e-4, warmup_num_steps=warmup
        )
    )
    assert ours == pytest.approx(reference, abs=1e-12)


# -- parameter counts ------------------------------------------------------------------------------
def test_trainable_count_of_a_7b_llama_matches_the_spec():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32
    )
    with torch.device("meta"):
        model = apply_lora(LlamaForCausalLM(config))
        proj = torch.nn.Linear(1024, 4096)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad) + sum(
        p.numel() for p in proj.parameters()
    )
    lora = 32 * 4 * (32 * 4096 + 4096 * 32)
    assert lora == 33_554_432
    assert trainable == lora + 4096 * 1024 + 4096 == 37_752_832


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("tiny_llama"), hidden_size=HIDDEN, num_hidden_layers=LAYERS)


def make_model(llm_dir: Path, **kwargs) -> PandaGPT:
    kwargs = {"embedder": HashEmbedder(), "lr": 1e-2, **kwargs}
    return PandaGPT(llm_path=str(llm_dir), **kwargs)


def test_only_lora_and_projection_train(llm_dir):
    model = make_model(llm_dir)
    assert all(module.training for module in model.modules())  # LoRA dropout active when training starts
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    lora = {n for n in trainable if ".lora_" in n}
    assert trainable - lora == {"llama_proj.weight", "llama_proj.bias"}
    assert len(lora) == LAYERS * 4 * 2
    assert all(".self_attn." in n and n.split(".")[-4] in {"q_proj", "k_proj", "v_proj", "o_proj"} for n in lora)
    counts = model.param_counts
    assert counts.trainable == LAYERS * 4 * (32 * HIDDEN * 2) + HIDDEN * 1024 + HIDDEN
    assert counts.total == counts.backbone + counts.trainable
    model.llama_model.base_model.model.lm_head.weight.requires_grad_(True)
    with pytest.raises(RuntimeError, match="only LoRA and llama_proj"):
        model.check_trainable()


def test_missing_embedder_is_a_clear_error(llm_dir):
    model = make_model(llm_dir, embedder=None)
    with pytest.raises(ValueError, match="model.embedder"):
        model.embed_inputs(["a.jpg"])


# -- loss equivalence ------------------------------------------------------------------------------
def test_loss_equals_the_official_concatenation_through_peft(llm_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(llm_dir), local_files_only=True)
    model = make_model(llm_dir).eval()
    torch.nn.init.normal_(model.llama_model.base_model.model.model.layers[0].self_attn.q_proj.lora_B.default.weight)
    conv = ConversationTokenizer(tokenizer, max_tgt_len=40)
    batch = conv([CONVERSATIONS[0], CONVERSATIONS[1]])
    paths = ["a.jpg", "b.jpg"]
    batch["image_paths"] = paths
    with torch.no_grad():
        loss_sum, count, logits, gen_acc = model._shared_step(batch)

        # Independent reference: spec §1.3 prompt_wrap, then the Hugging Face causal-LM loss with labels.
        embed = model.llama_model.get_input_embeddings()
        text_ids, text_targets, text_mask = conv.text_part([CONVERSATIONS[0], CONVERSATIONS[1]])
        prompt = torch.tensor(tokenizer("### Human: <Img>", add_special_tokens=False).input_ids)
        bos = embed(torch.full((2, 1), tokenizer.bos_token_id))
        image = model.llama_proj(HashEmbedder().embed("vision", paths)).unsqueeze(1)
        inputs = torch.cat([bos, embed(prompt).expand(2, -1, -1), image, embed(text_ids)], dim=1)
        prefix = 1 + len(prompt) + 1
        targets = torch.cat([torch.full((2, prefix), -100), text_targets], dim=1)
        mask = torch.cat([torch.ones(2, prefix, dtype=torch.long), text_mask], dim=1)
        out = model.llama_model(inputs_embeds=inputs, attention_mask=mask, labels=targets)

    assert (loss_sum / count).item() == pytest.approx(out.loss.item(), rel=1e-6)
    assert torch.allclose(logits, out.logits, atol=1e-5)
    chosen, labels = out.logits.argmax(-1)[:, 1:-1], targets[:, 2:]
    valid = labels != -100
    assert gen_acc == pytest.approx(((chosen == labels) & valid).sum().item() / valid.sum().item())


# -- gradient reductions ---------------------------------------------------------------------------
class RecordingPandaGPT(PandaGPT):
    """Keeps the micro-batches and the gradients the optimizer sees (after the module's own rescaling)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches, self.grads = [], None

    def training_step(self, batch, batch_idx):
        self.batches.append(batch)
        return super().training_step(batch, batch_idx)

    def on_before_optimizer_step(self, optimizer):
        super().on_before_optimizer_step(optimizer)
        if self.grads is None:
            self.grads = {n: p.grad.clone() for n, p in self.named_parameters() if p.requires_grad}


def tiny_data(tmp_path: Path, n: int = 8, **kwargs) -> InstructionDataModule:
    json_path, images = write_pandagpt_json(tmp_path / "data", n=n)
    kwargs = {"batch_size": 2, "num_workers": 0, "max_tgt_len": 64, **kwargs}
    return InstructionDataModule(json_path=str(json_path), image_root=str(images), **kwargs)


def quiet_trainer(tmp_path: Path, **kwargs) -> pl.Trainer:
    kwargs = {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "default_root_dir": str(tmp_path),
        **kwargs,
    }
    return pl.Trainer(**kwargs)


@pytest.mark.parametrize("reduction", ["micro_batch_mean", "global_token_mean"])
def test_accumulated_gradient_follows_the_loss_reduction(llm_dir, tmp_path, reduction):
    pl.seed_everything(0, verbose=False)
    model = RecordingPandaGPT(
        llm_path=str(llm_dir), embedder=HashEmbedder(), lora_dropout=0.0, loss_reduction=reduction
    )
    # Non-zero LoRA B, so that the A matrices get gradients as well.
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.02)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    quiet_trainer(tmp_path, max_steps=1, accumulate_grad_batches=2).fit(model, tiny_data(tmp_path, n=4))
    assert len(model.batches) == 2 and model.grads is not None

    reference = make_model(llm_dir, lora_dropout=0.0)
    reference.load_state_dict(start)
    sums, counts = [], []
    for batch in model.batches:
        loss_sum, count, _, _ = reference._shared_step(batch)
        sums.append(loss_sum)
        counts.append(count)
    assert counts[0] != counts[1]  # otherwise both reductions coincide
    if reduction == "micro_batch_mean":
        objective = sum(s / c for s, c in zip(sums, counts, strict=True)) / 2
    else:
        objective = sum(sums) / sum(counts)
    objective.backward()
    for name, grad in model.grads.items():
        expected = dict(reference.named_parameters())[name].grad
        assert torch.allclose(grad, expected, rtol=1e-4, atol=1e-7), name


# -- fit, checkpoints and resume -------------------------------------------------------------------
def test_fit_saves_trainable_only_and_resumes_mid_epoch(llm_dir, tmp_path):
    pl.seed_everything(0, verbose=False)
    model = make_model(llm_dir)
    frozen_before = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainable_before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, save_top_k=0)
    # 8 records, micro-batch 2: 4 batches per epoch; step 3 is mid-epoch.
    trainer = quiet_trainer(
        tmp_path, max_steps=3, gradient_clip_val=1.0, callbacks=[checkpoint], enable_checkpointing=True
    )
    data = tiny_data(tmp_path)  # tokenizer and max_tgt_len come from the model
    trainer.fit(model, data)
    assert trainer.global_step == 3
    assert data.collator.tokenizer.max_tgt_len == 64
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert not torch.equal(param, trainable_before[name]) or "lora_A" in name, name
        else:
            assert torch.equal(param, frozen_before[name]), name
    assert not torch.equal(model.llama_proj.weight, trainable_before["llama_proj.weight"])

    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["trainable_only"] is True
    # The shuffled loader's place in the epoch travels with the checkpoint: three batches trained.
    assert saved["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["batches"] == 3
    assert set(saved["state_dict"]) == model.trainable_state_keys()
    assert sum(v.numel() for v in saved["state_dict"].values()) == model.param_counts.trainable

    # A fresh model restores exactly the saved tensors (max_steps already reached: nothing trains).
    restored = make_model(llm_dir)
    quiet_trainer(tmp_path, max_steps=3).fit(restored, tiny_data(tmp_path), ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    state = restored.state_dict()
    for key, value in saved["state_dict"].items():
        assert torch.equal(state[key], value), key
    # ... and training continues from step 3 (mid-epoch) for two more optimizer steps.
    resumed = make_model(llm_dir)
    trainer = quiet_trainer(tmp_path, max_steps=5)
    trainer.fit(resumed, tiny_data(tmp_path), ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert trainer.global_step == 5
    assert trainer.lr_scheduler_configs[0].scheduler.last_epoch == 5  # the schedule resumed as well
    assert not torch.equal(resumed.llama_proj.weight, saved["state_dict"]["llama_proj.weight"])
    with pytest.raises(CheckpointFileError, match="missing trainable tensors"):
        make_model(llm_dir, lora_r=8).on_load_checkpoint({"state_dict": {"llama_proj.weight": torch.zeros(1)}})


def test_precomputed_embedder_reads_safetensors(tmp_path):
    from safetensors.torch import save_file

    table = {"/data/a.jpg": torch.arange(4.0), "/data/b.jpg": torch.ones(4)}
    save_file(table, str(tmp_path / "emb.safetensors"))
    embedder = PrecomputedEmbedder(str(tmp_path / "emb.safetensors"))
    assert torch.equal(
        embedder.embed("vision", ["/data/b.jpg", "/data/a.jpg"]), torch.stack([torch.ones(4), torch.arange(4.0)])
    )
    with pytest.raises(KeyError, match="c.jpg"):
        embedder.embed("vision", ["/data/c.jpg"])
    save_file({"sub/a.jpg": torch.arange(4.0)}, str(tmp_path / "relative.safetensors"))
    relative = PrecomputedEmbedder(str(tmp_path / "relative.safetensors"), relative_to="/moved/root")
    assert torch.equal(relative.embed("vision", ["/moved/root/sub/a.jpg"])[0], torch.arange(4.0))
    with pytest.raises(ValueError, match="not 'audio'"):
        relative.embed("audio", ["/moved/root/sub/a.jpg"])


# -- configs and DeepSpeed ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pandagpt_7b.yaml", "pandagpt_7b_ddp.yaml"])
def test_shipped_configs_parse(name, capsys):
    from lit_multimodal.cli import LitMMCLI

    with pytest.raises(SystemExit) as info:
        LitMMCLI(args=["fit", "--config", str(REPO / "configs" / name), "--print_config"])
    assert info.value.code in (None, 0)
    printed = yaml.safe_load(capsys.readouterr().out)
    model = printed["model"]["init_args"]
    assert printed["model"]["class_path"] == "lit_multimodal.multimodal.pandagpt.module.PandaGPT"
    assert (model["lora_r"], model["lora_alpha"], model["lora_dropout"], model["lr"]) == (32, 32, 0.1, 5e-4)
    assert printed["trainer"]["gradient_clip_val"] == 1.0 and printed["trainer"]["max_epochs"] == 2
    micro = printed["data"]["init_args"]["batch_size"]
    assert micro * printed["trainer"]["accumulate_grad_batches"] * printed["trainer"]["devices"] == 64


@pytest.mark.slow
def test_deepspeed_zero2_fit_through_the_cli(llm_dir, tmp_path):
    pytest.importorskip("deepspeed")
    json_path, images = write_pandagpt_json(tmp_path / "data", n=6)
    run_dir = tmp_path / "run"
    config = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "precision": "32-true",
            "strategy": {"class_path": "lit_multimodal.testing.CPUDeepSpeedStrategy", "init_args": {"stage": 2}},
            "max_steps": 2,
            "gradient_clip_val": 1.0,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "default_root_dir": str(run_dir),
        },
        "model": {
            "class_path": "lit_multimodal.multimodal.pandagpt.module.PandaGPT",
            "init_args": {
                "llm_path": str(llm_dir),
                "embedder": {"class_path": "tests.pandagpt_fixtures.HashEmbedder"},
                "max_tgt_len": 64,
            },
        },
        "data": {
            "class_path": "lit_multimodal.data.instructions.InstructionDataModule",
            "init_args": {"json_path": str(json_path), "image_root": str(images), "batch_size": 2, "num_workers": 0},
        },
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE")}
    env.update(DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "lit_multimodal", "fit", "--config", str(tmp_path / "config.yaml")]
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=400, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "success" and result["global_step"] == 2
    expected = LAYERS * 4 * (32 * HIDDEN * 2) + HIDDEN * 1024 + HIDDEN
    assert result["params"]["trainable"] == expected

    (states_file,) = sorted((run_dir / "checkpoints" / "last.ckpt").glob("checkpoint/*model_states.pt"))
    states = torch.load(states_file, map_location="cpu", weights_only=True)
    assert states["trainable_only"] is True
    module = states["module"]
    assert {k for k in module if not (".lora_" in k or k.startswith("llama_proj."))} == set()
    assert sum(v.numel() for v in module.values()) == expected
