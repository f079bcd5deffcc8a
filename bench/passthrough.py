"""The bare relay baseline: a `websockets` server that forwards frames verbatim, nothing else.

Per client connection it opens one upstream connection (same path and query)
and pumps frames both ways until either side closes. No parsing, no auth, no
recording: what a relay costs when it only copies frames between two sockets.

    python bench/passthrough.py --port 9000 --upstream ws://127.0.0.1:8765

It runs in its own process (started by bench/relay.py) so it gets a core of
its own like the Daphne relays, instead of sharing the benchmark client's loop.
"""

from __future__ import annotations

import argparse
import asyncio

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed


async def _pump(source, destination) -> None:
    try:
        async for message in source:
            await destination.send(message)
    except ConnectionClosed:
        pass


async def relay_connection(client: ServerConnection, upstream_base: str) -> None:
    async with connect(upstream_base + client.request.path, compression=None, max_size=None) as upstream:
        tasks = [asyncio.create_task(_pump(client, upstream)), asyncio.create_task(_pump(upstream, client))]
        _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def main(host: str, port: int, upstream_base: str) -> None:
    async def handler(client: ServerConnection) -> None:
        await relay_connection(client, upstream_base)

    async with serve(handler, host, port, compression=None, max_size=None) as server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="ws://HOST:PORT (the client's path is appended)")
    args = parser.parse_args()
    try:
        asyncio.run(main(args.host, args.port, args.upstream.rstrip("/")))
    except KeyboardInterrupt:
        pass
