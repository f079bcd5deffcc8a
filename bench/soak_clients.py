"""The soak's traffic (bench/soak.py): browsers, SDK agents with tool calls, and idle sockets, through nginx.

Every client keeps going through faults: a socket that dies is opened again (backoff 0.5 s doubling to 5 s)
and the conversation continues from the last response it saw complete, as a person or an agent would.
What each saw is kept in a `Ledger`, for the soak to check against the records at the end:

* every response seen complete, with the text it streamed (`completed`);
* every response cut by a fault, with the text it had streamed (`cut`);
* every `error` event by code, and every `switchboard.*` notice by type;
* each turn's time to first delta and when it was sent (the report splits them into during / between faults);
* facts: every fifth message says `remember: <fact>`, and every seventh asks the simulator to repeat all
  of them; a reply missing a fact whose turn completed is context lost (`context_lost`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field

from openai import AsyncOpenAI
from websockets.asyncio.client import connect

MODEL = "gpt-5.5"
TERMINAL = {"response.completed", "response.failed", "response.incomplete"}
DELTA = "response.output_text.delta"
TOOL = {"type": "function", "name": "lookup", "description": "Look a word up.",
        "parameters": {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}}


@dataclass
class Ledger:
    completed: dict[str, str] = field(default_factory=dict)  # response id -> text
    cut: dict[str, str] = field(default_factory=dict)
    ended_at: dict[str, float] = field(default_factory=dict)  # response id -> when the client saw it end
    errors: Counter = field(default_factory=Counter)
    notices: Counter = field(default_factory=Counter)
    turns: list[tuple[float, float]] = field(default_factory=list)  # (sent at, TTFD ms)
    reconnects: Counter = field(default_factory=Counter)
    context_checks: int = 0
    context_lost: list[str] = field(default_factory=list)
    idle_closed: int = 0


class Script:
    """What one conversation says next, and the facts it should be able to repeat. After `length` turns the
    client moves on to a new conversation (`fresh`), as people and agent runs do: the soak's conversations
    stay the size real ones are, so memory growth is the code's and not the ever longer histories'."""

    def __init__(self, name: str, tokens: int, length: int = 40) -> None:
        self.name, self.tokens, self.count, self.length = name, tokens, 0, length
        self.facts: list[str] = []  # facts whose `remember` turn completed
        self.started = 0

    @property
    def done(self) -> bool:
        return self.count - self.started >= self.length

    def fresh(self) -> None:
        self.started, self.facts = self.count, []

    def next(self) -> tuple[str, str | None]:
        self.count += 1
        if self.count % 5 == 0:
            fact = f"{self.name}-fact-{self.count}"
            return f"remember: {fact}", fact
        if self.count % 7 == 0 and self.facts:
            return "what did I ask you to remember?", None
        return f"message {self.count} /long {self.tokens}", None

    def check(self, ledger: Ledger, asked: str, reply: str) -> None:
        if asked.startswith("what did I ask"):
            ledger.context_checks += 1
            missing = [fact for fact in self.facts if fact not in reply]
            if missing:
                ledger.context_lost.append(f"{self.name}: {missing[:3]} not in {reply[:120]!r}")


async def _backoff(attempt: int) -> None:
    await asyncio.sleep(min(5.0, 0.5 * 2 ** min(attempt, 4)))


async def browser(origin: str, session: str, conversations: list[str], ledger: Ledger, script: Script,
                  stop: asyncio.Event, think: float) -> None:
    """A signed-in tab on /ws/conversations/<id>/: history, then a message at a time; the next conversation
    of the list after `script.length` turns (round the list again at its end)."""
    headers = {"Cookie": f"sessionid={session}", "Origin": origin}
    attempt, index = 0, 0
    while not stop.is_set():
        if script.done:
            script.fresh()
            index += 1
        url = origin.replace("https://", "wss://") + f"/ws/conversations/{conversations[index % len(conversations)]}/"
        try:
            async with connect(url, additional_headers=headers, open_timeout=15, max_size=None) as ws:
                latest = None
                while True:  # history, then status (which names the latest response)
                    event = json.loads(await asyncio.wait_for(ws.recv(), 30))
                    if event.get("type") == "switchboard.status":
                        latest = event.get("latest_response_id")
                        break
                attempt = 0
                if script.count == script.started:
                    latest = None  # a conversation met again when the list came round: a new chain in it
                while not stop.is_set() and not script.done:
                    text, fact = script.next()
                    frame = {"type": "response.create", "input": [
                        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}]}
                    if latest:
                        frame["previous_response_id"] = latest
                    ended = await _turn(ws, json.dumps(frame), ledger)
                    if ended is None:
                        raise ConnectionError("socket closed mid-turn")
                    status, rid, reply = ended
                    if status == "completed":
                        latest = rid
                        if fact:
                            script.facts.append(fact)
                        script.check(ledger, text, reply)
                    await asyncio.sleep(think)
        except Exception as exc:  # the socket died (a fault): open it again, continue the conversation
            ledger.reconnects[f"browser: {type(exc).__name__}"] += 1
            await _backoff(attempt)
            attempt += 1


async def _turn(ws, frame: str, ledger: Ledger) -> tuple[str, str, str] | None:
    """Send one create and read to its end; None when the socket died first (the partial is `cut`)."""
    sent = time.monotonic()
    await ws.send(frame)
    rid, text, first = "", [], None
    try:
        while True:
            event = json.loads(await asyncio.wait_for(ws.recv(), 60))
            kind = event.get("type", "")
            if kind.startswith("switchboard."):
                ledger.notices[kind] += 1
            elif kind == "error":
                ledger.errors[(event.get("error") or {}).get("code") or "error"] += 1
                return "error", rid, ""
            elif kind == "response.created" and not event.get("stream_id"):
                rid = event["response"]["id"]
            elif kind == DELTA:
                if first is None:
                    first = (time.monotonic() - sent) * 1000
                    ledger.turns.append((time.time() - first / 1000, first))
                text.append(event.get("delta", ""))
            elif kind in TERMINAL:
                status = event["response"]["status"]
                (ledger.completed if status == "completed" else ledger.cut)[rid] = "".join(text)
                ledger.ended_at[rid] = time.time()
                return status, rid, "".join(text)
    except Exception:
        if rid:
            ledger.cut[rid] = "".join(text)
            ledger.ended_at[rid] = time.time()
        return None


async def agent(origin: str, token: str, ledger: Ledger, script: Script, stop: asyncio.Event, think: float) -> None:
    """An agent on the official SDK through the gateway: a tool call answered every third turn."""
    client = AsyncOpenAI(api_key=token, websocket_base_url=origin.replace("https://", "wss://") + "/v1",
                         base_url=origin + "/v1")
    latest: str | None = None
    attempt = 0
    while not stop.is_set():
        try:
            if script.done:  # a new run: a new socket, so a new conversation
                script.fresh()
                latest = None
            async with client.responses.connect() as conn:
                attempt = 0
                while not stop.is_set() and not script.done:
                    text, fact = script.next()
                    tool_turn = script.count % 3 == 0 and fact is None and not text.startswith("what")
                    asked = f"/tool lookup {{\"word\": \"w{script.count}\"}}" if tool_turn else text
                    status, rid, reply, call = await _sdk_turn(conn, ledger, input=asked, previous=latest)
                    if status == "completed" and call is not None:  # answer the tool, as an agent does
                        output = {"type": "function_call_output", "call_id": call, "output": "{\"meaning\": 42}"}
                        latest = rid
                        status, rid, reply, _ = await _sdk_turn(conn, ledger, input=[output], previous=latest)
                    if status == "completed":
                        latest = rid
                        if fact:
                            script.facts.append(fact)
                        script.check(ledger, text, reply)
                    await asyncio.sleep(think)
        except Exception as exc:
            ledger.reconnects[f"agent: {type(exc).__name__}"] += 1
            await _backoff(attempt)
            attempt += 1


async def _sdk_turn(conn, ledger: Ledger, *, input, previous: str | None):
    sent = time.monotonic()
    await conn.response.create(model=MODEL, store=False, input=input, tools=[TOOL], previous_response_id=previous)
    rid, text, first, call = "", [], None, None
    try:
        async for event in conn:
            if event.type == "error":
                error = getattr(event, "error", None)
                code = getattr(event, "code", None) or (error.get("code") if isinstance(error, dict)
                                                        else getattr(error, "code", None))
                ledger.errors[code or "error"] += 1
                return "error", rid, "", None
            if event.type == "response.created":
                rid = event.response.id
            elif event.type == DELTA:
                if first is None:
                    first = (time.monotonic() - sent) * 1000
                    ledger.turns.append((time.time() - first / 1000, first))
                text.append(event.delta)
            elif event.type == "response.output_item.done" and event.item.type == "function_call":
                call = event.item.call_id
            elif event.type in TERMINAL:
                status = event.response.status
                (ledger.completed if status == "completed" else ledger.cut)[rid] = "".join(text)
                ledger.ended_at[rid] = time.time()
                return status, rid, "".join(text), call
    except Exception:
        if rid:
            ledger.cut[rid] = "".join(text)
            ledger.ended_at[rid] = time.time()
        raise
    raise ConnectionError("the SDK connection ended mid-turn")


async def idle(origin: str, token: str, ledger: Ledger, stop: asyncio.Event) -> None:
    """A gateway socket that only stays open; each close (other than ours) is counted, and it opens again."""
    url = origin.replace("https://", "wss://") + "/v1/responses"
    while not stop.is_set():
        try:
            async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=15) as ws:
                closed = asyncio.ensure_future(ws.wait_closed())
                stopping = asyncio.ensure_future(stop.wait())
                await asyncio.wait([closed, stopping], return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                if closed.done():
                    ledger.idle_closed += 1
                else:
                    closed.cancel()
        except Exception:
            ledger.idle_closed += 1
            await asyncio.sleep(1)
