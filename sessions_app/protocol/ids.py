"""Identifiers in OpenAI's style: a type prefix and random hex.

The prefixes are convention, not enforced by the SDK, but dashboards and
tests rely on them to tell item kinds apart at a glance.
"""

from __future__ import annotations

import secrets

__all__ = [
    "new_id",
    "response_id",
    "message_id",
    "function_call_id",
    "call_id",
    "reasoning_id",
    "compaction_id",
    "steer_id",
]


def new_id(prefix: str, nbytes: int = 24) -> str:
    return f"{prefix}_{secrets.token_hex(nbytes)}"


def response_id() -> str:
    return new_id("resp")


def message_id() -> str:
    return new_id("msg")


def function_call_id() -> str:
    return new_id("fc")


def call_id() -> str:
    return new_id("call", 12)


def reasoning_id() -> str:
    return new_id("rs")


def compaction_id() -> str:
    return new_id("cmp")


def steer_id() -> str:
    return new_id("steer", 12)
