"""Log lines of a real relay run: JSON, with the ids, and never a key, a token or message text."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
from django.conf import settings as django_settings
from django.utils.module_loading import import_string

from sessions_app.models import ApiToken

from .conftest import SECRET_KEY, db, final, text_of

pytestmark = pytest.mark.django_db(transaction=True)

SAID = "quokka: the violet heron sings at dawn"
MARK = "quokka"  # websockets' frame dumps keep only a frame's first and last characters: the input's first word
TOKEN_PATTERN = re.compile(r"sb_[A-Za-z0-9_\-]{8,}")


def json_handler(stream: io.StringIO) -> logging.Handler:
    """The console handler as settings.LOGGING builds it with SWITCHBOARD_LOG_FORMAT=json, writing to `stream`."""
    config = django_settings.LOGGING
    handler = logging.StreamHandler(stream)
    handler.setFormatter(import_string(config["formatters"]["json"]["()"])())
    for name in config["handlers"]["console"]["filters"]:
        handler.addFilter(import_string(config["filters"][name]["()"])())
    return handler


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """What the root logger writes during the test, as the production JSON handler writes it."""
    stream = io.StringIO()
    handler, root = json_handler(stream), logging.getLogger()
    level = root.level
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


async def run_turns(user, conversation_of, open_browser, open_gateway) -> tuple[list[str], str, str]:
    """A browser turn, one whose socket drops, and a gateway turn (two upstream sockets); (the replies' text, the
    token, a refused token)."""
    conversation = await conversation_of(user)
    browser = await open_browser(user, conversation.pk)
    first = await browser.turn(SAID)
    assert final(first)["type"] == "response.completed"
    assert final(await browser.turn("/drop"))["type"] == "error"
    await browser.close()
    token = await db(lambda: ApiToken.issue(user=user)[1])()
    refused = token[:-4] + "AAAA"  # a wrong token: the security log names its public prefix only
    assert (await open_gateway(refused)).connected is False
    gateway = await open_gateway(token)
    second = await gateway.turn(f"{SAID}, twice", model="gpt-5.5")
    await gateway.close()
    return [text_of(first), text_of(second)], token, refused


def assert_nothing_secret(output: str, token: str, refused: str) -> None:
    assert SECRET_KEY not in output and SECRET_KEY[3:] not in output
    assert token not in output and refused not in output and not TOKEN_PATTERN.search(output)


async def test_relay_log_lines_are_json_with_ids_and_nothing_secret(
        profile, user, conversation_of, open_browser, open_gateway, log_lines):
    replies, token, refused = await run_turns(user, conversation_of, open_browser, open_gateway)
    output = log_lines.getvalue()
    lines = [json.loads(line) for line in output.splitlines()]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    relay = [line for line in lines if line["logger"].startswith("sessions_app.relay")]
    ended = [line for line in relay if line["message"].startswith("Response ")]
    assert [line["message"] for line in ended] == ["Response completed", "Response failed (upstream_disconnected)",
                                                   "Response completed"]
    for line in ended:
        assert line["conversation_id"] and line["connection_id"]
    assert ended[0]["response_id"].startswith("resp_") and ended[2]["response_id"].startswith("resp_")
    opened = [line for line in relay if line["message"] == "Upstream socket opened"]
    assert len(opened) == 2 and all(line["conversation_id"] and line["connection_id"] for line in opened)
    closed = [line for line in relay if line["message"].startswith("Upstream socket closed")]
    assert {line["connection_id"] for line in closed} == {line["connection_id"] for line in opened}
    assert any(line["logger"] == "sessions_app.security" and "token refused" in line["message"] for line in lines)
    assert_nothing_secret(output, token, refused)
    assert MARK not in output and all(reply and reply not in output for reply in replies)


@pytest.mark.parametrize("message_text", [False, True])
async def test_message_text_reaches_debug_logs_only_when_a_setting_says_so(
        profile, user, conversation_of, open_browser, open_gateway, log_lines, settings, message_text):
    settings.SWITCHBOARD_LOG_MESSAGE_TEXT = message_text
    logging.getLogger().setLevel(logging.DEBUG)  # the frame dumps of the upstream client and the simulator
    _, token, refused = await run_turns(user, conversation_of, open_browser, open_gateway)
    output = log_lines.getvalue()
    for line in output.splitlines():
        json.loads(line)
    assert (MARK in output) is message_text
    assert_nothing_secret(output, token, refused)  # keys and tokens: never, debugging or not
