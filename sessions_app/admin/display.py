"""How the admin shows a value: one function per kind of value, so every list reads the same way.

Rules: everything here returns escaped HTML (format_html) or plain text; classes, never style attributes
(the CSP allows no inline style). The look is static/css/admin-lists.css, the copy buttons
static/js/admin_copy.js; `ListMedia` brings both onto a page.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone
from django.utils.html import format_html

EMPTY = "—"
SHORT_ID_CHARS = 14  # resp_ + 9: enough to tell ids apart in a list; the copy button copies the whole id
JSON_SUMMARY_CHARS = 80


class ListMedia:
    css = {"all": ["css/admin-lists.css"]}
    js = ["js/admin_copy.js"]


def badge(value: str, label: str) -> str:
    """A coloured badge: the class names the value (`sb-badge-failed`), the text is its label."""
    return format_html('<span class="sb-badge sb-badge-{}">{}</span>', value or "none", label)


def flag(on: bool, label: str) -> str:
    """A boolean that reads as what it means: the word where true, nothing where false."""
    return format_html('<span class="sb-flag">{}</span>', label) if on else ""


def when(moment: datetime | None) -> str:
    """Local time with seconds and milliseconds (two events in the same second still order); the year is in
    the title and the datetime attribute, not the column."""
    if moment is None:
        return EMPTY
    local = timezone.localtime(moment)
    return format_html('<time datetime="{}" title="{}">{}</time>', moment.isoformat(), local.strftime("%Y-%m-%d"),
                       local.strftime("%m-%d %H:%M:%S.") + f"{local.microsecond // 1000:03d}")


def duration(start: datetime | None, end: datetime | None) -> str:
    """`end - start` in words a person reads at a glance: 840 ms, 12.3 s, 4 min 05 s, 2 h 03 min."""
    if start is None or end is None:
        return EMPTY
    return span(end - start)


def span(delta: timedelta) -> str:
    ms = delta.total_seconds() * 1000
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    seconds = int(ms // 1000)
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def milliseconds(value: float | None) -> str:
    return EMPTY if value is None else f"{value:.0f} ms"


def number(value: int | None) -> str:
    return EMPTY if value is None else f"{value:,}".replace(",", "\u202f")  # thin space: 12 345


def short_id(value: str | None) -> str:
    """A long id cut to its start, the whole id in its title and behind a copy button."""
    if not value:
        return EMPTY
    shown = value if len(value) <= SHORT_ID_CHARS + 1 else value[:SHORT_ID_CHARS] + "…"
    return format_html('<span class="sb-id"><code title="{}">{}</code>'
                       '<button type="button" class="sb-copy" data-copy-text="{}" aria-label="Copy {}">copy</button>'
                       "</span>", value, shown, value, value)


def short_text(value: str, limit: int) -> str:
    value = " ".join((value or "").split())
    return value if len(value) <= limit else value[: limit - 1] + "…"


def pretty_json(value: Any) -> str:
    """Readonly JSON as a collapsible block: the summary shows its start, the block all of it, indented."""
    if value in (None, "", {}, []):
        return format_html("<code>{}</code>", json.dumps(value)) if value is not None else EMPTY
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)
    flat = short_text(json.dumps(value, ensure_ascii=False), JSON_SUMMARY_CHARS)
    return format_html('<details class="sb-json"><summary><code>{}</code></summary><pre>{}</pre></details>',
                       flat, text)
