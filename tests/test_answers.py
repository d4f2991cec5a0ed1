"""Answer matching of ``lit-mm evaluate``."""

from __future__ import annotations

import pytest

from lit_multimodal.multimodal.pandagpt.answers import extract_choice, match_answer, normalize_answer


def test_normalisation_turns_number_words_into_digits():
    assert normalize_answer("This is THE digit Seven!") == "this is digit 7"
    assert normalize_answer("twenty-one apples") == "21 apples"
    assert normalize_answer("Forty two") == "42"


@pytest.mark.parametrize(
    ("prediction", "reference", "mode", "expected"),
    [
        ("This is the digit 7.", "seven", "auto", True),
        ("This is the digit seven.", "7", "contains", True),
        ("This is the digit seventeen.", "seven", "contains", False),
        ("This is the digit 1.", "seven", "auto", False),
        ("Seven", "seven", "exact", True),
        ("It is seven.", "seven", "exact", False),
        ("I count 3 dogs and 2 cats", "three", "number", True),
        ("I count 2 dogs and 3 cats", "three", "number", False),
    ],
)
def test_match_modes(prediction, reference, mode, expected):
    assert match_answer(prediction, reference, mode=mode) is expected


def test_choice_letters_and_texts():
    choices = ["a dog", "a cat", "a bird"]
    assert extract_choice("(B) a cat", 3) == 1
    assert extract_choice("Answer: C", 3) == 2
    assert extract_choice("Definitely a cat", 3) is None
    assert extract_choice("A cat, I think", 3) is None  # the article, not choice A
    assert match_answer("B.", "cat", choices)
    assert match_answer("It is a cat.", "B", choices)
    assert not match_answer("It is a cat or a dog.", "B", choices)  # names two choices
    assert not match_answer("A", "B", choices)
    with pytest.raises(ValueError, match="neither a choice letter"):
        match_answer("A", "horse", choices)


def test_emergent_table_marks_unseen_modalities_and_chance(tmp_path):
    from lit_multimodal.multimodal.pandagpt.evaluate import emergent_table, read_qa_manifest, seen_modalities

    results = (
        [{"modality": "image", "answer": f"d{i % 4}", "choices": None, "correct": i < 6} for i in range(8)]
        + [{"modality": "audio", "answer": "x", "choices": ["x", "y", "z"], "correct": i < 1} for i in range(3)]
    )  # fmt: skip
    rows = {row["modality"]: row for row in emergent_table(results, seen_modalities("vision"))}
    assert rows["image"]["status"] == "seen in training" and rows["audio"]["status"] == "emergent"
    assert rows["image"]["accuracy"] == pytest.approx(6 / 8) and rows["image"]["chance"] == pytest.approx(1 / 4)
    assert rows["audio"]["accuracy"] == pytest.approx(1 / 3) and rows["audio"]["chance"] == pytest.approx(1 / 3)
    assert rows["image"]["x_chance"] == pytest.approx(3.0)

    (tmp_path / "a.wav").write_bytes(b"")
    manifest = tmp_path / "qa.jsonl"
    manifest.write_text('{"modality": "audio", "file": "a.wav", "question": "q?", "answer": "7"}\n'
                        '{"modality": "smell", "file": "a.wav", "question": "q?", "answer": "7"}\n')  # fmt: skip
    from lit_multimodal.data.base import DataError

    with pytest.raises(DataError, match=r"qa.jsonl:2: modality must be one of"):
        read_qa_manifest(manifest)
