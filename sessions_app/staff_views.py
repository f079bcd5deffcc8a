"""Staff pages beside the admin's changelists: the overview, errors and usage (linked from the admin index).

Each view is wrapped in `admin.site.admin_view` where it is routed (project/urls.py): staff only, and
the admin's chrome (`each_context`). Figures come from analytics.py; charts are SVG from charts.py.
"""

from __future__ import annotations

from datetime import datetime

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.safestring import mark_safe

from . import analytics, charts, staff_admin  # noqa: F401  (registers ModelPrice in the admin)
from .error_catalog import CATALOG, explain
from .models import UpstreamConnection

#: Upstream socket endings the overview always lists, even at 0: the ones staff watch.
WATCHED_ENDINGS = (
    UpstreamConnection.CloseReason.CONNECTION_LIMIT, UpstreamConnection.CloseReason.UPSTREAM_ERROR,
    UpstreamConnection.CloseReason.IDLE, UpstreamConnection.CloseReason.SERVER_SHUTDOWN,
)
WINDOW_LABELS = {"day": "last 24 hours", "week": "last 7 days", "month": "last 30 days"}


def _window(request: HttpRequest, default: str = "day") -> str:
    window = request.GET.get("window", default)
    return window if window in analytics.WINDOWS else default


def _x_labels(buckets: list[datetime], unit: str) -> list[str]:
    return [b.strftime("%H:00" if unit == "hour" else "%m-%d") for b in buckets]


def _page(request: HttpRequest, template: str, title: str, **context) -> HttpResponse:
    return TemplateResponse(request, template, {**admin.site.each_context(request), "title": title,
                                                "windows": WINDOW_LABELS, **context})


def overview(request: HttpRequest) -> HttpResponse:
    """One page of health figures: live sockets, traffic, errors, latency, tokens, compaction, endings."""
    window = _window(request)
    since, unit = analytics.window_start(window), analytics.bucket_of(window)
    traffic = analytics.responses_over_time(since=since, unit=unit)
    ttft = analytics.ttft_over_time(since=since, unit=unit)
    labels = _x_labels([r.bucket for r in traffic], unit)
    responses = sum(r.responses for r in traffic)
    turns, broken = sum(r.turns for r in traffic), sum(r.broken for r in traffic)
    recovered = sum(r.failed - r.broken for r in traffic)
    savings = analytics.compaction_savings(since=since)
    saved = savings["before"] - savings["after"]
    endings = {reason: (label, n) for reason, label, n in analytics.socket_endings(since=since)}
    for reason in WATCHED_ENDINGS:
        endings.setdefault(reason.value, (str(reason.label), 0))
    tokens_by_user, tokens_by_model = analytics.tokens_by_user_and_model()
    ending_rows = sorted(((label, n, reason) for reason, (label, n) in endings.items()), key=lambda r: (-r[1], r[0]))
    return _page(
        request, "admin/sessions_app/overview.html", "Overview", window=window, window_label=WINDOW_LABELS[window],
        live=analytics.live_sockets(), responses=responses, failed=broken, recovered=recovered,
        error_rate=(100.0 * broken / turns) if turns > 0 else 0.0,
        responses_chart=mark_safe(charts.bar_chart(  # noqa: S308 (charts.py escapes every text it draws)
            labels, [("ended", [r.responses - r.failed for r in traffic]), ("failed", [r.broken for r in traffic]),
                     ("failed, then resent", [r.failed - r.broken for r in traffic])],
            title=f"Responses per {unit}, {WINDOW_LABELS[window]}")),
        responses_legend=mark_safe(charts.legend(  # noqa: S308
            ["ended", "failed or interrupted", "failed, recovered by a resend"])),
        error_chart=mark_safe(charts.line_chart(  # noqa: S308
            labels, [("error rate", [100.0 * r.error_rate if r.responses else None for r in traffic])],
            title=f"Error rate per {unit}", unit="%")),
        ttft_chart=mark_safe(charts.line_chart(  # noqa: S308
            labels, [("p50", [r.p50 for r in ttft]), ("p95", [r.p95 for r in ttft])],
            title=f"Time to first text per {unit}, p50 and p95", unit=" ms")),
        ttft_legend=mark_safe(charts.legend(["p50", "p95"])),  # noqa: S308
        ttft_rows=[r for r in ttft if r.p50 is not None],
        tokens_by_user=tokens_by_user, tokens_by_model=tokens_by_model,
        top_errors=[{**row, "known": row["code"] in CATALOG} for row in analytics.top_error_codes(since=since)],
        savings=savings, saved=saved, saved_percent=(100.0 * saved / savings["before"]) if savings["before"] else 0,
        endings=ending_rows,
        endings_chart=mark_safe(charts.hbar_chart(  # noqa: S308
            [(label, n) for label, n, _ in ending_rows], title="Upstream sockets by why they ended")),
    )


def errors(request: HttpRequest) -> HttpResponse:
    """Counts per code over time, each code's meaning and Switchboard's recovery, the latest errors linked."""
    window = _window(request, "week")
    since, unit = analytics.window_start(window), analytics.bucket_of(window)
    code = request.GET.get("code") or None
    top = analytics.top_error_codes(since=since, limit=20)
    codes = [row["code"] for row in top]
    series = analytics.errors_over_time(since=since, unit=unit, codes=codes)
    buckets = analytics.bucket_range(since, timezone.now(), unit)
    charted = codes[: len(charts.COLOURS)]
    return _page(
        request, "admin/sessions_app/errors.html", "Errors", window=window, window_label=WINDOW_LABELS[window],
        code=code,
        rows=[{**row, "explained": explain(row["code"]), "known": row["code"] in CATALOG,
               "sparkline": mark_safe(charts.sparkline(  # noqa: S308
                   series[row["code"]], title=f"{row['code'] or '(no code)'} per {unit}"))} for row in top],
        chart=mark_safe(charts.bar_chart(  # noqa: S308
            _x_labels(buckets, unit), [(c or "(no code)", series[c]) for c in charted],
            title=f"Errors per {unit} by code, {WINDOW_LABELS[window]}")) if codes else "",
        legend=mark_safe(charts.legend([c or "(no code)" for c in charted])) if codes else "",  # noqa: S308
        recent=[(error, explain(error.code)) for error in analytics.recent_errors(code=code)],
        catalog=sorted(CATALOG.items()),
    )


def usage(request: HttpRequest) -> HttpResponse:
    """Tokens per user, per API token and per model, with a cost estimate from the ModelPrice table."""
    window = _window(request, "week")
    since = analytics.window_start(window)
    tables = []
    for by, heading in (("user", "Per user"), ("token", "Per API token"), ("model", "Per model")):
        rows = analytics.usage(since=since, by=by)
        tables.append({"heading": heading, "by": by, "rows": rows, "total": analytics.total(rows)})
    return _page(request, "admin/sessions_app/usage_cost.html", "Usage and cost", window=window,
                 window_label=WINDOW_LABELS[window], tables=tables, prices=analytics.prices().values())
