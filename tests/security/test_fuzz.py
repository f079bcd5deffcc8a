"""Fuzzing both faces with hypothesis: no client frame makes a traceback, a hang, or a dead socket.

Hypothesis generates frames (valid-ish creates and steers with mutated fields, random JSON,
pathological JSON: deep nesting, huge numbers, NaN, surrogates, huge strings, wrong types, and
random text and bytes). It runs in a worker thread; each example is played on the test's event
loop, on a browser socket and a gateway socket at once: the frame, then a probe create that
must complete. Every frame gets at most one answer (an `error`, a `response.steer.failed`, or
one response), and meanwhile another user's socket keeps completing its turns.
Derandomized and without an example database, so CI runs the same examples every time.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessions_app.models import ApiToken
from tests.relay.conftest import TERMINAL, Socket, final

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = 150
EXAMPLE_SECONDS = 30.0
MIB = 1024 * 1024

# -- frames ------------------------------------------------------------------------------

leaves = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
          | st.text(max_size=12))
json_values = st.recursive(
    leaves, lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "developer"]), "content": st.text(max_size=30)},
    optional={"type": st.just("message")},
)
CREATE_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "input": st.text(max_size=40) | st.lists(message, min_size=1, max_size=3),
    "model": st.sampled_from(["gpt-5.5", "gpt-4o", ""]),
    "stream_id": st.none() | st.sampled_from(["a", "lane-2", "x.y_z"]),
    "store": st.booleans(),
    "instructions": st.text(max_size=20),
    "max_output_tokens": st.integers(min_value=1, max_value=4000),
    "temperature": st.floats(min_value=0, max_value=2),
    "metadata": st.dictionaries(st.sampled_from(["switchboard_conversation", "k"]) | st.text(min_size=1, max_size=8),
                                st.sampled_from(["nope", "", "00000000-0000-4000-8000-000000000000"])
                                | st.text(max_size=8), max_size=3),
    "previous_response_id": st.text(max_size=12),
    "tools": st.just([{"type": "function", "name": "noop", "parameters": {"type": "object", "properties": {}}}]),
    "context_management": st.just([{"type": "compaction", "compact_threshold": 1000}]),
    "generate": st.booleans(),
}


@st.composite
def creates(draw) -> dict[str, Any]:
    """A create with some known fields, a few of them replaced by any JSON (wrong types)."""
    names = draw(st.lists(st.sampled_from(sorted(CREATE_FIELDS)), max_size=5, unique=True))
    event: dict[str, Any] = {"type": "response.create", "input": "hello"}
    event.update({name: draw(CREATE_FIELDS[name]) for name in names})
    for name in draw(st.lists(st.sampled_from([*sorted(CREATE_FIELDS), "type", "extra"]), max_size=2, unique=True)):
        event[name] = draw(json_values)
    return event


steers = st.fixed_dictionaries({"type": st.just("response.steer")}, optional={
    "previous_response_id": st.text(max_size=12) | json_values,
    "input": st.text(max_size=20) | st.lists(message, max_size=2) | json_values,
    "extra": json_values,
})


def _deep(depth: int, opener: str = "[") -> str:
    closer = "]" if opener == "[" else "}"
    head = '{"type": "response.create", "input": "hi", "x": '
    inner = (opener if opener == "[" else '{"k":') * depth + "1" + closer * depth
    return head + inner + "}"


PATHOLOGICAL = [
    lambda n: _deep(60 + n % 10),
    lambda n: _deep(100_000 + n),
    lambda n: _deep(50_000, opener="{"),
    lambda n: '{"type": "response.create", "input": "hi", "temperature": ' + ["NaN", "Infinity", "-Infinity",
                                                                               "1e999", "-1e999"][n % 5] + "}",
    lambda n: '{"type": "response.create", "input": "hi", "max_output_tokens": 1' + "0" * (300 + n * 50) + "}",
    lambda n: '{"type": "response.create", "input": "' + ["\\ud800", "\\udfff", "\\u0000", "\ud83d"][n % 4] + '"}',
    lambda n: '{"type": "response.create", "input": "' + "x" * (MIB + n) + '"}',
    lambda n: '{"type": "response.create", "input": "' + "é" * (MIB // 2 + 1 + n) + '"}',
    lambda n: '{"type": "response.create", "input": "' + "big " * (20_000 + n) + '"}',
    lambda n: json.dumps({"type": "response.create", "input": [{"type": ["message"], "role": "user"}]}),
    lambda n: json.dumps({"type": "response.create", "input": [{"role": 7, "content": "x"}]}),
    lambda n: json.dumps({"type": "response.create", "input": "hi", "metadata": {"k" * 70: "v"}}),
    lambda n: json.dumps({"type": ["response.create"] * 1000}),
]
pathological = st.builds(lambda pick, n: PATHOLOGICAL[pick](n), st.integers(0, len(PATHOLOGICAL) - 1),
                         st.integers(0, 9))

frames = st.one_of(
    creates().map(json.dumps),
    steers.map(json.dumps),
    json_values.map(json.dumps),
    pathological,
    st.text(max_size=50),
    st.binary(max_size=50),
    creates().map(lambda event: json.dumps(event).encode()),
)

# -- playing a frame -----------------------------------------------------------------------


async def receive(socket: Socket) -> dict[str, Any]:
    """The next event, not validated against the SDK: the simulator echoes fuzzed fields back."""
    message = await socket.communicator.receive_output(EXAMPLE_SECONDS)
    if message["type"] == "websocket.close":
        raise ConnectionError(f"closed with {message.get('code')}")
    return json.loads(message["text"])


async def play(socket: Socket, frame: str | bytes, probe: str) -> int:
    """Send `frame` then a probe create; return how many answers the frame got (after the probe
    completed and every response the frame started has ended)."""
    # As the server hands it over (the communicator's send_to refuses an empty frame).
    await socket.communicator.send_input({"type": "websocket.receive",
                                          **({"bytes": frame} if isinstance(frame, bytes) else {"text": frame})})
    await socket.send({"type": "response.create", "input": "probe", "metadata": {"fuzz_probe": probe}})
    answers, probe_id, probe_done = 0, None, False
    open_lanes: dict[str | None, str] = {}  # lane -> the frame's response streaming there
    while not probe_done or open_lanes:
        event = await receive(socket)
        kind, lane = event["type"], event.get("stream_id")
        if kind in ("response.created", "response.queued") and event["response"]["id"] not in (
                probe_id, *open_lanes.values()):
            if (event["response"].get("metadata") or {}).get("fuzz_probe") == probe:
                probe_id = event["response"]["id"]
            else:
                answers += 1
                open_lanes[lane] = event["response"]["id"]
        elif kind in TERMINAL:
            response_id = event["response"]["id"]
            if response_id == probe_id:
                assert kind == "response.completed", event
                probe_done = True
            elif open_lanes.get(lane) == response_id:
                del open_lanes[lane]
        elif kind == "error" and lane in open_lanes:
            del open_lanes[lane]  # it ended the frame's response
        elif kind in ("error", "response.steer.failed"):
            answers += 1
    return answers


@pytest.fixture
def tokens(user, other_user):
    return ApiToken.issue(user=user)[1], ApiToken.issue(user=other_user)[1]


async def bystander(socket: Socket, stop: asyncio.Event, done: list[dict[str, Any]]) -> None:
    """Another user's turns, one after another, while the fuzzing runs."""
    while not stop.is_set():
        done.append(final(await socket.turn("I am just chatting", model="gpt-5.5")))
        await asyncio.sleep(0.1)  # a person's pace, well under the per-user limits


