"""The deterministic "model": what to answer, given everything in the context.

Rules (docs/simulator.md, "The model"):

* The answer is a pure function of the context it sees (items, tools, tool
  choice, model name and the directives of the latest user text), so a
  `previous_response_id` continuation and a full-context replay of the same
  conversation answer alike.
* "Context items" counts conversation items: messages of any role, function
  calls and function call outputs.  Reasoning items are not counted (a replay
  usually drops them); a compaction item counts as the items it summarised,
  so the count survives compaction.
* `remember: X` in a user message stores the fact X; `what did I ask you to
  remember?` lists every fact, in order, including facts carried inside
  compaction items.
* Every text reply except `/long` ends with `[context items: N]`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from sessions_app.protocol.items import item_text, item_type

from .codec import unseal
from .directives import Directives
from .tokens import count_tokens

__all__ = ["ContextView", "ToolCall", "Plan", "read_context", "plan_reply", "is_reasoning_model", "filler"]

REMEMBER_RE = re.compile(r"\bremember:\s*(.+)", re.IGNORECASE | re.DOTALL)
RECALL_RE = re.compile(r"what did i ask you to remember", re.IGNORECASE)
COUNT_RE = re.compile(r"how many (context )?items", re.IGNORECASE)
GREETING_RE = re.compile(r"\b(hello|hi|hey)\b", re.IGNORECASE)
DIRECTIVE_RE = re.compile(r"/(?:tool\s+\S+(?:\s+\{.*\})?|long\s+\d+|slow\s+\d+|error\s+\w+|fail|incomplete|drop|compact)\b",
                          re.DOTALL)
PLACE_RE = re.compile(r"\b(?:in|for|at|of|about|to|from|near)\s+([A-Z][\w'\-]*(?:\s+[A-Z][\w'\-]*)*)")
NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")
FILLER = ("the", "lane", "will", "keep", "each", "byte", "flow", "fast", "and", "then", "send", "more")
STOP_VERBS = frozenset({"get", "set", "list", "run", "do", "make", "fetch", "create", "update", "delete",
                        "search", "find", "lookup", "look", "up", "call"})


@dataclass(frozen=True)
class ContextView:
    """What the model reads out of a context."""

    items: int
    facts: tuple[str, ...]
    last_user: str | None
    tool_results: tuple[tuple[str, str], ...]  # (tool name, output) of the trailing outputs
    user_messages: tuple[str, ...] = ()


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str  # a JSON string, as on the wire


@dataclass(frozen=True)
class Plan:
    """The model's answer: reasoning summary, tool calls or text."""

    reasoning: str | None
    reasoning_tokens: int
    tool_calls: tuple[ToolCall, ...] = ()
    text: str | None = None


