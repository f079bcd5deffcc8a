"""How log lines look: one JSON object per line in production, plain text in development.

settings.LOGGING picks the formatter (SWITCHBOARD_LOG_FORMAT: ``json`` or ``text``). Rules:

* Code that logs an event passes what it knows of ``conversation_id``, ``response_id`` and
  ``connection_id`` (the upstream socket's record) as ``extra=``; a JSON line carries them as fields,
  a text line appends them.
* No API key or token in any line: the redaction filter (redaction.py) cleans the message, and both
  formatters redact the finished line again (fields, extras and tracebacks included).
* No message text: the relay never logs what people or models wrote; the DEBUG lines that would (the
  websockets libraries' frame dumps, Django's SQL with its parameters) are dropped unless
  SWITCHBOARD_LOG_MESSAGE_TEXT is on, for debugging.
"""

from __future__ import annotations

import logging

from django.conf import settings
from pythonjsonlogger.json import JsonFormatter as LibraryJsonFormatter

from .redaction import redact

__all__ = ["IDS", "JsonFormatter", "TextFormatter", "MessageTextFilter"]

IDS = ("conversation_id", "response_id", "connection_id")
# At DEBUG these carry message text: websockets logs every frame (the upstream client's wire logger,
# upstream/socket.py, and the simulator's server), Django every SQL statement with its parameters.
TEXT_LOGGERS = ("websockets", "sessions_app.upstream.wire", "django.db.backends")


class JsonFormatter(LibraryJsonFormatter):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("fmt", "%(asctime)s %(levelname)s %(name)s %(message)s")
        kwargs.setdefault("rename_fields", {"asctime": "time", "levelname": "level", "name": "logger"})
        super().__init__(*args, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class TextFormatter(logging.Formatter):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("fmt", "%(asctime)s %(levelname)s %(name)s: %(message)s")
        super().__init__(*args, **kwargs)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        line = super().formatMessage(record)
        ids = " ".join(f"{name}={getattr(record, name)}" for name in IDS if getattr(record, name, None) is not None)
        return f"{line} [{ids}]" if ids else line

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class MessageTextFilter(logging.Filter):
    """Drops the DEBUG lines that would carry message text, unless SWITCHBOARD_LOG_MESSAGE_TEXT is on."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.INFO or not record.name.startswith(TEXT_LOGGERS):
            return True
        return bool(getattr(settings, "SWITCHBOARD_LOG_MESSAGE_TEXT", False))
