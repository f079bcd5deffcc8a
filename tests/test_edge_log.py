"""Background loops log a failure once when it starts and once when it ends (live/edge_log.py)."""

from __future__ import annotations

import logging

from sessions_app.live.edge_log import EdgeLog


def test_an_outage_is_two_lines_however_many_tries_fail(caplog) -> None:
    failures = EdgeLog(logging.getLogger("sessions_app.test"), "The heartbeat")
    with caplog.at_level(logging.WARNING, logger="sessions_app.test"):
        failures.succeeded()  # nothing to say while it works
        for _ in range(50):
            failures.failed(ConnectionRefusedError("database down"))
        failures.succeeded()
        failures.succeeded()
        failures.failed(OSError("again"))
    lines = [record.getMessage() for record in caplog.records]
    assert lines[0] == "The heartbeat failed (ConnectionRefusedError: database down); retrying quietly until it works again"
    assert lines[1].startswith("The heartbeat works again after ") and lines[1].endswith("(50 failed tries)")
    assert lines[2].startswith("The heartbeat failed (OSError: again)")
    assert len(lines) == 3
