"""The upstream client takes the proxy from the environment as websockets does (`*_proxy`, `no_proxy`), though
it works the choice out once per URL (upstream/socket.py)."""

from __future__ import annotations

import asyncio

import pytest

from sessions_app.upstream import UpstreamTarget
from sessions_app.upstream.socket import UpstreamProtocolError, UpstreamUnavailable, _proxy, open_upstream

URL = "ws://upstream.invalid:8080/v1/responses"


@pytest.fixture
def proxy(monkeypatch):
    """A proxy that records the request line it is sent and refuses it (403)."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
                 "no_proxy", "NO_PROXY", "ws_proxy", "wss_proxy", "socks_proxy"):
        monkeypatch.delenv(name, raising=False)
    _proxy.cache_clear()
    yield monkeypatch
    _proxy.cache_clear()


async def test_the_environment_proxy_carries_the_upstream_socket_unless_no_proxy_names_the_host(proxy):
    seen: list[bytes] = []

    async def refuse(reader, writer):
        seen.append(await reader.readline())
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    proxy.setenv("http_proxy", f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
    async with server:
        with pytest.raises(UpstreamProtocolError):
            await open_upstream(UpstreamTarget(url=URL, headers={}), open_timeout=5)
        assert seen == [b"CONNECT upstream.invalid:8080 HTTP/1.1\r\n"]

        proxy.setenv("no_proxy", "upstream.invalid")
        _proxy.cache_clear()
        with pytest.raises(UpstreamUnavailable):  # straight to the host, which does not resolve
            await open_upstream(UpstreamTarget(url=URL, headers={}), open_timeout=5)
        assert len(seen) == 1


async def test_a_proxy_setting_that_is_not_a_url_is_an_upstream_error_not_a_crash(proxy):
    proxy.setenv("http_proxy", "ftp://127.0.0.1:1")
    with pytest.raises(UpstreamUnavailable, match="not a valid proxy URL"):
        await open_upstream(UpstreamTarget(url=URL, headers={}), open_timeout=5)
