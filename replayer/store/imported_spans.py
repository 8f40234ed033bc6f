"""Writing the chat spans `replayer import otlp` read (otlp/reading.py) through the Ingestor, as
recorded calls are written: once each, in batches of one transaction. A record's request may come
scanned already (by the import's reader process, otlp/prescan.py), naming blobs and nodes by the
reader's local ids: the batch's new ones are inserted (or found) first and the ids mapped.

replayer's own spans keep every id the exporting database had (turn id and index, conversation,
attempt, times), so `replayer export` of this database writes their lines again unchanged; what
the export line says beyond the attempt (imported_from, a parent conversation) is written beside
it as the exporting database had it. The one exception: a turn whose index in its conversation
another turn holds here (the same conversation id recorded here too: one agent run on two
machines) goes after the conversation's turns, as a second run into it adds them, and the
import's later new turns of that conversation follow it. Another instrumentation's span is a reconstructed turn
(imported_turns, source "otlp", keyed by trace and span id): threaded into a conversation by its
`gen_ai.conversation.id`, else as recorded calls are (a request that extends an earlier turn's
context joins it), never beside the same call recorded on the wire or exported by replayer (its
response id found: kept once, as recorded).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from sqlite_utils import Database

from ..otlp.prescan import parsed_from_wire
from ..otlp.reading import SOURCE
from . import codec
from .codec import digest
from .ingest import Ingestor
from .schema import fault_of

if TYPE_CHECKING:
    from ..otlp.prescan import Defined
    from ..otlp.reading import Record

CLAUDE_CODE = "claude-code"
CACHE_KB = 64 << 10
"""The import's page cache (this connection's only)."""


@dataclass
class SpanCounts:
    """What an import did, for its closing line."""

    exact: int = 0
    """Attempts of replayer's own spans written (those whose content was cut short too: rebuilt,
    their turns marked reconstructed, reading.Record.cut)."""
    reconstructed: int = 0
    """Turns rebuilt from other instrumentations' spans written."""
    known: int = 0
    """Spans imported before."""
    merged: int = 0
    """Spans of a call recorded in this database in the first place: another instrumentation's
    (matched by response id), or replayer's own of an attempt recorded here (its turn id)."""
    twinned: int = 0
    """replayer's own spans of a call already imported from elsewhere (a transcript, another
    instrumentation's span), matched by response id and left out: the call is kept once."""
    conversations: set[str] = field(default_factory=set)
    """Conversations this import created."""
    continued: int = 0
    """Turns of replayer's own spans whose index here is another turn's (the same conversation id
    recorded here too, on another machine, say): added after the conversation's turns instead."""
    continued_conversations: set[str] = field(default_factory=set)
    """The conversations those turns went into."""


class _SpanFailed(Exception):
    """A span that could not be written (the batch's transaction is rolled back)."""

    def __init__(self, record: Record, reason: str) -> None:
        super().__init__(reason)
        self.record, self.reason = record, reason


