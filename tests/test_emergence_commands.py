"""End to end through ``lit-mm``'s main: ``bind-eval`` (zero-shot, retrieval) and ``evaluate`` on tiny models, and
the opt-in CapDec noise on PandaGPT's modality embedding."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from lit_multimodal.cli import main
from lit_multimodal.multimodal.imagebind.encode import ImageBindEncoder
from lit_multimodal.multimodal.pandagpt.answers import match_answer
from lit_multimodal.multimodal.pandagpt.embed_noise import add_embedding_noise
from tests.pandagpt_fixtures import HashEmbedder, tiny_pandagpt, write_chat_fit_config, write_wav

FAST = {"kernel_size": [2, 28, 28], "depth_kernel_size": 28, "thermal_kernel_size": 28, "audio_stride": 16}


def _images(root, n):
    rng = np.random.default_rng(0)
    names = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / f"img{i}.png")
        np.save(root / f"depth{i}.npy", (1.0 + rng.random((16, 16))).astype(np.float32))
        names.append(f"img{i}.png")
    return names


def test_bind_eval_zeroshot_and_retrieval_through_the_cli(tmp_path):
    labels = ["cat", "dog", "cat", "bird", "dog", "cat"]
    files = _images(tmp_path, len(labels))
    (tmp_path / "zs.jsonl").write_text("".join(json.dumps({"file": f, "label": lab}) + "\n"
                                               for f, lab in zip(files, labels, strict=True)))  # fmt: skip
    common = ["--preset", "tiny", "--config", json.dumps(FAST), "--out", str(tmp_path / "out")]
    main(["bind-eval", "--manifest", str(tmp_path / "zs.jsonl"), "--modality", "image", "--task", "zeroshot",
          "--templates", "a photo of a {}", *common])  # fmt: skip
    result = json.loads((tmp_path / "out" / "zeroshot_image.json").read_text())
    assert (tmp_path / "out" / "confusion_image.png").stat().st_size > 1000

    # independent reference: the same encoder, nearest class-name embedding by cosine
    encoder = ImageBindEncoder(preset="tiny", config=FAST, progress=False)
    classes = sorted(set(labels))
    emb = encoder.encode({"image": [str(tmp_path / f) for f in files],
                          "text": [f"a photo of a {c}" for c in classes]})  # fmt: skip
    predicted = (F.normalize(emb["image"], dim=-1) @ F.normalize(emb["text"], dim=-1).T).argmax(1).tolist()
    truth = [classes.index(lab) for lab in labels]
    assert result["accuracy"] == pytest.approx(np.mean([p == t for p, t in zip(predicted, truth, strict=True)]))
    assert result["chance"] == pytest.approx(1 / 3) and result["classes"] == classes
    confusion = np.array(result["confusion"])
    assert confusion.sum() == len(labels) and np.trace(confusion) / len(labels) == pytest.approx(result["accuracy"])
    for index, name in enumerate(classes):
        row = confusion[index]
        assert result["per_class"][name] == pytest.approx(row[index] / row.sum())

    pairs = [{"anchor": files[i], "other": f"depth{i}.npy", "split": "val"} for i in range(len(files))]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    main(["bind-eval", "--manifest", str(tmp_path / "pairs.jsonl"), "--modality", "depth", "--anchor", "image",
          "--task", "retrieval", "--ks", "[1, 3]", *common])  # fmt: skip
    retrieval = json.loads((tmp_path / "out" / "retrieval_depth.json").read_text())
    assert retrieval["pairs"] == len(files) and retrieval["chance_R@1"] == pytest.approx(1 / len(files))
    emb = encoder.encode(
        {"depth": [str(tmp_path / p["other"]) for p in pairs], "image": [str(tmp_path / f) for f in files]}
    )
    sims = F.normalize(emb["depth"], dim=-1) @ F.normalize(emb["image"], dim=-1).T
    rank = (sims > sims.diag()[:, None]).sum(1)  # items scored above the true partner
    forward = retrieval["depth_to_image"]
    assert forward["R@1"] == pytest.approx(float((rank < 1).float().mean()))
    assert forward["R@3"] == pytest.approx(float((rank < 3).float().mean()))
    assert forward["R@1"] <= forward["R@3"] and retrieval["image_to_depth"]["R@1"] <= retrieval["image_to_depth"]["R@3"]


def test_evaluate_through_the_cli_writes_consistent_json_table_and_scalars(tmp_path):
    llm, _ = tiny_pandagpt(tmp_path, seed=3)
    config = write_chat_fit_config(tmp_path, llm, "preset: tiny")
    _images(tmp_path, 3)
    write_wav(tmp_path / "a.wav")
    write_wav(tmp_path / "b.wav", frequency=880.0)
    records = [{"modality": "image", "file": f"img{i}.png", "question": "What is it?", "answer": a}
               for i, a in enumerate(["seven", "two", "nine"])]  # fmt: skip
    records += [{"modality": "audio", "file": f, "question": "Which?", "choices": ["a cat", "a dog"], "answer": "B"}
                for f in ("a.wav", "b.wav")]  # fmt: skip
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "eval"
    main(["evaluate", "--config", str(config), "--manifest", str(tmp_path / "qa.jsonl"), "--out", str(out),
          "--max_new_tokens", "6"])  # fmt: skip
    result = json.loads((out / "evaluate.json").read_text())
    assert result["decoding"]["greedy"] is True and result["decoding"]["max_new_tokens"] == 6
    assert len(result["answers"]) == len(records)
    correct = defaultdict(list)
    for answer, record in zip(result["answers"], records, strict=True):
        expected = match_answer(answer["prediction"], record["answer"], record.get("choices"))
        assert answer["correct"] == expected and "\ufffd" not in answer["prediction"]
        correct[record["modality"]].append(expected)
    rows = {row["modality"]: row for row in result["table"]}
    assert rows["image"]["status"] == "seen in training" and rows["audio"]["status"] == "emergent"
    assert rows["image"]["chance"] == pytest.approx(1 / 3) and rows["audio"]["chance"] == pytest.approx(1 / 2)
    for modality, flags in correct.items():
        assert rows[modality]["accuracy"] == pytest.approx(np.mean(flags))

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    for modality, row in rows.items():
        assert events.Scalars(f"evaluate/accuracy/{modality}")[-1].value == pytest.approx(row["accuracy"])
        assert events.Scalars(f"evaluate/chance/{modality}")[-1].value == pytest.approx(row["chance"])


def test_embedding_noise_matches_a_hand_draw_and_only_applies_in_training(tmp_path):
    embeds = F.normalize(torch.randn(4, 16), dim=-1)
    noisy = add_embedding_noise(embeds, 0.1, torch.Generator().manual_seed(5))
    assert torch.allclose(noisy, embeds + 0.1 * torch.randn(4, 16, generator=torch.Generator().manual_seed(5)))
    assert add_embedding_noise(embeds, 0.0) is embeds
    with pytest.raises(ValueError, match="embed_noise_std"):
        add_embedding_noise(embeds, -1.0)

    _, model = tiny_pandagpt(tmp_path, seed=4)
    model.embedder = HashEmbedder()
    from transformers import AutoTokenizer

    tokenizer = model.conversation_tokenizer(AutoTokenizer.from_pretrained(model.llm_path, local_files_only=True))
    batch = tokenizer([[{"from": "human", "value": "What is it?"}, {"from": "gpt", "value": "A cat."}]])
    batch["image_paths"] = ["x.png"]

    def loss(train: bool) -> float:
        model.train(train)
        with torch.no_grad():
            loss_sum, count, _, _ = model._shared_step(batch)
        return float(loss_sum / count)

    model.hparams.embed_noise_std = 0.0
    assert loss(True) == pytest.approx(loss(True))  # off by default: training steps are deterministic
    model.hparams.embed_noise_std = 1.0
    assert loss(True) != pytest.approx(loss(True), abs=1e-6)  # a fresh draw per step
    assert loss(False) == pytest.approx(loss(False))  # never in validation
    model.hparams.embed_noise_std = 0.0
    assert loss(False) == pytest.approx(loss(True))


def test_emergence_quickstart_config_decodes_greedily_with_noise_on(tmp_path):
    import yaml

    from lit_multimodal.multimodal.pandagpt.chat import PandaGPTChat

    init = yaml.safe_load(open("configs/quickstart/emergence_pandagpt.yaml"))["model"]["init_args"]
    assert init["decoding"] == "greedy" and init["embed_noise_std"] > 0
    _, model = tiny_pandagpt(tmp_path, seed=5)
    model.decoding = init["decoding"]
    assert PandaGPTChat(model, encoder=None).default_do_sample is False  # chat and demo default to greedy


def test_emergence_conclusion_reads_the_table_in_percent_beside_chance():
    from lit_multimodal.emergence import conclusion

    table = [
        {"modality": "image", "accuracy": 0.725, "chance": 0.1, "status": "seen in training"},
        {"modality": "audio", "accuracy": 0.59, "chance": 0.1, "status": "emergent"},
        {"modality": "depth", "accuracy": 0.18, "chance": 0.1, "status": "emergent"},
    ]
    result = {"pandagpt": table, "imagebind_zeroshot": {"audio": {"accuracy": 0.697, "chance": 0.1}},
              "seconds": {"total": 123.4}, "pandagpt_config": "run/pandagpt.yaml",
              "pandagpt_ckpt": "run/last.ckpt"}  # fmt: skip
    example = {"modality": "audio", "file": "data/audio/0030.wav", "question": "What digit is this?",
               "answer": "zero", "prediction": "This is the digit 0."}  # fmt: skip
    text = conclusion(result, example)
    assert "trained on image-text instructions only" in text
    assert "image 72 % (7.2x chance)" in text
    assert "audio 59 % (5.9x chance), depth 18 % (1.8x chance)" in text
    assert "Guessing gives 10 %" in text and "audio 70 %" in text and "123 s" in text
    assert '"This is the digit 0."' in text
    assert "--audio data/audio/0030.wav --prompt 'What digit is this?'" in text
    assert "--ckpt_path run/last.ckpt" in text
