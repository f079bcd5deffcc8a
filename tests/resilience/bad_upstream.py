"""Misbehaving upstreams for tests/resilience/test_bad_upstreams.py: real servers on loopback, on their own
thread and event loop, so a Daphne process reaches them over TCP like any upstream."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from typing import Any

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

FRAME_CAP = 65536  # the Daphne under test runs with SWITCHBOARD_MAX_UPSTREAM_FRAME_BYTES at this
_ids = itertools.count(1)


def response(rid: str, status: str, text: str | None = None) -> dict[str, Any]:
    output = [] if text is None else [{
        "id": f"msg_{rid}", "type": "message", "role": "assistant", "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}]}]
    usage = None if status == "in_progress" else {
        "input_tokens": 3, "output_tokens": 2, "total_tokens": 5,
        "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}
    return {"id": rid, "object": "response", "created_at": int(time.time()), "status": status, "model": "gpt-5.5",
            "output": output, "usage": usage, "error": None, "incomplete_details": None, "tools": [],
            "tool_choice": "auto", "parallel_tool_calls": True, "previous_response_id": None}


def input_text(create: dict[str, Any]) -> str:
    given = create.get("input")
    if isinstance(given, str):
        return given
    for item in reversed(given or []):
        content = item.get("content") if isinstance(item, dict) else None
        if isinstance(content, str):
            return content
        for part in content or []:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                return part["text"]
    return ""


class BadUpstream:
    """Misbehaving upstreams on loopback, on their own thread and event loop (Daphne reaches them by TCP).

    * `ws://…/ok`: a WebSocket server scripted by the first word of each create's input (`script`);
      `ws://…/refuse/<status>`: refuses the handshake with that HTTP status (429 and 503 with Retry-After);
      `ws://…/slow-handshake/<ms>`: accepts it after that many milliseconds; `ws://…/hang-up`: accepts it,
      then closes the socket at once.
    * `silent_url`: accepts TCP and never answers the handshake; `garbage_url`: answers it with bytes that
      are not HTTP.
    `open` counts the connections each one holds now.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bad-upstream", daemon=True)
        self.open = {"ws": 0, "silent": 0, "garbage": 0}

    def __enter__(self) -> BadUpstream:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _start(self) -> None:
        self.ws = await serve(self._session, "127.0.0.1", 0, process_request=self._refuse, max_size=None,
                              compression=None)
        self.silent = await asyncio.start_server(self._silent, "127.0.0.1", 0)
        self.garbage = await asyncio.start_server(self._garbage, "127.0.0.1", 0)
        self._writers: list[asyncio.StreamWriter] = []

    async def _stop(self) -> None:
        for writer in self._writers:
            writer.close()
        for server in (self.ws, self.silent, self.garbage):
            server.close()

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.ws.sockets[0].getsockname()[1]}{path}"

    @property
    def silent_url(self) -> str:
        return f"ws://127.0.0.1:{self.silent.sockets[0].getsockname()[1]}/v1/responses"

    @property
    def garbage_url(self) -> str:
        return f"ws://127.0.0.1:{self.garbage.sockets[0].getsockname()[1]}/v1/responses"

    async def _refuse(self, connection, request):
        if request.path.startswith("/slow-handshake/"):  # slow, but within the relay's open timeout
            await asyncio.sleep(int(request.path.rsplit("/", 1)[1]) / 1000)
            return None
        if not request.path.startswith("/refuse/"):
            return None
        status = int(request.path.rsplit("/", 1)[1])
        refusal = connection.respond(status, "refused\n")
        if status in (429, 503):
            refusal.headers["Retry-After"] = "7"
        return refusal

    async def _silent(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._hold(reader, writer, "silent")

    async def _garbage(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"\x16\x03\x01 this is not HTTP\r\n\r\n")
        await self._hold(reader, writer, "garbage")

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, kind: str) -> None:
        """Read and ignore until the peer hangs up."""
        self.open[kind] += 1
        self._writers.append(writer)
        try:
            while await reader.read(65536):
                pass
        except OSError:
            pass
        finally:
            self.open[kind] -= 1
            writer.close()

    async def _session(self, ws) -> None:
        self.open["ws"] += 1
        try:
            if ws.request.path == "/hang-up":  # accepts the handshake, then closes at once
                await ws.close(1011, "going away")
                return
            async for message in ws:
                create = json.loads(message)
                if create.get("type") == "response.create":
                    await self.script(ws, input_text(create))
        except ConnectionClosed:
            pass
        finally:
            self.open["ws"] -= 1

    async def script(self, ws, text: str) -> None:
        word, _, rest = text.partition(" ")
        rid = f"resp_bad{next(_ids)}"
        started = [{"type": "response.created", "response": response(rid, "in_progress")},
                   {"type": "response.in_progress", "response": response(rid, "in_progress")}]
        delta = {"type": "response.output_text.delta", "item_id": f"msg_{rid}", "output_index": 0,
                 "content_index": 0, "delta": "partial ", "logprobs": []}
        if word == "silent":  # accepts the create, then nothing
            return
        if word == "hangup":  # closes the socket at once, before any event of the create
            await ws.close(1011, "going away")
            return
        if word == "bye":  # a normal response, then the socket closes while idle (as at the 60-minute limit)
            for frame in [*started, {"type": "response.completed", "response": response(rid, "completed", "bye")}]:
                await ws.send(json.dumps(frame))
            await ws.close(1000, "bye")
            return
        if word == "slow":  # slow but alive: N deltas, MS milliseconds apart, then a normal end
            count, pause = (int(n) for n in rest.split())
            for frame in [*started, *[delta] * count]:
                await ws.send(json.dumps(frame))
                await asyncio.sleep(pause / 1000)
            await ws.send(json.dumps({"type": "response.completed",
                                      "response": response(rid, "completed", "partial " * count)}))
            return
        frames: list[Any] = []
        if word == "stall":  # starts, streams a little, then nothing
            frames = [*started, delta]
        elif word == "notjson":
            frames = ["this is not json"]
        elif word == "notype":
            frames = [{"response": {"id": rid}, "sequence_number": 1}]
        elif word == "binary":
            frames = [b"\x00\xffbinary frame"]
        elif word == "huge":  # one frame over Daphne's SWITCHBOARD_MAX_UPSTREAM_FRAME_BYTES
            frames = [*started, {**delta, "delta": "x" * (2 * FRAME_CAP)}]
        elif word in ("unknowntype", "flood"):  # events of a type nobody documents, then a normal end
            count = int(rest or 1)
            mystery = [{"type": "response.mystery_event", "sequence_number": i, "note": "new"} for i in range(count)]
            frames = [*started, *mystery, delta, {"type": "response.completed",
                                                  "response": response(rid, "completed", "partial ")}]
        elif word == "errorflood":  # connection-level errors that end nothing, mid-response, then a normal end
            flood = [{"type": "error", "status": 400, "error": {"type": "invalid_request_error", "code": f"noise_{i % 3}",
                                                               "message": "Something the upstream did not like."}}
                     for i in range(int(rest or 1))]
            frames = [*started, delta, *flood, {"type": "response.completed",
                                               "response": response(rid, "completed", "partial ")}]
        elif word in ("ghost", "ghostdrop"):  # a terminal event for a response id nobody created, mid-response
            ghost = f"resp_ghost{next(_ids)}"
            frames = [*started, delta, {"type": "response.completed", "response": response(ghost, "completed", "?")},
                      delta, {"type": "response.completed", "response": response(rid, "completed", "partial partial ")}]
            if word == "ghostdrop":  # ... and then the socket dies before the real one ends
                for frame in frames[:4]:
                    await ws.send(json.dumps(frame))
                ws.transport.abort()
                return
        else:
            frames = [*started, {**delta, "delta": f"echo: {text}"},
                      {"type": "response.completed", "response": response(rid, "completed", f"echo: {text}")}]
        for frame in frames:
            await ws.send(frame if isinstance(frame, str | bytes) else json.dumps(frame))
