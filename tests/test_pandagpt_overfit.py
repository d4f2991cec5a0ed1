"""PandaGPT overfits 8 image-instruction pairs in a real Lightning fit, training only LoRA and ``llama_proj``."""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from safetensors.torch import save_file

from lit_multimodal.data.instructions import InstructionDataModule
from lit_multimodal.multimodal.pandagpt.embedder import PrecomputedEmbedder
from lit_multimodal.multimodal.pandagpt.module import PandaGPT
from lit_multimodal.multimodal.pandagpt.tiny import write_tiny_llama
from tests.pandagpt_fixtures import EMBED_DIM, write_pandagpt_json

SEED = 0
PAIRS = 8
MAX_STEPS = 120
TARGET_DROP = 0.8
# A randomly initialised head (std 0.02) behind the final RMSNorm caps every logit near 1, so no adapter could
# fit any text; a sharper head (as a pre-trained LM has) makes memorisation possible.
HEAD_SCALE = 10.0


def sharpened_tiny_llama(folder: Path) -> Path:
    from transformers import AutoModelForCausalLM

    write_tiny_llama(folder)
    llm = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    with torch.no_grad():
        llm.lm_head.weight.mul_(HEAD_SCALE)
    llm.save_pretrained(folder, safe_serialization=True)
    return folder


def random_image_embeddings(images: Path, out: Path) -> Path:
    """One random unit vector per image file (different for every image), keyed by the path the data gives."""
    generator = torch.Generator().manual_seed(SEED)
    table = {}
    for path in sorted(images.glob("*.jpg")):
        vector = torch.randn(EMBED_DIM, generator=generator)
        table[str(path)] = vector / vector.norm()
    save_file(table, str(out))
    return out


def is_adapter_or_projection(name: str) -> bool:
    return name.startswith("llama_proj.") or ".lora_A." in name or ".lora_B." in name


class LossRecorder(pl.Callback):
    """Records the loss of every training step and stops the fit once it fell by ``TARGET_DROP``."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))
        if self.losses[-1] <= (1 - TARGET_DROP) * self.losses[0]:
            trainer.should_stop = True


@pytest.fixture
def one_thread():
    """One intra-op thread: a model this small gains nothing from more, and they stall on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_tiny_pandagpt_overfits_eight_pairs_and_trains_only_adapters(tmp_path, one_thread):
    pl.seed_everything(SEED, verbose=False)
    llm = sharpened_tiny_llama(tmp_path / "llm")
    json_path, images = write_pandagpt_json(tmp_path / "data", n=PAIRS)
    embeddings = random_image_embeddings(images, tmp_path / "embeddings.safetensors")

    model = PandaGPT(
        llm_path=str(llm),
        embedder=PrecomputedEmbedder(str(embeddings)),
        lora_r=8,
        lora_alpha=8,
        lora_dropout=0.0,
        lr=1e-2,
        weight_decay=0.0,
        warmup_rate=0.0,
        min_warmup_steps=2,
    )
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    vocab = model.llama_model.get_output_embeddings().weight.shape[0]

    # One batch holds all 8 pairs, so every recorded loss is the loss of the whole training set.
    data = InstructionDataModule(json_path=str(json_path), image_root=str(images), batch_size=PAIRS, num_workers=0)
    recorder = LossRecorder()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        precision="32-true",
        max_steps=MAX_STEPS,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=str(tmp_path),
        callbacks=[recorder],
    )
    trainer.fit(model, data)

    losses = recorder.losses
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[-1] <= (1 - TARGET_DROP) * losses[0], f"loss {losses[0]:.3f} -> {losses[-1]:.3f} in {len(losses)}"
    assert losses[-1] < math.log(vocab) / 2  # far below a uniform guess: the answers were memorised

    frozen = [name for name in before if not is_adapter_or_projection(name)]
    tuned = [name for name in before if is_adapter_or_projection(name)]
    assert any("embed_tokens" in name for name in frozen) and any("lm_head" in name for name in frozen)
    after = dict(model.named_parameters())
    changed = {name for name in before if not torch.equal(after[name].detach(), before[name])}
    assert changed.isdisjoint(frozen), sorted(changed & set(frozen))[:8]
    for name in frozen:
        assert torch.equal(after[name].detach(), before[name]), name
    assert changed == set(tuned)  # every LoRA matrix and the projection moved
