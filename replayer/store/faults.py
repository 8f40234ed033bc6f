"""What can be wrong with a database file, in words a user can act on: `DBError` (a file that
can't be used) and `fault_of` (what made SQLite fail, as far as the remedy differs). Apart from
schema.py, which opens databases with sqlite-utils, so that the writer can name a fault without
importing sqlite-utils in the recording process (its import is 60 ms of CPU there, and only the
writer process or a fallback writer thread opens the database)."""

from __future__ import annotations

import os
import sqlite3
from enum import StrEnum
from pathlib import Path
from typing import Any


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


class DBError(Exception):
    """A database file that can't be used; the message is one line: what is wrong, what to do.
    `fault`: what is wrong with it, where that is known (Fault.CORRUPT for a damaged file)."""

    def __init__(self, message: str, fault: Fault | None = None) -> None:
        super().__init__(message)
        self.fault = fault


def corrupt(path: object, detail: str) -> DBError:
    """The one line for a damaged file, whether SQLite found it damaged when opening it or later,
    on a page a query read (so every command and the browser say the same)."""
    return DBError(
        f"{path} is not a SQLite database or is corrupt ({detail}): move it aside or pick another --db", Fault.CORRUPT
    )


def missing_row(conn: Any, what: str) -> DBError:
    """A row that another row of the database points at is not there: the file is damaged (a
    page SQLite could not read drops out of a query's answer rather than failing it). `conn` is
    the connection (sqlite3 or sqlite-utils) that looked."""
    try:
        path = next((row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main"), "") or "the database"
    except sqlite3.Error:
        path = "the database"
    return corrupt(path, f"{what} is missing")


def locked(path: object) -> str:
    """The one line for a database another process holds locked (past the busy timeout), whether
    opening it or writing into it found that."""
    return f"{path} is locked by another process: retry when it is done"


def read_only_folder(e: BaseException, path: object) -> str | None:
    """The one line for a database in a folder this user can't write (SQLite makes its -wal and
    -shm files there); None when the folder is writable."""
    folder = Path(str(path)).parent
    if getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_READONLY_DIRECTORY or not os.access(folder, os.W_OK):
        return (
            f"{folder} is read-only: SQLite makes {Path(str(path)).name}-wal and -shm beside the database to "
            "read it; make the folder writable, or copy the file into one that is"
        )
    return None


def described(e: BaseException, path: object) -> str | None:
    """The one line for a database failure while reading or writing `path`: a DBError's own, a
    damaged file's (SQLite's "database disk image is malformed"), a locked, read-only or full
    one's, each with what to do; None for anything else."""
    if isinstance(e, DBError):
        return str(e)
    fault = fault_of(e) if isinstance(e, sqlite3.Error) else None
    if fault is Fault.CORRUPT:
        return str(corrupt(path, str(e)))
    if fault is Fault.LOCKED:
        return locked(path)
    if fault is Fault.READ_ONLY:
        return read_only_folder(e, path) or (
            f"{path} is read-only: fix its permissions (or its file system's), or give another --db"
        )
    if fault is Fault.FULL:
        return f"the disk holding {path} is full: free some space, then run the command again"
    return None


def fault_of(e: BaseException) -> Fault | None:
    """The database's fault behind `e`, from SQLite's own result code (its primary part: an
    extended code such as SQLITE_READONLY_DBMOVED is a kind of SQLITE_READONLY); None for
    anything else (including errors the sqlite3 module raises itself, which carry no code)."""
    code = getattr(e, "sqlite_errorcode", None)
    return None if code is None else _FAULTS.get(code & 0xFF)
