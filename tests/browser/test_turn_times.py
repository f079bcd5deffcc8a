"""A turn shows when the relay accepted it, not the sending browser's clock: the same time in the tab that sent it,
in another tab and after a reload. Before, the sending tab showed its own clock's time, and a reload the record's:
a turn sent in the last second of a minute read one minute later after a reload (a CI run caught it), and a
browser whose clock was off showed its error until a reload."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from sessions_app.models import ResponseRecord
from tests.browser.support import composer_ready, create_user, orm, same_transcript, send, sign_in
from tests.browser.test_chat import start_conversation, turn

pytestmark = pytest.mark.browser

SKEW = timedelta(hours=3)


def shown_times(page: Page) -> list[datetime]:
    """Each turn's time as its `<time datetime>` says (milliseconds, UTC)."""
    values = page.locator("#transcript time.sent-at").evaluate_all("(times) => times.map((time) => time.dateTime)")
    return [datetime.fromisoformat(value) for value in values]


def test_a_turn_shows_the_relays_time_in_every_tab_and_after_a_reload(page: Page) -> None:
    create_user("tess", "tess-password-1")
    sign_in(page, "tess", "tess-password-1")
    page.clock.set_system_time(datetime.now() - SKEW)  # this tab's clock runs three hours slow
    start_conversation(page, "Times")
    watching = page.context.new_page()  # a second tab, on the right time
    watching.goto(page.url)
    composer_ready(watching)

    send(page, "what time is it")
    expect(turn(page, 0)).to_have_class(re.compile(r"\bcompleted\b"), timeout=30_000)
    accepted = orm(lambda: ResponseRecord.objects.get(conversation__title="Times").accepted_at)
    assert page.evaluate("Date.now()") / 1000 < accepted.timestamp() - SKEW.total_seconds() + 60  # the skew is on
    shown = shown_times(page)
    assert len(shown) == 1 and abs(shown[0] - accepted) < timedelta(milliseconds=1)
    expect(turn(watching, 0)).to_have_class(re.compile(r"\bcompleted\b"), timeout=30_000)
    assert shown_times(watching) == shown

    before = page.locator("#transcript").inner_text()
    page.reload()
    composer_ready(page)
    same_transcript(page, before)
    assert shown_times(page) == shown
