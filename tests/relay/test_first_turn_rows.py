"""A gateway socket's first turn writes three rows: its conversation, its upstream socket, its request. They are
written with other sockets' rows (recording's `insert_row`: grouped on SQLite, from the loop on PostgreSQL),
and the request goes upstream only once all three are committed. On the real simulator, through the whole ASGI
app (token middleware, consumer, relay)."""

from __future__ import annotations

import asyncio

import pytest
from django.db import connection

from sessions_app.models import ApiToken, Conversation, ResponseRecord, UpstreamConnection, UserLimits

from .conftest import ADAPTER, db, final

pytestmark = pytest.mark.django_db(transaction=True)


def issue(user, name: str) -> str:
    return ApiToken.issue(user=user, name=name)[1]


async def test_first_turns_of_sockets_opened_together_each_write_their_own_rows(profile, user, open_gateway, sim):
    tokens = [await db(issue)(user, f"agent {n}") for n in range(6)]
    sockets = [await open_gateway(token) for token in tokens]
    turns = await asyncio.gather(*(socket.turn(f"task {n}\nwith details", model="gpt-5.5")
                                   for n, socket in enumerate(sockets)))
    for events in turns:
        assert final(events)["type"] == "response.completed"
    for socket in sockets:
        for frame in socket.frames:
            ADAPTER.validate_json(frame)

    def rows():
        return [(c, list(UpstreamConnection.objects.filter(conversation=c)),
                 list(ResponseRecord.objects.filter(conversation=c)))
                for c in Conversation.objects.select_related("api_token").order_by("title")]

    found = await db(rows)()
    assert [c.title for c, _, _ in found] == [f"task {n}" for n in range(6)]
    for n, (conversation, [upstream], [record]) in enumerate(found):
        assert conversation.owner_id == user.pk and conversation.created_via == "gateway"
        assert conversation.api_token.name == f"agent {n}" and conversation.upstream_profile_id == profile.pk
        assert conversation.model == "gpt-5.5"
        assert upstream.upstream_profile_id == profile.pk and upstream.url == sim.url
        assert record.connection_id == upstream.pk and record.status == ResponseRecord.Status.COMPLETED
        assert record.response_id == final(turns[n])["response"]["id"]


async def test_a_conversation_the_database_refuses_is_an_error_and_its_create_is_never_sent(
        profile, user, open_gateway, sim):
    """The token is deleted between the handshake and the first create: its conversation's row, which names
    the token, is refused at commit. The socket beside it, whose rows may share that transaction, is not.

    The user has no socket limit, so a socket is admitted without a row of its own (live/sockets.py): the
    deletion cannot race an admission that names the token."""
    await db(lambda: UserLimits.objects.create(user=user, max_sockets=0))()
    doomed, other = await db(issue)(user, "doomed"), await db(issue)(user, "other")
    refused, fine = await open_gateway(doomed), await open_gateway(other)
    await db(lambda: ApiToken.objects.filter(name="doomed").delete())()
    sent_before = len(sim.received_frames)
    events, good = await asyncio.gather(refused.turn("never sent", model="gpt-5.5"),
                                        fine.turn("sent", model="gpt-5.5"))
    error = final(events)
    assert error["type"] == "error" and error["error"]["code"] == "recording_failed"
    assert final(good)["type"] == "response.completed"
    assert [f for f in list(sim.received_frames)[sent_before:] if "never sent" in str(f)] == []
    titles = await db(lambda: sorted(Conversation.objects.values_list("title", flat=True)))()
    assert titles == ["sent"]




