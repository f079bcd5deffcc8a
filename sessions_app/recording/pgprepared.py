"""SQL-level prepared statements inside one simple query, for what pg.py sends as one round trip.

Why: pg.py sends a guarded INSERT with its lock, and each recorder batch, as one simple query bound
client-side, so the lock never waits on a round trip and the batch costs one. PostgreSQL then parses
and plans every statement of it every time: at 100 first turns, 124 of its 190 ms of planning went to
these (pg_stat_statements; bench/README.md, 2026-12-03). A `PREPARE` once per connection, and an
`EXECUTE` with the values bound client-side in its place, keep the one round trip and plan a shape once.

Rules:

* Only statements whose plan cannot go wrong are prepared: by primary key, VALUES, and a guard's count
  of one table by an indexed column (live/sockets.py, relay/limits.py: their generic plans are index
  scans of the user's rows, even on empty tables). A sub-SELECT that joins is sent as it is: PostgreSQL
  plans a prepared statement generically after five executions and keeps that plan, made for the tables
  as they were then. The upstream guard's old join, planned on near-empty tables, became a nested loop
  over all the user's conversations for each open row, N² at N sockets (a first turn's database CPU rose
  from 10.8 to 12.5 ms a socket at 150 new sockets a second; bench/README.md, 2026-12-03, day).
* A shape (its SQL text) is prepared the second time this process sends it, so a one-off (a batch's
  INSERT of an unusual number of items) does not fill the connection's memory; a process knows at most
  `MAX_SHAPES` shapes, a connection prepares at most `MAX_PER_CONNECTION`, and past either the statement
  is sent as it was.
* Its `PREPARE` goes in the same simple query, before its first `EXECUTE`. PostgreSQL infers the
  parameters' types from where they stand, as it does for psycopg's own prepared statements; each
  `EXECUTE` value is one client-side literal, cast to that type.
* A connection's set of names is only added to once the query succeeded: a query that failed may or
  may not have prepared its names, and pg.py discards that connection.
* Off with the rest of Switchboard's preparing (`models.rows.prepares`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = ["Prepared", "MAX_SHAPES", "MAX_PER_CONNECTION"]

MAX_SHAPES = 1000
MAX_PER_CONNECTION = 200
_PLACEHOLDER = re.compile(r"%[s%]")


class Shapes:
    """The process's statement shapes: those sent once, and the names of those worth preparing."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.names: dict[str, tuple[str, int] | None] = {}  # sql -> (name, parameter count); None: refused
        self.by_name: dict[str, str] = {}

    def name(self, sql: str) -> tuple[str, int] | None:
        """The shape's name and parameter count once it was sent before, else None (send it as it is)."""
        if sql in self.names:
            return self.names[sql]
        if "(SELECT" in sql and " JOIN " in sql:  # its plan must follow the tables (module rules)
            self.names[sql] = None
            return None
        if sql not in self.seen:
            if len(self.seen) < MAX_SHAPES:
                self.seen.add(sql)
            return None
        name = f"switchboard_{len(self.names)}"
        self.by_name[name] = sql
        known = self.names[sql] = (name, sum(1 for found in _PLACEHOLDER.finditer(sql) if found.group() == "%s"))
        return known

    def refuse(self, names: set[str]) -> None:
        """Never prepare these shapes again: PostgreSQL refused a query that prepared them (pg.py)."""
        for name in names:
            self.names[self.by_name[name]] = None


SHAPES = Shapes()


def numbered(sql: str) -> str:
    """`sql` with psycopg's `%s` placeholders as PostgreSQL's `$1`, `$2`… (and `%%` as `%`)."""
    position = 0

    def number(match: re.Match[str]) -> str:
        nonlocal position
        if match.group() == "%%":
            return "%"
        position += 1
        return f"${position}"

    return _PLACEHOLDER.sub(number, sql)


class Prepared:
    """One connection's prepared shapes; `query` writes statements for a simple query, `done` records them sent."""

    def __init__(self, shapes: Shapes | None = None) -> None:
        self.shapes = shapes if shapes is not None else SHAPES
        self.known: set[str] = set()

    def query(self, statements: list[tuple[str, list[Any]]], bind: Callable[[str, Any], str],
              literal: Callable[[Any], str]) -> tuple[list[str], list[str], set[str]]:
        """The statements' texts for one simple query, each an `EXECUTE` where its shape is prepared; the
        `PREPARE`s to send before them (one result each); the names those prepare. `bind` puts values in the
        placeholders of a statement sent as it is; `literal` is one value's literal, and an `EXECUTE` is its
        name and its values' literals, with no placeholders to parse."""
        prepares: list[str] = []
        fresh: set[str] = set()
        texts = []
        for sql, params in statements:
            shape = self.shapes.name(sql)
            if shape is None or (shape[0] not in self.known and shape[0] not in fresh
                                 and len(self.known) + len(fresh) >= MAX_PER_CONNECTION):
                texts.append(bind(sql, params))
                continue
            name, count = shape
            if name not in self.known and name not in fresh:
                fresh.add(name)
                prepares.append(f"PREPARE {name} AS {numbered(sql)}")
            texts.append(f"EXECUTE {name}({', '.join(map(literal, params))})" if count else f"EXECUTE {name}")
        return prepares, texts, fresh

    def done(self, fresh: set[str]) -> None:
        self.known |= fresh
