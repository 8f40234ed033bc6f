"""The INSERTs of the rows the writer adds for every attempt and turn, with the NULLs of their
usually-empty columns written in the SQL rather than bound (the sqlite3 module looks for an
adapter for every None it binds: about 1 us each, six of them in an attempt's row)."""

from __future__ import annotations

import sqlite3
from operator import itemgetter
from typing import Any


class Insert:
    """An INSERT of one row into `table`, its values given in `columns`' order. Where the `rare`
    columns are all None (nearly every row) their NULLs are written in the SQL instead of bound:
    the sqlite3 module looks for an adapter for every None it binds (about 1 us each)."""

    def __init__(self, table: str, columns: tuple[str, ...], rare: tuple[str, ...]) -> None:
        names = ", ".join(columns)
        self.sql = f"INSERT INTO {table}({names}) VALUES ({','.join('?' * len(columns))})"
        usual = ",".join("NULL" if c in rare else "?" for c in columns)
        self.usual_sql = f"INSERT INTO {table}({names}) VALUES ({usual})"
        self.rare = itemgetter(*(i for i, c in enumerate(columns) if c in rare), 0)
        """The rare columns' values, and one more (a tuple even for one rare column)."""
        self.usual = itemgetter(*(i for i, c in enumerate(columns) if c not in rare))
        self.none = (None,) * len(rare)

    def __call__(self, conn: sqlite3.Connection, row: tuple[Any, ...]) -> sqlite3.Cursor:
        if self.rare(row)[:-1] == self.none:
            return conn.execute(self.usual_sql, self.usual(row))
        return conn.execute(self.sql, row)


INSERT_ATTEMPT = Insert(
    "attempts",
    ("turn_id", "attempt", "started_at", "latency_ms", "ttft_ms", "status", "request_skel", "request_system",
     "request_tools", "request_node", "request_headers", "response_json", "response_content", "error_json",
     "request_id", "model", "stop_reason", "usage_json", "unknown_events_json", "abandoned", "copied_from",
     "response_headers"),
    ("ttft_ms", "request_headers", "error_json", "request_id", "unknown_events_json", "copied_from",
     "response_headers"),
)  # fmt: skip
INSERT_TURN = Insert(
    "turns",
    ("id", "conversation_id", "call_key", "idx", "started_at", "user_id", "trace_id", "endpoint", "model", "stream",
     "system_blob", "tools_blob", "context_node", "context_len", "response_id"),
    ("trace_id",),
)  # fmt: skip