def read_context(items: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> ContextView:
    count = 0
    facts: list[str] = []
    users: list[str] = []
    names: dict[str, str] = {}
    trailing: list[tuple[str, str]] = []
    for item in items:
        kind = item_type(item)
        if kind == "compaction":
            payload = unseal(item.get("encrypted_content", "")) or {}
            count += int(payload.get("items", 0))
            facts.extend(payload.get("facts", []))
            users.extend(payload.get("user_messages", []))
            trailing = []
            continue
        if kind == "reasoning":
            continue
        count += 1
        if kind == "function_call_output":
            trailing.append((names.get(item.get("call_id", ""), "tool"), item_text(item)))
            continue
        trailing = []
        if kind == "function_call":
            names[item.get("call_id", "")] = item.get("name", "tool")
        elif kind == "message" and item.get("role") == "user":
            text = item_text(item)
            users.append(text)
            if (match := REMEMBER_RE.search(_strip_directives(text))) and not RECALL_RE.search(text):
                facts.append(match.group(1).strip())
    return ContextView(
        items=count,
        facts=tuple(facts),
        last_user=users[-1] if users else None,
        tool_results=tuple(trailing),
        user_messages=tuple(users),
    )


def is_reasoning_model(model: str) -> bool:
    """o-series names (o1, o3, o4-mini) and anything with "reason" in it."""
    return bool(re.match(r"o\d", model)) or "reason" in model.lower()


def filler(n: int, offset: int = 0) -> str:
    """Exactly `n` tokens of deterministic filler (each word ≤ 4 chars = one token)."""
    words = [FILLER[(offset + i) % len(FILLER)] for i in range(n)]
    return " ".join(words)


def plan_reply(
    *,
    view: ContextView,
    directives: Directives,
    model: str,
    tools: list[dict[str, Any]],
    tool_choice: Any,
    parallel_tool_calls: bool = True,
) -> Plan:
    reasoning = None
    reasoning_tokens = 0
    if is_reasoning_model(model):
        words = len((view.last_user or "").split())
        reasoning = f"The user sent {words} words; {view.items} context items in view. Answer directly."
        reasoning_tokens = 3 * count_tokens(reasoning)
    calls = _tool_calls(view, directives, tools, tool_choice, parallel_tool_calls)
    if calls:
        return Plan(reasoning, reasoning_tokens, tool_calls=calls)
    return Plan(reasoning, reasoning_tokens, text=_reply_text(view, directives))


def _strip_directives(text: str) -> str:
    """The text without directives, spaces collapsed within each line; line breaks stay (Markdown needs them)."""
    lines = (" ".join(line.split()) for line in DIRECTIVE_RE.sub(" ", text).splitlines())
    return "\n".join(lines).strip()


def _reply_text(view: ContextView, directives: Directives) -> str:
    if directives.long is not None:
        return filler(directives.long, view.items)
    suffix = f" [context items: {view.items}]"
    if view.tool_results:
        parts = [f"The {name} tool returned {output}." for name, output in view.tool_results]
        return " ".join(parts) + suffix
    text = _strip_directives(view.last_user or "")
    if RECALL_RE.search(text):
        if view.facts:
            return "You asked me to remember: " + "; ".join(view.facts) + "." + suffix
        return "You have not asked me to remember anything." + suffix
    if match := REMEMBER_RE.search(text):
        return f"Okay, I will remember: {match.group(1).strip()}." + suffix
    if COUNT_RE.search(text):
        return f"I can see {view.items} context items." + suffix
    if not text:
        return "Done." + suffix
    greeting = "Hello! " if GREETING_RE.search(text) else ""
    return f'{greeting}You said: "{text}".' + suffix


# -- function calling -----------------------------------------------------------------


def _tool_calls(
    view: ContextView,
    directives: Directives,
    tools: list[dict[str, Any]],
    tool_choice: Any,
    parallel: bool,
) -> tuple[ToolCall, ...]:
    if directives.calls:
        return tuple(ToolCall(name, _dumps(arguments)) for name, arguments in directives.calls)
    functions = [t for t in tools if t.get("type") == "function" and t.get("name")]
    if not functions or tool_choice == "none":
        return ()
    text = _strip_directives(view.last_user or "")
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "function":
        chosen = [t for t in functions if t["name"] == tool_choice.get("name")]
    elif view.tool_results:
        return ()  # answer the tool output instead of calling again
    else:
        chosen = [t for t in functions if _mentions(text, t["name"])]
        if tool_choice == "required" and not chosen:
            chosen = functions[:1]
        if not parallel:
            chosen = chosen[:1]
    return tuple(ToolCall(t["name"], build_arguments(t, text)) for t in chosen)


def _mentions(text: str, name: str) -> bool:
    lowered = text.lower()
    if name.lower() in lowered:
        return True
    words = [w for w in re.split(r"[_\-.]|(?<=[a-z])(?=[A-Z])", name) if w]
    keywords = [w.lower() for w in words if w.lower() not in STOP_VERBS]
    text_words = set(re.findall(r"[a-z0-9]+", lowered))
    return bool(keywords) and all(k in text_words for k in keywords)


def build_arguments(tool: dict[str, Any], text: str) -> str:
    """Arguments for every schema property, filled from the user's text."""
    properties = (tool.get("parameters") or {}).get("properties") or {}
    return _dumps({name: _value_for(name, schema or {}, text) for name, schema in properties.items()})


def _value_for(name: str, schema: dict[str, Any], text: str) -> Any:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    explicit = re.search(rf"\b{re.escape(name)}\s*[:=]\s*\"?([^\",\n]+)", text, re.IGNORECASE)
    if schema.get("enum"):
        options = schema["enum"]
        return next((o for o in options if str(o).lower() in text.lower()), options[0])
    if kind in ("integer", "number"):
        match = NUMBER_RE.search(explicit.group(1) if explicit else text)
        if not match:
            return 0
        number = float(match.group(0))
        return int(number) if kind == "integer" else number
    if kind == "boolean":
        return not re.search(r"\b(no|not|false|without)\b", text, re.IGNORECASE)
    if kind == "array":
        return []
    if kind == "object":
        return {}
    if explicit:
        return explicit.group(1).strip()
    if match := PLACE_RE.search(text):
        return match.group(1)
    return text.strip()[:200]


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
