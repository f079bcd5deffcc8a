"""Revocation reaches open sockets: each process re-checks the credentials of the sockets it holds.

A socket is authenticated once, at its handshake. Rules:

* Every `SWITCHBOARD_REVOCATION_SECONDS` (default 2) a process checks, in a
  few queries on a database thread, the credential of every client socket it
  holds: the browser's session (still there, same user, and its password hash
  still the user's: Django's own rule for a request), the gateway's API token
  (not revoked), the user (still active) and, for a staff viewer of another
  user's conversation, the staff flag.
* A socket whose credential no longer holds gets an `error` event
  (`credentials_revoked`, status 401, naming why) and is closed with
  **4401**; a staff viewer who lost the flag, with **4403**. A browser socket
  whose session ended or no longer matches the password gets
  `switchboard.session_changed` and **4408** instead: the page reconnects,
  and its handshake succeeds only if the browser is still signed in (a
  password change cycles the changing browser's session key). The response in
  flight on a browser conversation runs to its end upstream and is recorded
  (hub.py); on the gateway it ends `interrupted` with its socket. Nothing new starts.
* Logout, a password change, a deactivation or a revocation in this process
  wakes the check at once (`check_soon`); other processes see it within one
  interval. The check needs only the database, not the channel layer.
* It joins no channel-layer group, on purpose (a decision about outages): a
  group could not be joined while Redis is down, and a revocation waiting on
  it would wait for the outage. Polling the database, each process sees every
  revocation within one interval whatever the layer does. While the database
  is down the check logs a warning and tries again next interval: nothing is
  closed on a guess, and nothing new is admitted (new sockets get 503).
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.utils.crypto import constant_time_compare
from django.utils.module_loading import import_string

from ..models import ApiToken
from ..process import PerLoop, loop_task, per_loop
from ..protocol.errors import error_event
from ..recording import read_on_db_thread
from .edge_log import EdgeLog

__all__ = ["Credential", "watch", "unwatch", "check_soon", "revoked_credentials", "revoked_event", "REVOKED_CODE", "STAFF_LOST_CODE"]

logger = logging.getLogger("sessions_app.security")

REVOKED_CODE = 4401
STAFF_LOST_CODE = 4403
SESSION_CHANGED_CODE = 4408
SESSION_CHANGES = frozenset({"signed_out", "password_changed"})
SendText = Callable[[str], Awaitable[None]]
CloseSocket = Callable[[int], Awaitable[None]]


@dataclass(eq=False)
class Credential:
    """What one socket was admitted with, and how to tell and close it."""

    user_pk: int
    send: SendText
    close: CloseSocket
    session_key: str | None = None
    token_pk: int | None = None
    staff_view: bool = False  # a staff member watching another user's conversation


class _Checker:
    """One event loop's watched credentials, and the task that re-checks them."""

    def __init__(self) -> None:
        self.watched: set[Credential] = set()
        self.wake = asyncio.Event()
        self.failures = EdgeLog(logger, "Re-checking the credentials of open sockets")

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=settings.SWITCHBOARD_REVOCATION_SECONDS)
            except TimeoutError:
                pass
            self.wake.clear()
            if not self.watched:
                continue
            try:
                revoked = await read_on_db_thread(revoked_credentials, credentials=list(self.watched))
            except Exception as exc:
                self.failures.failed(exc)
                continue
            self.failures.succeeded()
            for credential, why in revoked:
                self.watched.discard(credential)
                await _close(credential, why)


_CHECKERS: PerLoop = weakref.WeakKeyDictionary()
_TASKS: PerLoop = weakref.WeakKeyDictionary()


def watch(credential: Credential) -> Credential:
    """Check `credential` from now on (and start this loop's checker once)."""
    checker = per_loop(_CHECKERS, _Checker)
    checker.watched.add(credential)
    loop_task(_TASKS, checker.run, "switchboard-revocation")
    return credential


