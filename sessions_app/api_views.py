"""JSON endpoints for programs and the chat page (not pages: no templates).

Auth: an `Authorization: Bearer sb_…` personal token, or the Django session.
Session requests must pass the CSRF check (the chat page sends the
`X-CSRFToken` header); token requests are exempt, since no browser attaches
that header on its own.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from . import selectors
from .client_address import request_client_address
from .compaction import CompactionFailed, conversation_compact
from .relay import limits
from .throttle import throttled, token_prefix
from .token_guard import Reason, failure_log, token_authenticate


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"type": "invalid_request_error" if status < 500 else "server_error",
                                   "code": code, "message": message}}, status=status)


def _authenticated_user(request: HttpRequest):
    """(user, None) or (None, the error response): token first, then session + CSRF."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        # Same throttle and log as the gateway socket (token_guard.py): refused before any lookup.
        address, prefix = request_client_address(request), token_prefix(token.strip())
        refused = throttled(address=address, prefix=prefix)
        if refused is not None:
            failure_log(face="api", reason=Reason.THROTTLED, address=address, prefix=prefix,
                        retry_after=refused.retry_after)
            response = JsonResponse({"error": {
                "type": "rate_limit_error", "code": "too_many_failed_attempts",
                "message": f"Too many failed authentication attempts; try again in {refused.retry_after} s.",
            }}, status=429)
            response["Retry-After"] = str(refused.retry_after)
            return None, response
        api_token = token_authenticate(raw=token.strip(), address=address, face="api")
        if api_token is None:
            return None, _error(401, "invalid_token", "The API token is invalid or revoked.")
        return api_token.user, None
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
