"""A database outage is answered with 503, plainly, and logged in one line (no traceback).

* Pages: `DatabaseOutageMiddleware` turns django.db's OperationalError/InterfaceError (the
  connection is refused, lost or unusable) into the styled 503 page (templates/503.html) with
  `Retry-After`. It sits after AuthenticationMiddleware and before LoginRequiredMiddleware: its
  `process_view` resolves the signed-in user (a session lookup) first, so that lookup failing is
  a 503 too, and its `process_exception` catches the view's own queries. The page is rendered
  without the request: no context processor, no session, no user lookup.
* Sockets: `DatabaseOutageGuard` wraps the WebSocket routes. A database error before the handshake
  is decided ends as HTTP 503 through the ASGI "websocket.http.response" denial extension (which
  sessions_app/serve.py adds to Daphne); without the extension (plain `daphne`) and after the
  socket was accepted, the client gets one `error` event (status 503) and close code 4503.
"""

from __future__ import annotations

import json
import logging

from django.contrib.auth.models import AnonymousUser
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse
from django.template.loader import render_to_string

__all__ = ["DATABASE_ERRORS", "DatabaseOutageGuard", "DatabaseOutageMiddleware", "UNAVAILABLE_CLOSE_CODE"]

logger = logging.getLogger("sessions_app.outage")

DATABASE_ERRORS = (OperationalError, InterfaceError)
RETRY_AFTER_SECONDS = 5
UNAVAILABLE_CLOSE_CODE = 4503
DENIAL_EXTENSION = "websocket.http.response"


def unavailable_page() -> HttpResponse:
    html = render_to_string("503.html", {"user": AnonymousUser(), "messages": (),
                                         "retry_after": RETRY_AFTER_SECONDS})
    response = HttpResponse(html, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    response._has_been_logged = True  # our warning line says it; django.request would add an ERROR line
    return response


class DatabaseOutageMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        try:
            getattr(request, "user", None) and request.user.is_authenticated  # noqa: B018 (the lookup itself)
        except DATABASE_ERRORS as exc:
            return self._unavailable(request, exc)
        return None

    def process_exception(self, request, exception):
        if isinstance(exception, DATABASE_ERRORS):
            return self._unavailable(request, exception)
        return None

    def _unavailable(self, request, exc: Exception) -> HttpResponse:
        logger.warning("Database unavailable: %s %s answered 503 (%s)", request.method, request.path,
                       type(exc).__name__)
        return unavailable_page()


def unavailable_event() -> dict:
    return {"type": "error", "status": 503, "error": {
        "type": "server_error", "code": "service_unavailable",
        "message": f"The database is unavailable; try again in {RETRY_AFTER_SECONDS} s.", "param": None,
    }}


class DatabaseOutageGuard:
    """ASGI wrapper for the WebSocket routes: a database error ends the socket as described above."""

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        decided = False  # the handshake was answered (accepted or refused)

        async def watched_send(message):
            nonlocal decided
            if message["type"] in ("websocket.accept", "websocket.close", "websocket.http.response.start"):
                decided = True
            await send(message)

        try:
            return await self.application(scope, receive, watched_send)
        except DATABASE_ERRORS as exc:
            logger.warning("Database unavailable: WebSocket %s %s (%s)", scope.get("path"),
                           "closed with 4503" if decided or DENIAL_EXTENSION not in scope.get("extensions", {})
                           else "refused with HTTP 503", type(exc).__name__)
            await _refuse(scope, send, accepted=decided)


async def _refuse(scope, send, *, accepted: bool) -> None:
    if not accepted and DENIAL_EXTENSION in scope.get("extensions", {}):
        body = b"The database is unavailable; try again shortly.\n"
        await send({"type": "websocket.http.response.start", "status": 503, "headers": [
            (b"content-type", b"text/plain; charset=utf-8"), (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
        ]})
        await send({"type": "websocket.http.response.body", "body": body})
        return
    if not accepted:
        await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": json.dumps(unavailable_event())})
    await send({"type": "websocket.close", "code": UNAVAILABLE_CLOSE_CODE})
