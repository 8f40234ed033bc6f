"""Imported turns: writing the turns read from Claude Code transcripts through the Ingestor (as
recorded calls are written), once each and never beside the same call recorded on the wire, and
reading back what sets them apart (reconstructed, context resets, subagent links).

The same call is the same response (message id) in its own session, or in a line a fork copied
with its time (see `ImportWriter._stored`): a session `replayer replay` answered has the recorded
ids too, but is a call of its own.

Which conversation a chain's new turns join: the one of its nearest earlier turn already in the
database (imported before, or recorded on the wire: the wire record wins and keeps its place),
else a new one named after the session (`cc_<session id>`, and `cc_<session id>_<agent id>` for
a subagent), so importing again finds the same one. A conversation's turns always grow one
context, so a new turn joins a conversation only after its last turn: turns before the first one
recorded on the wire (recording started mid-session), a turn the wire missed between two it has
(a run not recorded), and a fork's or branch's turns after a point the conversation went on from
start a conversation of their own (the session's, or `cc_<session id>_branch<N>` when that one
is taken).
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlite_utils import Database

from ..captured import Captured, Context
from ..imports.claude_code import SOURCE, Chain, Turn
from .agent_ids import SESSION_TAG
from .codec import iso
from .ingest import Ingestor
from .schema import fault_of

AGENT_TAG = "claude_code_agent"


@dataclass
class Counts:
    """What an import did, for its closing line."""

    new: int = 0
    """Turns written."""
    known: int = 0
    """Turns imported before (by an earlier command)."""
    copies: int = 0
    """Turns this import wrote from another session's file that copied them (a fork), kept once."""
    merged: int = 0
    """Turns already recorded on the wire (matched by message id)."""
    unfinished: int = 0
    """Responses a session in progress has only partly written yet, left for the next import."""
    conversations: set[str] = field(default_factory=set)
    """Conversations this import created."""
    subagents: set[str] = field(default_factory=set)
    """Conversations linked to a parent."""


class _TurnFailed(Exception):
    """A turn of a transcript that could not be written (the transaction is rolled back)."""

    def __init__(self, turn: Turn, reason: str) -> None:
        super().__init__(reason)
        self.turn, self.reason = turn, reason


def _session_of(tags_json: str | None) -> str | None:
    """The Claude Code session a conversation's tags name, if any."""
    try:
        tags = json.loads(tags_json) if tags_json else None
    except ValueError:
        return None
    session = tags.get(SESSION_TAG) if isinstance(tags, dict) else None
    return session if isinstance(session, str) else None


BEFORE_S, AFTER_S = 1.0, 2.0
"""How far a transcript line's time may lie from the recorded call it writes down: Claude Code
writes a response's first line as it arrives (seen: 4 ms after the call ended), and
the wire's clock may be another host's. A replay runs after the recorded run ended, so seconds
later at the least."""


def _during(at: float, attempts: list[list[Any]]) -> bool:
    """Whether a transcript line's time falls within one of a recorded turn's attempts
    ([started_at, latency_ms] each), give or take BEFORE_S / AFTER_S."""
    for started, latency in attempts:
        start = datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp()
        if start - BEFORE_S <= at <= start + (latency or 0) / 1000 + AFTER_S:
            return True
    return False


def conversation_id_for(session_id: str, chain: str) -> str:
    return f"cc_{session_id}" if not chain else f"cc_{session_id}_{chain}"


