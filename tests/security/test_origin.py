"""A socket opened from a web page must come from the socket's own origin: scheme, host and port.

channels' AllowedHostsOriginValidator compared host names only, so any page on the same host (another
port, plain http next to https) could drive a signed-in user's socket. sessions_app/origins.py
compares all three, or accepts an exact CSRF_TRUSTED_ORIGINS entry; the gateway also accepts no Origin.
"""

from __future__ import annotations

import logging

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from sessions_app.models import ApiToken
from sessions_app.origins import Origin, origin_allowed, socket_origin
from sessions_app.services import conversation_create
from tests.relay.conftest import db

OWN = b"http://127.0.0.1:8000"
REFUSED = [
    pytest.param(b"http://127.0.0.1:9000", id="another port"),
    pytest.param(b"https://127.0.0.1:8000", id="https instead of http"),
    pytest.param(b"http://localhost:8000", id="another allowed host"),
    pytest.param(b"https://evil.example", id="a foreign host"),
    pytest.param(b"null", id="an opaque origin"),
    pytest.param(b"http://127.0.0.1:8000/path", id="not an origin"),
]


def scope(*headers: tuple[bytes, bytes], scheme: str | None = None) -> dict:
    built = {"type": "websocket", "path": "/ws/", "headers": list(headers), "client": ["10.0.0.7", 50123]}
    if scheme:
        built["scheme"] = scheme
    return built


# --- the rule, on plain scopes ----------------------------------------------------------------

def test_an_origin_is_its_scheme_host_and_port_with_default_ports_filled_in():
    assert Origin.parse("http://Example.COM") == Origin("http", "example.com", 80)
    assert Origin.parse("https://example.com:443") == Origin("https", "example.com", 443)
    assert Origin.parse("http://[::1]:8000") == Origin("http", "::1", 8000)
    for not_an_origin in ("null", "", "ftp://example.com", "http://user@example.com", "http://example.com/x",
                          "http://example.com:99999", "//example.com"):
        assert Origin.parse(not_an_origin) is None, not_an_origin


def test_the_sockets_own_origin_comes_from_its_scheme_and_host_header():
    assert socket_origin(scope((b"host", b"127.0.0.1:8000"))) == Origin("http", "127.0.0.1", 8000)
    assert socket_origin(scope((b"host", b"localhost"), scheme="wss")) == Origin("https", "localhost", 443)


def test_a_host_outside_allowed_hosts_or_a_missing_host_gives_no_own_origin():
    assert socket_origin(scope((b"host", b"evil.example"))) is None
    assert socket_origin(scope()) is None
    assert socket_origin(scope((b"host", b"127.0.0.1"), (b"host", b"evil.example"))) is None


def test_the_origin_must_match_scheme_host_and_port():
    host = (b"host", b"127.0.0.1:8000")
    assert origin_allowed("http://127.0.0.1:8000", scope(host))
    assert not origin_allowed("http://127.0.0.1:8001", scope(host))
    assert not origin_allowed("https://127.0.0.1:8000", scope(host))
    assert origin_allowed("https://127.0.0.1:8000", scope(host, scheme="wss"))
    assert origin_allowed("http://localhost", scope((b"host", b"localhost:80")))


def test_the_proxy_header_decides_the_scheme_only_when_configured(settings):
    forwarded = scope((b"host", b"localhost"), (b"x-forwarded-proto", b"https"))
    assert origin_allowed("http://localhost", forwarded)  # not configured: the header is ignored
    assert not origin_allowed("https://localhost", forwarded)
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert origin_allowed("https://localhost", forwarded)
    assert not origin_allowed("http://localhost", forwarded)
    # Configured but absent (a direct connection): the socket's own scheme.
    assert origin_allowed("http://localhost", scope((b"host", b"localhost")))


