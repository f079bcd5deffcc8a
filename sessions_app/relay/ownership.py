"""The relay's ownership check: a client names only stored ids of its own user's conversation.

Every user shares the upstream's API key, and the upstream resolves
`previous_response_id` (and the other references protocol/references.py
finds) against everything stored on that key, whatever `store` says. So
before a create is written or sent, each id it names must belong to the
conversation this socket drives:

* An id this session has seen (streamed on it, on its upstream socket, or the
  conversation's latest response at attach) needs no query: the usual
  continuation costs nothing.
* Any other id is looked up among the user's records (relay_context.owned_references,
  on a recorder thread): an id of another user's, or an unknown one, gets the
  same `previous_response_not_found` (`item_not_found` for an item), so that
  existence cannot be probed; an id of another of the user's own
  conversations gets `conversation_mismatch`.
* Ids found are remembered for the session's life.
* A gateway socket's first create also chooses its conversation (`gateway_conversation`): one trip
  reads both (relay_context.conversation_for_gateway); a create that names no id and no conversation,
  on a socket whose profile was read with its token, needs none.
* A new conversation's row is written with its first request (recording's `Recorder.queue_row`): on SQLite
  in the same group commit or an earlier one, on PostgreSQL in the request's own transaction, so a first
  turn waits for one commit, not two (bench/README.md). If the database refuses it, the client gets
  `recording_failed`, its create is not sent (the request's row, which names it, is refused with it), and
  the socket's next create writes it again, ahead of its own rows (`write_new_conversation`). A first
  create refused before its rows are written (a model the profile does not allow, a quota) has the
  conversation written alone (`write_alone`), so that the refusal's record can name it; if that fails too
  (the database is down), the record does not name it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, Protocol

from ..models import Conversation
from ..protocol.errors import ProtocolError, previous_response_not_found
from ..protocol.references import References
from ..recording import Recorder, insert_row, log_failure, read_on_db_thread
from . import errors as relay_errors
from .context import (
    ConversationView,
    GatewayConversation,
    Owned,
    ProfileView,
    conversation_for_gateway,
    new_gateway_conversation,
    owned_references,
)

__all__ = ["Ownership", "OwnershipHost"]

logger = logging.getLogger("sessions_app.relay")

_NOT_RECORDED = "Could not record a new conversation; its create was not relayed"


class OwnershipHost(Protocol):
    """What the check needs of its relay session: whose ids, which conversation, what it already streamed."""

    user: Any
    conversation: ConversationView | None
    api_token_pk: int | None
    recorder: Recorder

    def has_seen(self, response_id: str) -> bool: ...


class Ownership:
    """Checks a create's references for one relay session (see the module rules); `host` is the session."""

    def __init__(self, host: OwnershipHost) -> None:
        self.host = host
        self._responses: set[str] = set()
        self._items: set[str] = set()
        self._unwritten: Conversation | None = None  # a new conversation whose row has not committed
        self._queued: asyncio.Future[Any] | None = None  # its row, queued ahead of its create's rows (SQLite)

    @property
    def _conversation_id(self) -> uuid.UUID | None:
        return self.host.conversation.id if self.host.conversation is not None else None

    def learn(self, owned: Owned) -> None:
        """Remember the ids of `owned` that are in this session's conversation."""
        self._responses.update(i for i, c in owned.responses.items() if c == self._conversation_id)
        self._items.update(i for i, c in owned.items.items() if c == self._conversation_id)

    async def check(self, refs: References, lane: str | None) -> None:
        """Raise the error for the first id in `refs` the user may not name here."""
        unknown = References(
            tuple((param, i) for param, i in refs.response_ids if i not in self._responses and not self.host.has_seen(i)),
            tuple((param, i) for param, i in refs.item_ids if i not in self._items),
        )
        if not unknown:
            return
        owned = await read_on_db_thread(owned_references, user=self.host.user,
                                        response_ids={i for _, i in unknown.response_ids},
                                        item_ids={i for _, i in unknown.item_ids})
        self.learn(owned)
        self.verify(unknown, owned, lane)

    async def gateway_conversation(self, *, requested: str | None, continues: str | None, refs: References,
                                   lane: str | None, title: str, profile: ProfileView | None) -> GatewayConversation:
        """The conversation a gateway socket's first create drives, a new one written (see the module rules);
        raises the error for an id of `refs` the user does not own (and none is made then)."""
        host = self.host
        if not requested and not continues and not refs and profile is not None:
            found = new_gateway_conversation(user=host.user, title=title, api_token_pk=host.api_token_pk,
                                             profile=profile)
        else:
            found = await read_on_db_thread(
                conversation_for_gateway, user=host.user, requested=requested, title=title, continues=continues,
                api_token_pk=host.api_token_pk, profile=profile,
                references=(tuple(i for _, i in refs.response_ids), tuple(i for _, i in refs.item_ids)))
        if found.view is None:
            self.verify(refs, found.owned, lane)
        if found.new is not None:
            self._unwritten = found.new  # written with this create's request (`write_new_conversation`)
        return found

    def write_new_conversation(self) -> None:
        """Queue the new conversation's row ahead of the request the caller writes next, if it has not committed
        yet (module rules)."""
        row = self._unwritten
        if row is None or self._queued is not None:
            return
        self._queued = queued = self.host.recorder.queue_row(row)
        queued.add_done_callback(self._settled)

    async def write_alone(self) -> bool:
        """Write the new conversation's row now, if no request has taken it (module rules: a refused first
        create). False when it is not stored: it could not be written (logged; the next create tries again), or
        the request that took it failed with it."""
        queued, row = self._queued, self._unwritten
        if queued is not None:  # a request's write took it: stored unless that failed
            return not queued.done() or (not queued.cancelled() and queued.exception() is None)
        if row is None:
            return True
        try:
            await insert_row(row)
        except Exception as failure:
            log_failure(logger, failure, _NOT_RECORDED)
            return False
        self._unwritten = None
        return True

    def _settled(self, queued: asyncio.Future[Any]) -> None:
        self._queued = None
        failure = queued.exception() if not queued.cancelled() else asyncio.CancelledError()
        if failure is None:
            self._unwritten = None
        else:  # the create's request was refused with it; the next create writes it again
            log_failure(logger, failure, _NOT_RECORDED)

    def verify(self, refs: References, owned: Owned, lane: str | None) -> None:
        """Raise the error for the first id in `refs` that `owned` (the user's, as looked up) does not place
        in this session's conversation."""
        for param, response_id in refs.response_ids:
            self._verify(owned.responses.get(response_id), _response_not_found(param, response_id), lane)
        for param, item_id in refs.item_ids:
            self._verify(owned.items.get(item_id), _item_not_found(param, item_id), lane)

    def _verify(self, conversation_id: uuid.UUID | None, not_found: ProtocolError, lane: str | None) -> None:
        if conversation_id is None:
            not_found.stream_id = lane
            raise not_found
        if conversation_id != self._conversation_id:
            raise relay_errors.conversation_mismatch(lane, param=not_found.param)


def _response_not_found(param: str, response_id: str) -> ProtocolError:
    if param == "previous_response_id":
        return previous_response_not_found(response_id)
    return ProtocolError("response_not_found", f"Response with id '{response_id}' not found.", param=param)


def _item_not_found(param: str, item_id: str) -> ProtocolError:
    return ProtocolError("item_not_found", f"Item with id '{item_id}' not found.", param=param)
