"""The search index's upkeep: its merges done while the writer is idle, not as records arrive.

The message text of every turn goes into an FTS5 index (turn_text, store/schema.py); each
distinct system prompt and tool list into another (context_text, a row per blob: few rows, left
to FTS5's own merging). Each
transaction that adds text writes a new segment of that index, and by default FTS5 merges
segments as part of each such commit ('automerge', 4 at a level): a burst of records (a batch
eval, an import) paid for merging the index while it was being written, about a third of the
index's cost per record (bench/record_throughput.py: 35 of 100 us a turn).

Here a writer switches that off for the database (`defer_merges`, the same 'automerge' option,
kept in the index's own config table) and merges at its idle moments instead (`merge_step`,
called by store/writer.py once no record has arrived for a while), a bounded amount of work at a
time, until every level is back to fewer than 4 segments: the shape the default would have left.
Without idle time (a writer that never rests) FTS5's 'crisismerge' still merges any level that
reaches 16 segments at once, so a query never reads more than 15 segments a level; and an older
replayer writing the same file merges only that way. Searches give the same rows throughout;
only how many segments they look in changes.
"""

from __future__ import annotations

import sqlite3

MERGE_PAGES = 64
"""Index pages a merge step writes (8 KB each): about 11 ms here (the throughput bench's 2,000
turns in 20 batches took one such step), so a record arriving during a step waits no longer."""


def defer_merges(conn: sqlite3.Connection) -> None:
    """Switch off merging at each commit, for every writer of this database (inside a write
    transaction; read first, so a database already set is not written)."""
    row = conn.execute("SELECT v FROM turn_text_config WHERE k = 'automerge'").fetchone()
    if row is None or row[0] != 0:
        conn.execute("INSERT INTO turn_text(turn_text, rank) VALUES ('automerge', 0)")


def merge_step(conn: sqlite3.Connection, pages: int = MERGE_PAGES) -> bool:
    """Merge up to `pages` pages of the index where a level holds 4 segments or more, as its own
    transaction. True when it did some work (then there may be more), False when the index is
    already in shape or the database could not be written now (the next idle moment tries again)."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        before = conn.total_changes
        conn.execute("INSERT INTO turn_text(turn_text, rank) VALUES ('merge', ?)", (pages,))
        changed = conn.total_changes - before
        conn.execute("COMMIT")
    except sqlite3.Error:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        return False
    return changed > 1  # the command's own row counts one change, whether or not it merged anything