class SpanWriter:
    """Writes records into one Database, one transaction per `write`."""

    def __init__(self, db: Database):
        self.db = db
        self.ingestor = Ingestor(db)
        self.local_ids: dict[int, int] = {0: 0}
        """The reader's local blob and node ids (otlp/prescan.py) -> this database's."""
        # a big import inserts into indexes keyed by hashes (blobs, call keys) at random places: past
        # SQLite's default 2 MB of cache nearly every insert reads its page again
        db.conn.execute(f"PRAGMA cache_size = {-CACHE_KB}")

    def write(
        self, records: list[Record], counts: SpanCounts, defined: Defined | None = None
    ) -> list[tuple[Record, str]]:
        """Write a batch in one transaction, adding to `counts`; `defined`: the blobs and nodes its
        records' scanned requests name first (with the batch, written even if they are not). A span
        that can't be written is left out and the rest written again: those spans and why, for
        the report. Trouble with the database raises."""
        if defined is not None and defined.fresh:
            self.local_ids = {0: 0}
        failed: list[tuple[Record, str]] = []
        # replayer's own first (a call another instrumentation traced too is then found), each
        # in time order (a conversation's turns before the turns that extend them)
        todo = sorted(records, key=lambda r: (not r.exact, r.started_at, r.captured.attempt))
        while todo:
            work = replace(
                counts,
                conversations=set(counts.conversations),
                continued_conversations=set(counts.continued_conversations),
            )
            try:
                self._write(todo, work, defined)
            except _SpanFailed as e:
                # the spans before it went in fine: written on their own (each failure costs one
                # rewrite of what precedes it, never of the whole batch again), then the rest
                failed.append((e.record, e.reason))
                at = next(i for i, r in enumerate(todo) if r is e.record)
                head, todo = todo[:at], todo[at + 1 :]
                failed += self.write(head, counts, defined)
                continue
            vars(counts).update(vars(work))
            break
        return failed

    def _write(self, records: list[Record], counts: SpanCounts, defined: Defined | None) -> None:
        with self.ingestor.transaction():
            if defined is not None:
                self._define(defined)
            known = _Known(self.db.conn, [r for r in records if r.exact])
            for r in records:
                try:
                    self._record(r, counts, known)
                except Exception as e:
                    if isinstance(e, sqlite3.Error) and fault_of(e) is not None:
                        raise  # the database's trouble (locked, full, read-only): not the span's
                    raise _SpanFailed(r, f"{type(e).__name__}: {e}") from e

    def _define(self, defined: Defined) -> None:
        """Map the reader's new local ids to this database's blobs and nodes, inserting those it
        lacks (in the transaction: a rollback takes them back, and the batch defines them again).
        A node inserted here is unsent: the batch's first request that names it sends it (store/
        tool_results.py counts a message's tool results on that request's turn, as where it was
        recorded, whichever process scanned which request)."""
        ids, blobs = self.local_ids, self.ingestor.blobs
        for local, h, stored in defined.blobs:
            ids[local] = blobs.blob_stored(h, stored)
        for local, parent, blob, depth in defined.nodes:
            made = blobs.nodes_made
            ids[local] = node = blobs.node(ids[parent], ids[blob], depth)
            if blobs.nodes_made != made:
                blobs.unsent.add(node)

    def _record(self, r: Record, counts: SpanCounts, known: _Known) -> None:
        conn = self.db.conn
        c = r.captured
        conv = c.ctx.conversation_id if c.ctx else None
        new_turn_id = False
        if r.exact:
            if (c.turn_id, c.attempt) in known.attempts:
                if str(c.turn_id) in known.recorded:
                    counts.merged += 1
                else:
                    counts.known += 1
                return
            if str(c.turn_id) in known.twins:
                counts.twinned += 1
                return
            started = known.conversations.get(str(conv))
            if started is None:
                counts.conversations.add(str(conv))
            elif started > r.started_at:  # a slice's earlier turn: the conversation starts with it
                conn.execute("UPDATE conversations SET started_at = ? WHERE id = ?", (r.started_at, conv))
            known.conversations[str(conv)] = min(started or r.started_at, r.started_at)
            new_turn_id = c.turn_id not in known.turns
            if new_turn_id and started is not None and c.turn_index is not None and (
                str(conv) in counts.continued_conversations or (str(conv), c.turn_index) in known.taken
            ):
                # its place is another turn's: the same conversation id recorded here too (the same
                # agent run on two machines). The import's turns go after this database's, in their
                # order, as a second run into the conversation adds them; the turn keeps its id
                # (importing again finds it), and its index is all that differs
                c = replace(c, turn_index=None)
                counts.continued += 1
                counts.continued_conversations.add(str(conv))
            known.attempts.add((c.turn_id, c.attempt))
            known.turns.add(str(c.turn_id))
        else:
            key = digest(c.call_key)[:16]
            if conn.execute("SELECT 1 FROM turns WHERE call_key = ?", (key,)).fetchone():
                counts.known += 1
                return
            if (
                r.response_id
                and conn.execute("SELECT 1 FROM turns WHERE response_id = ? LIMIT 1", (r.response_id,)).fetchone()
            ):
                counts.merged += 1
                return
            if conv and not conn.execute("SELECT 1 FROM conversations WHERE id = ?", (conv,)).fetchone():
                counts.conversations.add(conv)
        parsed = parsed_from_wire(r.scanned, self.local_ids) if r.scanned is not None else None
        stored = self.ingestor.store(c, new_turn_id=new_turn_id, parsed=parsed)
        if stored is None:  # (no redaction here: never None)
            return
        turn = stored.turn
        if r.exact:
            counts.exact += 1
            known.taken.add((turn.conversation_id, turn.idx))
            if r.unknown_events:  # a stream's events of unknown types: the attempt's line keeps them
                conn.execute(
                    "UPDATE attempts SET unknown_events_json = ? WHERE turn_id = ? AND attempt = ?",
                    (codec.dumps(r.unknown_events), turn.id, c.attempt),
                )
        else:
            counts.reconstructed += 1
            if stored.new_turn and turn.idx == 0:
                counts.conversations.add(stored.conversation_id)
                conn.execute(
                    "UPDATE conversations SET origin = 'import' WHERE id = ? AND origin IN ('explicit', 'auto')",
                    (stored.conversation_id,),
                )
        if r.imported_from and (stored.new_turn or r.cut):  # (a retry cut short: its turn is rebuilt in part)
            session = r.session
            if r.imported_from == CLAUDE_CODE and c.ctx and c.ctx.tags:
                session = str(c.ctx.tags.get("claude_code_session") or session)
            conn.execute(
                """INSERT OR IGNORE INTO imported_turns(turn_id, source, session_id, chain, message_key, message_id)
                   VALUES (?, ?, ?, '', ?, ?)""",
                (turn.id, r.imported_from, session, r.key, r.response_id),
            )
        if r.parent_conversation_id:
            kind = "subagent" if r.imported_from == CLAUDE_CODE else "fork"
            conn.execute(
                "INSERT OR IGNORE INTO conversation_links(conversation_id, parent_id, kind) VALUES (?, ?, ?)",
                (stored.conversation_id, r.parent_conversation_id, kind),
            )
            if kind == "fork" and stored.new_turn:
                # a fork, as it was where it was recorded: its spend apart from the agents' (metrics.
                # EXPERIMENTS). Its tags said so there (fork_of), which a span carries and an export
                # line doesn't: its parent conversation is what an export line has of it
                conn.execute(
                    "UPDATE conversations SET origin = 'fork' WHERE id = ? AND origin IN ('explicit', 'auto')",
                    (stored.conversation_id,),
                )
            if kind == "fork" and c.copied_from is None:
                # the turn it forked at: its first that copies none (those before it are copies)
                conn.execute(
                    """UPDATE conversation_links SET turn_index = ?
                       WHERE conversation_id = ? AND kind = 'fork' AND (turn_index IS NULL OR turn_index > ?)""",
                    (turn.idx, stored.conversation_id, turn.idx),
                )


