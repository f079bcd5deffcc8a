"""What each known error code means and what Switchboard does about it: the staff errors view shows both.

The words follow docs/protocol.md (§3 for the upstream errors the relay recovers from, §5 for the errors
the relay itself sends) and static/js/errors.js (what users are told). Keep the three in step.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KnownError:
    meaning: str
    recovery: str


SEND_IT_AGAIN = "None: the client is told and may send a corrected request."
LIMIT = "None: refused with rate_limit_error; the message says which limit and when to retry."

CATALOG: dict[str, KnownError] = {
    # Upstream errors (docs/protocol.md §3: the relay recovers from these when recovery is on).
    "previous_response_not_found": KnownError(
        "The upstream no longer has the response a create continues (its socket-local cache is gone), or the "
        "id is not in the user's records.",
        "Recovery on: the create is resent as a replay (new chain, context rebuilt from the records), at most "
        "twice; the failed attempt is superseded. An id the user has no record of is refused as is."),
    "websocket_connection_limit_reached": KnownError(
        "The upstream socket reached its 60-minute limit and closes.",
        "Waits for the close, opens a new upstream socket and resends (replayed unless store=true)."),
    "rate_limit_exceeded": KnownError(
        "The upstream rate limited a request.",
        "Browser face: switchboard.retrying, waits the pause asked for (doubled, at most 30 s), resends up to "
        "3 times. Gateway: relayed as is, the SDK retries."),
    "server_error": KnownError("The upstream had an internal error.", "Relayed to the client, who may retry."),
    # Client mistakes (§5).
    "invalid_json": KnownError("A frame was not a JSON object (or not strict UTF-8).", SEND_IT_AGAIN),
    "nesting_too_deep": KnownError("JSON nested more than 64 levels.", SEND_IT_AGAIN),
    "invalid_number": KnownError("NaN, Infinity or a number outside a double's range.", SEND_IT_AGAIN),
    "invalid_unicode": KnownError("A lone surrogate or U+0000 in a string.", SEND_IT_AGAIN),
    "missing_required_parameter": KnownError("An event without a type.", SEND_IT_AGAIN),
    "unknown_event_type": KnownError("A type other than response.create / response.steer.", SEND_IT_AGAIN),
    "unsupported_parameter": KnownError("stream, stream_options, background… on a create.", SEND_IT_AGAIN),
    "invalid_stream_id": KnownError("The envelope's stream_id failed its checks.", SEND_IT_AGAIN),
    "invalid_value": KnownError("A value the envelope checks (or the upstream) refused.", SEND_IT_AGAIN),
    "invalid_type": KnownError("A field of the wrong type.", SEND_IT_AGAIN),
    "frame_too_large": KnownError("A frame over SWITCHBOARD_MAX_FRAME_BYTES (default 1 MiB).", SEND_IT_AGAIN),
    "model_not_allowed": KnownError("The profile's allowed_models does not list the model.", SEND_IT_AGAIN),
    "read_only": KnownError("A staff viewer sent an event on someone else's conversation.", SEND_IT_AGAIN),
    "conversation_not_found": KnownError("The gateway named a conversation that does not exist for the user.",
                                         SEND_IT_AGAIN),
    "conversation_mismatch": KnownError("The response named belongs to another of the user's conversations.",
                                        SEND_IT_AGAIN),
    "response_not_found": KnownError("A create or steer names a response not in the user's records.",
                                     SEND_IT_AGAIN),
    "item_not_found": KnownError("A create names an item not in the user's records.", SEND_IT_AGAIN),
    "unsupported_reference": KnownError("Stored data the relay cannot check per user (file_id, prompt…).",
                                        SEND_IT_AGAIN),
    "too_many_sockets": KnownError("The user's concurrent-socket limit.", "The socket is closed with 4429."),
    "too_many_upstream_sockets": KnownError("The user's concurrent upstream-socket limit.", LIMIT),
    "responses_per_hour_exceeded": KnownError("The user's responses-per-hour limit.", LIMIT),
    "tokens_per_day_exceeded": KnownError("The user's tokens-per-day limit.", LIMIT),
    "credentials_revoked": KnownError("The socket's token was revoked, its user deactivated, or a viewer lost "
                                      "staff.", "The socket is closed; the client must sign in again."),
    # Switchboard and its upstream link (§5).
    "conversation_busy": KnownError("Another socket streams this conversation.",
                                    "An idle upstream socket held elsewhere is closed and taken; a busy one is not."),
    "no_upstream_profile": KnownError("The conversation has no upstream profile the user may use.",
                                      "None: staff must add or allow a profile."),
    "upstream_unavailable": KnownError("The upstream could not be reached.", "The client may retry."),
    "upstream_rejected": KnownError("The upstream refused the handshake (bad key, 403, 429).",
                                    "None: staff should check the profile's key."),
    "upstream_timeout": KnownError("The upstream did not complete the handshake in time, or sent nothing for "
                                   "SWITCHBOARD_UPSTREAM_STALL_SECONDS while a request was open.",
                                   "That upstream socket is closed; the next request opens a new one."),
    "upstream_protocol_error": KnownError("The upstream sent a non-JSON, binary or typeless frame.",
                                          "That upstream socket is closed; the next request opens a new one."),
    "upstream_frame_too_large": KnownError("The upstream sent a frame over SWITCHBOARD_MAX_UPSTREAM_FRAME_BYTES.",
                                           "That upstream socket is closed; the next request opens a new one."),
    "upstream_disconnected": KnownError("The upstream socket closed before the request ended.",
                                        "What streamed is kept; the next request opens a new socket."),
    "recording_failed": KnownError("The input could not be saved, so it was not sent.", "The client retries."),
    "recording_overflow": KnownError("The recorder's queue overflowed and dropped records.",
                                     "Logged and recorded; the client may retry."),
    "internal_error": KnownError("A bug in Switchboard.", "Logged with its traceback."),
}

UNKNOWN = KnownError("Not a code Switchboard documents (an upstream code relayed as is).", "Relayed unchanged.")


def explain(code: str) -> KnownError:
    return CATALOG.get(code, UNKNOWN)