def unwatch(credential: Credential | None) -> None:
    if credential is not None:
        for checker in list(_CHECKERS.values()):
            checker.watched.discard(credential)


def check_soon() -> None:
    """Wake every checker of this process (from any thread): a credential changed here."""
    for loop, checker in list(_CHECKERS.items()):
        if not loop.is_closed():
            loop.call_soon_threadsafe(checker.wake.set)


async def _close(credential: Credential, why: str) -> None:
    staff_lost = why == "staff_revoked"
    logger.warning("Closing a socket of user %s: %s", credential.user_pk, why)
    if credential.session_key is not None and why in SESSION_CHANGES:
        # The browser may still be signed in under a new session (a password change cycles the key):
        # it reconnects, and its handshake is refused with 4401 if it is signed out.
        await _send_quietly(credential, {"type": "switchboard.session_changed", "reason": why})
        await credential.close(SESSION_CHANGED_CODE)
        return
    await _send_quietly(credential, revoked_event(why))
    await credential.close(STAFF_LOST_CODE if staff_lost else REVOKED_CODE)


def revoked_event(why: str) -> dict:
    """The error event a socket gets before it is closed for `why` (not a session change)."""
    staff_lost = why == "staff_revoked"
    message = {
        "signed_out": "You were signed out; sign in again to continue.",
        "password_changed": "Your password changed; sign in again to continue.",
        "user_inactive": "Your account was deactivated.",
        "token_revoked": "The API token of this socket was revoked.",
        "staff_revoked": "You are no longer staff, so you may not watch this conversation.",
    }[why]
    return error_event(code="credentials_revoked", message=f"{message} ({why})", status=403 if staff_lost else 401,
                       type="permission_error" if staff_lost else "authentication_error")


async def _send_quietly(credential: Credential, event: dict) -> None:
    try:
        await credential.send(json.dumps(event))
    except Exception:  # the client may be gone already
        pass


def connect_signals() -> None:
    """Wake the checks when a credential may have changed in this process (apps.py)."""
    from django.contrib.auth.signals import user_logged_out
    from django.db.models.signals import post_save

    def changed(**kwargs) -> None:
        check_soon()

    user_logged_out.connect(changed, dispatch_uid="switchboard-revocation-logout", weak=False)
    post_save.connect(changed, sender=get_user_model(), dispatch_uid="switchboard-revocation-user", weak=False)
    post_save.connect(changed, sender=ApiToken, dispatch_uid="switchboard-revocation-token", weak=False)


def revoked_credentials(*, credentials: list[Credential]) -> list[tuple[Credential, str]]:
    """The credentials that no longer hold, each with why (sync: a few queries for all of them)."""
    users = {u.pk: u for u in get_user_model().objects.filter(pk__in={c.user_pk for c in credentials})}
    token_pks = {c.token_pk for c in credentials if c.token_pk is not None}
    live_tokens = set(ApiToken.objects.filter(pk__in=token_pks, revoked_at=None).values_list("pk", flat=True))
    store_class = import_string(settings.SESSION_ENGINE + ".SessionStore")
    sessions: dict[str, dict] = {}
    revoked = []
    for credential in credentials:
        user = users.get(credential.user_pk)
        why = None
        if user is None or not user.is_active:
            why = "user_inactive"
        elif credential.token_pk is not None and credential.token_pk not in live_tokens:
            why = "token_revoked"
        elif credential.session_key is not None:
            if credential.session_key not in sessions:
                sessions[credential.session_key] = store_class(session_key=credential.session_key).load()
            data = sessions[credential.session_key]
            if data.get(SESSION_KEY) != str(user.pk):
                why = "signed_out"
            elif not constant_time_compare(data.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash()):
                why = "password_changed"
        if why is None and credential.staff_view and not user.is_staff:
            why = "staff_revoked"
        if why is not None:
            revoked.append((credential, why))
    return revoked
