"""Another connection that holds the test database, so a test can keep the relay's writes from committing."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import psycopg

__all__ = ["HeldDatabase"]


class HeldDatabase:
    """`async with HeldDatabase(...)`: another connection holds the database until the block ends.

    SQLite: the whole database's write lock (BEGIN EXCLUSIVE); every write waits for it, up to the busy timeout
    (20 s), then fails as "database is locked". PostgreSQL, given `conversation_id`: a row lock on that
    conversation (FOR UPDATE), which a new record's foreign-key check waits for.
    """

    def __init__(self, settings_dict: dict, *, conversation_id=None) -> None:
        self.settings, self.conversation_id = settings_dict, conversation_id
        self.locked, self.release = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._hold)

    def _lock(self):
        if self.settings["ENGINE"].endswith("sqlite3"):
            raw = sqlite3.connect(self.settings["NAME"], timeout=30)
            raw.execute("BEGIN EXCLUSIVE")
            return raw
        raw = psycopg.connect(host=self.settings["HOST"], port=self.settings["PORT"] or 5432,
                              user=self.settings["USER"], password=self.settings["PASSWORD"] or None,
                              dbname=self.settings["NAME"])
        raw.execute("SELECT 1 FROM sessions_app_conversation WHERE id = %s FOR UPDATE", [self.conversation_id])
        return raw

    def _hold(self) -> None:
        raw = self._lock()
        try:
            self.locked.set()
            self.release.wait(180)
            raw.rollback()
        finally:
            raw.close()

    async def __aenter__(self) -> HeldDatabase:
        self.thread.start()
        assert await asyncio.to_thread(self.locked.wait, 30)
        return self

    async def __aexit__(self, *exc_info) -> None:
        self.release.set()
        await asyncio.to_thread(self.thread.join, 30)
