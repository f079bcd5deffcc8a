"""The relay's own `error` events: what Switchboard answers when it, not the upstream, refuses.

Every builder returns a `ProtocolError` (protocol/errors.py), so the relay
raises and reports them like any protocol error and the client sees the
ordinary envelope `{"type":"error","status":…,"error":{"type","code","message","param"}}`.
The codes are documented in docs/protocol.md. `source` says whom to blame
in the `ErrorEvent` row: the client's input, or the relay and its upstream.
"""

from __future__ import annotations

import json

from ..protocol.errors import ProtocolError

__all__ = [
    "RelayError",
    "read_only",
    "frame_too_large",
    "model_not_allowed",
    "conversation_not_found",
    "conversation_busy",
    "conversation_mismatch",
    "no_upstream_profile",
    "upstream_unavailable",
    "upstream_rejected",
    "upstream_protocol_error",
    "upstream_violation",
    "upstream_timeout",
    "upstream_stalled",
    "upstream_frame_too_large",
    "upstream_disconnected",
    "recording_overflow",
    "recording_failed",
    "internal_error",
]


class RelayError(ProtocolError):
    """A `ProtocolError` that also says who caused it (`client` or `relay`), for the ErrorEvent row."""

    def __init__(self, code: str, message: str, *, source: str = "relay", **kwargs) -> None:
        super().__init__(code, message, **kwargs)
        self.source = source


def read_only() -> RelayError:
    return RelayError("read_only", "This conversation is read-only for you: only its owner may send events.",
                      status=403, type="permission_error", source="client")


def frame_too_large(size: int, limit: int) -> RelayError:
    return RelayError("frame_too_large", f"The frame is {size} bytes; the largest accepted is {limit} bytes.",
                      status=413, source="client")


def model_not_allowed(model: str, allowed: tuple[str, ...]) -> RelayError:
    return RelayError("model_not_allowed",
                      f"The model '{model}' is not allowed on this upstream. Allowed: {', '.join(allowed)}.",
                      param="model", source="client")


def conversation_not_found() -> RelayError:
    return RelayError("conversation_not_found", "No conversation with that id belongs to you.", status=404,
                      param="metadata", source="client")


def conversation_mismatch(stream_id: str | None, *, param: str | None = "metadata") -> RelayError:
    """The create names another conversation (metadata) or a stored id of another of the user's conversations."""
    if param == "metadata":
        message = "This socket already relays another conversation; open a new socket."
    else:
        message = (f"'{param}' names a response of another of your conversations; continue it on a socket "
                   "of that conversation.")
    return RelayError("conversation_mismatch", message, status=409, param=param, stream_id=stream_id,
                      source="client")


def conversation_busy() -> RelayError:
    return RelayError("conversation_busy",
                      "Another socket is streaming this conversation; try again when its response has ended.",
                      status=409)


def no_upstream_profile() -> RelayError:
    return RelayError("no_upstream_profile", "No upstream profile is available to you.", status=503,
                      type="server_error")


def upstream_unavailable(detail: str) -> RelayError:
    return RelayError("upstream_unavailable", detail, status=503, type="server_error")


def upstream_rejected(status: int, detail: str) -> RelayError:
    # 429 stays a rate limit for the client; any other refusal is the gateway's problem (502).
    if status == 429:
        return RelayError("upstream_rejected", detail, status=429, type="rate_limit_error")
    return RelayError("upstream_rejected", detail, status=502, type="server_error")


def upstream_protocol_error(detail: str) -> RelayError:
    return RelayError("upstream_protocol_error", detail, status=502, type="server_error")


def upstream_violation(frame: str | bytes) -> RelayError:
    """A frame that breaks the protocol (stream.decode_event refused it), said in words."""
    if isinstance(frame, bytes):
        what = f"a binary frame ({len(frame)} bytes)"
    elif frame.lstrip().startswith("{") and '"type"' not in frame:
        what = "a JSON frame without a \"type\"" if _is_json(frame) else "a frame that is not JSON"
    else:
        what = "a JSON frame that is not an event" if _is_json(frame) else "a frame that is not JSON"
    return upstream_protocol_error(f"The upstream sent {what}, which breaks the protocol; that upstream socket "
                                   "was closed.")


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def upstream_timeout(detail: str) -> RelayError:
    """The upstream took too long: no completed handshake, or silence while a request was open (link.py)."""
    return RelayError("upstream_timeout", detail, status=504, type="server_error")


def upstream_stalled(seconds: float) -> RelayError:
    return upstream_timeout(f"The upstream sent nothing for {seconds:g} s while this response was open "
                            "(SWITCHBOARD_UPSTREAM_STALL_SECONDS); that upstream socket was closed. Try again.")


def upstream_frame_too_large(limit: int) -> RelayError:
    return RelayError("upstream_frame_too_large",
                      f"The upstream sent a frame larger than {limit} bytes (SWITCHBOARD_MAX_UPSTREAM_FRAME_BYTES); "
                      "that upstream socket was closed.", status=502, type="server_error")


def upstream_disconnected(close_code: int | None, reason: str, text: str = "") -> RelayError:
    """`text`: the close frame's reason, when the upstream gave one (it says why in its own words)."""
    said = f": {text[:120]}" if text else ""
    return RelayError("upstream_disconnected",
                      f"The upstream socket closed ({reason}, code {close_code}{said}) before this response ended.",
                      status=502, type="server_error")


def recording_overflow() -> RelayError:
    return RelayError("recording_overflow",
                      "The recorder fell behind and dropped records; the stream continues but this "
                      "conversation's history may be incomplete.", status=500, type="server_error")


def recording_failed() -> RelayError:
    return RelayError("recording_failed",
                      "Your input could not be saved, so it was not sent upstream. Try again.",
                      status=503, type="server_error")


def internal_error() -> RelayError:
    return RelayError("internal_error", "The relay failed to handle this event.", status=500, type="server_error")
