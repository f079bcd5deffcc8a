"""Helpers shared by the browser tests."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from django.db import connections
from playwright.sync_api import Page, expect

T = TypeVar("T")
RESULTS = Path(__file__).resolve().parents[2] / "test-results"


def orm(call: Callable[..., T], /, *args, **kwargs) -> T:
    """Runs an ORM call on a worker thread (Playwright's loop on this one makes Django refuse).

    The thread's connection is closed afterwards, so the test database can be flushed or dropped.
    """

    def run() -> T:
        try:
            return call(*args, **kwargs)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


def create_user(username: str, password: str, **extra):
    from django.contrib.auth import get_user_model

    return orm(get_user_model().objects.create_user, username=username, password=password, **extra)


def sign_in(page: Page, username: str, password: str) -> None:
    """Signs in through the login form and waits for the dashboard."""
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Your conversations")).to_be_visible()
    # The heading is parsed before the page's module scripts run: a test that moves the page's clock next
    # (dashboard.js registers its refresh timer when it runs) must not move it before they have.
    page.wait_for_load_state("load")


def composer_ready(page: Page) -> None:
    """Waits until the socket is open and the history arrived (Send is enabled only then)."""
    expect(page.locator("#connection-state")).to_have_attribute("data-state", "open")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()


def send(page: Page, text: str) -> None:
    """Types a message and presses Enter, as a user would, once the last reply ended (while one streams,
    Enter steers it instead)."""
    expect(page.locator("#send-button")).to_be_visible(timeout=30_000)
    box = page.get_by_label("Message")
    box.fill(text)
    box.press("Enter")


def same_transcript(page: Page, before: str) -> None:
    """The transcript's visible text equals `before` (a reload must not change it); the diff when not. Compared once
    the script has drawn it from the socket's history: until then the page shows the server-rendered turns (no
    `data-key`), with the same classes, so a busy machine would compare those."""
    import difflib

    expect(page.locator("#transcript > article.turn[data-key]").first).to_be_attached()
    expect(page.locator("#transcript > article.turn:not([data-key])")).to_have_count(0)
    after = page.locator("#transcript").inner_text()
    assert after == before, "\n".join(difflib.unified_diff(before.splitlines(), after.splitlines(), "live", "reloaded",
                                                          lineterm=""))
