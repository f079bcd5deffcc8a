"""The upstream's connection limit (the 60-minute limit, shortened) on the conversation page: the relay resends the
turn on a new socket, and the page shows one turn with a note, live exactly as after a reload. Before, the
page cut the turn off as "Interrupted" at the upstream's close and drew the resent reply as a second turn.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from tests.browser.support import composer_ready, create_user, same_transcript, send, sign_in
from tests.browser.test_chat import start_conversation, turn

pytestmark = pytest.mark.browser

LIMIT_SECONDS = 2


@pytest.fixture
def simulator_process():
    """The simulator with its connection limit cut from 60 minutes to LIMIT_SECONDS."""
    from tests.live import simulator_process

    with simulator_process("--connection-limit-seconds", str(LIMIT_SECONDS)) as sim:
        yield sim


def test_a_turn_resent_at_the_connection_limit_is_one_turn_live_and_after_a_reload(page: Page) -> None:
    create_user("ada", "ada-password-1")
    sign_in(page, "ada", "ada-password-1")
    start_conversation(page, "Limit")
    send(page, "remember: puffin")
    expect(turn(page, 0)).to_have_class(re.compile(r"\bcompleted\b"))

    time.sleep(LIMIT_SECONDS + 0.5)  # the relay's upstream socket is past its limit: its next create is refused
    send(page, "what did I ask you to remember?")
    expect(turn(page, 1)).to_have_class(re.compile(r"\bcompleted\b"))
    expect(turn(page, 1).locator(".item.output.message")).to_contain_text("You asked me to remember: puffin.")
    expect(turn(page, 1)).to_contain_text("Recovered: the upstream connection reached its time limit")
    expect(turn(page, 1).locator(".item.input.message")).to_contain_text("what did I ask you to remember?")
    expect(page.locator("#transcript > article.turn")).to_have_count(2)
    expect(page.locator("#transcript > article.turn.interrupted")).to_have_count(0)

    before = page.locator("#transcript").inner_text()
    page.reload()
    composer_ready(page)
    same_transcript(page, before)
