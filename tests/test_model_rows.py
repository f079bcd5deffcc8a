"""The handshake's hand-written reads (models/rows.py) give what the ORM gives: the same rows, the same values
of the same types, the same caches, and the same choice of profile; on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessions_app.models import (
    ApiToken,
    UpstreamProfile,
    UserLimits,
    hash_token,
    profile_for_new_conversation,
    read_handshake,
    rows,
)

pytestmark = pytest.mark.django_db


def _values(instance) -> dict:
    return {field.attname: getattr(instance, field.attname) for field in type(instance)._meta.concrete_fields}


def _assert_same(read, orm) -> None:
    assert type(read) is type(orm)
    assert _values(read) == _values(orm)
    for name, value in _values(orm).items():  # an aware datetime, not SQLite's text; a bool, not 0 / 1
        assert type(_values(read)[name]) is type(value), name
    assert read._state.adding is False and read._state.db == orm._state.db


def _orm_token(raw: str) -> ApiToken:
    return ApiToken.objects.select_related("user", "user__switchboard_limits").get(token_hash=hash_token(raw))


def test_a_token_reads_with_its_user_and_limits_as_the_orm_reads_them(user, django_assert_num_queries):
    UserLimits.objects.create(user=user, max_sockets=3, tokens_per_day=0)
    _, raw = ApiToken.issue(user=user, name="agent")
    ApiToken.objects.filter(prefix=raw[:10]).update(last_used_at=timezone.now() - timedelta(minutes=5),
                                                    reads_metrics=True)
    orm = _orm_token(raw)
    read = ApiToken.authenticate_token(raw)
    _assert_same(read, orm)
    with django_assert_num_queries(0):  # loaded with the token, like select_related
        _assert_same(read.user, orm.user)
        _assert_same(read.user.switchboard_limits, orm.user.switchboard_limits)
    assert _orm_token(raw).last_used_at > orm.last_used_at + timedelta(minutes=4)  # this use was recorded


def test_a_user_without_limits_reads_as_having_none_without_a_query(user, django_assert_num_queries):
    _, raw = ApiToken.issue(user=user)
    read = ApiToken.authenticate_token(raw)
    with django_assert_num_queries(0), pytest.raises(UserLimits.DoesNotExist):
        read.user.switchboard_limits  # noqa: B018 - the access is the test


def test_revoked_unknown_and_inactive_tokens_read_as_none(user, other_user):
    token, raw = ApiToken.issue(user=user)
    _, other_raw = ApiToken.issue(user=other_user)
    assert ApiToken.authenticate_token(raw).pk == token.pk
    assert ApiToken.authenticate_token(raw + "x") is None
    assert ApiToken.authenticate_token("sb_" + "0" * 43) is None
    assert ApiToken.authenticate_token(raw.removeprefix("sb_")) is None
    token.revoke()
    assert ApiToken.authenticate_token(raw) is None
    get_user_model().objects.filter(pk=other_user.pk).update(is_active=False)
    assert ApiToken.authenticate_token(other_raw) is None


def test_a_profile_reads_as_the_orm_reads_it(user):
    profile = UpstreamProfile(name="p", websocket_url="ws://127.0.0.1:9/v1/responses", is_default=True,
                              allowed_models=["gpt-5.5"], extra_headers={"X-Team": "agents"})
    profile.set_api_key("sk-test-0000000000001234")
    profile.save()
    read = profile_for_new_conversation(user)
    _assert_same(read, UpstreamProfile.objects.get(pk=profile.pk))
    assert read.get_api_key() == "sk-test-0000000000001234"
    read.websocket_url = "ws://elsewhere.invalid/v1/responses"  # it remembers what it loaded, like from_db
    assert read.endpoint_changed() == ["websocket_url"]


def _expected(user) -> UpstreamProfile | None:
    """The rule, in the ORM: the enabled default profile when the user may use it, else the first usable by name."""
    usable = [p for p in UpstreamProfile.objects.filter(enabled=True).order_by("name") if p.usable_by(user)]
    return next((p for p in usable if p.is_default), usable[0] if usable else None)


profile_rows = st.lists(st.fixed_dictionaries({
    "enabled": st.booleans(), "available_to_all": st.booleans(), "is_default": st.booleans(),
    "allowed": st.booleans(), "allowed_other": st.booleans(),
}), max_size=5)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=profile_rows, staff=st.booleans(), names=st.randoms(use_true_random=False))
def test_a_new_conversation_gets_the_profile_the_orm_rule_gives(user, other_user, rows, staff, names):
    get_user_model().objects.filter(pk=user.pk).update(is_staff=staff)
    user.refresh_from_db()
    order = list(range(len(rows)))
    names.shuffle(order)
    with transaction.atomic():
        for row, name in zip(rows, order, strict=True):
            profile = UpstreamProfile.objects.create(
                name=f"profile {name}", websocket_url="ws://127.0.0.1:9/v1/responses", enabled=row["enabled"],
                available_to_all=row["available_to_all"], is_default=row["is_default"])
            profile.allowed_users.set([u for u, on in ((user, row["allowed"]), (other_user, row["allowed_other"]))
                                       if on])
        expected = _expected(user)
        read = profile_for_new_conversation(user)
        assert (read.pk if read else None) == (expected.pk if expected else None)
        transaction.set_rollback(True)


def test_on_postgresql_the_reads_are_prepared_once_and_djangos_own_queries_are_not(user, settings):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: SQLite has no server-side plans to keep")
    _, raw = ApiToken.issue(user=user)

    def prepared() -> list[str]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT statement FROM pg_prepared_statements")
            return [row[0] for row in cursor.fetchall()]

    for _ in range(3):
        assert ApiToken.authenticate_token(raw).user == user
    reads = [statement for statement in prepared() if "token_hash" in statement]
    assert len(reads) == 1 and "$1" in reads[0]  # one statement, its value bound by the server
    assert not [statement for statement in prepared() if "pg_prepared_statements" in statement]
    # Behind a pooler that cannot carry prepared statements the setting turns them off; so do OPTIONS that say.
    assert rows.prepares(connection)
    settings.SWITCHBOARD_PG_PREPARE = False
    assert not rows.prepares(connection)


# -- the same reads from the event loop (gateway_auth.py: recording/reads.py on PostgreSQL) ------------------------


@pytest.fixture
def fetch():
    """How the handshake's reads run from the loop: on PostgreSQL the loop's own connections
    (recording/reads.py); SQLite reads on a thread, so there the same statement runs on Django's cursor on a
    thread (the rules of `..._with` are the same on both)."""
    from django.db import connection

    from sessions_app.recording import read_row, reads_on_loop
    from tests.relay.conftest import db

    if reads_on_loop():
        return read_row

    def on_thread(sql, params):
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()

    async def fetch_on_thread(sql, params):
        return await db(on_thread)(sql, params)

    return fetch_on_thread


@pytest.fixture
def with_profile(request):
    from django.db import connection

    if request.param and connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: the profile is joined LATERAL, and SQLite's handshake reads on a thread")
    return request.param


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("with_profile", [False, True], indirect=True)
async def test_a_token_read_from_the_loop_is_the_one_the_orm_reads_and_its_use_is_recorded(fetch, with_profile):
    from tests.relay.conftest import db

    @db
    def world() -> tuple[str, ApiToken]:
        user = get_user_model().objects.create_user("loop-reader")
        UserLimits.objects.create(user=user, max_sockets=3)
        _, raw = ApiToken.issue(user=user, name="agent")
        ApiToken.objects.filter(prefix=raw[:10]).update(last_used_at=timezone.now() - timedelta(minutes=5))
        return raw, _orm_token(raw)

    raw, orm = await world()
    read, profile = await read_handshake(raw, fetch, with_profile=with_profile)
    assert profile is None  # there is no profile: the outer join finds none
    await db(_assert_same)(read, orm)
    assert ApiToken.user.is_cached(read) and UserLimits.user.field.remote_field.is_cached(read.user)
    await db(_assert_same)(read.user, orm.user)
    await db(_assert_same)(read.user.switchboard_limits, orm.user.switchboard_limits)
    recorded = (await db(_orm_token)(raw)).last_used_at
    assert recorded > orm.last_used_at + timedelta(minutes=4)  # this use was recorded

    again, _ = await read_handshake(raw, fetch, with_profile=with_profile)  # within the minute: nothing written
    assert again.last_used_at == recorded and (await db(_orm_token)(raw)).last_used_at == recorded


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("with_profile", [False, True], indirect=True)
async def test_from_the_loop_revoked_unknown_and_inactive_tokens_read_as_none(fetch, with_profile):
    from tests.relay.conftest import db

    @db
    def world() -> tuple[ApiToken, str, object, str]:
        users = get_user_model().objects
        token, raw = ApiToken.issue(user=users.create_user("loop-owner"))
        other = users.create_user("loop-other")
        _, other_raw = ApiToken.issue(user=other)
        UpstreamProfile.objects.create(name="open", websocket_url="ws://127.0.0.1:9/v1/responses")
        return token, raw, other, other_raw

    def read(raw):
        return read_handshake(raw, fetch, with_profile=with_profile)

    token, raw, other, other_raw = await world()
    found, profile = await read(raw)
    assert found.pk == token.pk and (profile is not None) == with_profile
    for wrong in (raw + "x", "sb_" + "0" * 43, raw.removeprefix("sb_")):
        assert await read(wrong) == (None, None)
    await db(token.revoke)()
    assert await read(raw) == (None, None)
    await db(lambda: get_user_model().objects.filter(pk=other.pk).update(is_active=False))()
    assert await read(other_raw) == (None, None)


@pytest.mark.django_db(transaction=True)
async def test_from_the_loop_a_tokens_user_gets_the_profile_the_thread_reads_for_it(fetch):
    from django.db import connection

    from tests.relay.conftest import db

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: the profile is joined LATERAL, and SQLite's handshake reads on a thread")

    @db
    def world() -> list[tuple[str, object, str | None]]:
        users = get_user_model().objects
        plain, allowed, staff = (users.create_user(f"loop-{name}") for name in ("plain", "allowed", "staff"))
        users.filter(pk=staff.pk).update(is_staff=True)
        staff.refresh_from_db()
        url = "ws://127.0.0.1:9/v1/responses"
        UpstreamProfile.objects.create(name="0-off", websocket_url=url, enabled=False, is_default=True)
        chosen = UpstreamProfile.objects.create(name="a-chosen", websocket_url=url, available_to_all=False,
                                                is_default=True)
        chosen.allowed_users.set([allowed])
        UpstreamProfile.objects.create(name="b-open", websocket_url=url)
        cases = [(plain, "b-open"), (allowed, "a-chosen"), (staff, "a-chosen")]
        return [(ApiToken.issue(user=user)[1], user, expected) for user, expected in cases]

    cases = await world()
    for raw, user, expected in cases:
        token, profile = await read_handshake(raw, fetch, with_profile=True)
        assert token.user == user
        await db(_assert_same)(profile, await db(UpstreamProfile.objects.get)(name=expected))
        assert (await db(profile_for_new_conversation)(user)).pk == profile.pk  # the thread's read agrees

    await db(lambda: UpstreamProfile.objects.filter(name="b-open").update(enabled=False))()
    raw, plain, _ = cases[0]
    token, profile = await read_handshake(raw, fetch, with_profile=True)
    assert token.user == plain and profile is None  # no profile is usable: the token still reads
    assert await db(profile_for_new_conversation)(plain) is None
