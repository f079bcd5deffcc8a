"""Guessing personal tokens is slowed down and every failure is logged, on the gateway socket and the HTTP API.

Failures count per client address and per token prefix (sessions_app/throttle.py); while a count is at
its limit the client is refused before any lookup. Daphne 4.2.3 cannot answer a WebSocket handshake with
an HTTP 429, so a throttled handshake is accepted, sent one `error` event and closed with 4429.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import secrets
import uuid

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client

from sessions_app import throttle
from sessions_app.client_address import client_address
from sessions_app.models import ApiToken
from sessions_app.redaction import RedactSecretsFilter
from tests.relay.conftest import db

pytestmark = pytest.mark.django_db(transaction=True)

WINDOW = 300
NOW = 1_800_000_000.0 + 100  # 100 s into a 300 s window: 200 s left


@pytest.fixture(autouse=True)
def limits(settings, monkeypatch):
    settings.SWITCHBOARD_THROTTLE_WINDOW_SECONDS = WINDOW
    settings.SWITCHBOARD_THROTTLE_ADDRESS_FAILURES = 20
    settings.SWITCHBOARD_THROTTLE_PREFIX_FAILURES = 10
    settings.SWITCHBOARD_TRUSTED_PROXIES = 0
    monkeypatch.setattr(throttle, "_clock", lambda: NOW)


def fresh_address() -> str:
    """An address no other test (or earlier run sharing the Redis cache) counted against."""
    return str(ipaddress.ip_address(f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"))  # as logged


def wrong_token(prefix: str | None = None) -> str:
    return (prefix or "sb_" + secrets.token_hex(4)[:7]) + secrets.token_urlsafe(30)


@pytest.fixture(autouse=True)
def asgi_loaded():
    """Import the ASGI app before the test body: its django.setup() reconfigures logging, which would
    drop caplog's handler if it happened mid-test."""
    import project.asgi  # noqa: F401


async def handshake(token: str | None, address: str) -> dict:
    """Open /v1/responses from `address`: {"accepted": bool, "events": [...], "close": code or None}."""
    from project.asgi import application

    headers = [(b"host", b"127.0.0.1:8000")]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    communicator = WebsocketCommunicator(application, "/v1/responses", headers=headers)
    communicator.scope["client"] = (address, 50000)  # as Daphne sets it; read when the app starts
    accepted, close = await communicator.connect(timeout=10)
    result = {"accepted": accepted, "events": [], "close": None if accepted else close}
    while accepted and not await communicator.receive_nothing(0.5):  # a real session says nothing first
        message = await communicator.receive_output()
        if message["type"] == "websocket.close":
            result["close"] = message.get("code")
            break
        result["events"].append(json.loads(message["text"]))
    await communicator.disconnect()
    return result


def security_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "sessions_app.security"]


THROTTLED_EVENT = {"type": "error", "status": 429, "error": {
    "type": "rate_limit_error", "code": "too_many_failed_handshakes",
    "message": "Too many failed authentication attempts; try again in 200 s.", "param": None,
}}


async def test_25_wrong_tokens_from_one_address_end_in_4429_and_every_try_is_logged(user, caplog):
    caplog.set_level(logging.WARNING, logger="sessions_app.security")
    address = fresh_address()
    tokens = [wrong_token() for _ in range(25)]
    results = [await handshake(token, address) for token in tokens]

    assert [r["accepted"] for r in results[:20]] == [False] * 20  # a bad token stays a 403 at the handshake
    for result in results[20:]:
        assert result == {"accepted": True, "events": [THROTTLED_EVENT], "close": 4429}

    # While throttled even a valid token is refused: nothing is looked up.
    _, valid = await db(ApiToken.issue)(user=user)
    assert (await handshake(valid, address))["close"] == 4429
    assert (await db(ApiToken.objects.get)(user=user)).last_used_at is None
    # Another address is not affected.
    assert (await handshake(valid, fresh_address()))["accepted"] is True

    lines = security_lines(caplog)
    assert len(lines) == 26
    for line, token in zip(lines, tokens, strict=False):
        assert f"address={address}" in line and f"token_prefix={token[:10]}" in line
    assert all("reason=unknown" in line for line in lines[:20])
    assert all("reason=throttled" in line and "retry_after=200s" in line for line in lines[20:])
    everything = "\n".join(lines + [r.getMessage() for r in caplog.records])
    assert not any(token in everything or token[10:] in everything for token in tokens + [valid])


async def test_guessing_the_rest_of_one_prefix_is_throttled_from_any_address(user, caplog):
    caplog.set_level(logging.WARNING, logger="sessions_app.security")
    _, valid = await db(ApiToken.issue)(user=user)
    prefix = valid[:10]
    for _ in range(10):
        assert (await handshake(wrong_token(prefix), fresh_address()))["accepted"] is False
    assert (await handshake(wrong_token(prefix), fresh_address()))["close"] == 4429
    assert (await handshake(wrong_token(), fresh_address()))["accepted"] is False  # other prefixes: a plain 403
    assert all(f"token_prefix={prefix}" in line for line in security_lines(caplog)[:11])


