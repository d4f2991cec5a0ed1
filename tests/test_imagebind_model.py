"""ImageBind model: checkpoint layout, attention equivalence with nn.MultiheadAttention, loading, pooling."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from lit_multimodal.multimodal.imagebind.checkpoint import (
    ImageBindCheckpointError,
    build_imagebind,
    load_imagebind_state,
)
from lit_multimodal.multimodal.imagebind.config import MODALITIES, ImageBindConfig
from lit_multimodal.multimodal.imagebind.layers import Attention, Block
from lit_multimodal.multimodal.imagebind.model import ImageBindModel
from lit_multimodal.multimodal.imagebind.preprocessors import build_causal_attention_mask

KEYS_TSV = Path(__file__).parent / "data" / "imagebind_huge_state_dict_keys.tsv"
EOT = 49407


def tiny_inputs(batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(1, 49000, (batch, 77), generator=g)
    for row in range(batch):
        text[row, 5 + 3 * row] = EOT
        text[row, 6 + 3 * row :] = 0
    return {
        "vision": torch.randn(batch, 3, 224, 224, generator=g),
        "text": text,
        "audio": torch.randn(batch, 1, 128, 204, generator=g),
        "depth": torch.randn(batch, 1, 224, 224, generator=g),
        "thermal": torch.randn(batch, 1, 224, 224, generator=g),
        "imu": torch.randn(batch, 6, 2000, generator=g),
    }


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    # The tiny models are so small that intra-op threads only add synchronisation cost on a loaded machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_model() -> ImageBindModel:
    torch.manual_seed(0)
    return build_imagebind(ImageBindConfig.tiny())


# 1. Layout of the released checkpoint


def read_tsv() -> list[tuple[str, tuple[int, ...], str]]:
    rows = []
    for line in KEYS_TSV.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key, shape, kind = line.split("\t")
        dims = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
        rows.append((key, dims, kind))
    return rows


@pytest.fixture(scope="module")
def huge_on_meta() -> ImageBindModel:
    with torch.device("meta"):
        return ImageBindModel(ImageBindConfig.huge()).eval()


def test_huge_state_dict_matches_released_checkpoint_layout(huge_on_meta: ImageBindModel):
    model = huge_on_meta
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    ours = [
        (key, tuple(t.shape), "param" if key in params else "buffer" if key in buffers else "?")
        for key, t in model.state_dict().items()
    ]
    reference = read_tsv()
    assert len(reference) == 1311
    assert {r[0] for r in ours} == {r[0] for r in reference}
    assert ours == reference  # same keys, order, shapes and parameter/buffer kinds
    total = sum(t.numel() for t in model.state_dict().values())
    reference_total = sum(torch.Size(shape).numel() for _, shape, _ in reference)
    assert total == reference_total
    assert total == pytest.approx(1.2008e9, rel=1e-3)


def test_huge_forward_shapes_on_meta_device(huge_on_meta: ImageBindModel):
    inputs = tiny_inputs(batch=2) | {"vision": torch.empty(2, 5, 3, 2, 224, 224)}
    out = huge_on_meta({k: v.to("meta") for k, v in inputs.items()})
    assert set(out) == set(MODALITIES)
    assert all(v.shape == (2, 1024) for v in out.values())


# 2. Attention and block against nn.MultiheadAttention


def reference_mha(ours: Attention, add_bias_kv: bool) -> nn.MultiheadAttention:
    mha = nn.MultiheadAttention(ours.dim, ours.num_heads, bias=True, add_bias_kv=add_bias_kv)
    missing, unexpected = mha.load_state_dict(ours.state_dict(), strict=True)
    assert not missing and not unexpected
    return mha.eval()


@pytest.mark.parametrize(
    ("add_bias_kv", "masked"), [(False, False), (True, False), (False, True), (True, True)], ids=str
)
def test_attention_matches_nn_multiheadattention(add_bias_kv: bool, masked: bool):
    torch.manual_seed(1)
    dim, heads, length, batch = 32, 4, 9, 3
    ours = Attention(dim, heads, add_bias_kv=add_bias_kv).eval()
    with torch.no_grad():  # non-trivial biases so that every parameter matters
        for p in ours.parameters():
            p.add_(0.1 * torch.randn_like(p))
    mha = reference_mha(ours, add_bias_kv)
    x = torch.randn(batch, length, dim)
    mask = build_causal_attention_mask(length) if masked else None
    with torch.no_grad():
        expected = mha(x.transpose(0, 1), x.transpose(0, 1), x.transpose(0, 1), need_weights=False, attn_mask=mask)[0]
        got = ours(x, mask)
    torch.testing.assert_close(got, expected.transpose(0, 1), atol=1e-5, rtol=1e-5)


def test_bias_kv_is_an_extra_attended_position():
    torch.manual_seed(2)
    ours = Attention(16, 2, add_bias_kv=True).eval()
    x = torch.randn(1, 5, 16)
    with torch.no_grad():
        before = ours(x)
        ours.bias_v.add_(1.0)
        after = ours(x)
    assert not torch.allclose(before, after)


def test_block_matches_official_sequence_first_block():
    torch.manual_seed(3)
    dim, heads = 24, 3
    ours = Block(dim, heads, add_bias_kv=True).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.05 * torch.randn_like(p))
    mha = reference_mha(ours.attn, add_bias_kv=True)
    norm_1 = nn.LayerNorm(dim, eps=1e-6)
    norm_2 = nn.LayerNorm(dim, eps=1e-6)
    fc1, fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
    for ref, mine in ((norm_1, ours.norm_1), (norm_2, ours.norm_2), (fc1, ours.mlp.fc1), (fc2, ours.mlp.fc2)):
        ref.load_state_dict(mine.state_dict())

    x = torch.randn(2, 11, dim)
    with torch.no_grad():
        seq = x.transpose(0, 1)  # official trunk: "b l d -> l b d"
        h = norm_1(seq)
        seq = seq + mha(h, h, h, need_weights=False)[0]
        seq = seq + fc2(nn.functional.gelu(fc1(norm_2(seq))))
        got = ours(x)
    torch.testing.assert_close(got, seq.transpose(0, 1), atol=1e-5, rtol=1e-5)


# 3. Strict loading


def test_strict_load_round_trip(tmp_path: Path, tiny_model: ImageBindModel):
    path = tmp_path / "imagebind_tiny.pth"
    torch.save(tiny_model.state_dict(), path)
    loaded = build_imagebind(ImageBindConfig.tiny(), checkpoint=path)
    assert all(not t.is_meta for t in loaded.state_dict().values())
    inputs = tiny_inputs()
    with torch.no_grad():
        expected, got = tiny_model(inputs), loaded(inputs)
    for key in MODALITIES:
        torch.testing.assert_close(got[key], expected[key], atol=1e-6, rtol=1e-6)


def test_safetensors_file_loads(tmp_path: Path, tiny_model: ImageBindModel):
    from safetensors.torch import save_file

    path = tmp_path / "imagebind_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_model.state_dict().items()}, str(path))
    loaded = build_imagebind(ImageBindConfig.tiny(), checkpoint=path)
    for key, value in tiny_model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_mismatched_checkpoint_names_every_problem(tmp_path: Path, tiny_model: ImageBindModel):
    state = dict(tiny_model.state_dict())
    del state["modality_heads.imu.3.weight"]
    state["modality_trunks.text.blocks.0.attn.bias_k"] = torch.zeros(1, 1, 32)
    state["modality_preprocessors.vision.cls_token"] = torch.zeros(1, 1, 7)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(ImageBindCheckpointError) as err:
        build_imagebind(ImageBindConfig.tiny(), checkpoint=path)
    message = str(err.value)
    assert "broken.pth" in message
    assert "missing keys (1): modality_heads.imu.3.weight" in message
    assert "unexpected keys (1): modality_trunks.text.blocks.0.attn.bias_k" in message
    assert "modality_preprocessors.vision.cls_token: file (1, 1, 7) vs model (1, 1, 48)" in message


def test_long_mismatch_lists_are_counted_and_cut(tmp_path: Path):
    # A checkpoint of another vision width: every vision tensor mismatches, the message lists 10 and counts all.
    torch.manual_seed(0)
    state = ImageBindModel(ImageBindConfig.tiny(vision_embed_dim=60)).state_dict()
    path = tmp_path / "wide.pth"
    torch.save(state, path)
    with pytest.raises(ImageBindCheckpointError, match=r"shape mismatches \(\d+\): .* and \d+ more"):
        build_imagebind(ImageBindConfig.tiny(), checkpoint=path)


def test_pandagpt_prefixed_state_dict_loads(tmp_path: Path, tiny_model: ImageBindModel, caplog):
    state = {f"visual_encoder.{k}": v for k, v in tiny_model.state_dict().items()}
    state["llama_proj.weight"] = torch.zeros(4, 1024)
    path = tmp_path / "pandagpt.pt"
    torch.save(state, path)
    with caplog.at_level(logging.INFO):
        plain = load_imagebind_state(path)
    assert set(plain) == set(tiny_model.state_dict())
    assert "visual_encoder." in caplog.text and "ignoring 1 other" in caplog.text
    loaded = build_imagebind(ImageBindConfig.tiny(), checkpoint=path)
    inputs = {"imu": tiny_inputs()["imu"]}
    with torch.no_grad():
        torch.testing.assert_close(loaded(inputs)["imu"], tiny_model(inputs)["imu"])


def test_non_state_dict_file_is_rejected(tmp_path: Path):
    path = tmp_path / "nested.pth"
    torch.save({"model": {"a": torch.zeros(1)}}, path)
    with pytest.raises(ImageBindCheckpointError, match="nested.pth"):
        load_imagebind_state(path)
    with pytest.raises(ImageBindCheckpointError, match="not found"):
        load_imagebind_state(tmp_path / "absent.pth")


# 4. Multi-clip averaging


def test_audio_clips_are_embedded_one_by_one_and_averaged(tiny_model: ImageBindModel):
    clips = torch.randn(2, 3, 1, 128, 204, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        got = tiny_model({"audio": clips})["audio"]
        per_clip = torch.stack([tiny_model({"audio": clips[:, s]})["audio"] for s in range(3)], dim=1)
    assert got.shape == (2, 1024)
    torch.testing.assert_close(got, per_clip.mean(dim=1), atol=1e-5, rtol=1e-5)
    assert torch.all(got.norm(dim=-1) < 20.0)  # a mean of distinct norm-20 vectors


def test_video_clips_are_embedded_one_by_one_and_averaged(tiny_model: ImageBindModel):
    clips = torch.randn(2, 2, 3, 2, 224, 224, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        got = tiny_model({"vision": clips})["vision"]
        # a single clip keeps its clip axis: official ImageBind reads any 5-D input as (B, S, ...)
        per_clip = torch.stack([tiny_model({"vision": clips[:, s : s + 1]})["vision"] for s in range(2)], dim=1)
    torch.testing.assert_close(got, per_clip.mean(dim=1), atol=1e-5, rtol=1e-5)


def test_image_is_a_two_frame_video_of_itself(tiny_model: ImageBindModel):
    image = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(6))
    video = image.unsqueeze(2).expand(-1, -1, 2, -1, -1).unsqueeze(1)  # (B, S=1, 3, T=2, H, W)
    with torch.no_grad():
        torch.testing.assert_close(tiny_model({"vision": image})["vision"], tiny_model({"vision": video})["vision"])
        shifted = video.clone()
        shifted[:, :, :, 1] += 1.0
        assert not torch.allclose(tiny_model({"vision": shifted})["vision"], tiny_model({"vision": image})["vision"])


def test_vision_position_embedding_is_interpolated_only_for_other_sizes(tiny_model: ImageBindModel):
    helper = tiny_model.modality_preprocessors["vision"].pos_embedding_helper
    assert helper.get_pos_embedding(256) is helper.pos_embed
    smaller = helper.get_pos_embedding(64)
    assert smaller.shape == (1, 65, 48)
    torch.testing.assert_close(smaller[:, 0], helper.pos_embed[:, 0])  # the class position is kept
    with torch.no_grad():
        assert tiny_model({"vision": torch.randn(1, 3, 112, 112)})["vision"].shape == (1, 1024)
    audio_helper = tiny_model.modality_preprocessors["audio"].pos_embedding_helper
    with pytest.raises(ValueError, match="interpolation"):
        audio_helper.get_pos_embedding(100)


# 5. Postprocessing scales, frozen model, dtype


def test_output_norms_follow_the_official_scales(tiny_model: ImageBindModel):
    with torch.no_grad():
        out = tiny_model(tiny_inputs())
    text_scale = tiny_model.modality_postprocessors["text"][1].log_logit_scale.exp().item()
    assert text_scale == pytest.approx(1 / 0.07, rel=1e-5)
    expected = {"vision": 1.0, "text": text_scale, "audio": 20.0, "depth": 5.0, "thermal": 10.0, "imu": 5.0}
    for key, scale in expected.items():
        assert out[key].shape == (2, 1024)
        torch.testing.assert_close(out[key].norm(dim=-1), torch.full((2,), scale), rtol=1e-5, atol=1e-5)


def test_logit_scale_is_clamped_at_100():
    model = build_imagebind(ImageBindConfig.tiny())
    with torch.no_grad():
        model.modality_postprocessors["text"][1].log_logit_scale.fill_(10.0)
        norm = model({"text": tiny_inputs()["text"]})["text"].norm(dim=-1)
    torch.testing.assert_close(norm, torch.full((2,), 100.0))


def test_pandagpt_flag_skips_only_the_audio_scale(tmp_path: Path, tiny_model: ImageBindModel):
    path = tmp_path / "tiny.pth"
    torch.save(tiny_model.state_dict(), path)
    panda = build_imagebind(ImageBindConfig.tiny(pandagpt_skip_audio_scale=True), checkpoint=path)
    inputs = tiny_inputs()
    with torch.no_grad():
        ours, official = panda(inputs), tiny_model(inputs)
    torch.testing.assert_close(ours["audio"] * 20.0, official["audio"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours["audio"].norm(dim=-1), torch.ones(2))
    for key in ("vision", "text", "depth", "thermal", "imu"):
        torch.testing.assert_close(ours[key], official[key])


def test_built_model_is_frozen_and_in_eval_mode(tiny_model: ImageBindModel):
    assert not tiny_model.training
    assert all(not m.training for m in tiny_model.modules())
    assert all(not p.requires_grad for p in tiny_model.parameters())
    out = tiny_model({"imu": tiny_inputs()["imu"]})["imu"]
    assert not out.requires_grad
    # eval mode: the IMU head dropout (p=0.5) is inactive, so outputs are deterministic
    torch.testing.assert_close(out, tiny_model({"imu": tiny_inputs()["imu"]})["imu"], atol=0, rtol=0)


@pytest.mark.parametrize(("name", "dtype"), [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_half_precision_build(tmp_path: Path, tiny_model: ImageBindModel, name: str, dtype: torch.dtype):
    path = tmp_path / "tiny.pth"
    torch.save(tiny_model.state_dict(), path)
    model = build_imagebind(ImageBindConfig.tiny(), checkpoint=path, dtype=name)
    assert all(t.dtype == dtype for t in model.state_dict().values())
    if dtype == torch.float16:
        return  # fp16 matmuls on CPU are not needed; the cast is what matters here
    inputs = tiny_inputs()
    with torch.no_grad():
        out, reference = model(inputs), tiny_model(inputs)
    for key in MODALITIES:
        assert out[key].dtype == torch.bfloat16
        cos = nn.functional.cosine_similarity(out[key].float(), reference[key], dim=-1)
        assert torch.all(cos > 0.98), (key, cos)


def test_unknown_dtype_is_rejected():
    with pytest.raises(ValueError, match="dtype"):
        build_imagebind(ImageBindConfig.tiny(), dtype="int8")


# 6. Text pooling


def test_text_pools_the_eot_position(tiny_model: ImageBindModel):
    text = tiny_inputs()["text"]
    positions = text.argmax(dim=-1)
    assert positions.tolist() == [5, 8]
    with torch.no_grad():
        out = tiny_model({"text": text})["text"]

        # independent recomputation: trunk tokens at the EOT position → LN → Linear → normalise × scale
        prepared = tiny_model.modality_preprocessors["text"](text)
        tokens = tiny_model.modality_trunks["text"](**prepared["trunk"])
        ln, proj = tiny_model.modality_heads["text"].proj
        pooled = proj(ln(tokens[torch.arange(2), positions]))
        scale = tiny_model.modality_postprocessors["text"][1].log_logit_scale.exp()
        torch.testing.assert_close(out, nn.functional.normalize(pooled, dim=-1) * scale)

        # causal mask: tokens after EOT cannot change the pooled embedding, tokens before it do
        after = text.clone()
        after[0, 6:] = 123
        after[1, 9:] = 456
        torch.testing.assert_close(tiny_model({"text": after})["text"], out, atol=1e-5, rtol=1e-5)
        before = text.clone()
        before[:, 1] = 7
        assert not torch.allclose(tiny_model({"text": before})["text"], out, atol=1e-4)


def test_config_rejects_widths_not_divisible_by_heads():
    with pytest.raises(ValueError, match="audio_embed_dim"):
        ImageBindConfig.tiny(audio_embed_dim=41)
    with pytest.raises(ValueError, match="unknown"):
        ImageBindConfig.from_dict({"vision_width": 3})
    assert ImageBindConfig.from_dict({"kernel_size": [2, 14, 14]}).kernel_size == (2, 14, 14)
