"""Every stored id a client names is checked against what its user owns, on both faces.

The attack: all users share the upstream's key, and the upstream resolves ids against everything
stored on it. Bob names one of Alice's `store=true` responses and reads what Alice told the model.
"""

from __future__ import annotations

import pytest

from sessions_app.models import ApiToken, Conversation, Item, ResponseRecord
from tests.relay.conftest import db, final, text_of

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "my locker code is 4711"


@pytest.fixture
def alice_token(user):
    return ApiToken.issue(user=user)[1]


@pytest.fixture
def bob_token(other_user):
    return ApiToken.issue(user=other_user)[1]


async def alice_secret(open_gateway, token, *, store: bool) -> dict:
    """Alice tells the model a secret; returns the completed response."""
    socket = await open_gateway(token)
    done = final(await socket.turn(f"Remember this: {SECRET}", model="gpt-5.5", store=store))
    assert done["type"] == "response.completed"
    await socket.close()
    return done["response"]


def refused_as_unknown(events: list[dict], response_id: str, *, lane: str | None = None) -> None:
    error = final(events)
    assert error["type"] == "error", error
    assert error["error"] == {"type": "invalid_request_error", "code": "previous_response_not_found",
                              "message": f"Previous response with id '{response_id}' not found.",
                              "param": "previous_response_id"}
    assert error.get("stream_id") == lane
    assert SECRET not in text_of(events)


@pytest.mark.parametrize("store", [True, False])
async def test_gateway_cannot_continue_another_users_response(profile, user, other_user, alice_token, bob_token,
                                                              open_gateway, store):
    alices = await alice_secret(open_gateway, alice_token, store=store)
    bob = await open_gateway(bob_token)
    events = await bob.turn("What did I tell you?", model="gpt-5.5", store=store,
                            previous_response_id=alices["id"])
    refused_as_unknown(events, alices["id"])
    # An id nobody has is answered exactly the same: existence cannot be probed.
    unknown = await bob.turn("hi", model="gpt-5.5", store=store, previous_response_id="resp_doesnotexist0000")
    refused_as_unknown(unknown, "resp_doesnotexist0000")
    # Nothing of Bob's refused turns was recorded against Alice, nor sent upstream as a continuation.
    assert await db(lambda: ResponseRecord.objects.filter(previous_response_id=alices["id"]).count())() == 0
    # The socket stays usable.
    assert final(await bob.turn("fresh start", model="gpt-5.5"))["type"] == "response.completed"


@pytest.mark.parametrize("store", [True, False])
async def test_browser_cannot_continue_another_users_response(profile, user, other_user, alice_token,
                                                              conversation_of, open_browser, open_gateway, store):
    alices = await alice_secret(open_gateway, alice_token, store=store)
    conversation = await conversation_of(other_user, store=store)
    bob = await open_browser(other_user, conversation.pk)
    events = await bob.turn("What did I tell you?", previous_response_id=alices["id"], stream_id="fork")
    refused_as_unknown(events, alices["id"], lane="fork")
    assert final(await bob.turn("hello"))["type"] == "response.completed"


@pytest.mark.parametrize("face", ["gateway", "browser"])
@pytest.mark.parametrize("store", [True, False])
async def test_other_stored_references_are_checked_too(profile, user, other_user, alice_token, bob_token,
                                                       open_gateway, open_browser, conversation_of, store, face):
    alices = await alice_secret(open_gateway, alice_token, store=store)
    item_id = await db(lambda: Item.objects.filter(response__response_id=alices["id"], direction="output")
                       .values_list("raw__id", flat=True).first())()
    assert item_id
    if face == "gateway":
        bob = await open_gateway(bob_token)
    else:
        bob = await open_browser(other_user, (await conversation_of(other_user, store=store)).pk)
    by_reference = final(await bob.turn([{"type": "item_reference", "id": item_id}], model="gpt-5.5", store=store))
    assert by_reference["type"] == "error"
    assert by_reference["error"]["code"] == "item_not_found" and by_reference["error"]["param"] == "input[0].id"
    compared = final(await bob.turn("hi", model="gpt-5.5", store=store,
                                    prompt_cache_options={"comparison_response_id": alices["id"]}))
    assert compared["error"]["code"] == "response_not_found"
    # What the relay cannot check against its records is refused with a clear error.
    for fields, param in [({"conversation": "conv_123"}, "conversation"), ({"prompt": {"id": "pmpt_1"}}, "prompt"),
                          ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "tools[0]"),
                          ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}]},
                           "input[0].content[0].file_id")]:
        await bob.send({"type": "response.create", "model": "gpt-5.5", "input": "x", **fields})
        error = await bob.recv()
        assert error["type"] == "error" and error["error"]["code"] == "unsupported_reference", error
        assert error["error"]["param"] == param
    # Alice may use her own item and comparison ids (her socket continues her conversation).
    alice = await open_gateway(alice_token)
    own = final(await alice.turn([{"type": "item_reference", "id": item_id}], model="gpt-5.5", store=store,
                                 previous_response_id=alices["id"]))
    assert own["type"] == "response.completed", own


async def test_a_new_gateway_socket_continues_the_conversation_of_its_previous_response(
        profile, user, alice_token, open_gateway):
    first = await alice_secret(open_gateway, alice_token, store=False)
    again = await open_gateway(alice_token)
    done = final(await again.turn("and now?", model="gpt-5.5", previous_response_id=first["id"]))
    assert done["type"] == "response.completed"
    await again.close()
    assert await db(lambda: Conversation.objects.filter(owner=user).count())() == 1
    record = await db(lambda: ResponseRecord.objects.get(response_id=done["response"]["id"]))()
    assert record.parent_id is not None  # the chain is linked, and the context was replayed from records


async def test_an_id_of_another_own_conversation_is_a_mismatch(profile, user, alice_token, open_gateway):
    first = await alice_secret(open_gateway, alice_token, store=False)
    socket = await open_gateway(alice_token)
    assert final(await socket.turn("a new chain", model="gpt-5.5"))["type"] == "response.completed"
    mismatch = final(await socket.turn("back", model="gpt-5.5", previous_response_id=first["id"]))
    assert mismatch["error"]["code"] == "conversation_mismatch" and mismatch["status"] == 409


async def test_staff_viewers_stay_read_only(profile, user, staff_user, conversation_of, open_browser):
    conversation = await conversation_of(user)
    viewer = await open_browser(staff_user, conversation.pk)
    await viewer.send({"type": "response.create", "input": "hi"})
    error = await viewer.recv()
    assert error["error"]["code"] == "read_only"


async def test_the_owner_attaching_after_a_staff_viewer_names_its_own_ids(profile, user, staff_user, alice_token,
                                                                         conversation_of, open_browser,
                                                                         no_idle_grace):
    conversation = await conversation_of(user)
    first = await open_browser(user, conversation.pk)
    root = final(await first.turn("remember: fig"))["response"]["id"]
    final(await first.turn("and a date", previous_response_id=root))
    await first.close()
    # A staff viewer opens the conversation first, so this process's hub is built for the viewer...
    viewer = await open_browser(staff_user, conversation.pk)
    owner = await open_browser(user, conversation.pk)
    # ...and the owner, attaching next, forks from a response of the owner's that this hub never streamed.
    fork = final(await owner.turn("and now?", previous_response_id=root, stream_id="fork"))
    assert fork["type"] == "response.completed", fork
    await viewer.close()
