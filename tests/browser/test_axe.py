"""Accessibility: axe-core (vendored, pinned: tests/browser/vendor/) finds no serious or critical WCAG 2
A/AA violation on the user pages, filled with realistic content, at a desktop and a phone width."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.pages import (
    NARROW,
    WIDE,
    describe,
    fill_conversation,
    new_conversation,
    resize,
    run_axe,
    seed_conversations,
    serious,
)
from tests.browser.support import RESULTS, composer_ready, create_user, sign_in

pytestmark = pytest.mark.browser


def scan(page: Page, label: str, found: dict[str, list[dict]], widths=(WIDE, NARROW)) -> None:
    for width in widths:
        resize(page, width)
        found[f"{label} at {width} px"] = run_axe(page)


def report(found: dict[str, list[dict]], name: str) -> str:
    """Every violation into test-results/axe-<name>.txt; the serious and critical ones as the failure."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"axe-{name}.txt").write_text(
        "\n".join(describe(label, violations) for label, violations in found.items()) + "\n", encoding="utf-8")
    return "\n".join(describe(label, serious(v)) for label, v in found.items() if serious(v))


def test_sign_in_conversation_tokens_and_password_pages_pass_axe(page: Page, new_page) -> None:
    create_user("alice", "alice-password-1")
    found: dict[str, list[dict]] = {}

    page.goto("/accounts/login/")
    scan(page, "login", found)
    page.get_by_role("button", name="Sign in").click()  # empty: errors beside the fields
    expect(page.locator(".errorlist").first).to_be_visible()
    scan(page, "login with errors", found, widths=(NARROW,))

    resize(page, WIDE)
    sign_in(page, "alice", "alice-password-1")
    page.goto(new_conversation("alice"))
    fill_conversation(page)
    scan(page, "conversation", found)
    resize(page, NARROW)
    page.get_by_text("Menu", exact=True).click()  # the narrow window's menu, open
    found["conversation with the menu open at 420 px"] = run_axe(page)

    resize(page, WIDE)
    page.goto("/tokens/")
    page.get_by_placeholder("Token name").fill("laptop")
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#new-token")).to_be_visible()
    scan(page, "tokens with a new token", found)
    page.get_by_role("link", name="Revoke").first.click()
    scan(page, "token revoke", found)

    page.goto("/accounts/password_change/")
    scan(page, "password change", found)

    problems = report(found, "pages")
    assert not problems, f"axe found serious or critical violations:\n{problems}"


def test_dashboard_and_conversation_settings_pass_axe(page: Page) -> None:
    create_user("alice", "alice-password-1")
    seed_conversations("alice")
    found: dict[str, list[dict]] = {}
    resize(page, WIDE)
    sign_in(page, "alice", "alice-password-1")
    scan(page, "dashboard", found)

    opener = page.locator("button[data-opens='new-conversation-dialog']")
    if opener.count() and opener.is_visible():  # the dialog, when scripts made the button
        opener.click()
        expect(page.locator("#new-conversation-dialog")).to_be_visible()
        scan(page, "dashboard with the new-conversation dialog", found)

    page.goto("/conversations/new/")
    scan(page, "new conversation page", found)

    path = new_conversation("alice", "Settings")
    page.goto(f"{path}settings/")
    scan(page, "conversation settings page", found)
    page.goto(path)
    composer_ready(page)
    scan(page, "conversation (settings closed)", found)
    opener = page.locator("button[data-opens='settings-drawer']")
    if opener.count() and opener.is_visible():  # the settings drawer, when scripts made the button
        opener.click()
        expect(page.locator("#settings-drawer")).to_be_visible()
        scan(page, "conversation with the settings drawer open", found)

    problems = report(found, "dashboard-settings")
    assert not problems, f"axe found serious or critical violations:\n{problems}"
