"""A client whose reader comes late still gets what the server sent before closing its socket.

After its own close frame autobahn waits `closeHandshakeTimeout` for the client's reply, then resets the
connection. The `websockets` sync client, which the `openai` SDK uses, drops the frames of a read whose
close reply it could not send. With autobahn's default of 1 s, a reader thread 1.5 s late (a busy process,
a loaded machine) got a refusal's close code without its `error` event; sessions_app.serve waits 10 s.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync import connection as sync_connection
from websockets.sync.client import connect

from sessions_app.models import ApiToken, ClientSocket, UserLimits

pytestmark = pytest.mark.django_db(transaction=True)

LATE_SECONDS = 1.5


@contextmanager
def late_reader(monkeypatch) -> Iterator[None]:
    """Every sync socket opened inside starts reading LATE_SECONDS late (its handshake's answer included)."""
    with monkeypatch.context() as patch:
        read = sync_connection.Connection.recv_events

        def late(self) -> None:
            time.sleep(LATE_SECONDS)
            read(self)

        patch.setattr(sync_connection.Connection, "recv_events", late)
        yield


@pytest.fixture
def server(transactional_db):
    from django.db import connection

    from tests.live import daphne_process

    with daphne_process(connection.settings_dict) as process:
        yield process


def test_a_late_reader_refused_after_the_handshake_gets_the_event_before_the_close(server, user, monkeypatch):
    UserLimits.objects.create(user=user, max_sockets=1)
    token = ApiToken.issue(user=user)[1]
    url, headers = f"{server.ws_url}/v1/responses", {"Authorization": f"Bearer {token}"}
    with connect(url, open_timeout=20, additional_headers=headers):
        deadline = time.monotonic() + 10  # the first is admitted after its handshake, on the database thread
        while not ClientSocket.objects.filter(user=user).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        started = time.monotonic()
        with late_reader(monkeypatch), connect(url, open_timeout=20, additional_headers=headers) as refused:
            event = json.loads(refused.recv(timeout=20))
            with pytest.raises(ConnectionClosed) as closed:
                refused.recv(timeout=20)
    assert time.monotonic() - started >= LATE_SECONDS  # the reader did come late
    assert event["type"] == "error" and event["error"]["code"] == "too_many_sockets"
    assert closed.value.rcvd.code == 4429
