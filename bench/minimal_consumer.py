"""The framework's ceiling: a Channels consumer on Daphne that only forwards frames.

One upstream `websockets` connection per client socket, opened on connect;
frames go both ways verbatim. No auth, no database, no parsing: whatever
Switchboard's gateway costs beyond this is Switchboard's own.

    BENCH_UPSTREAM_URL=ws://127.0.0.1:8765/v1/responses \\
        daphne -b 127.0.0.1 -p 9001 bench.minimal_consumer:application

It loads project.settings like Switchboard does (same channel layer defaults,
same logging), but routes only this consumer, for any path.
"""

from __future__ import annotations

import asyncio
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

import django  # noqa: E402

django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from websockets.asyncio.client import ClientConnection, connect  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

UPSTREAM_URL = os.environ["BENCH_UPSTREAM_URL"]


class ForwardingConsumer(AsyncWebsocketConsumer):
    upstream: ClientConnection | None = None
    pump: asyncio.Task | None = None

    async def connect(self) -> None:
        self.upstream = await connect(UPSTREAM_URL, compression=None, max_size=None)
        await self.accept()
        self.pump = asyncio.create_task(self.from_upstream())

    async def from_upstream(self) -> None:
        try:
            async for message in self.upstream:
                if isinstance(message, str):
                    await self.send(text_data=message)
                else:
                    await self.send(bytes_data=message)
        except ConnectionClosed:
            pass
        await self.close()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.upstream.send(text_data if text_data is not None else bytes_data)

    async def disconnect(self, code: int) -> None:
        if self.pump is not None:
            self.pump.cancel()
        if self.upstream is not None:
            await self.upstream.close()


application = ForwardingConsumer.as_asgi()
