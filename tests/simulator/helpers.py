"""Test helpers: a raw JSON client that validates every server event with the SDK's types."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pydantic
from openai.types.responses import ResponsesServerEvent
from websockets.asyncio.client import ClientConnection, connect

ADAPTER = pydantic.TypeAdapter(ResponsesServerEvent)
TERMINAL = {"response.completed", "response.failed", "response.incomplete"}


def validated(event: dict[str, Any]) -> dict[str, Any]:
    """Fail on anything the SDK's union would not accept (unknown types included)."""
    ADAPTER.validate_python(event)
    return event


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def create(input: Any = "hi", **fields: Any) -> dict[str, Any]:  # noqa: A002
    return {"type": "response.create", "model": "gpt-5.5", "store": False, "input": input, **fields}


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")


def terminal(events: list[dict[str, Any]]) -> dict[str, Any]:
    return next(e for e in events if e["type"] in TERMINAL or e["type"] == "error")


class RawClient:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, url: str, **kwargs: Any) -> RawClient:
        return cls(await connect(url, max_size=None, **kwargs))

    async def close(self) -> None:
        await self.ws.close()

    async def __aenter__(self) -> RawClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def recv(self, within: float = 5.0) -> dict[str, Any]:
        return validated(json.loads(await asyncio.wait_for(self.ws.recv(), within)))

    async def until_end(self, stream_id: str | None = None, within: float = 10.0) -> list[dict[str, Any]]:
        """Events up to and including the next terminal or `error` of the lane (others kept in the list)."""
        events = []
        while True:
            event = await self.recv(within)
            events.append(event)
            if (event["type"] in TERMINAL or event["type"] == "error") and event.get("stream_id") == stream_id:
                return events

    async def turn(self, frame: dict[str, Any]) -> list[dict[str, Any]]:
        await self.send(frame)
        return await self.until_end(frame.get("stream_id"))


class HttpReply:
    def __init__(self, status_code: int, text: str) -> None:
        self.status_code = status_code
        self.text = text

    def json(self) -> Any:
        return json.loads(self.text)


async def http_post(url: str, *, json_body: Any = None, content: bytes | None = None,
                    headers: dict[str, str] | None = None) -> HttpReply:
    """A plain HTTP POST in a thread (urllib), so tests need no HTTP client package."""
    import urllib.error
    import urllib.request

    data = content if content is not None else json.dumps(json_body).encode()
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})

    def call() -> HttpReply:
        try:
            with urllib.request.urlopen(request, timeout=5) as reply:
                return HttpReply(reply.status, reply.read().decode())
        except urllib.error.HTTPError as error:
            return HttpReply(error.code, error.read().decode())

    return await asyncio.to_thread(call)
