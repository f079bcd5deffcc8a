"""The socket limits count and write in one guarded INSERT (live/sockets.py, relay/limits.py): sockets of one
user that arrive together are admitted up to the limit and no further, on both databases; a user or token
deleted since the handshake is refused like a revoked one, not an exception; and the guard counts the same
upstream sockets as the ORM's reading of the rule."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from django.db import DatabaseError, IntegrityError
from django.utils import timezone

from sessions_app import process
from sessions_app.live import sockets
from sessions_app.models import ApiToken, ClientSocket, Conversation, UpstreamConnection
from sessions_app.recording import delete_row, insert_row
from sessions_app.relay.limits import LimitExceeded, Limits, upstream_sockets_guard, upstream_sockets_refused
from tests.relay.conftest import db, final

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def token(user):
    return ApiToken.issue(user=user)[1]


async def outcome(socket) -> str:
    """"admitted", or the code of the error event a refused socket got before its close."""
    if await socket.communicator.receive_nothing(3):  # (receive_output's timeout would cancel the app)
        return "admitted"
    return json.loads((await socket.communicator.receive_output(1))["text"])["error"]["code"]


async def test_sockets_arriving_together_are_admitted_up_to_the_limit(profile, user, token, open_gateway, settings):
    settings.SWITCHBOARD_LIMIT_SOCKETS = 3
    opened = await asyncio.gather(*(open_gateway(token) for _ in range(8)))
    outcomes = await asyncio.gather(*(outcome(socket) for socket in opened))
    assert sorted(outcomes) == ["admitted"] * 3 + ["too_many_sockets"] * 5
    assert await db(lambda: ClientSocket.objects.filter(user=user).count())() == 3
    admitted = [socket for socket, said in zip(opened, outcomes, strict=True) if said == "admitted"]
    assert final(await admitted[0].turn("still fine", model="gpt-5.5"))["type"] == "response.completed"


async def test_a_token_deleted_before_its_socket_is_admitted_is_refused_as_revoked(profile, user):
    token = await db(lambda: ApiToken.issue(user=user, name="gone")[0])()
    await db(lambda: ApiToken.objects.filter(pk=token.pk).delete())()
    with pytest.raises(sockets.CredentialGone):
        await sockets.admit(user_pk=user.pk, face="gateway", token_pk=token.pk, limits=Limits(5, 5, 0, 0))
    assert await db(lambda: ClientSocket.objects.filter(user=user).count())() == 0
    # A later socket of the same user is admitted as usual.
    admitted = await sockets.admit(user_pk=user.pk, face="gateway", limits=Limits(5, 5, 0, 0))
    assert admitted.socket_pk is not None


async def test_released_sockets_stop_counting_at_once_while_others_are_admitted(profile, user):
    # Releases are written like admissions (grouped on SQLite, from the loop on PostgreSQL): a release awaited
    # beside admissions of the same user is gone when it returns, and only its own row goes.
    limits = Limits(3, 5, 0, 0)
    held = [await sockets.admit(user_pk=user.pk, face="gateway", limits=limits) for _ in range(3)]
    results = await asyncio.gather(*(sockets.release_socket(one.socket_pk) for one in held[:2]),
                                   *(sockets.admit(user_pk=user.pk, face="gateway", limits=limits) for _ in range(2)),
                                   return_exceptions=True)
    # Each admission saw the limit with or without the releases before it: it never counts a released row twice.
    admitted = [one for one in results[2:] if isinstance(one, sockets.Admitted)]
    assert all(isinstance(one, sockets.Admitted | LimitExceeded) for one in results[2:]), results
    left = {held[2].socket_pk, *(one.socket_pk for one in admitted)}
    assert set(await db(lambda: list(ClientSocket.objects.filter(user=user).values_list("pk", flat=True)))()) == left
    assert len(left) <= 3
    # A row already gone is no error: the delete says it was not there.
    assert await delete_row(ClientSocket, held[0].socket_pk) is False
    assert await delete_row(ClientSocket, held[2].socket_pk) is True


async def test_first_turns_arriving_together_open_upstream_sockets_up_to_the_limit(
        profile, user, token, open_gateway, settings):
    settings.SWITCHBOARD_LIMIT_UPSTREAM_SOCKETS = 2
    opened = [await open_gateway(token) for _ in range(5)]
    turns = await asyncio.gather(*(socket.turn(f"task {n}", model="gpt-5.5") for n, socket in enumerate(opened)))
    ends = sorted(final(events).get("error", {}).get("code", final(events)["type"]) for events in turns)
    assert ends == ["response.completed"] * 2 + ["too_many_upstream_sockets"] * 3
    # A refused first turn opened no upstream socket and wrote no row for one.
    assert await db(lambda: UpstreamConnection.objects.filter(conversation__owner=user).count())() == 2
    assert await db(lambda: UpstreamConnection.objects.filter(owner=user).count())() == 2  # each names its owner
    refused = next(final(events) for events in turns if final(events)["type"] == "error")
    assert "limit is 2 concurrent upstream sockets" in refused["error"]["message"]


def _rows(user, other_user, profile) -> Conversation:
    """Upstream rows in every state the rule tells apart, some of them this process's."""
    now = timezone.now()
    old = now - 3 * process.lease()
    mine = Conversation.objects.create(owner=user, upstream_profile=profile)
    theirs = Conversation.objects.create(owner=other_user, upstream_profile=profile)
    states = [  # (conversation, closed, heartbeat, opened)
        (mine, False, now, now), (mine, False, old, old), (mine, False, None, now), (mine, False, None, old),
        (mine, True, now, now), (theirs, False, now, now), (mine, False, old, old), (mine, False, now, old),
    ]
    rows = [UpstreamConnection.objects.create(conversation=conversation, url="ws://x", closed_at=now if closed else None)
            for conversation, closed, _, _ in states]
    for row, (_, _, beat, opened) in zip(rows, states, strict=True):
        UpstreamConnection.objects.filter(pk=row.pk).update(heartbeat_at=beat, opened_at=opened)
    # This process's: a stale one (counts while its beats are late), a closed one (never). Another process's
    # stale one: never.
    UpstreamConnection.objects.filter(pk__in=[rows[1].pk, rows[4].pk]).update(holder=process.PROCESS_ID)
    UpstreamConnection.objects.filter(pk=rows[6].pk).update(holder="elsewhere:1:gone")
    return mine


