"""A gateway socket's first turn writes three rows: its conversation, its upstream socket, its request. The first
two are queued for the request (recording's `Recorder.queue_row`: in SQLite's group commit ahead of it, in the
request's own transaction on PostgreSQL), and the request goes upstream only once all three are committed. On
the real simulator, through the whole ASGI app (token middleware, consumer, relay), and on the recorder itself."""

from __future__ import annotations

import asyncio

import pytest
from django.db import connection

from sessions_app.models import ApiToken, Conversation, ErrorEvent, ResponseRecord, UpstreamConnection, UserLimits

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


async def test_the_refusal_of_a_create_whose_conversation_was_refused_does_not_name_it(profile, user, open_gateway,
                                                                                       sim):
    """The client leaves after its first create's conversation was refused: the refusal is recorded all the same,
    naming no conversation (the one it would name is not stored, and never will be)."""
    socket = await open_gateway(await db(issue)(user, "agent"))
    await db(refuse_conversations)(True)
    try:
        error = final(await socket.turn("never sent", model="gpt-5.5"))
        await socket.close()
    finally:
        await db(refuse_conversations)(False)
    assert error["type"] == "error" and error["error"]["code"] == "recording_failed"
    errors = await eventually_rows(lambda: list(ErrorEvent.objects.values_list("conversation_id", "code")), bool)
    assert errors == [(None, "recording_failed")]
    assert await db(lambda: Conversation.objects.count())() == 0


async def test_a_first_create_refused_before_its_write_writes_its_conversation_for_the_refusals_record(
        profile, user, open_gateway, sim):
    """A model the profile does not allow is refused after the socket chose its new conversation and before the
    request's write, which would have taken the conversation's row: it is written alone, and the refusal's
    record names it. The socket's next create continues it."""
    def restrict():
        profile.allowed_models = ["gpt-5.5"]
        profile.save()

    await db(restrict)()
    socket = await open_gateway(await db(issue)(user, "agent"))
    error = final(await socket.turn("hi", model="gpt-4o"))
    assert error["type"] == "error" and error["error"]["code"] == "model_not_allowed"

    def rows():
        return list(Conversation.objects.values_list("pk", flat=True)), \
            list(ErrorEvent.objects.values_list("conversation_id", "code")), \
            list(ResponseRecord.objects.values_list("conversation_id", flat=True))

    [conversation], errors, records = await eventually_rows(rows, lambda found: found[1])
    assert errors == [(conversation, "model_not_allowed")] and records == []
    assert final(await socket.turn("hi again", model="gpt-5.5"))["type"] == "response.completed"
    assert (await db(rows)())[2] == [conversation]


async def eventually_rows(read, done, seconds: float = 5.0):
    """`read()` on a database thread until `done(result)` (the writer's batch lingers), at most `seconds`."""
    for _ in range(int(seconds / 0.05)):
        found = await db(read)()
        if done(found):
            return found
        await asyncio.sleep(0.05)
    return found


async def queued_first_turn(user, profile, *, parent_pk: int | None = None, limit: int = 5):
    """A recorder, a new conversation's and its upstream socket's rows queued (the socket's under a limit of
    `limit`, with its lock), and the request's write that takes them: (conversation, socket's row future,
    the write's result or what it raised)."""
    from sessions_app.models.statements import lock_user_row
    from sessions_app.recording import Recorder, RequestRow
    from sessions_app.relay.limits import upstream_sockets_guard
    from sessions_app.services import conversation_new

    recorder = Recorder()
    conversation = conversation_new(owner=user, title="queued", profile_pk=profile.pk, model="gpt-5.5",
                                    created_via="gateway", api_token_pk=None)
    conversation_written = recorder.queue_row(conversation)
    socket_written = recorder.queue_connection(
        conversation_id=conversation.pk, owner_id=user.pk, profile_id=profile.pk, url=profile.websocket_url,
        guard=upstream_sockets_guard(user_pk=user.pk, limit=limit), lock=lock_user_row(user.pk))
    row = RequestRow(conversation_id=conversation.pk, stream_id=None, previous_response_id="resp_x" if parent_pk else None,
                     parent_pk=parent_pk, parent_forks=False if parent_pk else None, origin="user", model="gpt-5.5",
                     payload={"type": "response.create", "model": "gpt-5.5", "input": "hello"})
    try:
        written = await recorder.write_request(row)
    except Exception as failure:
        written = failure
    assert await conversation_written == conversation.pk
    await recorder.close()
    return conversation, socket_written, written


async def test_rows_queued_for_a_request_commit_with_it(profile, user):
    conversation, socket_written, written = await queued_first_turn(user, profile)
    socket_pk = await socket_written
    assert socket_pk is not None

    def rows():
        return (list(UpstreamConnection.objects.filter(conversation=conversation).values_list("pk", flat=True)),
                list(ResponseRecord.objects.filter(conversation=conversation).values_list("pk", flat=True)))

    assert await db(rows)() == ([socket_pk], [written.record_pk])


async def test_a_socket_row_its_guard_refuses_leaves_the_rest_of_the_first_turn_written(profile, user):
    conversation, socket_written, written = await queued_first_turn(user, profile, limit=0)
    assert await socket_written is None
    assert await db(lambda: ResponseRecord.objects.filter(pk=written.record_pk).exists())()
    assert not await db(lambda: UpstreamConnection.objects.filter(conversation=conversation).exists())()


async def test_a_request_the_database_refuses_does_not_take_the_rows_queued_for_it_down(profile, user):
    """Its parent record does not exist: the request is refused (its foreign key), and the rows queued for it
    are written all the same, as a group commit that fails is written again one by one."""
    conversation, socket_written, written = await queued_first_turn(user, profile, parent_pk=10**9)
    assert isinstance(written, Exception) and "foreign key" in str(written).lower()  # the driver's own on SQLite
    socket_pk = await socket_written
    assert await db(lambda: list(UpstreamConnection.objects.filter(conversation=conversation)
                                 .values_list("pk", flat=True)))() == [socket_pk]
    assert not await db(lambda: ResponseRecord.objects.filter(conversation=conversation).exists())()


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
    await session.recorder.flush()  # PostgreSQL holds a queued row for the socket's next request: the flush writes it
    queued_pk = await queued.written
    await asyncio.sleep(0)  # its end is queued by a callback of the write
    await session.recorder.flush()
    rows = await db(lambda: list(UpstreamConnection.objects.filter(conversation=conversation).order_by("pk")))()
    await session.close()
    assert {(r.pk, r.close_reason, r.close_text) for r in rows} == {
        (queued_pk, UpstreamConnection.CloseReason.HANDSHAKE_FAILED, NOT_TAKEN),
        (link.connection_pk, "", ""),
    }