def test_a_csrf_trusted_origin_must_match_exactly(settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://switchboard.example.com", "https://*.example.org"]
    no_host = scope()
    assert origin_allowed("https://switchboard.example.com", no_host)
    assert origin_allowed("https://switchboard.example.com:443", no_host)
    assert not origin_allowed("http://switchboard.example.com", no_host)
    assert not origin_allowed("https://switchboard.example.com:8443", no_host)
    assert not origin_allowed("https://a.example.org", no_host)  # wildcards are not honoured for sockets


# --- the browser socket, through the real ASGI application ---------------------------------------

def _session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


async def browser_socket(user, conversation, headers: list[tuple[bytes, bytes]]) -> tuple[bool, WebsocketCommunicator]:
    from project.asgi import application

    cookie = await db(_session_cookie)(user)
    communicator = WebsocketCommunicator(application, f"/ws/conversations/{conversation.pk}/",
                                         headers=[*headers, (b"cookie", f"sessionid={cookie}".encode())])
    connected, _ = await communicator.connect(timeout=10)
    return connected, communicator


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("origin", REFUSED)
async def test_the_browser_socket_refuses_any_other_origin(profile, user, conversation_of, open_browser, origin,
                                                         caplog):
    conversation = await conversation_of(user)
    with caplog.at_level(logging.WARNING, logger="sessions_app.security"):
        socket = await open_browser(user, conversation.pk, origin=origin, attach=False)
    assert socket.connected is False
    [record] = [r for r in caplog.records if r.name == "sessions_app.security"]
    assert record.levelname == "WARNING" and repr(origin.decode()) in record.getMessage()


@pytest.mark.django_db(transaction=True)
async def test_the_browser_socket_needs_an_origin(profile, user, conversation_of, open_browser):
    conversation = await conversation_of(user)
    assert (await open_browser(user, conversation.pk, origin=None, attach=False)).connected is False


@pytest.mark.django_db(transaction=True)
async def test_the_browser_socket_accepts_its_own_origin(profile, user, conversation_of, open_browser):
    conversation = await conversation_of(user)
    socket = await open_browser(user, conversation.pk, origin=OWN)
    assert socket.connected is True and socket.history["type"] == "switchboard.history"


@pytest.mark.django_db(transaction=True)
async def test_the_browser_socket_accepts_a_csrf_trusted_origin(profile, user, conversation_of, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://switchboard.example.com"]
    conversation = await conversation_of(user)
    connected, communicator = await browser_socket(user, conversation, [
        (b"host", b"127.0.0.1:8000"), (b"origin", b"https://switchboard.example.com")])
    assert connected is True
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_matching_origin_on_a_host_outside_allowed_hosts_is_refused(profile, user, conversation_of):
    conversation = await conversation_of(user)
    connected, _ = await browser_socket(user, conversation, [
        (b"host", b"evil.example"), (b"origin", b"http://evil.example")])
    assert connected is False


@pytest.mark.django_db(transaction=True)
async def test_without_a_host_header_only_a_trusted_origin_is_accepted(profile, user, conversation_of, settings):
    conversation = await conversation_of(user)
    assert (await browser_socket(user, conversation, [(b"origin", OWN)]))[0] is False
    settings.CSRF_TRUSTED_ORIGINS = [OWN.decode()]
    connected, communicator = await browser_socket(user, conversation, [(b"origin", OWN)])
    assert connected is True
    await communicator.disconnect()


# --- the gateway ---------------------------------------------------------------------------------

@pytest.fixture
def token(user):
    return ApiToken.issue(user=user)[1]


@pytest.mark.django_db(transaction=True)
async def test_the_gateway_accepts_no_origin_and_its_own(profile, token, open_gateway):
    assert (await open_gateway(token)).connected is True
    assert (await open_gateway(token, origin=OWN)).connected is True


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("origin", REFUSED)
async def test_the_gateway_refuses_any_other_origin(profile, token, open_gateway, origin):
    assert (await open_gateway(token, origin=origin)).connected is False


# --- over real Daphne: the refusal is an HTTP 403 at the handshake -----------------------------

@pytest.mark.django_db(transaction=True)
async def test_daphne_answers_a_foreign_origin_with_403(daphne_server, user):
    session, conversation = await db(lambda: (_session_cookie(user), conversation_create(owner=user)))()
    url = f"{daphne_server.ws_url}/ws/conversations/{conversation.pk}/"
    headers = {"Cookie": f"sessionid={session}"}
    other_port = f"http://127.0.0.1:{daphne_server.port + 1}"
    for origin in (other_port, daphne_server.base_url.replace("http:", "https:")):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url, additional_headers=headers, origin=origin):
                pass
        assert refused.value.response.status_code == 403
    async with connect(url, additional_headers=headers, origin=daphne_server.base_url) as ws:
        assert "switchboard.history" in await ws.recv()
