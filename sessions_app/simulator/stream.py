"""The event sequence of one response, as a generator with no I/O.

Rules (PROTOCOL.md §3.3–3.8):

* `sequence_number` counts from 0 per response and every event of the
  response takes the next one, including a `response.steer.accepted` sent
  on its behalf (`next_sequence`).
* Order: `response.created`, `response.in_progress`, then per output item
  `output_item.added` … `output_item.done` (compaction at index 0, then
  reasoning, then function calls or the message), then one terminal event.
* `stream_id` is on every event of a named-lane response and absent otherwise.
* Steering is checked at safe boundaries (before each item and each delta):
  open parts are closed with the text streamed so far, the item is marked
  `incomplete`, and the response ends `response.incomplete` with reason
  `steered`.  The engine then starts the successor.

The engine iterates `events()`, sends each dict, sleeps after every `*.delta`
event to pace the stream, and aborts the socket when it meets `DROP`.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

from sessions_app.protocol import ids

from .codec import seal
from .model import Plan
from .tokens import count_tokens, split_tokens

__all__ = ["ResponseSpec", "Cut", "ResponseStream", "DROP"]

DROP = object()  # sentinel: close the transport abruptly here

# An output item's events; returns the terminal event when the item ended the response early.
Step = Generator[Any, None, "dict[str, Any] | None"]

FAILED_ERROR = {"code": "server_error", "message": "The server had an error while processing your request."}


@dataclass(frozen=True)
class ResponseSpec:
    """The request-derived fields every Response object of this response echoes."""

    id: str
    model: str
    created_at: int
    previous_response_id: str | None
    store: bool
    instructions: Any
    metadata: dict[str, str]
    tools: list[dict[str, Any]]
    tool_choice: Any
    parallel_tool_calls: bool
    max_output_tokens: int | None
    echo: dict[str, Any] = field(default_factory=dict)  # temperature, top_p, text, reasoning, …


@dataclass(frozen=True)
class Cut:
    """End the response early: `kind` is "fail", "drop" or "incomplete", after `after` tokens."""

    kind: str
    after: int


class ResponseStream:
    def __init__(
        self,
        spec: ResponseSpec,
        plan: Plan | None,
        *,
        stream_id: str | None,
        input_tokens: int,
        cached_tokens: int,
        compaction: dict[str, Any] | None = None,
        encrypted_reasoning: bool = False,
        cut: Cut | None = None,
    ) -> None:
        self.spec = spec
        self.plan = plan  # None: generate=false warm-up
        self.stream_id = stream_id
        self.input_tokens = input_tokens
        self.cached_tokens = cached_tokens
        self.compaction = compaction
        self.encrypted_reasoning = encrypted_reasoning
        self.cut = cut
        self.output: list[dict[str, Any]] = []
        self.status = "in_progress"
        self.steers: list[tuple[str, Any]] = []
        self._seq = 0
        self._output_tokens = 0

    # -- driven from outside ---------------------------------------------------------

    def next_sequence(self) -> int:
        seq = self._seq
        self._seq += 1
        return seq

    def request_steer(self, steer_id: str, steer_input: Any) -> None:
        """Queue steering input; the stream stops at its next safe boundary."""
        self.steers.append((steer_id, steer_input))

    @property
    def finished(self) -> bool:
        return self.status != "in_progress"

    # -- event building --------------------------------------------------------------

    def _event(self, event_type: str, **fields: Any) -> dict[str, Any]:
        event: dict[str, Any] = {"type": event_type, "sequence_number": self.next_sequence()}
        if self.stream_id is not None:
            event["stream_id"] = self.stream_id
        event.update(fields)
        return event

    def response_object(self, **overrides: Any) -> dict[str, Any]:
        spec = self.spec
        body: dict[str, Any] = {
            "id": spec.id,
            "object": "response",
            "created_at": spec.created_at,
            "status": self.status,
            "model": spec.model,
            "output": list(self.output),
            "parallel_tool_calls": spec.parallel_tool_calls,
            "tool_choice": spec.tool_choice,
            "tools": spec.tools,
            "previous_response_id": spec.previous_response_id,
            "store": spec.store,
            "instructions": spec.instructions,
            "metadata": spec.metadata,
            "max_output_tokens": spec.max_output_tokens,
            "background": False,
            "error": None,
            "incomplete_details": None,
            "usage": None,
            **spec.echo,
        }
        body.update(overrides)
        return body

    def usage(self) -> dict[str, Any]:
        reasoning = self.plan.reasoning_tokens if self.plan and self.plan.reasoning else 0
        output_tokens = self._output_tokens + reasoning
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_tokens, "cache_write_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": self.input_tokens + output_tokens,
        }

    def _terminal(self, status: str, **overrides: Any) -> dict[str, Any]:
        self.status = status
        fields: dict[str, Any] = {"usage": self.usage(), **overrides}
        if status == "completed":
            fields["completed_at"] = int(time.time())
        return self._event(f"response.{status}", response=self.response_object(**fields))

    def _steered(self) -> dict[str, Any]:
        return self._terminal("incomplete", incomplete_details={"reason": "steered"})

    # -- the sequence ----------------------------------------------------------------

    def events(self) -> Iterator[Any]:
        """Yield event dicts (and possibly `DROP`); see the module rules."""
        yield self._event("response.created", response=self.response_object())
        yield self._event("response.in_progress", response=self.response_object())
        plan = self.plan
        if plan is None:
            yield self._terminal("completed")
            return
        if self.compaction is not None:
            yield from self._compaction_item(self.compaction)
        if plan.reasoning:
            if self.steers:
                yield self._steered()
                return
            yield from self._reasoning_item(plan.reasoning)
        budget = self.cut.after if self.cut else None
        for call in plan.tool_calls:
            result = yield from self._function_call(call.name, call.arguments)
            if result is not None:
                yield result
                return
        if plan.text is not None:
            result = yield from self._message(plan.text, budget)
            if result is not None:
                yield result
                return
        if self.cut and self.cut.kind == "drop":
            yield DROP
        elif self.cut and self.cut.kind == "incomplete":
            yield self._terminal("incomplete", incomplete_details={"reason": "max_output_tokens"})
        elif self.cut and self.cut.kind == "fail":
            yield self._terminal("failed", output=[], error=FAILED_ERROR)
        elif self.steers:
            # Accepted just after the last delta: the terminal is still a safe boundary.
            yield self._steered()
        else:
            yield self._terminal("completed")

    def _compaction_item(self, item: dict[str, Any]) -> Iterator[dict[str, Any]]:
        index = len(self.output)
        yield self._event("response.output_item.added", output_index=index,
                          item={"id": item["id"], "type": "compaction", "encrypted_content": ""})
        yield self._event("response.compaction.compacting", item_id=item["id"], output_index=index)
        self.output.append(item)
        yield self._event("response.output_item.done", output_index=index, item=item)

    def _reasoning_item(self, summary: str) -> Iterator[dict[str, Any]]:
        index = len(self.output)
        item_id = ids.reasoning_id()
        common = {"item_id": item_id, "output_index": index, "summary_index": 0}
        yield self._event("response.output_item.added", output_index=index,
                          item={"id": item_id, "type": "reasoning", "summary": []})
        yield self._event("response.reasoning_summary_part.added", **common, part={"type": "summary_text", "text": ""})
        yield self._event("response.reasoning_summary_text.delta", **common, delta=summary)
        yield self._event("response.reasoning_summary_text.done", **common, text=summary)
        yield self._event("response.reasoning_summary_part.done", **common,
                          part={"type": "summary_text", "text": summary})
        item: dict[str, Any] = {"id": item_id, "type": "reasoning", "summary": [{"type": "summary_text", "text": summary}]}
        if self.encrypted_reasoning:
            item["encrypted_content"] = seal({"kind": "reasoning", "summary": summary})
        self.output.append(item)
        yield self._event("response.output_item.done", output_index=index, item=item)

    def _function_call(self, name: str, arguments: str) -> Step:
        if self.steers:
            return self._steered()
        index = len(self.output)
        item = {"id": ids.function_call_id(), "type": "function_call", "status": "in_progress",
                "call_id": ids.call_id(), "name": name, "arguments": ""}
        yield self._event("response.output_item.added", output_index=index, item=dict(item))
        streamed = ""
        for piece in _argument_pieces(arguments):
            if self.steers:
                self._close_function_call(item, index, streamed)
                return self._steered()
            streamed += piece
            self._output_tokens += count_tokens(piece) or 1
            yield self._event("response.function_call_arguments.delta", item_id=item["id"], output_index=index,
                              delta=piece)
        yield self._event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                          arguments=arguments)
        item.update(status="completed", arguments=arguments)
        self.output.append(item)
        yield self._event("response.output_item.done", output_index=index, item=item)
        return None

    def _close_function_call(self, item: dict[str, Any], index: int, streamed: str) -> None:
        # A steered call is recorded as incomplete; its arguments are what was streamed.
        item.update(status="incomplete", arguments=streamed)
        self.output.append(item)

    def _message(self, text: str, budget: int | None) -> Step:
        if self.steers:
            return self._steered()
        index = len(self.output)
        item_id = ids.message_id()
        where = {"item_id": item_id, "output_index": index, "content_index": 0}
        yield self._event("response.output_item.added", output_index=index,
                          item={"id": item_id, "type": "message", "role": "assistant", "status": "in_progress",
                                "content": []})
        yield self._event("response.content_part.added", **where,
                          part={"type": "output_text", "text": "", "annotations": []})
        streamed = ""
        tokens = split_tokens(text)
        for position, token in enumerate(tokens):
            if self.steers:
                yield from self._close_message(item_id, index, streamed, "incomplete")
                return self._steered()
            if budget is not None and position >= budget:
                kind = self.cut.kind if self.cut else "completed"
                if kind == "drop":
                    yield DROP
                    return None
                if kind == "fail":
                    return self._terminal("failed", output=[], error=FAILED_ERROR)
                yield from self._close_message(item_id, index, streamed, "incomplete")
                return self._terminal("incomplete", incomplete_details={"reason": "max_output_tokens"})
            streamed += token
            self._output_tokens += 1
            yield self._event("response.output_text.delta", **where, delta=token, logprobs=[])
        if self.cut and self.cut.kind == "drop":
            yield DROP
            return None
        yield from self._close_message(item_id, index, streamed, "completed")
        return None

    def _close_message(self, item_id: str, index: int, text: str, status: str) -> Iterator[dict[str, Any]]:
        where = {"item_id": item_id, "output_index": index, "content_index": 0}
        part = {"type": "output_text", "text": text, "annotations": []}
        yield self._event("response.output_text.done", **where, text=text, logprobs=[])
        yield self._event("response.content_part.done", **where, part=part)
        item = {"id": item_id, "type": "message", "role": "assistant", "status": status, "content": [part]}
        self.output.append(item)
        yield self._event("response.output_item.done", output_index=index, item=item)


def _argument_pieces(arguments: str) -> list[str]:
    """Split a JSON argument string into small deltas (about one token each)."""
    pieces = [arguments[i:i + 8] for i in range(0, len(arguments), 8)]
    return pieces or [""]