# The strategies use no `random`; with Redis, channels_redis names its channels with the global
# `random` on the event loop while Hypothesis draws on its worker thread, which Hypothesis reports.
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
async def test_fuzzed_frames_never_break_a_socket(profile, user, tokens, conversation_of, open_browser,
                                                  open_gateway, caplog):
    conversation = await conversation_of(user)
    browser = await open_browser(user, conversation.pk)
    gateway = await open_gateway(tokens[0])
    other = await open_gateway(tokens[1])
    stop, others_turns = asyncio.Event(), []
    other_task = asyncio.ensure_future(bystander(other, stop, others_turns))
    loop = asyncio.get_running_loop()
    played = iter(range(1_000_000))

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(frame=frames)
    def every_frame(frame: str | bytes) -> None:
        n = next(played)

        async def both() -> list[int]:
            return await asyncio.gather(play(browser, frame, f"b{n}"), play(gateway, frame, f"g{n}"))

        answers = asyncio.run_coroutine_threadsafe(both(), loop).result(timeout=2 * EXAMPLE_SECONDS)
        assert all(a <= 1 for a in answers), (answers, frame[:300])
        assert not other_task.done(), other_task

    try:
        await asyncio.to_thread(every_frame)
    finally:
        stop.set()
        await asyncio.wait_for(other_task, EXAMPLE_SECONDS)
    assert others_turns and [e for e in others_turns if e["type"] != "response.completed"] == []
    for socket in (browser, gateway):
        assert final(await socket.turn("still here?"))["type"] == "response.completed"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]
