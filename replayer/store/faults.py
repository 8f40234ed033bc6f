"""What can be wrong with a database file, in words a user can act on: `DBError` (a file that
can't be used) and `fault_of` (what made SQLite fail, as far as the remedy differs). Apart from
schema.py, which opens databases with sqlite-utils, so that the writer can name a fault without
importing sqlite-utils in the recording process (its import is 60 ms of CPU there, and only the
writer process or a fallback writer thread opens the database)."""

from __future__ import annotations

import sqlite3
from enum import StrEnum


class DBError(Exception):
    """A database file that can't be used; the message is one line: what is wrong, what to do."""


class Fault(StrEnum):
    """What made the database fail, as far as the remedy differs."""

    READ_ONLY = "read-only"
    LOCKED = "locked"
    FULL = "full"
    CORRUPT = "corrupt"


_FAULTS = {
    sqlite3.SQLITE_READONLY: Fault.READ_ONLY,
    sqlite3.SQLITE_BUSY: Fault.LOCKED,  # "database is locked": another connection holds the write lock
    sqlite3.SQLITE_LOCKED: Fault.LOCKED,
    sqlite3.SQLITE_FULL: Fault.FULL,
    sqlite3.SQLITE_CORRUPT: Fault.CORRUPT,  # "database disk image is malformed"
    sqlite3.SQLITE_NOTADB: Fault.CORRUPT,  # "file is not a database"
}


def fault_of(e: BaseException) -> Fault | None:
    """The database's fault behind `e`, from SQLite's own result code (its primary part: an
    extended code such as SQLITE_READONLY_DBMOVED is a kind of SQLITE_READONLY); None for
    anything else (including errors the sqlite3 module raises itself, which carry no code)."""
    code = getattr(e, "sqlite_errorcode", None)
    return None if code is None else _FAULTS.get(code & 0xFF)
