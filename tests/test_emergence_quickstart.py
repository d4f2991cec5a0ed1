"""The emergence quickstart chain (``lit-mm emergence``, committed configs) and the demo on its trained model.

Slow (a few minutes on 2 CPU cores): the chain runs once per session and both tests share its artefacts.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from lit_multimodal.multimodal.pandagpt.answers import match_answer
from tests.test_pandagpt_demo import CHROMIUM, _browser_or_skip, running_demo


@pytest.fixture(scope="session")
def emergence_run(tmp_path_factory):
    """One ``lit-mm emergence`` run with the committed configs (data in the session's isolated cache)."""
    from lit_multimodal.cli import main

    out = tmp_path_factory.mktemp("emergence")
    main(["emergence", "--out", str(out)])
    result = json.loads((out / "emergence.json").read_text())
    evaluation = json.loads((out / "evaluate" / "evaluate.json").read_text())
    data = Path(evaluation["answers"][0]["file"]).parents[1]
    return SimpleNamespace(out=out, result=result, evaluation=evaluation, data=data)


@pytest.mark.slow
def test_quickstart_chain_shows_emergent_audio_accuracy(emergence_run):
    rows = {row["modality"]: row for row in emergence_run.evaluation["table"]}
    assert set(rows) == {"image", "audio", "depth", "thermal"}
    assert rows["image"]["status"] == "seen in training"
    assert all(rows[m]["status"] == "emergent" for m in ("audio", "depth", "thermal"))
    audio = rows["audio"]
    assert audio["chance"] == pytest.approx(0.1)  # ten digit names
    assert audio["accuracy"] >= 3 * audio["chance"], rows
    # ImageBind's own emergent zero-shot for audio carries the transfer
    zeroshot = emergence_run.result["imagebind_zeroshot"]["audio"]
    assert zeroshot["accuracy"] >= 3 * zeroshot["chance"], zeroshot
    answers = [a for a in emergence_run.evaluation["answers"] if a["modality"] == "audio"]
    assert all("\ufffd" not in a["prediction"] for a in answers)


@pytest.mark.slow
@pytest.mark.browser
def test_demo_answers_an_audio_clip_with_the_right_digit_and_the_emergent_badge(emergence_run, tmp_path):
    _browser_or_skip()
    from playwright.sync_api import expect, sync_playwright

    # a held-out clip the trained model answers correctly in evaluation (greedy, so the demo gives the same answer)
    record = next(a for a in emergence_run.evaluation["answers"] if a["modality"] == "audio" and a["correct"])
    options = ["--config", emergence_run.result["pandagpt_config"], "--ckpt", emergence_run.result["pandagpt_ckpt"],
               "--max_new_tokens", "32"]  # fmt: skip
    wait = 60_000
    with running_demo(options, tmp_path) as server:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                 args=["--no-sandbox", "--disable-gpu", "--no-first-run"])  # fmt: skip
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(server.url)
                expect(page.locator("#greedy input")).to_be_checked(timeout=wait)  # the quickstart decodes greedily
                expect(page.locator("#untrained-note")).to_be_hidden()
                page.locator("#input-audio input[type=file]").set_input_files(record["file"])
                expect(page.locator(f"#input-audio a[href$='/{Path(record['file']).name}']")).to_be_visible(
                    timeout=wait
                )
                page.locator("#question textarea").fill(record["question"])
                page.locator("#send").click()
                expect(page.locator("#stats")).to_contain_text("tokens/s", timeout=wait)
                expect(page.locator("#emergent-badge")).to_be_visible()
                expect(page.locator("#modalities")).to_have_text("Soft token from: audio")
                answer = page.locator("#chatbot .message-row.bot-row").last.inner_text().strip()
            finally:
                browser.close()
    assert "\ufffd" not in answer
    assert match_answer(answer, record["answer"]), (answer, record["answer"])