@pytest.mark.parametrize(("heartbeats", "late", "expected"), [
    (True, True, 4),  # fresh, never beaten but new, fresh beat; and stale but this process's, while its beats are late
    (True, False, 3),  # beats on time: this process's stale row is one whose end was lost, and counts no more
    (False, False, 6),  # no heartbeat: every row of the user's not closed
])
async def test_the_upstream_guard_counts_what_the_rule_counts(profile, user, other_user, heartbeats, late, expected,
                                                             monkeypatch):
    monkeypatch.setattr(process, "heartbeats_enabled", lambda: heartbeats)
    monkeypatch.setattr(process, "upstream_beats_late", lambda: late)
    conversation = await db(_rows)(user, other_user, profile)
    held = int((await db(upstream_sockets_refused)(user_pk=user.pk, limit=1)).message.split()[3])
    assert held == expected

    async def guarded(limit: int):
        row = UpstreamConnection(conversation=conversation, owner=user, url="ws://guarded")
        return await insert_row(row, guard=upstream_sockets_guard(user_pk=user.pk, limit=limit))

    assert await guarded(held) is None
    assert await guarded(held + 1) is not None
    assert await guarded(held + 1) is None  # the row just written is held too


async def test_a_rows_database_errors_are_djangos(profile, user):
    """What the driver raises reaches callers as Django's classes: outage.py answers an OperationalError with
    503 / 4503 and sockets.admit tells an IntegrityError apart, whichever database and path wrote the row."""
    row = ClientSocket(user_id=user.pk, face="gateway", holder="test")
    with pytest.raises(DatabaseError) as raised:
        await insert_row(row, guard=("no_such_column > %s", [0]))
    assert type(raised.value).__module__ == "django.db.utils"
    with pytest.raises(IntegrityError):
        await insert_row(ClientSocket(user_id=user.pk + 1000, face="gateway", holder="test"))


def test_beats_are_late_until_one_stamps_the_open_rows_and_again_when_none_follows(settings, monkeypatch):
    settings.SWITCHBOARD_HEARTBEAT_SECONDS = 2.0
    monkeypatch.setattr(process, "_beaten_at", None)
    assert process.upstream_beats_late()  # no beat yet: this process's rows count whatever their beat
    now = time.monotonic()
    process.upstream_rows_beaten(now)
    assert not process.upstream_beats_late()
    process.upstream_rows_beaten(now - 2.0 * (process.LEASE_BEATS - 1) - 0.5)  # a beat missed: the lease nears
    assert process.upstream_beats_late()
