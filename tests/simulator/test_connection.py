"""Handshake, auth, storage across connections, the connection limit (TV7) and /drop."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidStatus

from sessions_app.simulator import Simulator, SimulatorConfig

from .helpers import RawClient, create, text_of

pytestmark = pytest.mark.asyncio

REPO_ROOT = Path(__file__).resolve().parents[2]

J2 = {"type": "error", "error": {"type": "invalid_request_error", "code": "websocket_connection_limit_reached",
      "message": "Responses websocket connection limit reached (60 minutes). Create a new websocket connection "
                 "to continue."}, "status": 400}


async def test_the_simulator_exposes_its_addresses(sim: Simulator) -> None:
    assert sim.port > 0
    assert sim.url == f"ws://127.0.0.1:{sim.port}/v1/responses"
    assert sim.base_url == f"http://127.0.0.1:{sim.port}/v1"


async def test_a_listening_socket_handed_over_is_served_at_its_port() -> None:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
        async with Simulator(SimulatorConfig(fd=sock.detach(), tokens_per_second=0)) as simulator:
            assert simulator.url == f"ws://127.0.0.1:{port}/v1/responses"
            async with await RawClient.open(simulator.url) as client:
                events = await client.turn(create("hello"))
            assert events[-1]["type"] == "response.completed"


async def test_query_strings_and_any_key_are_accepted(sim: Simulator) -> None:
    async with await RawClient.open(sim.url + "?model=gpt-5.5",
                                    additional_headers={"Authorization": "Bearer whatever"}) as client:
        assert (await client.turn(create("hi")))[-1]["type"] == "response.completed"


async def test_a_port_probe_is_no_failed_handshake(sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    """Switchboard's /healthz connects and closes without a byte: nothing to log, and sockets still work."""
    for _ in range(3):
        _, writer = await asyncio.open_connection("127.0.0.1", sim.port)
        writer.close()
        await writer.wait_closed()
    await asyncio.sleep(0.1)
    async with await RawClient.open(sim.url) as client:
        assert (await client.turn(create("hi")))[-1]["type"] == "response.completed"
    assert [r for r in caplog.records if r.levelno >= 30] == []


async def test_other_paths_are_404(sim: Simulator) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"ws://127.0.0.1:{sim.port}/v1/realtime"):
            pass
    assert info.value.response.status_code == 404


async def test_required_key_wrong_or_missing_is_a_401_with_a_masked_key() -> None:
    config = SimulatorConfig(port=0, tokens_per_second=0, require_key="sk-test-good-1234")
    async with Simulator(config) as sim:
        for headers in ({"Authorization": "Bearer sk-test-bad-5678"}, {}):
            with pytest.raises(InvalidStatus) as info:
                async with connect(sim.url, additional_headers=headers):
                    pass
            response = info.value.response
            assert response.status_code == 401
            body = json.loads(response.body)
            assert body["error"]["code"] == "invalid_api_key"
            assert body["error"]["type"] == "invalid_request_error" and body["error"]["param"] is None
            assert body["error"]["message"].startswith("Incorrect API key provided: ")
            assert b"sk-test-bad-5678" not in response.body
        assert "sk-te***5678" in json.loads(
            await _rejected_body(sim, {"Authorization": "Bearer sk-test-bad-5678"}))["error"]["message"]
        for headers in ({"Authorization": "Bearer sk-test-good-1234"}, {"api-key": "sk-test-good-1234"}):
            async with await RawClient.open(sim.url, additional_headers=headers) as client:
                assert (await client.turn(create("hi")))[-1]["type"] == "response.completed"


async def _rejected_body(sim: Simulator, headers: dict[str, str]) -> bytes:
    with pytest.raises(InvalidStatus) as info:
        async with connect(sim.url, additional_headers=headers):
            pass
    return info.value.response.body


