"""GET /api/conversations/<uuid>/: a conversation as JSON (exports.py), for its owner or staff.

Auth as every JSON endpoint (api_views._authenticated_user): an `Authorization: Bearer sb_…` token or the
session; a GET changes nothing, so it needs no CSRF token. Another user's conversation is a 404, the same
as one that does not exist.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from . import selectors
from .api_views import _authenticated_user, _error
from .exports import conversation_export_json


@csrf_exempt  # a GET: nothing to forge
@login_not_required  # token requests carry no session; _authenticated_user answers 401 without either
@require_GET
def conversation_export_view(request: HttpRequest, pk) -> HttpResponse:
    user, failure = _authenticated_user(request)
    if failure is not None:
        return failure
    try:
        conversation = selectors.conversation_get(user=user, pk=pk)
    except Http404:
        return _error(404, "conversation_not_found", "No conversation with that id is yours to read.")
    response = HttpResponse(conversation_export_json(conversation=conversation), content_type="application/json")
    response["Content-Disposition"] = f'inline; filename="conversation-{conversation.pk}.json"'
    response["Cache-Control"] = "private, no-store"
    return response
