"""Decode a client frame within limits every hop can parse, store and forward.

Rules (each refusal is an `invalid_request_error`, status 400, no `param`):

* A binary frame must be UTF-8: it is forwarded upstream as a text frame (`invalid_json`).
* Numbers are finite doubles: `NaN`, `Infinity`, `-Infinity`, floats that overflow
  (`1e999`) and integers beyond a double's range (more than 308 digits) are refused
  (`invalid_number`). JSON has no such values, PostgreSQL's jsonb refuses them, and
  `json.dumps` would write the first ones back as non-JSON.
* Arrays and objects nest at most `MAX_DEPTH` levels (`nesting_too_deep`). The
  decoder's own recursion limit is reported the same way; the depth of what it
  did decode is measured by an iterative walk, never by recursion.
* Strings, keys included, hold no lone surrogate (`"\\ud800"`) and no U+0000
  (`invalid_unicode`): PostgreSQL cannot store them and upstreams refuse them.

`decode_frame` is the only caller of `json.loads` for client frames; protocol/events.py
validates what it returns.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

from . import errors

__all__ = ["MAX_DEPTH", "decode_frame"]

MAX_DEPTH = 64
_FLOAT_MAX = sys.float_info.max
_MAX_INT_DIGITS = len(str(int(_FLOAT_MAX)))  # 309
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _refuse_constant(name: str) -> Any:
    raise errors.invalid_number(name)


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise errors.invalid_number(_shown(literal))
    return value


def _bounded_int(literal: str) -> int:
    digits = len(literal) - (literal[0] == "-")
    # Checked before int(): Python refuses more than 4300 digits with a ValueError of its own.
    if digits > _MAX_INT_DIGITS or (digits == _MAX_INT_DIGITS and abs(int(literal)) > _FLOAT_MAX):
        raise errors.invalid_number(_shown(literal))
    return int(literal)


def _shown(literal: str) -> str:
    return literal if len(literal) <= 24 else f"{literal[:12]}…({len(literal)} characters)"


def decode_frame(frame: str | bytes) -> Any:
    """The JSON value of one client frame; raises `ProtocolError` (see the module rules)."""
    if isinstance(frame, bytes):
        try:
            text = frame.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise errors.invalid_json(f"a binary frame must be UTF-8 ({exc.reason} at byte {exc.start})") from None
    else:
        text = frame
    try:
        data = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_bounded_int)
    except RecursionError:
        raise errors.nesting_too_deep(MAX_DEPTH) from None
    except ValueError as exc:
        raise errors.invalid_json(str(exc)[:200]) from None
    # Fast path: without that many brackets the depth cannot exceed the limit, and without an escape
    # or a raw surrogate/NUL (a str frame that never was UTF-8) no string can hold one.
    deep = text.count("[") + text.count("{") > MAX_DEPTH
    if deep or "\\u" in text or _UNSTORABLE.search(text):
        _walk(data)
    return data


def _walk(value: Any) -> None:
    """Check depth and strings of a decoded value in one iterative pass."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            _check_string(node)
            continue
        if isinstance(node, dict):
            for key in node:
                _check_string(key)
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > MAX_DEPTH:
            raise errors.nesting_too_deep(MAX_DEPTH)
        stack.extend((child, depth + 1) for child in children if isinstance(child, (str, dict, list)))


def _check_string(text: str) -> None:
    found = _UNSTORABLE.search(text)
    if found is not None:
        what = "U+0000" if found.group() == "\x00" else f"a lone surrogate (U+{ord(found.group()):04X})"
        raise errors.invalid_unicode(what)