class ImportWriter:
    """Writes chains into one Database, one transaction per `write`."""

    def __init__(self, db: Database):
        self.db = db
        self.ingestor = Ingestor(db)
        self.main: dict[str, str] = {}
        """Session id -> the conversation of its main thread, as this import found or made it."""
        self.written: set[str] = set()
        """The turns this import wrote (a turn found again among them was not "imported before")."""

    def write(self, chains: list[Chain], counts: Counts) -> list[tuple[Turn, str]]:
        """Write one file's chains in one transaction, adding to `counts`. A turn that can't be
        written (a line of odd values: usage that isn't token counts) is left out and the rest
        written again: those turns and why, for the report. Trouble with the database raises."""
        failed: list[tuple[Turn, str]] = []
        while True:
            work = replace(counts, conversations=set(counts.conversations), subagents=set(counts.subagents))
            main = dict(self.main)
            try:
                self._write(chains, work)
            except _TurnFailed as e:
                self.main = main
                failed.append((e.turn, e.reason))
                for chain in chains:
                    chain.turns = [t for t in chain.turns if t is not e.turn]
                continue
            vars(counts).update(vars(work))
            return failed

    def _write(self, chains: list[Chain], counts: Counts) -> None:
        with self.ingestor.transaction():
            for chain in sorted(chains, key=lambda c: c.chain != ""):  # a parent before its subagents
                self._chain(chain, counts)

    def _stored(self, t: Turn) -> tuple[str, bool, int, bool] | None:
        """(conversation, recorded on the wire, turn index, written by this import) of a turn
        already in the database, else None.

        A response id alone doesn't make the same call: `replayer replay` answers a new session
        with the recorded responses, ids and all. The same call is the same response in its own
        session (imported before, or recorded on the wire in a conversation tagged with that
        session), or a line another session's file copied (a fork copies its history, each line
        with its time); a replayed session's lines are written when the replay ran."""
        conn = self.db.conn
        row = conn.execute(
            """SELECT t.conversation_id, t.idx, t.id FROM imported_turns i JOIN turns t ON t.id = i.turn_id
               WHERE i.source = ? AND i.session_id = ? AND i.message_key = ?""",
            (SOURCE, t.session_id, t.key),
        ).fetchone()
        if row is None and t.message_id:  # the same response copied into another session's file
            row = conn.execute(
                """SELECT t.conversation_id, t.idx, t.id FROM imported_turns i JOIN turns t ON t.id = i.turn_id
                   WHERE i.message_id = ? AND t.started_at = ? LIMIT 1""",
                (t.message_id, iso(t.at)),
            ).fetchone()
        if row is not None:
            return row[0], False, row[1], row[2] in self.written
        if t.message_id:
            for conv, idx, tags, times in conn.execute(
                """SELECT t.conversation_id, t.idx, c.tags_json,
                          json_group_array(json_array(a.started_at, a.latency_ms))
                   FROM turns t JOIN conversations c ON c.id = t.conversation_id JOIN attempts a ON a.turn_id = t.id
                   WHERE t.response_id = ? GROUP BY t.id ORDER BY t.started_at""",
                (t.message_id,),
            ):
                if _session_of(tags) in (None, t.session_id) or _during(t.at, json.loads(times)):
                    return conv, True, idx, False
        return None

    def _joinable(self, current: str, after: tuple[str, int] | None, chain: Chain) -> str:
        """The conversation a new turn goes to: `current` when it is new, or when the chain's turn
        before (`after`: conversation, index) is its last turn; else (the turn would land after
        turns it doesn't follow) the session's own conversation or a branch of it."""
        base = conversation_id_for(chain.session_id, chain.chain)
        for name in itertools.chain((current, base), (f"{base}_branch{n}" for n in itertools.count(2))):
            (last,) = self.db.conn.execute("SELECT MAX(idx) FROM turns WHERE conversation_id = ?", (name,)).fetchone()
            if last is None or after == (name, last):
                return name
        raise AssertionError("unreachable")  # (the names go on without end)

    def _chain(self, chain: Chain, counts: Counts) -> None:
        conn = self.db.conn
        stored = [self._stored(t) for t in chain.turns]
        tags: dict[str, Any] = {SESSION_TAG: chain.session_id}
        if chain.chain:
            tags[AGENT_TAG] = chain.chain
        current = conversation_id_for(chain.session_id, chain.chain)
        touched: list[str] = []
        after: tuple[str, int] | None = None  # the conversation and index of the chain's turn before
        for t, s in zip(chain.turns, stored, strict=True):
            if s is not None:
                current, after = s[0], (s[0], s[2])
                if s[1]:
                    counts.merged += 1
                    self._tag(current, tags)
                elif s[3]:
                    counts.copies += 1
                else:
                    counts.known += 1
                touched.append(current)
                continue
            current = self._joinable(current, after, chain)
            if not conn.execute("SELECT 1 FROM conversations WHERE id = ?", (current,)).fetchone():
                counts.conversations.add(current)
            try:
                after = (current, self._store(t, current, tags))
            except Exception as e:
                if isinstance(e, sqlite3.Error) and fault_of(e) is not None:
                    raise  # the database's trouble (locked, full, read-only): not the line's
                raise _TurnFailed(t, f"{type(e).__name__}: {e}") from e
            counts.new += 1
            touched.append(current)
        created = [c for c in dict.fromkeys(touched) if c in counts.conversations]
        conn.executemany(
            "UPDATE conversations SET origin = 'import' WHERE id = ? AND origin = 'explicit'", [(c,) for c in created]
        )
        if not touched:
            return
        if not chain.chain:
            self.main.setdefault(chain.session_id, touched[0])
            return
        parent = self.main.get(chain.session_id) or self._main_of(chain.session_id)
        if parent is None:
            return
        for conv in dict.fromkeys(touched):
            if conv != parent:
                cur = conn.execute(
                    """INSERT OR IGNORE INTO conversation_links(conversation_id, parent_id, kind, tool_use_id)
                       VALUES (?, ?, 'subagent', ?)""",
                    (conv, parent, chain.tool_use_id),
                )
                if cur.rowcount:
                    counts.subagents.add(conv)

    def _main_of(self, session_id: str) -> str | None:
        """The main thread's conversation of a session imported before."""
        row = self.db.conn.execute(
            """SELECT t.conversation_id FROM imported_turns i JOIN turns t ON t.id = i.turn_id
               WHERE i.source = ? AND i.session_id = ? AND i.chain = '' ORDER BY t.started_at LIMIT 1""",
            (SOURCE, session_id),
        ).fetchone()
        return row[0] if row else None

    def _tag(self, conversation_id: str, tags: dict[str, Any]) -> None:
        """A recorded conversation the transcript matched: add the session's tags it lacks."""
        conn = self.db.conn
        row = conn.execute("SELECT tags_json FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        try:
            have = json.loads(row[0]) if row and row[0] else {}
        except ValueError:
            return
        if not isinstance(have, dict) or all(k in have for k in tags):
            return
        conn.execute(
            "UPDATE conversations SET tags_json = ? WHERE id = ?",
            (json.dumps({**have, **{k: v for k, v in tags.items() if k not in have}}), conversation_id),
        )

    def _store(self, t: Turn, conversation_id: str, tags: dict[str, Any]) -> int:
        """Write one turn into the conversation; its index there."""
        call_key = f"{SOURCE}:{t.session_id}:{t.key}"
        captured = Captured(
            call_key=call_key,
            attempt=0,
            t_start=t.at,
            # as bytes, as a recorded call comes: the scanner then reuses the messages the turn
            # before already stored instead of hashing the whole history again
            request_bytes=t.make_body(),
            status=200,
            response_bytes=json.dumps(t.response, ensure_ascii=False).encode("utf-8", "surrogatepass"),
            request_id=t.request_id,
            ctx=Context(conversation_id=conversation_id, user_id=t.user_id, tags=tags),
        )
        stored = self.ingestor.store(captured)
        assert stored is not None  # (no redaction here: never None)
        turn_id = stored.turn.id
        self.written.add(turn_id)
        self.db.conn.execute(
            """INSERT INTO imported_turns(turn_id, source, session_id, chain, message_key, message_id, context_reset)
               VALUES (?, ?, ?, ?, ?, ?, ?)""",
            (turn_id, SOURCE, t.session_id, t.chain, t.key, t.message_id, 1 if t.context_reset else 0),
        )
        return stored.turn.idx


# -- reading ------------------------------------------------------------------------------------


@dataclass
class Provenance:
    """Where a conversation's turns came from, beyond the wire: what `show` says about it."""

    source: str | None
    """The import its reconstructed turns came from (None: all recorded on the wire)."""
    session_id: str | None
    reconstructed: set[int]
    """Indexes of its reconstructed turns."""
    resets: set[int]
    """Indexes of the turns that start after a compaction summary."""
    parent: str | None
    tool_use_id: str | None
    children: list[str]


def reconstructed(db: Database, turn_id: str) -> str | None:
    """The source a turn was imported from (its request is a reconstruction), else None."""
    try:
        row = db.execute("SELECT source FROM imported_turns WHERE turn_id = ?", [turn_id]).fetchone()
    except sqlite3.OperationalError:  # a database opened without migrating: nothing imported
        return None
    return row[0] if row else None


def reconstructed_turns(db: Database, conversation_id: str) -> dict[int, str]:
    """Turn index -> the source each imported turn of a conversation came from (empty for one
    recorded on the wire)."""
    try:
        rows = db.execute(
            "SELECT t.idx, i.source FROM imported_turns i JOIN turns t ON t.id = i.turn_id WHERE t.conversation_id = ?",
            [conversation_id],
        ).fetchall()
    except sqlite3.OperationalError:  # a database opened without migrating: nothing imported
        return {}
    return dict(rows)


def provenance(db: Database, conversation_id: str) -> Provenance | None:
    """What `show` says about a conversation's imported turns and links; None for one that has
    neither."""
    rows = db.execute(
        """SELECT t.idx, i.source, i.session_id, i.context_reset FROM imported_turns i
           JOIN turns t ON t.id = i.turn_id WHERE t.conversation_id = ?""",
        [conversation_id],
    ).fetchall()
    link = db.execute(
        "SELECT parent_id, tool_use_id FROM conversation_links WHERE conversation_id = ? AND kind = 'subagent'",
        [conversation_id],
    ).fetchone()
    children = [
        r[0]
        for r in db.execute(
            """SELECT conversation_id FROM conversation_links WHERE parent_id = ? AND kind = 'subagent'
               ORDER BY conversation_id""",
            [conversation_id],
        )
    ]
    if not rows and link is None and not children:
        return None
    return Provenance(
        source=rows[0][1] if rows else None,
        session_id=rows[0][2] if rows else None,
        reconstructed={r[0] for r in rows},
        resets={r[0] for r in rows if r[3]},
        parent=link[0] if link else None,
        tool_use_id=link[1] if link else None,
        children=children,
    )
