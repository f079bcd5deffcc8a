"""Migrations that move data, run forward over rows written before them, on both databases."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("sessions_app", "0010_connection_resent_reasons")]
AFTER = [("sessions_app", "0011_connection_owner")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_0011_gives_every_upstream_row_its_conversations_owner():
    apps = _migrate(BEFORE)
    User = apps.get_model(settings.AUTH_USER_MODEL)
    Conversation = apps.get_model("sessions_app", "Conversation")
    UpstreamConnection = apps.get_model("sessions_app", "UpstreamConnection")
    alice, bob = (User.objects.create(username=name) for name in ("alice", "bob"))
    hers, his = (Conversation.objects.create(owner=owner) for owner in (alice, bob))
    rows = {UpstreamConnection.objects.create(conversation=conversation, url="ws://before").pk: owner.pk
            for conversation, owner in [(hers, alice), (his, bob), (hers, alice)]}
    try:
        apps = _migrate(AFTER)
        UpstreamConnection = apps.get_model("sessions_app", "UpstreamConnection")
        assert dict(UpstreamConnection.objects.values_list("pk", "owner_id")) == rows
        assert {index.name for index in UpstreamConnection._meta.indexes} >= {"connection_owner_open"}
    finally:  # the later migrations too, for the tests after this one
        _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
