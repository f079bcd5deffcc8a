"""Shared fixtures. Tests run against real components: a real database (SQLite or
PostgreSQL, per DATABASE_URL), the real channel layer (in-memory or Redis, per
REDIS_URL) and the real simulator."""

from __future__ import annotations

import warnings

import pytest
from django.contrib.auth import get_user_model


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """scripts/test.sh's workers (pytest-xdist, `--dist loadfile`) take a test file each, but tests/production
    whole: its session fixture starts one production shape (private PostgreSQL and Redis, nginx, two Daphnes)."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class FileOrProduction(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = super()._split_scope(nodeid)
            return "tests/production" if path.startswith("tests/production/") else path

    return FileOrProduction(config, log)


@pytest.fixture(scope="session", autouse=True)
def _close_recorder_connections(django_db_setup, django_db_blocker):
    """The recorder's connections end before the test database is dropped, whichever test used them last;
    a session still open then is named, so the leak can be found (tests/db_connections.py)."""
    yield
    from tests.db_connections import close_recorder_connections, other_sessions

    close_recorder_connections()
    with django_db_blocker.unblock():
        left = other_sessions()
    if left:
        warnings.warn(f"sessions still open on the test database, which cannot be dropped: {left}", stacklevel=1)


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user(username="alice", password="alice-password-1")


@pytest.fixture
def other_user(db):
    return get_user_model().objects.create_user(username="bob", password="bob-password-1")


@pytest.fixture
def staff_user(db):
    return get_user_model().objects.create_user(username="staff", password="staff-password-1", is_staff=True,
                                                is_superuser=True)


@pytest.fixture
def simulator_process():
    """The simulator as a separate process (for Daphne subprocesses to reach)."""
    from tests.live import simulator_process

    with simulator_process() as sim:
        yield sim


@pytest.fixture
def daphne_env() -> dict[str, str]:
    """Extra environment for `daphne_server` (a test module overrides this fixture to change a setting)."""
    return {}


@pytest.fixture
def daphne_server(transactional_db, simulator_process, daphne_env):
    """A real Daphne serving the project against the test database, with the default
    upstream profile pointed at a real simulator process."""
    from django.db import connection

    from sessions_app.services import default_profile_sync
    from tests.live import daphne_process

    profile = default_profile_sync()
    profile.websocket_url = simulator_process.url
    profile.save()
    with daphne_process(connection.settings_dict, extra_env=daphne_env) as server:
        yield server
