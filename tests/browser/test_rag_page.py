"""The rag Bento's page (`/ui`) in Chromium, on a tiny index (tests/conftest.py: tiny_rag_models) under a real
`bentoml serve`: a question gets an answer and the passages it used, with source and score; search-only shows
passages and no answer; a filter keeps only the passages it names."""

from __future__ import annotations

import pytest

from tests.conftest import serve_tiny_rag

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def rag_server(tiny_rag_models, tmp_path_factory):
    with serve_tiny_rag(tiny_rag_models, tmp_path_factory) as base:
        yield base


ANSWER = "document.querySelector('#answer textarea').value"
ROWS = 'document.querySelectorAll(\'#passages [data-testid^="cell-"][data-testid$="-0"]\').length'


def cell(page, row: int, column: int) -> str:
    return page.locator(f'#passages [data-testid="cell-{row}-{column}"]').inner_text().strip()


def rows(page) -> int:
    return page.locator('#passages [data-testid$="-0"][data-testid^="cell-"]').count()


def run(page, question: str, until: str) -> None:
    """Fill the question, press Run, and wait until `until` (JavaScript) holds: the answer and the passages
    arrive in one update."""
    page.locator("#question textarea").fill(question)
    page.locator("#run").click()
    page.wait_for_function(f"() => {until}")


def test_ask_then_search_only(rag_server, page, shot):
    page.goto(f"{rag_server}/ui/", wait_until="load")  # never networkidle: Gradio keeps a stream open
    page.locator("#question textarea").wait_for()

    run(page, "Who won Super Bowl 50?", f"{ANSWER}.trim().length > 0 && {ROWS} === 3")
    shot("asked")
    assert rows(page) == 3  # the Bento's ask.k (default 3)
    assert cell(page, 0, 0) == "1" and cell(page, 0, 2) == "tiny.jsonl"
    scores = [float(cell(page, r, 1)) for r in range(3)]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    assert all(cell(page, r, 5) for r in range(3))  # the passages' text

    page.get_by_label("Search only").check()
    page.locator("#k").locator('[data-testid="number-input"]').fill("5")
    page.locator("#k").locator('[data-testid="number-input"]').press("Tab")
    run(page, "Where was the game played?", f"{ANSWER} === '' && {ROWS} === 5")
    shot("searched")
    assert rows(page) == 5 and page.locator("#answer textarea").input_value() == ""
    assert page.locator("text=Traceback").count() == 0
