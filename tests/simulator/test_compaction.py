"""§5: server-side compaction in the stream and the standalone POST /v1/responses/compact."""

from __future__ import annotations

import pydantic
import pytest
from openai import AsyncOpenAI
from openai.types.responses import CompactedResponse

from sessions_app.simulator import Simulator
from sessions_app.simulator.codec import unseal

from .helpers import RawClient, create, http_post, text_of, user

pytestmark = pytest.mark.asyncio

COMPACTED = pydantic.TypeAdapter(CompactedResponse)
COMPACTION = [{"type": "compaction", "compact_threshold": 40}]


async def build_history(client: RawClient, facts: list[str]) -> str:
    previous = None
    for fact in facts:
        extra = {"previous_response_id": previous} if previous else {}
        previous = (await client.turn(create(f"remember: {fact}", **extra)))[-1]["response"]["id"]
    return previous


async def test_passing_the_threshold_compacts_before_the_reply(client: RawClient) -> None:
    previous = await build_history(client, ["red", "green", "blue"])
    events = await client.turn(create("what did I ask you to remember?", previous_response_id=previous,
                                      context_management=COMPACTION))
    types = [e["type"] for e in events]
    assert types[:5] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.compaction.compacting", "response.output_item.done"]
    item = events[4]["item"]
    assert item["type"] == "compaction" and item["id"].startswith("cmp_")
    assert item["encrypted_content"].startswith("gAAAAB")
    assert events[2]["item"] == {"id": item["id"], "type": "compaction", "encrypted_content": ""}
    assert events[3]["item_id"] == item["id"] and events[3]["output_index"] == 0
    assert events[5]["type"] == "response.output_item.added" and events[5]["output_index"] == 1
    output = events[-1]["response"]["output"]
    assert [i["type"] for i in output] == ["compaction", "message"]
    assert "red; green; blue" in text_of(events)
    assert unseal(item["encrypted_content"])["facts"] == ["red", "green", "blue"]


async def test_facts_and_item_count_survive_compaction(client: RawClient) -> None:
    previous = await build_history(client, ["alpha", "beta"])
    compacted = await client.turn(create("/compact how many items?", previous_response_id=previous))
    assert compacted[-1]["response"]["output"][0]["type"] == "compaction"
    assert "I can see 5 context items." in text_of(compacted)
    after = await client.turn(create("what did I ask you to remember?",
                                     previous_response_id=compacted[-1]["response"]["id"]))
    assert "alpha; beta" in text_of(after)
    assert text_of(after).endswith("[context items: 7]")
    assert after[-1]["response"]["usage"]["input_tokens"] < compacted[-1]["response"]["usage"]["input_tokens"] + 40


async def test_below_the_threshold_nothing_is_compacted(client: RawClient) -> None:
    events = await client.turn(create("hi", context_management=[{"type": "compaction", "compact_threshold": 5000}]))
    assert [i["type"] for i in events[-1]["response"]["output"]] == ["message"]


async def test_a_compaction_item_passed_as_input_restores_the_context(client: RawClient) -> None:
    previous = await build_history(client, ["one", "two"])
    compacted = await client.turn(create("/compact ok", previous_response_id=previous))
    item = compacted[-1]["response"]["output"][0]
    fresh = await client.turn(create([item, user("what did I ask you to remember?")]))
    assert "You asked me to remember: one; two." in text_of(fresh)


async def test_standalone_compact_endpoint_returns_a_valid_compacted_response(sim: Simulator) -> None:
    body = {"model": "gpt-5.5", "input": [user("remember: the key is under the mat"),
                                          {"type": "message", "role": "assistant",
                                           "content": [{"type": "output_text", "text": "ok", "annotations": []}]},
                                          user("Find the failing test.")]}
    reply = await http_post(f"{sim.base_url}/responses/compact", json_body=body,
                            headers={"Authorization": "Bearer sk-test"})
    assert reply.status_code == 200
    data = reply.json()
    COMPACTED.validate_python(data)
    assert data["object"] == "response.compaction"
    assert [i["type"] for i in data["output"]] == ["compaction"]
    usage = data["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] and usage["input_tokens"] > 0
    # The window restarts a chain on the socket: compacted output + new items.
    async with await RawClient.open(sim.url) as client:
        events = await client.turn(create([*data["output"], user("what did I ask you to remember?")],
                                          stream_id="main"))
    assert "the key is under the mat" in text_of(events)
    assert text_of(events).endswith("[context items: 4]")


async def test_the_sdk_compact_call_works(sim: Simulator) -> None:
    client = AsyncOpenAI(api_key="sk-test", base_url=sim.base_url)
    compacted = await client.responses.compact(model="gpt-5.5", input="remember: tea")
    assert compacted.object == "response.compaction"
    assert compacted.output[0].type == "compaction"


async def test_compact_a_stored_chain_by_previous_response_id(sim: Simulator) -> None:
    async with await RawClient.open(sim.url) as client:
        stored = (await client.turn(create("remember: stored fact", store=True)))[-1]["response"]["id"]
        unstored = (await client.turn(create("x")))[-1]["response"]["id"]
    ok = await http_post(f"{sim.base_url}/responses/compact",
                         json_body={"model": "gpt-5.5", "previous_response_id": stored})
    missing = await http_post(f"{sim.base_url}/responses/compact",
                              json_body={"model": "gpt-5.5", "previous_response_id": unstored})
    assert ok.status_code == 200
    assert unseal(ok.json()["output"][0]["encrypted_content"])["facts"] == ["stored fact"]
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "previous_response_not_found"


async def test_compact_endpoint_errors(sim: Simulator) -> None:
    no_model = await http_post(f"{sim.base_url}/responses/compact", json_body={"input": "x"})
    bad_json = await http_post(f"{sim.base_url}/responses/compact", content=b"{")
    wrong_path = await http_post(f"{sim.base_url}/chat/completions", json_body={})
    assert no_model.status_code == 400 and no_model.json()["error"]["param"] == "model"
    assert bad_json.status_code == 400
    assert wrong_path.status_code == 404


async def test_compact_endpoint_checks_the_key() -> None:
    from sessions_app.simulator import SimulatorConfig

    async with Simulator(SimulatorConfig(port=0, tokens_per_second=0, require_key="sk-right-key-1234")) as sim:
        denied = await http_post(f"{sim.base_url}/responses/compact", json_body={"model": "m", "input": "x"},
                                 headers={"Authorization": "Bearer sk-wrong-key-9999"})
        allowed = await http_post(f"{sim.base_url}/responses/compact", json_body={"model": "m", "input": "x"},
                                  headers={"api-key": "sk-right-key-1234"})
    assert denied.status_code == 401 and denied.json()["error"]["code"] == "invalid_api_key"
    assert "sk-wrong-key-9999" not in denied.text
    assert allowed.status_code == 200
