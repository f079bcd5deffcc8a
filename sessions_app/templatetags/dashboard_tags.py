"""Template filters for the dashboard (static/js/dashboard.js keeps the same words up to date in the browser)."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.dateformat import format as date_format

register = template.Library()

MINUTE, HOUR, DAY = 60, 3600, 86400


@register.filter
def relative_time(value: datetime | None, now: datetime | None = None) -> str:
    """"just now", "5 min ago", "3 h ago", "4 days ago"; from a week back, the date ("12 Mar").

    dashboard.js applies the same thresholds to `<time datetime>` every half minute: change both together."""
    if value is None:
        return ""
    seconds = ((now or timezone.now()) - value).total_seconds()
    if seconds < MINUTE:
        return "just now"  # clocks a little ahead included
    if seconds < HOUR:
        return f"{int(seconds // MINUTE)} min ago"
    if seconds < DAY:
        return f"{int(seconds // HOUR)} h ago"
    if seconds < 7 * DAY:
        days = int(seconds // DAY)
        return "1 day ago" if days == 1 else f"{days} days ago"
    local = timezone.localtime(value)
    same_year = local.year == timezone.localtime(now or timezone.now()).year
    return date_format(local, "j M" if same_year else "j M Y")
