"""QLoRA: 4-bit NF4 base weights through bitsandbytes (GPU), and a one-line refusal without CUDA."""

from __future__ import annotations

import pytest
import torch

from lit_multimodal.multimodal.pandagpt.module import PandaGPT
from lit_multimodal.multimodal.pandagpt.tiny import write_tiny_causal_lm


def test_load_in_4bit_without_cuda_is_a_one_line_error(tmp_path, monkeypatch):
    folder = write_tiny_causal_lm(tmp_path / "m", "mistral")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="load_in_4bit needs a CUDA GPU") as caught:
        PandaGPT(llm_path=str(folder), load_in_4bit=True)
    assert "\n" not in str(caught.value)


@pytest.mark.gpu
def test_qlora_trains_and_saves_memory(tmp_path):
    pytest.importorskip("bitsandbytes", reason="QLoRA needs bitsandbytes (pip install lit_multimodal[qlora])")
    from transformers import AutoTokenizer

    from tests.pandagpt_fixtures import CONVERSATIONS, HashEmbedder

    folder = write_tiny_causal_lm(tmp_path / "m", "mistral", hidden_size=1024, num_hidden_layers=8,
                                  num_attention_heads=16, num_key_value_heads=4, intermediate_size=4096)  # fmt: skip

    def build(four_bit: bool) -> tuple[PandaGPT, int]:
        torch.cuda.empty_cache()
        start = torch.cuda.memory_allocated()
        model = PandaGPT(llm_path=str(folder), embedder=HashEmbedder(), dtype="bfloat16", load_in_4bit=four_bit,
                         lora_r=8).cuda()  # fmt: skip
        return model, torch.cuda.memory_allocated() - start

    full, full_bytes = build(False)
    del full
    model, four_bit_bytes = build(True)
    print(f"LLM + LoRA + projector on the GPU: bf16 {full_bytes / 2**20:.1f} MiB, NF4 {four_bit_bytes / 2**20:.1f} MiB")
    assert four_bit_bytes < 0.6 * full_bytes
    assert model.llama_proj.weight.dtype == torch.float32
    conv = model.conversation_tokenizer(AutoTokenizer.from_pretrained(str(folder), local_files_only=True))
    batch = {k: (v.cuda() if torch.is_tensor(v) else v) for k, v in conv(CONVERSATIONS[:2]).items()}
    batch["image_paths"] = ["a.jpg", "b.jpg"]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    losses = []
    for _ in range(3):
        loss_sum, count, _, _ = model._shared_step(batch)
        loss = loss_sum / count
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
