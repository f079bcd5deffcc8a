"""The dashboard's usage block: the signed-in user's own tokens and estimated cost over the last 7 days."""

from __future__ import annotations

from django import template

from .. import analytics

register = template.Library()

DAYS = 7


@register.inclusion_tag("sessions_app/partials/my_usage.html", takes_context=True)
def my_usage(context) -> dict:
    """Only the request's user: analytics.usage filters on the conversation's owner."""
    user = context["request"].user
    rows = analytics.usage(since=analytics.window_start("week"), by="model", owner=user)
    return {"days": DAYS, "rows": rows, "total": analytics.total(rows)}
