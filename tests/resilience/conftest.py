"""Resilience fixtures: the relay fixtures (in-process simulator, sockets) plus real processes
whose simulator has a short connection limit."""

from __future__ import annotations

import pytest

from tests.relay.conftest import (  # noqa: F401  (fixtures used by this package's tests)
    close_db_connections,
    conversation_of,
    no_idle_grace,
    open_browser,
    open_gateway,
    profile,
    sim,
    simulator_config,
)

LIMIT_SECONDS = "1"


@pytest.fixture
def limited_daphne(transactional_db):
    """Daphne (real process) whose default profile points at a simulator process with a 1 s connection limit."""
    from django.db import connection

    from sessions_app.services import default_profile_sync
    from tests.live import daphne_process, simulator_process

    with simulator_process("--connection-limit-seconds", LIMIT_SECONDS) as simulator:
        profile = default_profile_sync()
        profile.websocket_url = simulator.url
        profile.save()
        with daphne_process(connection.settings_dict) as server:
            yield server
