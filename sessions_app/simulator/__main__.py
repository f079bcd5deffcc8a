"""`python -m sessions_app.simulator --port 8765 …`: run the simulator without Django."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence

from ..event_loop import choose_event_loop_or_exit, event_loop_in_use
from .server import Simulator, SimulatorConfig

__all__ = ["add_arguments", "config_from", "serve", "run", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Shared with the `simulate_upstream` management command."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--fd", type=int, default=None,
                        help="adopt this listening socket instead of binding --host and --port (as Daphne's --fd)")
    parser.add_argument("--require-key", default=None, help="only accept this API key (401 otherwise)")
    parser.add_argument("--connection-limit-seconds", type=float, default=3600.0)
    parser.add_argument("--tokens-per-second", type=float, default=40.0, help="0 = no pacing")


def config_from(options: dict) -> SimulatorConfig:
    return SimulatorConfig(
        host=options["host"],
        port=options["port"],
        fd=options.get("fd"),
        require_key=options.get("require_key"),
        connection_limit_seconds=options["connection_limit_seconds"],
        tokens_per_second=options["tokens_per_second"],
    )


def serve(config: SimulatorConfig, announce=print) -> None:
    """`run` on the event loop SWITCHBOARD_EVENT_LOOP names, as Daphne's (event_loop.py: uvloop unless told
    otherwise). A paced stream sleeps after every delta, so the loop's timers and sends are most of the
    simulator's CPU: uvloop's cost less (bench/README.md). A setting it cannot honour stops it, with why."""
    choose_event_loop_or_exit("The simulator")
    asyncio.run(run(config, announce))


async def run(config: SimulatorConfig, announce=print) -> None:
    """Serve until SIGINT or SIGTERM."""
    logging.getLogger("websockets").setLevel(logging.WARNING)  # no per-connection chatter
    simulator = Simulator(config)
    await simulator.start()
    announce(f"Responses simulator on {simulator.url} (compact: POST {simulator.base_url}/responses/compact; "
             f"{event_loop_in_use()} event loop)")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await simulator.stop()
        announce("Responses simulator stopped.")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sessions_app.simulator", description=__doc__)
    add_arguments(parser)
    options = vars(parser.parse_args(argv))
    logging.basicConfig(level=logging.WARNING)
    serve(config_from(options))


if __name__ == "__main__":
    main()
