"""From a started `response.create` to a ready `ResponseStream` (pure, no I/O).

Rules:

* The context of a response is the parent's context (when continuing) plus
  the create's input items; instructions are not carried over.
* `input_tokens` counts that context, the instructions and the tool schemas;
  `cached_tokens` is the part that came from this connection's cache (a
  response hydrated from the store gets no discount).
* The output budget is `max_output_tokens`: reasoning tokens and tool
  arguments are spent first, and a reply longer than what is left is cut
  and ends `response.incomplete` (max_output_tokens).
* After the response, the context to cache is the old context plus the
  output, or, when compaction ran, the output alone (it starts with the
  compaction item, which stands for everything before it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sessions_app.protocol import ids
from sessions_app.protocol.events import CreateEvent
from sessions_app.protocol.items import input_items, last_user_text

from .compaction import compaction_item, compaction_threshold, should_compact
from .directives import Directives
from .model import Plan, is_reasoning_model, plan_reply, read_context
from .store import Record
from .stream import Cut, ResponseSpec, ResponseStream
from .tokens import context_tokens, count_tokens, split_tokens, tools_tokens

__all__ = ["Prepared", "prepare", "successor_create", "context_after"]

FAULT_AFTER_TOKENS = 3  # /fail and /drop strike after this many deltas
ECHOED_FIELDS = ("temperature", "top_p", "text", "truncation", "reasoning", "service_tier", "user",
                 "safety_identifier", "prompt_cache_key", "prompt_cache_retention", "max_tool_calls", "top_logprobs")
DEFAULT_ECHO = {"temperature": 1.0, "top_p": 1.0, "text": {"format": {"type": "text"}}, "truncation": "disabled",
                "service_tier": "default"}
CARRIED_TO_SUCCESSOR = ("model", "instructions", "tools", "tool_choice", "parallel_tool_calls", "store", "metadata",
                        "include", "max_output_tokens", "reasoning", "text", "temperature", "top_p")


@dataclass(frozen=True)
class Prepared:
    stream: ResponseStream
    directives: Directives
    context: tuple[dict[str, Any], ...]
    uses_compaction: bool


def prepare(create: CreateEvent, parent: Record | None, *, parent_cached: bool) -> Prepared:
    raw = create.raw
    new_items = input_items(raw)
    directives = Directives.parse(last_user_text(new_items))
    context = tuple((parent.context if parent else ()) + tuple(new_items))
    tools = raw.get("tools") or []
    instructions = raw.get("instructions")
    model = raw["model"]
    spec = ResponseSpec(
        id=ids.response_id(),
        model=model,
        created_at=int(time.time()),
        previous_response_id=create.previous_response_id,
        store=create.store,
        instructions=instructions,
        metadata=raw.get("metadata") or {},
        tools=tools,
        tool_choice=raw.get("tool_choice", "auto"),
        parallel_tool_calls=raw.get("parallel_tool_calls", True),
        max_output_tokens=raw.get("max_output_tokens"),
        echo=_echo(raw, model),
    )
    tokens_in_context = context_tokens(context)
    input_tokens = tokens_in_context + tools_tokens(tools)
    if isinstance(instructions, str):
        input_tokens += count_tokens(instructions)
    cached = context_tokens(parent.context) if parent and parent_cached else 0
    threshold = compaction_threshold(raw)
    plan: Plan | None = None
    compaction = None
    cut = None
    if create.generate:
        if should_compact(tokens_in_context, threshold, directives.compact):
            compaction = compaction_item(context)
        plan = plan_reply(
            view=read_context(context),
            directives=directives,
            model=model,
            tools=tools,
            tool_choice=spec.tool_choice,
            parallel_tool_calls=spec.parallel_tool_calls is not False,
        )
        cut = _cut(plan, directives, spec.max_output_tokens)
    stream = ResponseStream(
        spec,
        plan,
        stream_id=create.stream_id,
        input_tokens=input_tokens,
        cached_tokens=cached,
        compaction=compaction,
        encrypted_reasoning="reasoning.encrypted_content" in (raw.get("include") or []),
        cut=cut,
    )
    return Prepared(stream=stream, directives=directives, context=context, uses_compaction=threshold is not None)


def context_after(prepared: Prepared) -> tuple[dict[str, Any], ...]:
    """What the cache keeps for a continuation of this response."""
    stream = prepared.stream
    if stream.compaction is not None:
        return tuple(stream.output)
    return prepared.context + tuple(stream.output)


def successor_create(create: CreateEvent, steered_id: str, steer_inputs: list[Any]) -> CreateEvent:
    """The create the server runs on its own after a steered response (same lane, same settings)."""
    raw = {key: create.raw[key] for key in CARRIED_TO_SUCCESSOR if key in create.raw}
    items: list[dict[str, Any]] = []
    for steer_input in steer_inputs:
        items.extend(input_items({"input": steer_input}))
    raw.update(type="response.create", previous_response_id=steered_id, input=items)
    if create.stream_id is not None:
        raw["stream_id"] = create.stream_id
    return CreateEvent(raw=raw, stream_id=create.stream_id, previous_response_id=steered_id)


def _echo(raw: dict[str, Any], model: str) -> dict[str, Any]:
    echo = dict(DEFAULT_ECHO)
    if is_reasoning_model(model):
        echo["reasoning"] = {"effort": "medium", "summary": "auto"}
    echo.update({key: raw[key] for key in ECHOED_FIELDS if key in raw})
    return echo


def _cut(plan: Plan, directives: Directives, max_output_tokens: int | None) -> Cut | None:
    text_tokens = len(split_tokens(plan.text)) if plan.text is not None else 0
    if directives.drop:
        return Cut("drop", min(FAULT_AFTER_TOKENS, text_tokens))
    if directives.fail:
        return Cut("fail", min(FAULT_AFTER_TOKENS, text_tokens))
    if directives.incomplete:
        return Cut("incomplete", max(1, text_tokens // 2))
    if max_output_tokens is not None and plan.text is not None:
        spent = plan.reasoning_tokens + sum(count_tokens(c.arguments) for c in plan.tool_calls)
        budget = max(0, max_output_tokens - spent)
        if text_tokens > budget:
            return Cut("incomplete", budget)
    return None
