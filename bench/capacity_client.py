"""The load generator of bench/capacity.py: one process drives its share of the conversations.

It runs apart from the servers and from the benchmark's driver so its event loop never
competes with theirs inside one process (bench/capacity.py may start several of these).
Each conversation opens its own socket at its start offset, runs `turns` chained turns of
`/long TOKENS` (turn 2 onwards continue with `previous_response_id`), then closes. The
frames are what the official `openai` SDK sends in WebSocket mode (`response.create` on
`/v1/responses`), sent with plain `websockets` on uvloop, which keeps the client cheap.

Protocol with the driver (one JSON line each way, then the result):

    stdin  {"url", "headers", "offsets": [s, …], "turns", "tokens", "timeout", "result": path}
    stdout "ready"                       (imports done, config read)
    stdin  {"epoch": unix time}          (offset 0 of every process)
    file `result`, once it exits 0: {"first_ttfd_ms": [...], "continuation_ttfd_ms": [...], "gap_ms": [...],
                                     "connect_ms": [...], "turns_completed": n, "failures": [...], "cpu_s": s}

The result goes to a file, not stdout: it runs to hundreds of kilobytes at N = 300, and one run read it back from
the pipe cut at 64 KiB.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time

import uvloop
from websockets.asyncio.client import connect

MODEL = "gpt-5.5"
DELTA = "response.output_text.delta"
TERMINAL = {"response.completed", "response.failed", "response.incomplete"}


class Figures:
    def __init__(self) -> None:
        self.first_ttfd_ms: list[float] = []
        self.continuation_ttfd_ms: list[float] = []
        self.gap_ms: list[float] = []
        self.connect_ms: list[float] = []
        self.turns_completed = 0
        self.failures: list[str] = []
        self.cpu_s = 0.0


async def turn(ws, k: int, tokens: int, previous: str | None, figures: Figures) -> str:
    """One turn: send the create, read to its terminal event; returns the response id."""
    create = {"type": "response.create", "model": MODEL, "store": False, "input": f"/long {tokens} turn {k}"}
    if previous:
        create["previous_response_id"] = previous
    sent = time.perf_counter()
    await ws.send(json.dumps(create))
    last = None
    gaps: list[float] = []
    while True:
        event = json.loads(await ws.recv())
        kind = event.get("type")
        if kind == DELTA:
            now = time.perf_counter()
            if last is None:
                (figures.continuation_ttfd_ms if previous else figures.first_ttfd_ms).append((now - sent) * 1000)
            else:
                gaps.append((now - last) * 1000)
            last = now
        elif kind in TERMINAL:
            break
        elif kind == "error":
            raise RuntimeError(f"turn {k}: error event {event.get('error')}")
    if kind != "response.completed" or last is None:
        raise RuntimeError(f"turn {k}: ended {kind} after {len(gaps) + (last is not None)} deltas")
    figures.gap_ms.extend(gaps)
    figures.turns_completed += 1
    return event["response"]["id"]


async def conversation(config: dict, start: float, figures: Figures) -> None:
    await asyncio.sleep(max(0.0, start - time.time()))
    began = time.perf_counter()
    try:
        async with connect(config["url"], additional_headers=config["headers"], compression=None,
                           max_size=None, open_timeout=60, ping_interval=None) as ws:
            figures.connect_ms.append((time.perf_counter() - began) * 1000)
            previous = None
            for k in range(1, config["turns"] + 1):
                previous = await turn(ws, k, config["tokens"], previous, figures)
    except Exception as exc:  # a failed conversation is a figure of the run, not a crash of the client
        figures.failures.append(f"{type(exc).__name__}: {exc}"[:300])


async def run(config: dict, epoch: float) -> Figures:
    figures = Figures()
    tasks = [conversation(config, epoch + offset, figures) for offset in config["offsets"]]
    try:
        async with asyncio.timeout(config["timeout"]):
            await asyncio.gather(*tasks)
    except TimeoutError:
        figures.failures.append(f"timeout after {config['timeout']} s")
    return figures


def main() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    config = json.loads(sys.stdin.readline())
    print("ready", flush=True)
    epoch = json.loads(sys.stdin.readline())["epoch"]
    cpu_start = time.process_time()
    figures = uvloop.run(run(config, epoch))  # the load generator's own CPU: less of it shares the load's cores
    figures.cpu_s = time.process_time() - cpu_start  # this client's CPU: is the load generator itself saturated?
    result = {key: [round(x, 3) for x in value] if isinstance(value, list) and key != "failures" else value
              for key, value in vars(figures).items()}
    with open(config["result"], "w") as file:
        json.dump(result, file)


if __name__ == "__main__":
    main()
