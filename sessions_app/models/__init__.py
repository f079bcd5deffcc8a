"""What Switchboard keeps. Writes go through ``services.py`` (the relay's through ``recording/``); reads
shared by several pages through ``selectors.py``.

* upstream.py: upstream profiles (where a socket goes, with which encrypted key), and model prices;
* records.py: conversations and everything that happened in them: upstream sockets, responses (the
  continuation chain, forks included), items, errors, compactions;
* access.py: personal API tokens, per-user limits, and the open client sockets the limits count.
"""

from .access import LAST_USED_PRECISION, TOKEN_PREFIX, ApiToken, ClientSocket, UserLimits, hash_token, read_handshake
from .records import CompactionEvent, Conversation, ErrorEvent, Item, ResponseRecord, UpstreamConnection
from .upstream import (
    KEY_BOUND_FIELDS,
    ModelPrice,
    UpstreamProfile,
    UpstreamProfileQuerySet,
    profile_for_new_conversation,
)

__all__ = [
    "UpstreamProfile", "UpstreamProfileQuerySet", "KEY_BOUND_FIELDS", "Conversation", "UpstreamConnection",
    "ResponseRecord", "Item", "ErrorEvent", "CompactionEvent", "ApiToken", "UserLimits", "ClientSocket",
    "TOKEN_PREFIX", "LAST_USED_PRECISION", "hash_token", "read_handshake", "ModelPrice", "profile_for_new_conversation",
]