def refuse_conversations(refuse: bool) -> None:
    """A trigger that refuses every new conversation's row, or none."""
    table = Conversation._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"CREATE TRIGGER refuse_conversations BEFORE INSERT ON {table} "
                           "BEGIN SELECT RAISE(ABORT, 'refused'); END" if refuse else
                           "DROP TRIGGER refuse_conversations")
        elif refuse:
            cursor.execute("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                           "$$ BEGIN RAISE EXCEPTION 'refused'; END $$")
            cursor.execute(f"CREATE TRIGGER refuse_conversations BEFORE INSERT ON {table} "
                           "FOR EACH ROW EXECUTE FUNCTION refuse()")
        else:
            cursor.execute(f"DROP TRIGGER refuse_conversations ON {table}")
            cursor.execute("DROP FUNCTION refuse()")


async def test_a_refused_conversation_is_written_again_ahead_of_the_sockets_next_create(profile, user, open_gateway,
                                                                                         sim):
    """The database refuses a first create's conversation, then accepts it again: the socket's next create
    writes a conversation ahead of its own rows and goes upstream. (On SQLite the row was queued ahead of the
    first create's request and upstream socket's rows, which were refused with it.)"""
    socket = await open_gateway(await db(issue)(user, "agent"))
    await db(refuse_conversations)(True)
    sent_before = len(sim.received_frames)
    try:
        error = final(await socket.turn("never sent", model="gpt-5.5"))
    finally:
        await db(refuse_conversations)(False)
    assert error["type"] == "error" and error["error"]["code"] == "recording_failed"
    assert await db(lambda: Conversation.objects.count())() == 0

    completed = final(await socket.turn("sent after all", model="gpt-5.5"))
    assert completed["type"] == "response.completed"
    assert [f for f in list(sim.received_frames)[sent_before:] if "never sent" in str(f)] == []

    def rows():
        [conversation] = Conversation.objects.all()
        return (conversation, list(UpstreamConnection.objects.filter(conversation=conversation)),
                list(ResponseRecord.objects.filter(conversation=conversation)))

    conversation, [upstream], [record] = await db(rows)()
    assert conversation.owner_id == user.pk and conversation.created_via == "gateway"
    assert record.response_id == completed["response"]["id"] and record.connection_id == upstream.pk


@pytest.mark.skipif(connection.vendor != "postgresql", reason="on SQLite the socket keeps the conversation it queued")
async def test_on_postgresql_a_refused_conversation_leaves_the_socket_free_to_continue_another(
        profile, user, open_gateway, sim):
    """There the refused conversation was never the socket's: its next create may continue one of the user's
    conversations, and nothing of the refused one is written then."""
    token = await db(issue)(user, "agent")
    first = await open_gateway(token)
    assert final(await first.turn("kept", model="gpt-5.5"))["type"] == "response.completed"
    [kept] = await db(lambda: list(Conversation.objects.all()))()

    socket = await open_gateway(token)
    await db(refuse_conversations)(True)
    try:
        error = final(await socket.turn("never sent", model="gpt-5.5"))
    finally:
        await db(refuse_conversations)(False)
    assert error["type"] == "error" and error["error"]["code"] == "recording_failed"
    events = await socket.turn("on the kept one", model="gpt-5.5", metadata={"switchboard_conversation": str(kept.pk)})
    assert final(events)["type"] == "response.completed"
    assert await db(lambda: list(Conversation.objects.values_list("pk", flat=True)))() == [kept.pk]


@pytest.mark.skipif(connection.vendor != "sqlite", reason="rows are queued in SQLite's group commit only")
async def test_an_upstream_row_queued_for_a_socket_that_opened_without_it_ends_handshake_failed(
        profile, user, conversation_of, sim):
    """A socket's row is queued ahead of its request's (`queue_record`). If the socket opened meanwhile with a row
    of its own, the queued row is not left counting as a held socket: it ends `handshake_failed`."""
    from sessions_app.relay import RelaySession
    from sessions_app.relay.limits import limits_for
    from sessions_app.relay.link import NOT_TAKEN

    conversation = await conversation_of(user, title="queued")

    async def send(text: str) -> None:
        pass

    session = await RelaySession.attach(user=user, conversation_id=conversation.pk, send=send)
    session.quota.limits = await db(limits_for)(user.pk)
    queued = session.links.queue_record()
    assert queued is not None
    link = await session.links.ensure()  # opens with a row of its own
    assert await session.links.ensure(queued) is link and not queued.taken
    queued_pk = await queued.written
    await asyncio.sleep(0)  # its end is queued by a callback of the write
    await session.recorder.flush()
    rows = await db(lambda: list(UpstreamConnection.objects.filter(conversation=conversation).order_by("pk")))()
    await session.close()
    assert [(r.pk, r.close_reason, r.close_text) for r in rows] == [
        (queued_pk, UpstreamConnection.CloseReason.HANDSHAKE_FAILED, NOT_TAKEN),
        (link.connection_pk, "", ""),
    ]
