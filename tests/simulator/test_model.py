"""Pure parts of the simulator: tokens, codec, directives, the model, compaction."""

from __future__ import annotations

import pytest

from sessions_app.protocol.items import user_message
from sessions_app.simulator import codec
from sessions_app.simulator.compaction import compaction_item, should_compact
from sessions_app.simulator.directives import Directives, directive_error
from sessions_app.simulator.model import build_arguments, filler, plan_reply, read_context
from sessions_app.simulator.tokens import count_tokens, split_tokens


def test_tokens_join_back_to_the_text() -> None:
    text = 'Hello, world!  A "quoted" sentence\nwith lines.'
    assert "".join(split_tokens(text)) == text
    assert count_tokens(text) == len(split_tokens(text))
    assert count_tokens("") == 0


def test_filler_has_exactly_n_tokens() -> None:
    for n in (0, 1, 7, 200):
        assert count_tokens(filler(n)) == n


def test_codec_round_trip_and_foreign_blobs() -> None:
    blob = codec.seal({"kind": "x", "n": 1})
    assert blob.startswith("gAAAAB")
    assert codec.unseal(blob) == {"kind": "x", "n": 1}
    assert codec.unseal("gAAAABnot-base64!!") is None
    assert codec.unseal("something else") is None


def test_directives_parse() -> None:
    d = Directives.parse('do it /tool get_weather {"city": "Oslo"} /long 12 /slow 30 /fail /compact')
    assert d.tool == "get_weather" and d.tool_arguments == {"city": "Oslo"}
    assert d.long == 12 and d.slow_ms == 30 and d.fail and d.compact
    assert not d.drop and not d.incomplete and d.error is None
    assert Directives.parse("/error rate_limit_exceeded").error == "rate_limit_exceeded"
    assert Directives.parse("/tool ping").tool_arguments == {}
    assert Directives.parse("a path like /usr/lib/fail is not a directive") == Directives()
    assert Directives.parse(None) == Directives()


def test_directive_errors_use_the_documented_envelopes() -> None:
    assert directive_error("previous_response_not_found", "resp_x").message == \
        "Previous response with id 'resp_x' not found."
    assert directive_error("rate_limit_exceeded", None).status == 429
    assert directive_error("websocket_connection_limit_reached", None).code == "websocket_connection_limit_reached"
    custom = directive_error("insufficient_quota", None)
    assert custom.code == "insufficient_quota" and custom.status == 400


def test_context_view_counts_conversation_items_only() -> None:
    items = [user_message("remember: a"), {"type": "reasoning", "summary": []},
             {"type": "message", "role": "assistant", "content": "ok"}, user_message("next")]
    view = read_context(items)
    assert view.items == 3 and view.facts == ("a",) and view.last_user == "next"


def test_compaction_item_carries_count_and_facts() -> None:
    items = [user_message("remember: a"), user_message("remember: b"), user_message("hello")]
    item = compaction_item(items)
    view = read_context([item, user_message("what did I ask you to remember?")])
    assert view.items == 4 and view.facts == ("a", "b")
    # Compacting again keeps everything.
    again = read_context([compaction_item([item, user_message("x")])])
    assert again.items == 4 and again.facts == ("a", "b")


def test_should_compact() -> None:
    assert should_compact(10, None, forced=True)
    assert not should_compact(10, None, forced=False)
    assert should_compact(11, 10, forced=False) and not should_compact(10, 10, forced=False)


def test_same_context_same_plan() -> None:
    items = [user_message("remember: x"), user_message("what did I ask you to remember?")]
    first = plan_reply(view=read_context(items), directives=Directives(), model="gpt-5.5", tools=[], tool_choice="auto")
    second = plan_reply(view=read_context(list(items)), directives=Directives(), model="gpt-5.5", tools=[],
                        tool_choice="auto")
    assert first == second and first.text == "You asked me to remember: x. [context items: 2]"


@pytest.mark.parametrize(("text", "expected"), [
    ("Weather in Paris?", '{"city":"Paris"}'),
    ("weather for San Francisco please", '{"city":"San Francisco"}'),
    ("city: Lyon", '{"city":"Lyon"}'),
])
def test_arguments_from_text(text: str, expected: str) -> None:
    tool = {"type": "function", "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
    assert build_arguments(tool, text) == expected


def test_tool_choice_none_never_calls() -> None:
    tool = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}
    plan = plan_reply(view=read_context([user_message("weather?")]), directives=Directives(), model="m",
                      tools=[tool], tool_choice="none")
    assert plan.tool_calls == () and plan.text