class _Known:
    """What a batch of replayer's own spans finds in the database, asked for at once (a query or
    two per batch, not per span), and kept up to date as the batch is written."""

    CHUNK = 500
    """Ids per query (SQLite's limit on parameters is 999 in old versions)."""

    def __init__(self, conn: sqlite3.Connection, records: list[Record]) -> None:
        turn_ids = sorted({str(r.captured.turn_id) for r in records})
        conversations = sorted({str(r.captured.ctx.conversation_id) for r in records if r.captured.ctx})
        self.attempts: set[tuple[str | None, int]] = set()
        """(turn id, attempt) stored."""
        self.turns: set[str] = set()
        self.recorded: set[str] = set()
        """Those turns recorded here: not imported (an imported turn of another source is in
        imported_turns; one of replayer's own has the call key reading.own_record makes of its id)."""
        self.conversations: dict[str, str] = {}
        """Conversation id -> started_at."""
        for ids in _chunks(turn_ids, self.CHUNK):
            marks = ",".join("?" * len(ids))
            for t, call_key, imported in conn.execute(
                f"""SELECT t.id, t.call_key, i.turn_id IS NOT NULL FROM turns t
                    LEFT JOIN imported_turns i ON i.turn_id = t.id WHERE t.id IN ({marks})""",
                ids,
            ):
                self.turns.add(t)
                if not imported and call_key != digest(f"{SOURCE}:{t}")[:16]:
                    self.recorded.add(t)
            self.attempts.update(conn.execute(f"SELECT turn_id, attempt FROM attempts WHERE turn_id IN ({marks})", ids))
        for ids in _chunks(conversations, self.CHUNK):
            marks = ",".join("?" * len(ids))
            self.conversations.update(
                conn.execute(f"SELECT id, started_at FROM conversations WHERE id IN ({marks})", ids)
            )
        self.taken: set[tuple[str, int]] = set()
        """(conversation id, index) of the turns there, at the indexes the batch's turns have."""
        wanted = {(str(r.captured.ctx.conversation_id), r.captured.turn_index) for r in records if r.captured.ctx}
        places = sorted(i for _, i in wanted if i is not None)
        there = sorted(c for c in {c for c, _ in wanted} if c in self.conversations)
        for ids in _chunks(there, self.CHUNK) if places else ():
            marks = ",".join("?" * len(ids))
            self.taken.update(
                (c, i)
                for c, i in conn.execute(
                    f"""SELECT conversation_id, idx FROM turns
                        WHERE conversation_id IN ({marks}) AND idx BETWEEN ? AND ?""",
                    [*ids, places[0], places[-1]],
                )
                if (c, i) in wanted
            )
        self.twins: set[str] = set()
        """Turns not stored here whose response a turn imported from elsewhere already holds (a
        Claude Code transcript, another instrumentation's span): each of their attempts is left
        out, so the call is kept once whichever came first."""
        answered: dict[str, str] = {
            r.response_id: str(r.captured.turn_id)
            for r in records
            if r.response_id and str(r.captured.turn_id) not in self.turns
        }
        ids_ = sorted(answered)
        for ids in _chunks(ids_, self.CHUNK):
            marks = ",".join("?" * len(ids))
            self.twins.update(
                answered[m]
                for (m,) in conn.execute(
                    f"SELECT DISTINCT message_id FROM imported_turns WHERE message_id IN ({marks})", ids
                )
            )


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
