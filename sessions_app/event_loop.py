"""Which asyncio event loop Daphne runs on: uvloop unless told otherwise (SWITCHBOARD_EVENT_LOOP).

Daphne runs Twisted on an asyncio loop, and the relay's upstream sockets, PostgreSQL's async connections
and Redis run on the same loop. uvloop (libuv, in C) runs that loop's turns, timers and its own
transports (the upstream sockets, PostgreSQL, Redis) for less CPU than the standard library's
selector loop: a few per cent of a busy relay's CPU per relayed event (bench/README.md has the figures).

Rules:

* The choice is made once, before Daphne's server module is imported: that import creates the loop Twisted
  runs on (`asyncio.new_event_loop()`, so the policy set here decides it). `python -m sessions_app.serve`
  calls `choose_event_loop` first; importing sessions_app.serve from anywhere else (tests) changes nothing.
* `SWITCHBOARD_EVENT_LOOP`: `auto` (the default) is uvloop where it is installed (requirements.txt
  installs it on every platform uvloop supports, i.e. not Windows) and the standard loop elsewhere;
  `uvloop` insists on it (a missing uvloop is an error at start, not a silent fallback); `asyncio` is
  the standard library's loop. Anything else is refused at start, with the values allowed.
* `event_loop_in_use` names the loop the process's policy makes (what /metrics reports as
  `switchboard_process_info{event_loop=...}`); the policy is process-wide, so any thread may ask.
* Code that runs on the loop assumes only the asyncio API both loops keep. One difference matters to
  tcp_writes.py: uvloop runs a socket's reader and writer callbacks inside its poll, where the standard
  loop queues them behind the callbacks already scheduled; tcp_writes.py's rules hold on both.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping

__all__ = ["CHOICES", "EventLoopChoiceError", "choose_event_loop", "choose_event_loop_or_exit", "event_loop_in_use"]

CHOICES = ("auto", "uvloop", "asyncio")
SETTING = "SWITCHBOARD_EVENT_LOOP"


class EventLoopChoiceError(RuntimeError):
    """SWITCHBOARD_EVENT_LOOP names a loop this process cannot run."""


def choose_event_loop(environ: Mapping[str, str] = os.environ) -> str:
    """Set the asyncio policy the setting asks for; return the loop chosen ("uvloop" or "asyncio")."""
    wanted = (environ.get(SETTING) or "auto").strip().lower()
    if wanted not in CHOICES:
        raise EventLoopChoiceError(f"{SETTING}={wanted!r} is not one of {', '.join(CHOICES)}.")
    if wanted == "asyncio":
        asyncio.set_event_loop_policy(None)  # the standard library's default
        return "asyncio"
    try:
        import uvloop
    except ImportError:
        if wanted == "uvloop":
            raise EventLoopChoiceError(f"{SETTING}=uvloop, but uvloop is not installed "
                                       f"(pip install -r requirements.txt).") from None
        asyncio.set_event_loop_policy(None)
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def choose_event_loop_or_exit(program: str) -> str:
    """`choose_event_loop` for a program about to start (Daphne, the simulator): a setting it cannot honour
    stops it, saying why, with exit status 1."""
    try:
        return choose_event_loop()
    except EventLoopChoiceError as exc:
        sys.exit(f"{program} will not start: {exc}")


def event_loop_in_use() -> str:
    """"uvloop" when the process's loops are uvloop's (`choose_event_loop` chose it), else "asyncio"."""
    policy = asyncio.get_event_loop_policy()
    return "uvloop" if type(policy).__module__.partition(".")[0] == "uvloop" else "asyncio"
