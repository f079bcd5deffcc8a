"""The simulator's plain-HTTP side: API-key checks and `POST /v1/responses/compact`.

Pure functions from (method, path, headers, body) to (status, JSON body), so
they are tested without a socket; server.py only moves bytes.

Rules:

* A key is read from `Authorization: Bearer <key>` or Azure's `api-key`.
  With `require_key` unset any key (or none) is accepted; otherwise a wrong
  or missing key gets 401 `invalid_api_key`, the key masked as OpenAI does
  (first 5 and last 4 characters), never echoed in full.
* The compact endpoint takes `input` and/or `previous_response_id` (a
  `store=true` response of this simulator) and answers a `CompactedResponse`
  (see compaction.py for why `output` holds only the compaction item).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sessions_app.protocol.items import input_items

from .compaction import compacted_response
from .store import ResponseStore

__all__ = ["RESPONSES_PATH", "COMPACT_PATH", "mask_key", "auth_failure", "compact_endpoint", "json_bytes"]

RESPONSES_PATH = "/v1/responses"
COMPACT_PATH = "/v1/responses/compact"


def mask_key(key: str) -> str:
    if len(key) <= 9:
        return "*" * len(key)
    return f"{key[:5]}***{key[-4:]}"


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The API key of a request (header names compared case-insensitively by the caller's mapping)."""
    authorization = headers.get("Authorization") or headers.get("authorization")
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return headers.get("api-key") or headers.get("Api-Key")


def auth_failure(headers: Mapping[str, str], require_key: str | None) -> dict[str, Any] | None:
    """The 401 body when the request's key is not accepted, else None."""
    if require_key is None:
        return None
    key = presented_key(headers)
    if key == require_key:
        return None
    shown = mask_key(key) if key else "(none)"
    return {
        "error": {
            "message": f"Incorrect API key provided: {shown}. "
            "You can find your API key at https://platform.openai.com/account/api-keys.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }


def _error(status: int, message: str, code: str | None, param: str | None = None) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}


def compact_endpoint(
    *,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    store: ResponseStore,
    require_key: str | None,
) -> tuple[int, dict[str, Any]]:
    """Answer one plain HTTP request to the simulator port."""
    path = path.split("?", 1)[0]
    if path != COMPACT_PATH:
        return _error(404, f"Unknown request URL: {method} {path}.", "unknown_url")
    if method != "POST":
        return _error(405, f"Method {method} not allowed for {path}; use POST.", "method_not_allowed")
    failure = auth_failure(headers, require_key)
    if failure is not None:
        return 401, failure
    try:
        request = json.loads(body or b"{}")
    except ValueError as exc:
        return _error(400, f"We could not parse the JSON body of your request: {exc}", "invalid_json")
    if not isinstance(request, dict):
        return _error(400, "The request body must be a JSON object.", "invalid_json")
    if not request.get("model"):
        return _error(400, "Missing required parameter: 'model'.", "missing_required_parameter", "model")
    items: list[dict[str, Any]] = []
    previous = request.get("previous_response_id")
    if previous is not None:
        record = store.get(previous)
        if record is None:
            return _error(400, f"Previous response with id '{previous}' not found.", "previous_response_not_found",
                          "previous_response_id")
        items.extend(record.context)
    if not isinstance(request.get("input", []), (str, list)):
        return _error(400, "Invalid type for 'input': expected a string or an array.", "invalid_type", "input")
    items.extend(input_items(request))
    if not items:
        return _error(400, "Nothing to compact: provide 'input' or 'previous_response_id'.", "invalid_value", "input")
    return 200, compacted_response(items)


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
