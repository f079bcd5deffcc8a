"""Browser fixtures: Debian's Chromium driven by Playwright's sync API against a real Daphne.

Playwright's sync API keeps an asyncio loop running on the test thread while it is alive,
and Django refuses ORM calls there (SynchronousOnlyOperation). So the browser starts after
`daphne_server` (which writes the upstream profile), and tests write rows through
`support.orm`, which runs the call on a worker thread.

Never `playwright install`: the tests use /usr/bin/chromium (scripts/test.sh installs it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture
def browser(daphne_server) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser: Browser, daphne_server) -> Iterator[Callable[..., Page]]:
    """Opens a page in a fresh context (own cookies: one signed-in user each).

    Every page fails the test at teardown if a script threw or a dialog opened: either means
    the page ran code it should not have (a JS bug, or injected markup).
    """
    opened: list[tuple[Page, list[str]]] = []

    def open_page(**context_options) -> Page:
        context = browser.new_context(base_url=daphne_server.base_url, viewport={"width": 1100, "height": 900},
                                      **context_options)
        context.set_default_timeout(10_000)
        page = context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(f"uncaught script error: {error}"))

        def on_dialog(dialog) -> None:
            problems.append(f"dialog opened: {dialog.type} {dialog.message!r}")
            dialog.dismiss()

        page.on("dialog", on_dialog)
        opened.append((page, problems))
        return page

    yield open_page
    problems = [problem for page, found in opened for problem in found]
    for page, _ in opened:
        page.context.close()
    assert not problems, problems


@pytest.fixture
def page(new_page) -> Page:
    return new_page()