async def test_each_reason_is_named_in_the_log(user, other_user, caplog):
    caplog.set_level(logging.WARNING, logger="sessions_app.security")
    revoked_token, revoked = await db(ApiToken.issue)(user=user)
    await db(revoked_token.revoke)()
    _, inactive = await db(ApiToken.issue)(user=other_user)
    await db(get_user_model().objects.filter(pk=other_user.pk).update)(is_active=False)
    address = fresh_address()
    for token in (None, "not-even-ours", wrong_token(), revoked, inactive):
        assert (await handshake(token, address))["accepted"] is False
    lines = security_lines(caplog)
    assert [line.split("reason=")[1].split(" address=")[0] for line in lines] == [
        "missing", "unknown", "unknown", "revoked", "inactive user"]
    assert "token_prefix=-" in lines[0] and "token_prefix=-" in lines[1]  # not a Switchboard token: no prefix shown
    assert f"token_prefix={revoked[:10]}" in lines[3] and f"token_prefix={inactive[:10]}" in lines[4]
    assert all(f"address={address}" in line and line.startswith("gateway token refused") for line in lines)


def test_the_http_api_answers_429_with_retry_after(caplog):
    caplog.set_level(logging.WARNING, logger="sessions_app.security")
    address = fresh_address()
    client = Client(REMOTE_ADDR=address)
    url = f"/api/conversations/{uuid.uuid4()}/compact"
    statuses = [client.post(url, HTTP_AUTHORIZATION=f"Bearer {wrong_token()}").status_code for _ in range(20)]
    assert statuses == [401] * 20
    refused = client.post(url, HTTP_AUTHORIZATION=f"Bearer {wrong_token()}")
    assert refused.status_code == 429 and refused["Retry-After"] == "200"
    assert refused.json()["error"]["code"] == "too_many_failed_attempts"
    lines = security_lines(caplog)
    assert len(lines) == 21 and lines[-1].startswith("api token refused: reason=throttled")
    assert all(f"address={address}" in line for line in lines)


def test_a_window_ends_and_the_count_starts_again(monkeypatch):
    address = fresh_address()
    for _ in range(20):
        throttle.failure_record(address=address, prefix=None)
    assert throttle.throttled(address=address, prefix=None) == throttle.Throttled(by="address", retry_after=200)
    monkeypatch.setattr(throttle, "_clock", lambda: NOW + 200)
    assert throttle.throttled(address=address, prefix=None) is None


def test_an_unknown_address_is_never_throttled_as_one_client():
    for _ in range(30):
        throttle.failure_record(address=None, prefix=None)
    assert throttle.throttled(address=None, prefix=None) is None


def test_the_log_filter_keeps_the_prefix_and_redacts_the_token():
    token = wrong_token()
    record = logging.LogRecord("sessions_app.security", logging.WARNING, __file__, 1,
                               "prefix=%s token=%s", (token[:10], token), None)
    RedactSecretsFilter().filter(record)
    assert record.getMessage() == f"prefix={token[:10]} token=[redacted]"


@pytest.mark.parametrize(("proxies", "peer", "forwarded", "expected"), [
    (0, "198.51.100.7", ["203.0.113.9"], "198.51.100.7"),  # no proxy: the header is anyone's to write
    (1, "10.0.0.2", ["1.2.3.4, 203.0.113.9"], "203.0.113.9"),  # the proxy appended what it saw
    (2, "10.0.0.2", ["1.2.3.4, 203.0.113.9", "10.0.0.1"], "203.0.113.9"),
    (1, "10.0.0.2", [], "10.0.0.2"),
    (1, "10.0.0.2", ["not-an-address"], None),
    (0, None, [], None),
])
def test_the_client_address_trusts_forwarded_for_only_behind_proxies(settings, proxies, peer, forwarded, expected):
    settings.SWITCHBOARD_TRUSTED_PROXIES = proxies
    assert client_address(peer=peer, forwarded_for=forwarded) == expected


async def test_on_postgresql_a_valid_handshake_reads_from_the_loop_and_a_refusal_is_still_counted(
        user, caplog, monkeypatch):
    from sessions_app import gateway_auth
    from sessions_app.recording import reads_on_loop

    if not reads_on_loop():
        pytest.skip("PostgreSQL only: SQLite reads the token on a database thread")
    caplog.set_level(logging.WARNING, logger="sessions_app.security")
    _, valid = await db(ApiToken.issue)(user=user)
    on_thread = gateway_auth.read_on_db_thread
    threads_asked = []

    async def counted(function, /, **kwargs):
        threads_asked.append(function.__name__)
        return await on_thread(function, **kwargs)

    monkeypatch.setattr(gateway_auth, "read_on_db_thread", counted)
    address = fresh_address()
    assert (await handshake(valid, address))["accepted"]
    assert threads_asked == []  # the token and the profile were read by the loop itself
    assert not (await handshake(valid[:-2] + "xx", address))["accepted"]
    assert threads_asked == ["token_refused"]
    assert [line for line in security_lines(caplog) if "reason=unknown" in line and address in line]
