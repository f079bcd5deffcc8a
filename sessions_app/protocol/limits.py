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
# Fewer than 100 digits before an exponent of fewer than 3 digits is below 1e200: only a frame with a
# longer digit run or a longer exponent can hold a number out of range (a pre-screen; strings match too).
_BIG_NUMBER = re.compile(r"\d{100}|[eE]\+?\d{3}")


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


_PLAIN = json.JSONDecoder(parse_constant=_refuse_constant)
_HOOKED = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_bounded_int)
_SCREEN_FROM = 16 * 1024


def decode_frame(frame: str | bytes) -> Any:
    """The JSON value of one client frame; raises `ProtocolError` (see the module rules)."""
    if isinstance(frame, bytes):
        try:
            text = frame.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise errors.invalid_json(f"a binary frame must be UTF-8 ({exc.reason} at byte {exc.start})") from None
    else:
        text = frame
    # The number hooks cost a Python call per number, and the pre-screen a scan of the text: a short
    # frame (every create of an ordinary turn) takes the hooks, a long one is screened first.
    hooked = len(text) < _SCREEN_FROM or _BIG_NUMBER.search(text) is not None
    try:
        data = (_HOOKED if hooked else _PLAIN).decode(text)
    except RecursionError:
        raise errors.nesting_too_deep(MAX_DEPTH) from None
    except ValueError as exc:
        raise errors.invalid_json(str(exc)[:200]) from None
    # Fast path: without that many brackets the depth cannot exceed the limit, and without an escape
    # or a raw surrogate/NUL (a str frame that never was UTF-8) no string can hold one.
    strings = "\\u" in text or _UNSTORABLE.search(text) is not None
    if strings or text.count("[") + text.count("{") > MAX_DEPTH:
        _walk(data, strings=strings)
    return data


def _walk(value: Any, *, strings: bool) -> None:
    """Check the depth (and with `strings`, every string and key) of a decoded value, level by level:
    iterative, and cheap per node (a 1 MiB frame can hold 350,000 empty arrays)."""
    if type(value) is str:
        _check_string(value)
    level, depth = [value] if type(value) in (list, dict) else [], 1
    while level:
        deeper = []
        for node in level:
            if type(node) is dict:
                if strings:
                    for key in node:
                        _check_string(key)
                node = node.values()
            for child in node:
                kind = type(child)
                if kind is str:
                    if strings:
                        _check_string(child)
                elif kind is list or kind is dict:
                    if depth == MAX_DEPTH:
                        raise errors.nesting_too_deep(MAX_DEPTH)
                    if child:
                        deeper.append(child)
        level, depth = deeper, depth + 1


def _check_string(text: str) -> None:
    found = _UNSTORABLE.search(text)
    if found is not None:
        what = "U+0000" if found.group() == "\x00" else f"a lone surrogate (U+{ord(found.group()):04X})"
        raise errors.invalid_unicode(what)
