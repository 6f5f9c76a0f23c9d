"""The chat Bento's page (`/ui`) in Chromium, on the tiny random chat model under a real `bentoml serve`: two
turns, the second in Chinese after changing the sampling settings; both questions and both streamed answers
are shown, in order; a message the API refuses shows the API's reason. (The tiny model answers gibberish: the test asserts that answers arrive, not what they say.)"""

from __future__ import annotations

import pytest

from tests.conftest import serve_tiny_chat

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FIRST, SECOND = "Hello! What should I do at a red light?", "请用中文回答：红灯时应该怎么做？"


@pytest.fixture(scope="module")
def chat_server(tiny_chat_model, tmp_path_factory):
    with serve_tiny_chat(tiny_chat_model, tmp_path_factory) as base:
        yield base


def send(page, text: str, answers: int) -> None:
    """Type `text`, press Enter, and wait until the `answers`-th answer has finished streaming."""
    page.locator("#message textarea").fill(text)
    page.keyboard.press("Enter")
    page.locator('#chat [data-testid="bot"]').nth(answers - 1).wait_for()
    page.locator("#message textarea:not([disabled])").wait_for()  # the box is locked while it streams


def set_number(page, label: str, value: str) -> None:
    """A slider's number box: type the value and leave the box (Gradio applies it on change)."""
    box = page.locator("#settings .block").filter(has_text=label).locator('[data-testid="number-input"]')
    box.fill(value)
    box.press("Tab")


def test_two_turns_one_in_chinese_with_changed_settings(chat_server, page, shot):
    page.goto(f"{chat_server}/ui/", wait_until="load")  # never networkidle: Gradio keeps a stream open
    page.locator("#message textarea").wait_for()
    shot("opened")

    send(page, FIRST, answers=1)
    first = page.locator('#chat [data-testid="bot"]').nth(0).inner_text().strip()
    assert first, "the first answer is empty"
    shot("first-answer")

    set_number(page, "Temperature", "0")
    set_number(page, "Max new tokens", "4")
    temperature = page.locator("#settings .block").filter(has_text="Temperature")
    assert temperature.locator('[data-testid="number-input"]').input_value() == "0"
    send(page, SECOND, answers=2)
    shot("second-answer")

    users = page.locator('#chat [data-testid="user"]')
    bots = page.locator('#chat [data-testid="bot"]')
    assert [u.strip() for u in users.all_inner_texts()] == [FIRST, SECOND]
    assert bots.count() == 2  # one answer per question, the second after the second question
    second = bots.nth(1).inner_text().strip()
    # 4 tokens now against 128 before: the changed setting reached the service.
    assert second and len(second) < len(first), (first, second)

    # What the API refuses, the page shows with the API's reason (and nothing of a traceback).
    send(page, "x" * 8001, answers=3)
    shot("refused")
    refusal = bots.nth(2).inner_text()
    assert "refused" in refusal and "the limit is 8000" in refusal, refusal
    assert page.locator("text=Traceback").count() == 0
