"""Personal-token authentication for the gateway socket and the HTTP API: throttled, and every failure logged.

Rules:

* Ask `throttle` first (`throttled`/`athrottled`); while it refuses, no token is looked up.
* `token_authenticate` is the lookup: it returns the token (and its user), or counts the failure (throttle.py) and
  logs it (`token_refused`, which a lookup made from the event loop calls on its own).
* Each refusal is one WARNING on logger ``sessions_app.security`` with the face (gateway, api), the
  reason (missing, unknown, revoked, inactive user, throttled), the client address and the token's
  public prefix: never the token itself. The console handler's redaction filter
  (redaction.py) stays as the second line.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from .models import TOKEN_PREFIX, ApiToken, hash_token
from .throttle import failure_record, throttled, token_prefix

__all__ = [
    "Reason", "SECURITY_LOG", "Throttled", "bearer_authenticate", "failure_log", "token_authenticate", "token_refused",
]

SECURITY_LOG = logging.getLogger("sessions_app.security")


class Reason(enum.StrEnum):
    MISSING = "missing"
    UNKNOWN = "unknown"
    REVOKED = "revoked"
    INACTIVE_USER = "inactive user"
    THROTTLED = "throttled"


def failure_log(*, face: str, reason: Reason, address: str | None, prefix: str | None,
                retry_after: int | None = None) -> None:
    SECURITY_LOG.warning(
        "%s token refused: reason=%s address=%s token_prefix=%s%s", face, reason.value, address or "unknown",
        prefix or "-", f" retry_after={retry_after}s" if retry_after is not None else "",
    )


def _failure_reason(raw: str | None) -> Reason:
    """Why ApiToken.authenticate said no (one more query, on failures only)."""
    if not raw:
        return Reason.MISSING
    token = None
    if raw.startswith(TOKEN_PREFIX):
        token = ApiToken.objects.select_related("user").filter(token_hash=hash_token(raw)).first()
    if token is None:
        return Reason.UNKNOWN
    return Reason.REVOKED if token.revoked_at is not None else Reason.INACTIVE_USER


def token_authenticate(*, raw: str | None, address: str | None, face: str) -> ApiToken | None:
    """The active token (`.user` loaded), or None after counting and logging the failure (sync: database
    and cache)."""
    token = ApiToken.authenticate_token(raw) if raw else None
    if token is not None:
        return token
    token_refused(raw=raw, address=address, face=face)
    return None


def token_refused(*, raw: str | None, address: str | None, face: str) -> None:
    """Count and log a refused token (sync: database and cache): what `token_authenticate` does on a failure,
    for a lookup made elsewhere (gateway_auth.py, from the event loop on PostgreSQL)."""
    prefix = token_prefix(raw)
    failure_record(address=address, prefix=prefix)
    failure_log(face=face, reason=_failure_reason(raw), address=address, prefix=prefix)


@dataclass(frozen=True)
class Throttled:
    """Too many failures from this address or token prefix: refused before any lookup."""

    retry_after: int


def bearer_authenticate(*, raw: str, address: str | None, face: str) -> ApiToken | Throttled | None:
    """An HTTP request's `Authorization: Bearer` token: throttle first, then the lookup (sync).

    The token (`.user` loaded), `Throttled` while the throttle refuses, or None for a refused token
    (counted and logged)."""
    prefix = token_prefix(raw)
    refused = throttled(address=address, prefix=prefix)
    if refused is not None:
        failure_log(face=face, reason=Reason.THROTTLED, address=address, prefix=prefix,
                    retry_after=refused.retry_after)
        return Throttled(refused.retry_after)
    return token_authenticate(raw=raw, address=address, face=face)
