"""Matching a generated answer against a reference: exact, contains, choice letter, normalised number words.

Hand-written: the rules are the evaluation protocol itself (what counts as "the model answered seven"), small
and specific enough that a library would hide them.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from typing import Literal

__all__ = ["MatchMode", "extract_choice", "match_answer", "normalize_answer"]

MatchMode = Literal["auto", "exact", "contains", "choice", "number"]

_UNITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
          "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")  # fmt: skip
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_WORD_VALUE = {w: i for i, w in enumerate(_UNITS)} | {w: 10 * i for i, w in enumerate(_TENS) if w}
_ARTICLES = {"a", "an", "the"}


def _words_to_numbers(text: str) -> str:
    """Replaces number words below 100 (``seven``, ``twenty one``, ``twenty-one``) with digits."""
    tokens = text.replace("-", " ").split()
    out: list[str] = []
    i = 0
    while i < len(tokens):
        word = tokens[i]
        if word in _WORD_VALUE:
            value = _WORD_VALUE[word]
            if value >= 20 and i + 1 < len(tokens) and tokens[i + 1] in _WORD_VALUE and _WORD_VALUE[tokens[i + 1]] < 10:
                value += _WORD_VALUE[tokens[i + 1]]
                i += 1
            out.append(str(value))
        else:
            out.append(word)
        i += 1
    return " ".join(out)


def normalize_answer(text: str, numbers: bool = True) -> str:
    """Lower case, punctuation and articles removed, whitespace collapsed; number words as digits (``numbers``)."""
    text = text.lower().strip()
    text = text.translate(str.maketrans({c: " " for c in string.punctuation if c != "-"}))
    words = [w for w in text.split() if w not in _ARTICLES]
    text = " ".join(words)
    return _words_to_numbers(text) if numbers else text


def extract_choice(prediction: str, num_choices: int) -> int | None:
    """The choice index a prediction names by letter: ``"B"``, ``"(b)"``, ``"B."``, ``"answer: C"``; None if none."""
    letters = string.ascii_uppercase[:num_choices]
    # A letter alone or followed by ")", ".", ":", "]" or ",": "B", "(B)", "B." — not the article in "A cat".
    match = re.search(rf"(?:^|[\s(\[:])([{letters}])(?=$|[).\]:,])", prediction.strip())
    return letters.index(match.group(1)) if match else None


def _contains(prediction: str, reference: str) -> bool:
    return bool(reference) and re.search(rf"(?:^| ){re.escape(reference)}(?:$| )", prediction) is not None


def match_answer(
    prediction: str, reference: str | None = None, choices: Sequence[str] | None = None, mode: MatchMode = "auto"
) -> bool:
    """Whether ``prediction`` answers ``reference``.

    Modes:
        ``exact``: equal after normalisation (case, punctuation, articles, number words).
        ``contains``: the normalised reference occurs as whole words in the normalised prediction.
        ``choice``: with ``choices``, the prediction names the reference's letter, or contains that choice's text
            and no other choice's.
        ``number``: the first number (digits or words) in the prediction equals the reference's number.
        ``auto``: ``choice`` when choices are given, else ``exact`` or ``contains``.

    Args:
        prediction: the generated answer.
        reference: the correct answer (a choice's text, or its letter when ``choices`` are given).
        choices: options of a multiple-choice question.
        mode: matching rule.

    Returns:
        True when the answer counts as correct.
    """
    pred = normalize_answer(prediction)
    if choices:
        options = [normalize_answer(c) for c in choices]
        ref = (reference or "").strip()
        if len(ref) == 1 and ref.upper() in string.ascii_uppercase[: len(choices)]:
            target = string.ascii_uppercase.index(ref.upper())
        else:
            norm = normalize_answer(ref)
            if norm not in options:
                raise ValueError(f"reference {reference!r} is neither a choice letter nor one of {list(choices)}")
            target = options.index(norm)
        if mode in ("auto", "choice"):
            letter = extract_choice(prediction, len(choices))
            if letter is not None:
                return letter == target
            named = [i for i, option in enumerate(options) if _contains(pred, option)]
            return named == [target]
        reference = choices[target]
    if reference is None:
        raise ValueError("give a reference answer or choices")
    ref = normalize_answer(reference)
    if mode == "exact":
        return pred == ref
    if mode == "number":
        found = re.findall(r"\d+", pred)
        wanted = re.findall(r"\d+", ref)
        return bool(found) and bool(wanted) and found[0] == wanted[0]
    if mode in ("contains", "auto", "choice"):
        return pred == ref or _contains(pred, ref)
    raise ValueError(f"unknown match mode {mode!r}")
