"""Endpoints for programs and the chat page (not pages: no templates): JSON, and /metrics for Prometheus.

Auth: an `Authorization: Bearer sb_…` personal token, or the Django session.
Session requests must pass the CSRF check (the chat page sends the
`X-CSRFToken` header); token requests are exempt, since no browser attaches
that header on its own.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from . import metrics, selectors
from .client_address import request_client_address
from .compaction import CompactionFailed, conversation_compact
from .relay import limits
from .token_guard import Throttled, bearer_authenticate


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"type": "invalid_request_error" if status < 500 else "server_error",
                                   "code": code, "message": message}}, status=status)


def _bearer(request: HttpRequest, raw: str, *, face: str):
    """(token, None) or (None, the error response). Same throttle and log as the gateway socket
    (token_guard.py): refused before any lookup."""
    found = bearer_authenticate(raw=raw.strip(), address=request_client_address(request), face=face)
    if isinstance(found, Throttled):
        response = JsonResponse({"error": {
            "type": "rate_limit_error", "code": "too_many_failed_attempts",
            "message": f"Too many failed authentication attempts; try again in {found.retry_after} s.",
        }}, status=429)
        response["Retry-After"] = str(found.retry_after)
        return None, response
    if found is None:
        return None, _error(401, "invalid_token", "The API token is invalid or revoked.")
    return found, None


def _authenticated_user(request: HttpRequest):
    """(user, None) or (None, the error response): token first, then session + CSRF."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        api_token, failure = _bearer(request, token, face="api")
        return (api_token.user if api_token is not None else None), failure
    if not request.user.is_authenticated:
        return None, _error(401, "not_authenticated", "Sign in or send an API token.")
    rejected = CsrfViewMiddleware(lambda r: None).process_view(request, None, (), {})
    if rejected is not None:
        return None, _error(403, "csrf_failed", "CSRF verification failed.")
    return request.user, None


@csrf_exempt  # checked by hand for session requests, see _authenticated_user
@login_not_required  # token requests carry no session
@require_POST
def conversation_compact_view(request: HttpRequest, pk) -> JsonResponse:
    """Compact a conversation upstream; its next `response.create` starts from the compacted window."""
    user, failure = _authenticated_user(request)
    if failure is not None:
        return failure
    try:
        conversation = selectors.conversation_get(user=user, pk=pk, for_write=True)
    except Http404:
        return _error(404, "conversation_not_found", "No conversation with that id belongs to you.")
    try:  # a compaction is an upstream call: it counts against the same limits as a response
        limits.check_rate(user_pk=user.pk)
    except limits.LimitExceeded as exc:
        limited = JsonResponse({"error": {"type": exc.type, "code": exc.code, "message": exc.message}}, status=429)
        if exc.retry_after:
            limited["Retry-After"] = str(exc.retry_after)
        return limited
    try:
        compaction = conversation_compact(conversation=conversation)
    except CompactionFailed as exc:
        return _error(exc.status, exc.code, exc.message)
    return JsonResponse({
        "object": "switchboard.compaction",
        "id": compaction.pk,
        "conversation": str(conversation.pk),
        "base_response_id": compaction.response.response_id if compaction.response else None,
        "items_replaced": compaction.items_replaced,
        "input_tokens_before": compaction.input_tokens_before,
        "tokens_after": compaction.tokens_after,
        "output": compaction.compacted_output,
        "created_at": compaction.created_at.isoformat(),
    })


@login_not_required  # a monitoring system sends a token; anonymous requests get 401, not the sign-in page
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus' scrape (metrics.py): staff signed in, or an API token that may read metrics."""
    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        api_token, failure = _bearer(request, raw, face="metrics")
        if failure is not None:
            return failure
        if not api_token.reads_metrics:
            return _error(403, "metrics_not_allowed", "This API token may not read metrics.")
    elif not request.user.is_authenticated:
        refused = _error(401, "not_authenticated", "Sign in as staff or send an API token that may read metrics.")
        refused["WWW-Authenticate"] = 'Bearer realm="switchboard"'
        return refused
    elif not request.user.is_staff:
        return _error(403, "staff_only", "Only staff may read metrics.")
    return HttpResponse(metrics.exposition(), content_type=metrics.CONTENT_TYPE)
