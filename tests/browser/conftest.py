"""The browser tier: the UIs people use (Prefect, MLflow, the Bentos' pages) driven in headless Chromium.

Playwright cannot download its own browser on these machines, so it drives Debian's `chromium` (`make test`
installs it when missing and it runs as root). Without it the tier is skipped with the command to run, except in
CI (LLMPATH_REQUIRE_DATA set), where a missing browser is a failure. Each test saves screenshots under its own
temporary folder (`shot`) and asserts on what the page shows.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

# Generous: these machines are shared, and a UI's first render compiles its JavaScript.
TIMEOUT_MS = 60_000


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


@pytest.fixture(scope="package")
def browser():
    """One headless Chromium for this folder's tests. Not for the session: Playwright's sync API keeps an event
    loop running in the main thread while it is open, and the tiers after this one call asyncio.run (Prefect's
    client, the tests' artifact readers), which refuses to run inside a running loop."""
    executable = chromium_path()
    if executable is None:
        why = "the browser tests need Chromium: apt-get install chromium (make test does it as root)"
        if os.environ.get("LLMPATH_REQUIRE_DATA"):
            pytest.fail(why)
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, args=["--no-sandbox"], headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    """A fresh browser context (no cookies or local storage from another test) and a page in it."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def shot(page, tmp_path) -> Iterator[Callable[[str], Path]]:
    """`shot(name)` saves a full-page screenshot as tmp_path/NAME.png and returns its path. Every test also leaves
    `last.png` there (what the page showed at the end, also when an assertion failed)."""

    def take(name: str) -> Path:
        path = tmp_path / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 1000, f"{path}: an empty screenshot"
        return path

    yield take
    with contextlib.suppress(Exception):  # the page may be gone; the screenshots taken are what matter
        page.screenshot(path=str(tmp_path / "last.png"), full_page=True)