async def test_store_true_responses_continue_on_another_connection(sim: Simulator) -> None:
    async with await RawClient.open(sim.url) as first:
        stored = (await first.turn(create("remember: shared", store=True)))[-1]["response"]["id"]
        local = (await first.turn(create("remember: private", stream_id="b")))[-1]["response"]["id"]
    async with await RawClient.open(sim.url) as second:
        events = await second.turn(create("what did I ask you to remember?", previous_response_id=stored))
        assert "shared" in text_of(events)
        assert events[-1]["response"]["usage"]["input_tokens_details"]["cached_tokens"] == 0
        missing = await second.turn(create("x", previous_response_id=local))
        assert missing[0]["error"]["code"] == "previous_response_not_found"


async def test_tv7_after_the_limit_the_next_create_gets_j2_and_the_socket_closes() -> None:
    config = SimulatorConfig(port=0, tokens_per_second=0, connection_limit_seconds=0.6)
    async with Simulator(config) as sim:
        async with await RawClient.open(sim.url) as client:
            early = (await client.turn(create("early")))[-1]["response"]["id"]
            await asyncio.sleep(0.7)
            await client.send(create("late"))
            assert await client.recv() == J2
            with pytest.raises(ConnectionClosedOK):
                await client.recv()
            assert client.ws.close_code == 1000
        async with await RawClient.open(sim.url) as fresh:
            assert (await fresh.turn(create("x", previous_response_id=early)))[0]["error"]["code"] == \
                "previous_response_not_found"
            assert (await fresh.turn(create("new chain")))[-1]["type"] == "response.completed"


async def test_a_response_streaming_at_the_limit_finishes_before_j2() -> None:
    config = SimulatorConfig(port=0, tokens_per_second=0, connection_limit_seconds=0.3)
    async with Simulator(config) as sim:
        async with await RawClient.open(sim.url) as client:
            started = time.monotonic()
            await client.send(create("/long 30 /slow 20", stream_id="a"))
            events = await client.until_end("a")
            assert events[-1]["type"] == "response.completed"
            assert time.monotonic() - started > 0.3
            assert await client.recv() == J2
            with pytest.raises(ConnectionClosedOK):
                await client.recv()
            assert client.ws.close_code == 1000


async def test_drop_closes_the_socket_abruptly_mid_response(client: RawClient) -> None:
    await client.send(create("tell me /drop /long 20"))
    deltas = 0
    with pytest.raises(ConnectionClosedError):
        while True:
            event = await client.recv()
            deltas += event["type"] == "response.output_text.delta"
            assert event["type"] not in ("response.completed", "response.failed")
    assert deltas == 3
    assert client.ws.close_code == 1006


async def test_the_sdk_sees_an_abnormal_close_after_drop(sim: Simulator) -> None:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(api_key="sk-test", websocket_base_url=sim.url.rsplit("/responses", 1)[0])
    with pytest.raises(ConnectionClosedError):
        async with client.responses.connect() as conn:
            await conn.response.create(model="gpt-5.5", store=False, input="/drop")
            async for _ in conn:
                pass


async def test_abort_connections_cuts_every_socket(sim: Simulator) -> None:
    async with await RawClient.open(sim.url) as client:
        assert (await client.turn(create("hi")))[-1]["type"] == "response.completed"
        assert sim.open_connections == 1
        assert sim.abort_connections() == 1
        with pytest.raises(ConnectionClosedError):
            await client.recv()
    assert sim.connections_opened == 1


async def test_frames_and_handshakes_are_recorded_for_relay_tests(sim: Simulator) -> None:
    frame = json.dumps(create("hi", unknown_field={"kept": 1}))
    async with await RawClient.open(sim.url + "?x=1", additional_headers={"Authorization": "Bearer sk-z"}) as c:
        await c.send(frame)
        await c.until_end()
    assert list(sim.received_frames) == [frame]
    path, headers = sim.handshakes[-1]
    assert path == "/v1/responses?x=1" and headers["authorization"] == "Bearer sk-z"


async def test_the_module_runs_as_a_command() -> None:
    import socket
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sessions_app.simulator", "--port", str(port), "--tokens-per-second", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO_ROOT)
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 10)
        assert f"ws://127.0.0.1:{port}/v1/responses" in line.decode()
        async with await RawClient.open(f"ws://127.0.0.1:{port}/v1/responses") as client:
            assert (await client.turn(create("hi")))[-1]["type"] == "response.completed"
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 10) == 0
