"""Recording: the only writer on the relay path.

A request's input is written and committed before it is sent (`Recorder.write_request`: input.py,
then pg.py on PostgreSQL from the event loop, or sqlite.py + groups.py on a recorder thread); everything
the upstream streams back is queued as ops (ops.py) and written in batches beside the stream
(recorder.py, writer.py; through a database outage too: availability.py), parameters adapted per
column once (models/columns.py). Nothing here imports the relay or the
live layer.
"""

from .availability import database_unavailable, log_failure
from .input import request_origin
from .ops import ErrorCount, ErrorTally
from .reads import read_row, reads_on_loop
from .recorder import (
    AtOnce,
    ConnectionClosed,
    ConnectionFailed,
    ConversationState,
    ErrorRow,
    Finished,
    Recorder,
    RequestRow,
    RequestWritten,
    Sent,
    Started,
    Writer,
    at_once_statement,
    delete_row,
    insert_row,
    on_db_thread,
    shutdown,
)
from .threads import read_on_db_thread

__all__ = [
    "Recorder", "Writer", "AtOnce", "at_once_statement", "insert_row", "delete_row", "RequestRow", "RequestWritten", "Sent", "Started", "Finished", "ErrorRow", "ErrorCount",
    "ErrorTally", "ConnectionClosed", "ConnectionFailed", "ConversationState", "on_db_thread", "read_on_db_thread", "read_row", "reads_on_loop", "shutdown",
    "database_unavailable", "log_failure", "request_origin",
]
