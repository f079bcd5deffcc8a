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
* A new conversation's row is written with other sockets' rows. On SQLite it is queued ahead of its
  create's own rows (recording's `queue_row`): the request and the upstream socket's row commit with it
  or after it, so a first turn waits for one group commit, not two (bench/README.md). On PostgreSQL it is
  committed first (`insert_row`). If the database refuses it, the client gets `recording_failed`, its
  create is not sent (its request's row, which names it, is refused too), and the socket's next create
  writes it again, ahead of its own rows (`write_new_conversation`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, Protocol

from ..models import Conversation
from ..protocol.errors import ProtocolError, previous_response_not_found
from ..protocol.references import References
from ..recording import Recorder, insert_row, log_failure, queue_row, read_on_db_thread
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
            self._unwritten = found.new
            await self.write_new_conversation(lane)
        return found

    async def write_new_conversation(self, lane: str | None) -> None:
        """Write the new conversation's row ahead of this create's rows, if it has not committed yet (module
        rules); on PostgreSQL, raise `recording_failed` if the database refuses it."""
        row = self._unwritten
        if row is None or self._queued is not None:
            return
        queued = queue_row(row)
        if queued is not None:
            self._queued = queued
            queued.add_done_callback(self._settled)
            return
        try:
            await insert_row(row)
        except Exception as failure:
            self._unwritten = None  # the session takes no conversation: its next create chooses afresh
            log_failure(logger, failure, _NOT_RECORDED)
            refused = relay_errors.recording_failed()
            refused.stream_id = lane
            raise refused from None
        self._unwritten = None

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
