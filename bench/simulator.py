"""Benchmark the simulator: events per second on one connection (not a test).

    .venv/bin/python bench/simulator.py [--turns 50] [--tokens 200] [--lanes 4]

Starts the simulator in-process with tokens_per_second=0, runs `--turns`
chained `/long N` turns on one socket (the default lane), then the same
number of turns spread over `--lanes` concurrent lanes, and prints events/s
and delta tokens/s.  The client decodes every frame with json.loads, as a
relay would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from websockets.asyncio.client import connect  # noqa: E402

from sessions_app.simulator import Simulator, SimulatorConfig  # noqa: E402

TERMINAL = {"response.completed", "response.failed", "response.incomplete", "error"}


async def sequential(url: str, turns: int, tokens: int) -> tuple[int, float]:
    events = 0
    async with connect(url, max_size=None, compression=None) as ws:
        previous = None
        started = time.perf_counter()
        for _ in range(turns):
            frame = {"type": "response.create", "model": "gpt-5.5", "store": False, "input": f"/long {tokens}"}
            if previous:
                frame["previous_response_id"] = previous
            await ws.send(json.dumps(frame))
            while True:
                event = json.loads(await ws.recv())
                events += 1
                if event["type"] in TERMINAL:
                    previous = event.get("response", {}).get("id")
                    break
        return events, time.perf_counter() - started


async def concurrent(url: str, turns: int, tokens: int, lanes: int) -> tuple[int, float]:
    events = 0
    async with connect(url, max_size=None, compression=None) as ws:
        started = time.perf_counter()
        for i in range(turns):
            await ws.send(json.dumps({"type": "response.create", "model": "gpt-5.5", "store": False,
                                      "stream_id": f"lane{i % lanes}", "input": f"/long {tokens}"}))
        done = 0
        while done < turns:
            event = json.loads(await ws.recv())
            events += 1
            done += event["type"] in TERMINAL
        return events, time.perf_counter() - started


def report(label: str, events: int, seconds: float, turns: int, tokens: int) -> None:
    print(f"{label:<28} {events:>7} events in {seconds:6.3f} s  "
          f"{events / seconds:>9,.0f} events/s  {turns * tokens / seconds:>9,.0f} tokens/s  "
          f"{seconds / turns * 1000:6.2f} ms/turn")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=50)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--lanes", type=int, default=4)
    args = parser.parse_args()
    async with Simulator(SimulatorConfig(port=0, tokens_per_second=0)) as sim:
        await sequential(sim.url, 3, 20)  # warm-up
        events, seconds = await sequential(sim.url, args.turns, args.tokens)
        report(f"1 lane, {args.turns} chained turns", events, seconds, args.turns, args.tokens)
        events, seconds = await concurrent(sim.url, args.turns, args.tokens, args.lanes)
        report(f"{args.lanes} lanes, {args.turns} turns", events, seconds, args.turns, args.tokens)


if __name__ == "__main__":
    asyncio.run(main())
