"""The database: opening it safely, and its schema as named, append-only migrations.

Design (see DESIGN.md, "Storage principle"):
- `blobs` holds every distinct message, system prompt, tool list and response content once,
  keyed by a hash of its canonical JSON (sorted keys, compact), and holding its compact JSON
  with keys in the order they first came (codec.in_order; rows written before that hold the
  canonical text, read the same). Export rebuilds JSON-equal documents from them.
- `nodes` is a persistent list of messages: a node is (parent node, message blob), so a turn's
  context is a single node id, and the turn after it adds only the nodes of its new messages.
- `turns` is one logical call (all its HTTP attempts); `attempts` is one row per HTTP attempt,
  holding the request and response skeletons (the documents minus the deduplicated parts).
- Costs are never stored: they come from raw usage and the price table at read time.

About 890 lines (23 migrations) because the migrations are append-only: each stays here as it shipped, with the
reason for its tables, so a database of any age opens.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from .. import environment
from .chain import chain_blobs, chain_nodes, shared_prefix
from .codec import LONGEST_MS, stored_json
from .faults import DBError as DBError  # re-exported: the CLI, the demo and the imports name them here
from .faults import Fault as Fault
from .faults import corrupt, locked, read_only_folder
from .faults import fault_of as fault_of

if TYPE_CHECKING:
    from . import facts

MIGRATION_SET = "replayer"
BUSY_TIMEOUT_MS = 5000
PAGE_SIZE: int = environment.value("REPLAYER_PAGE_SIZE")

migrations = Migrations(MIGRATION_SET)


@migrations(name="m001_initial")
def m001_initial(db: Database) -> None:
    # The core tables. Integer ids for blobs and nodes keep references small; turns get sortable
    # text ids (ULID-style) because they are shown to and typed by users.
    db.execute(
        """
        CREATE TABLE blobs (
            id INTEGER PRIMARY KEY,
            hash TEXT NOT NULL UNIQUE,
            json TEXT NOT NULL
        )"""
    )
    db.execute(
        """
        CREATE TABLE nodes (
            id INTEGER PRIMARY KEY,
            parent INTEGER NOT NULL,   -- 0 for the first message of a list
            blob INTEGER NOT NULL REFERENCES blobs(id),
            depth INTEGER NOT NULL,    -- 1-based position of this message in its list
            UNIQUE (parent, blob)
        )"""
    )
    db.execute(
        """
        CREATE TABLE conversations (
            id TEXT PRIMARY KEY,
            user_id TEXT,
            tags_json TEXT,
            origin TEXT NOT NULL,      -- explicit | auto | thread | record
            started_at TEXT NOT NULL,  -- ISO-8601 UTC
            last_at TEXT NOT NULL,
            turn_count INTEGER NOT NULL DEFAULT 0
        )"""
    )
    db.execute(
        """
        CREATE TABLE turns (
            id TEXT PRIMARY KEY,
            conversation_id TEXT NOT NULL REFERENCES conversations(id),
            call_key TEXT,             -- digest of the SDK's idempotency key: ties retries to their turn
            idx INTEGER NOT NULL,
            started_at TEXT NOT NULL,
            user_id TEXT,
            trace_id TEXT,
            endpoint TEXT,
            model TEXT,
            stream INTEGER NOT NULL DEFAULT 0,
            system_blob INTEGER,       -- the context the model saw (for tool-runner threads,
            tools_blob INTEGER,        -- reconstructed from the thread's earlier turns)
            context_node INTEGER,
            context_len INTEGER,
            response_id TEXT,          -- id of the last successful response, to follow threads
            UNIQUE (conversation_id, idx)
        )"""
    )
    db.execute(
        """
        CREATE TABLE attempts (
            id INTEGER PRIMARY KEY,
            turn_id TEXT NOT NULL REFERENCES turns(id),
            attempt INTEGER NOT NULL,
            started_at TEXT NOT NULL,
            latency_ms REAL,
            ttft_ms REAL,
            status INTEGER,
            request_skel INTEGER NOT NULL,   -- blob: body minus system/tools/messages (nulls there);
                                             -- identical across most turns, so stored once
            request_system INTEGER,          -- blob ids / node id of the parts taken out
            request_tools INTEGER,
            request_node INTEGER,            -- 0 = an empty list; NULL = left in request_json
            request_headers INTEGER,         -- blob: {"anthropic-version": ..., "anthropic-beta": ...}
            response_json TEXT,              -- message minus content and usage (nulls there)
            response_content INTEGER,        -- blob of {"role":"assistant","content":[...]}
            error_json TEXT,
            request_id TEXT,
            model TEXT,
            stop_reason TEXT,
            usage_json TEXT,                 -- the response's usage, raw
            unknown_events_json TEXT,
            abandoned INTEGER NOT NULL DEFAULT 0
        )"""
    )
    db.execute(
        """
        CREATE TABLE thread_keys (
            key TEXT PRIMARY KEY,            -- hash of a context plus the reply that extends it
            conversation_id TEXT NOT NULL
        ) WITHOUT ROWID"""
    )
    db.execute("CREATE INDEX turns_started ON turns(started_at)")
    db.execute("CREATE INDEX turns_response_id ON turns(response_id)")
    db.execute("CREATE INDEX turns_call_key ON turns(call_key)")
    db.execute("CREATE INDEX attempts_turn ON attempts(turn_id, attempt)")
    db.execute("CREATE INDEX conversations_started ON conversations(started_at)")
    db.execute("CREATE INDEX conversations_user ON conversations(user_id, started_at)")


@migrations(name="m002_turn_text")
def m002_turn_text(db: Database) -> None:
    # Full-text search over message text, without storing the text twice (contentless FTS5), and
    # without word positions (detail=none): searches are every-word-as-a-prefix, never phrases,
    # and positions would double the index.
    # Row 2*turn_rowid holds what the turn's request added, 2*turn_rowid+1 its reply.
    db.execute(
        "CREATE VIRTUAL TABLE turn_text USING fts5("
        "text, content='', detail='none', tokenize='unicode61 remove_diacritics 2')"
    )
    _backfill_turn_text(db)


CONTEXT_TEXT_TABLE = (
    "CREATE VIRTUAL TABLE context_text USING fts5("
    "text, content='', detail='none', tokenize='unicode61 remove_diacritics 2')"
)
"""The system prompts' and tool lists' search index (m019): as turn_text, one row per blob."""


def _added_per_turn(db: Database) -> Iterator[tuple[int, str, list[int]]]:
    """(turn rowid, conversation id, blobs of the messages the turn's context added since the
    conversation's previous turn), in conversation order."""
    previous: dict[str, list[int]] = {}
    for rowid, conv, node in db.execute(
        "SELECT rowid, conversation_id, context_node FROM turns ORDER BY conversation_id, idx"
    ).fetchall():
        blobs = chain_blobs(db, node)
        shared = shared_prefix(previous.get(conv, []), blobs)
        previous[conv] = blobs
        yield rowid, conv, blobs[shared:]


def blob_obj(db: Database, blob: int) -> Any:
    """The parsed JSON of a stored blob (deflated or not)."""
    return json.loads(stored_json(db, blob))


def _backfill_turn_text(db: Database) -> None:
    """Index turns recorded before search existed: each turn's new messages and its reply."""
    from ..text import searchable

    for rowid, _conv, added in _added_per_turn(db):
        text = "\n".join(searchable(blob_obj(db, b)) for b in added)
        if text:
            db.execute("INSERT INTO turn_text(rowid, text) VALUES (?, ?)", [rowid * 2, text])
        reply = db.execute(
            "SELECT response_content FROM attempts WHERE turn_id = (SELECT id FROM turns WHERE rowid = ?) "
            "AND response_content IS NOT NULL ORDER BY attempt DESC LIMIT 1",
            [rowid],
        ).fetchone()
        if reply:
            db.execute(
                "INSERT INTO turn_text(rowid, text) VALUES (?, ?)", [rowid * 2 + 1, searchable(blob_obj(db, reply[0]))]
            )


@migrations(name="m003_usage")
def m003_usage(db: Database) -> None:
    # Token counts, status and latency of every attempt, and their sums per conversation and
    # quarter hour, so stats, alerts and sorting by cost need no JSON parsing (store/facts.py).
    from . import facts

    for sql in facts.SCHEMA:
        db.execute(sql)
    tools = {}
    for rowid, _conv, added in _added_per_turn(db):
        tools[rowid] = facts.tool_counts([blob_obj(db, b) for b in added])
    seen: set[int] = set()
    last_reads: dict[tuple[int, int], int | None] = {}  # (conv, idx) -> reads of its last attempt with usage
    for row in db.execute(
        """SELECT a.id, c.rowid, t.rowid, t.idx, a.started_at, a.model, a.status, a.latency_ms,
                  a.error_json IS NOT NULL, a.usage_json, t.system_blob, t.user_id
           FROM attempts a JOIN turns t ON t.id = a.turn_id JOIN conversations c ON c.id = t.conversation_id
           ORDER BY c.rowid, t.idx, a.id"""
    ).fetchall():
        attempt_id, conv, turn, idx, started, model, status, latency, error, usage_json, system, user = row
        new_turn = turn not in seen
        seen.add(turn)
        usage = json.loads(usage_json) if usage_json else None
        rows = facts.usage_rows(
            conv=conv,
            idx=idx,
            attempt_id=attempt_id,
            turn=turn,
            at=datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp(),
            model=model,
            status=status,
            latency_ms=latency,
            error=facts.error_kind(status, error),
            new_turn=new_turn,
            usage=usage,
            tools=tools.get(turn, (0, 0)) if new_turn else (0, 0),
            system=system,
            prev_reads=last_reads.get((conv, idx - 1)),
        )
        if isinstance(usage, dict):
            last_reads[(conv, idx)] = rows[0].cache_read
        facts.write(db.conn, [(facts.rollup_user(user), rows)])


@migrations(name="m004_thread_tips")
def m004_thread_tips(db: Database) -> None:
    # Automatic threading by "the latest reply ends a prefix of this request": thread_keys
    # mapped every reply's key to one conversation, the last to write it, so identical
    # conversations run at once (a temperature-0 eval) were merged into one whose context went
    # back and forth. A conversation's tip is now the key of its latest context with its reply
    # (one row per conversation, moved on by each turn); identical conversations share a key and
    # each continuation takes another (by seq: the attempt that moved it there). thread_keys is
    # emptied, not dropped: an older replayer writing to the same file still finds it.
    db.execute(
        """
        CREATE TABLE thread_tips (
            conversation_id TEXT PRIMARY KEY,
            key TEXT NOT NULL,               -- thread key of its latest context and reply
            seq INTEGER NOT NULL             -- the attempt that put it there: first come, first served
        ) WITHOUT ROWID"""
    )
    db.execute("CREATE INDEX thread_tips_key ON thread_tips(key, seq)")
    _backfill_thread_tips(db)
    db.execute("DELETE FROM thread_keys")


def _backfill_thread_tips(db: Database, *, again: bool = False) -> None:
    """Each conversation's tip: the key of its last answered turn's context and reply (`again`:
    the tips there are keyed anew, after a change to how threading compares messages)."""
    from .threads import thread_key

    keys: dict[int, str] = {0: ""}  # node -> thread key of its list (shared prefixes hashed once)

    def key_of(node: int) -> str:
        path = []
        while node not in keys:
            parent, blob = db.execute("SELECT parent, blob FROM nodes WHERE id = ?", [node]).fetchone()
            path.append((node, blob))
            node = parent
        for n, blob in reversed(path):
            keys[n] = thread_key(keys[node], blob_obj(db, blob))
            node = n
        return keys[node]

    # (SQLite takes a bare column's value from the row that gives MAX)
    rows = db.execute(
        """SELECT t.conversation_id, t.context_node, a.response_content, MAX(a.id)
           FROM turns t JOIN attempts a ON a.turn_id = t.id
           WHERE a.response_content IS NOT NULL AND t.context_node IS NOT NULL
             AND t.conversation_id NOT IN (SELECT id FROM conversations WHERE origin = 'rerun')
           GROUP BY t.conversation_id"""
    ).fetchall()
    if again:
        have = {conv for (conv,) in db.execute("SELECT conversation_id FROM thread_tips")}
        db.conn.executemany(
            "UPDATE thread_tips SET key = ? WHERE conversation_id = ?",
            [(thread_key(key_of(node), blob_obj(db, reply)), conv) for conv, node, reply, _ in rows if conv in have],
        )
        return
    db.conn.executemany(
        "INSERT INTO thread_tips(conversation_id, key, seq) VALUES (?, ?, ?)",
        [(conv, thread_key(key_of(node), blob_obj(db, reply)), seq) for conv, node, reply, seq in rows],
    )


@migrations(name="m005_meta")
def m005_meta(db: Database) -> None:
    # Facts about the file itself, as key/value rows: first, that `replayer demo` made it, so the
    # demo rebuilds its own databases but never replaces one it didn't make.
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


@migrations(name="m006_imported")
def m006_imported(db: Database) -> None:
    # Turns rebuilt from another tool's records (`replayer import claude-code`) instead of seen
    # on the wire: their request is a reconstruction (no system prompt, no tools), so export
    # marks them and rerun refuses them. (source, session, message key) makes a second import add
    # only what is new; message_id finds a response copied into another session's file.
    # Kept beside turns, not as columns of it, so recorded turns and their export are untouched.
    db.execute(
        """
        CREATE TABLE imported_turns (
            turn_id TEXT PRIMARY KEY REFERENCES turns(id),
            source TEXT NOT NULL,            -- claude-code
            session_id TEXT NOT NULL,
            chain TEXT NOT NULL,             -- '' the session's main thread, else the subagent's id
            message_key TEXT NOT NULL,       -- message id + request id (the line's uuid without them)
            message_id TEXT,
            context_reset INTEGER NOT NULL DEFAULT 0,   -- the first turn after a compaction summary
            UNIQUE (source, session_id, message_key)
        )"""
    )
    db.execute("CREATE INDEX imported_turns_message ON imported_turns(message_id)")
    db.execute("CREATE INDEX imported_turns_chain ON imported_turns(source, session_id, chain)")
    # A conversation started from another one's tool call (a Claude Code subagent): recorded on
    # the wire, such calls thread as conversations of their own, and only a transcript says whose.
    db.execute(
        """
        CREATE TABLE conversation_links (
            conversation_id TEXT PRIMARY KEY REFERENCES conversations(id),
            parent_id TEXT NOT NULL REFERENCES conversations(id),
            kind TEXT NOT NULL,              -- subagent
            tool_use_id TEXT                 -- the parent's tool call that started it, when known
        )"""
    )
    db.execute("CREATE INDEX conversation_links_parent ON conversation_links(parent_id)")


@migrations(name="m007_stream_events")
def m007_stream_events(db: Database) -> None:
    # A stream's events as they came, so a recorded run can be replayed event for event (issue
    # 16): the raw SSE once per distinct body, and per attempt its body and each event's time
    # (store/events.py). Kept beside attempts, not as columns of it, so export lines are
    # untouched. Streams recorded before this kept only the message their events built: they
    # have no row here, and replay synthesizes their events from that message.
    from .events import SCHEMA

    for sql in SCHEMA:
        db.execute(sql)


@migrations(name="m008_runs")
def m008_runs(db: Database) -> None:
    # What `replayer record` ran, so `replayer fork` can run it again: the argv and working
    # directory only (never the environment: it holds keys). A row is written only for a run
    # that recorded something, at its end (the exit code is known then).
    db.execute(
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,             -- the run id record prints (its conversations' "run" tag)
            argv_json TEXT NOT NULL,
            cwd TEXT NOT NULL,
            started_at TEXT NOT NULL,        -- ISO-8601 UTC
            exit_code INTEGER                -- null: killed before it was known
        )"""
    )
    # A fork (`replayer replay --live-from N`, `replayer fork`) is a conversation linked to the
    # one it forks: the turn index it went live from and the edits it sent every later request with.
    db.execute("ALTER TABLE conversation_links ADD COLUMN turn_index INTEGER")
    db.execute("ALTER TABLE conversation_links ADD COLUMN edits_json TEXT")


@migrations(name="m009_turn_tags")
def m009_turn_tags(db: Database) -> None:
    # Tags are per call, but a conversation keeps the tags of its first turn: a turn whose tags
    # differ (a second `record` run continuing the conversation, with its own run id) keeps them
    # here, so `list --run` finds the conversation through any of its turns. Only those turns
    # get a row, so most recordings write none.
    db.execute(
        """
        CREATE TABLE turn_tags (
            turn_id TEXT PRIMARY KEY REFERENCES turns(id),
            conversation_id TEXT NOT NULL REFERENCES conversations(id),
            tags_json TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX turn_tags_conversation ON turn_tags(conversation_id)")


@migrations(name="m010_copied")
def m010_copied(db: Database) -> None:
    # A fork holds its source's turns 0..N-1 as copies (so its trajectory is whole and `compare`
    # aligns on turn index). Each copy names the turn it copies; no money was spent on it, so its
    # usage rows (the conversation view's tokens) stay out of the rollup every spend figure reads.
    db.execute("ALTER TABLE attempts ADD COLUMN copied_from TEXT")


def _keyed_before_m021(u: facts.UsageRow) -> facts.RollupRow:
    """A usage row's rollup contribution as the migrations before m021 read it: they key the
    rollup by conv, bucket, model, batch and band, as it was then (m021 adds the user to the key,
    and sums the rollup again)."""
    from . import facts

    return facts.rollup_row(u, "")


@migrations(name="m011_compaction_sums")
def m011_compaction_sums(db: Database) -> None:
    # The rollup summed compaction iterations' tokens into the turns' (they are billed at the same
    # rates), so `list` and the stats' cache hit rate counted a compaction reading the old context
    # as a prompt, and counted the iteration as an attempt with usage (`priced`, which the unpriced
    # notes count). Its rows keep what compaction billed apart too now (facts.py's cp_ columns).
    from . import facts

    have = {c.name for c in db["rollup"].columns}
    added = [c for c in ("cp_prompt", "cp_output", "cp_read") if c not in have]
    for column in added:
        db.execute(f"ALTER TABLE rollup ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
    if not added:  # m003 just made the table as it is now, and filled it
        return
    for row in db.execute(
        f"""SELECT {facts.USAGE_COLUMNS} FROM usage u WHERE part > 0
            AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.id = u.attempt_id AND a.copied_from IS NOT NULL)"""
    ).fetchall():
        r = _keyed_before_m021(facts.UsageRow(*row))
        db.execute(
            """UPDATE rollup SET cp_prompt = cp_prompt + ?, cp_output = cp_output + ?, cp_read = cp_read + ?,
                                 priced = priced - 1
               WHERE conv = ? AND bucket = ? AND model = ? AND batch = ? AND band = ?""",
            (r.aside_prompt, r.aside_output, r.aside_read, r.conv, r.bucket, r.model, r.batch, r.band),
        )


@migrations(name="m012_sent_back_keys")
def m012_sent_back_keys(db: Database) -> None:
    # Threading compares a reply's text and tool-use blocks only by the fields clients send back
    # (threads.SENT_BACK): frameworks rebuild a tool_use without its `caller`, so each of their
    # calls started a conversation of its own. The tips already there are keyed the new way, so
    # a conversation recorded before goes on.
    _backfill_thread_tips(db, again=True)


@migrations(name="m013_limited_by_type")
def m013_limited_by_type(db: Database) -> None:
    # The 429/529 rate counted attempts by HTTP status only, so an `overloaded_error` event in the
    # middle of a 200 stream (how the API says it is overloaded once a stream has begun) was an
    # error but not in the rate. usage.error now keeps which (facts.error_kind: 2 for a rate
    # limit or overload, by status or by the error's type); the rollup counts those the stream
    # way too. Only attempts with an error are read.
    from . import facts

    db.execute("UPDATE usage SET error = 2 WHERE part = 0 AND error = 1 AND status IN (429, 529)")
    for row in db.execute(
        f"""SELECT {', '.join('u.' + c.strip() for c in facts.USAGE_COLUMNS.split(','))}, a.error_json,
                   a.copied_from IS NOT NULL
            FROM usage u JOIN attempts a ON a.id = u.attempt_id
            WHERE u.part = 0 AND u.error = 1"""
    ).fetchall():
        *fields, error_json, copied = row
        try:
            error = json.loads(error_json) if error_json else None
        except ValueError:
            continue
        u = facts.UsageRow(*fields)
        if facts.error_kind(u.status, error) != 2:
            continue
        db.execute("UPDATE usage SET error = 2 WHERE attempt_id = ? AND part = 0", (u.attempt_id,))
        if copied:  # a copy's usage is shown, never summed (ingest keeps it out of the rollup)
            continue
        r = _keyed_before_m021(u)
        db.execute(
            """UPDATE rollup SET limited = limited + 1
               WHERE conv = ? AND bucket = ? AND model = ? AND batch = ? AND band = ?""",
            (r.conv, r.bucket, r.model, r.batch, r.band),
        )



@migrations(name="m014_turn_under_answering_model")
def m014_turn_under_answering_model(db: Database) -> None:
    # A turn counted under its first attempt's model, so a turn whose first attempt got a 429
    # (stored with the request's alias) and whose retry was answered by the dated model showed
    # in `stats --by model` as a turn of the alias and $0, its cost under the other. The count
    # now moves to the attempt that answered (facts.take_turn), as the writer does. Only turns of
    # more than one attempt are read.
    _count_turns_at(db, "a.error_json IS NULL AND a.response_json IS NOT NULL")


def _count_turns_at(db: Database, which: str) -> None:
    """Move the count of each turn of more than one attempt to its last attempt that is `which`
    (SQL on the usage row u and its attempt a), as facts.take_turn does, in the rollup too."""
    from . import facts

    for conv, idx in db.execute(
        "SELECT conv, idx FROM usage WHERE part = 0 GROUP BY conv, idx HAVING COUNT(*) > 1"
    ).fetchall():
        answered = db.execute(
            f"""SELECT {', '.join('u.' + c.strip() for c in facts.USAGE_COLUMNS.split(','))}, a.copied_from IS NOT NULL
                FROM usage u JOIN attempts a ON a.id = u.attempt_id
                WHERE u.conv = ? AND u.idx = ? AND u.part = 0 AND {which}
                ORDER BY u.attempt_id DESC LIMIT 1""",
            (conv, idx),
        ).fetchone()
        if answered is None or answered[facts.UsageRow._fields.index("new_turn")]:
            continue
        *fields, copied = answered
        # (the rollup as it was then, keyed without the user: m021 sums it again)
        row = facts.take_turn(db.conn, facts.UsageRow(*fields), user=None, rollup=not copied)
        db.execute(
            "UPDATE usage SET new_turn = 1 WHERE conv = ? AND idx = ? AND attempt_id = ? AND part = 0",
            (row.conv, row.idx, row.attempt_id),
        )
        if not copied:
            r = _keyed_before_m021(row)
            db.execute(
                """UPDATE rollup SET turns = turns + 1
                   WHERE conv = ? AND bucket = ? AND model = ? AND batch = ? AND band = ?""",
                (r.conv, r.bucket, r.model, r.batch, r.band),
            )


@migrations(name="m015_tool_results_once")
def m015_tool_results_once(db: Database) -> None:
    # A conversation's first turn counted the tool results of its whole history, so a
    # regenerated reply or a branch (which resends the history it leaves from, as a conversation
    # of its own) counted them again in the tool failure rate. The writer now leaves out the
    # messages an earlier request sent (their nodes were in the database already: older than
    # the newest context of the turns before). Only first turns that counted some are read.
    from . import facts

    firsts = {
        turn: row
        for turn, *row in db.execute(
            f"""SELECT u.turn, {', '.join('u.' + c.strip() for c in facts.USAGE_COLUMNS.split(','))},
                       a.copied_from IS NOT NULL
                FROM usage u JOIN attempts a ON a.id = u.attempt_id
                WHERE u.idx = 0 AND u.part = 0 AND u.tool_results > 0"""
        ).fetchall()
    }
    if not firsts:
        return
    newest = 0  # the newest node of the contexts of the turns written before (nodes only grow)
    known: dict[int, tuple[int, int]] = {}
    for turn, node in db.execute("SELECT rowid, context_node FROM turns ORDER BY rowid").fetchall():
        if turn in firsts and node:
            known[turn] = (node, newest)
        newest = max(newest, node or 0)
    for turn, (node, before) in known.items():
        chain = chain_nodes(db, node)[::-1]
        sent = sum(1 for nid, _, _ in chain if nid <= before)
        if not sent:
            continue
        n, errors = facts.tool_counts([blob_obj(db, blob) for _, _, blob in chain[sent:]])
        *fields, copied = firsts[turn]
        u = facts.UsageRow(*fields)
        if (n, errors) == (u.tool_results, u.tool_errors):
            continue
        db.execute(
            """UPDATE usage SET tool_results = ?, tool_errors = ?
               WHERE conv = ? AND idx = ? AND attempt_id = ? AND part = 0""",
            (n, errors, u.conv, u.idx, u.attempt_id),
        )
        if copied:  # a copy's usage is shown, never summed (ingest keeps it out of the rollup)
            continue
        r = _keyed_before_m021(u)
        db.execute(
            """UPDATE rollup SET tool_results = tool_results - ?, tool_errors = tool_errors - ?
               WHERE conv = ? AND bucket = ? AND model = ? AND batch = ? AND band = ?""",
            (u.tool_results - n, u.tool_errors - errors, r.conv, r.bucket, r.model, r.batch, r.band),
        )


@migrations(name="m016_response_headers")
def m016_response_headers(db: Database) -> None:
    # Of a response's headers only the request id was kept, so what the API said about its limits
    # (anthropic-ratelimit-*) and when to retry (retry-after, x-should-retry) was lost: what an
    # engineer needs to read a 429/529 storm. Each attempt now names the blob of those it had
    # (wire.RESPONSE_HEADERS), shared as request_headers' are (turn after turn they repeat).
    # Attempts recorded before have none: NULL, exported as {}.
    db.execute("ALTER TABLE attempts ADD COLUMN response_headers INTEGER")


@migrations(name="m017_turn_tokens_of_one_attempt")
def m017_turn_tokens_of_one_attempt(db: Database) -> None:
    # A stream cut after its message_start (billed: its usage came) and then sent again is billed
    # twice for one prompt. `list` and the stats' cache hit rate added both attempts' tokens to
    # the turn (2,000 prompt tokens where `show` said 1,000). A turn's tokens are now its
    # counting attempt's (usage.new_turn: its last with usage, as `show` takes them, else its
    # first; it moved only to a retry that answered), and the rollup keeps the other attempts'
    # beside the compaction iterations' in its cp_ sums (facts.py): billed, but no turn's. Only
    # turns of more than one attempt are moved; the cp_ sums are counted again from the rows
    # that go there (compaction iterations and the attempts that don't count their turn).
    from . import facts

    _count_turns_at(db, "u.input IS NOT NULL")
    fields = ", ".join("u." + c.strip() for c in facts.USAGE_COLUMNS.split(","))
    db.execute("UPDATE rollup SET cp_prompt = 0, cp_output = 0, cp_read = 0 WHERE cp_prompt OR cp_output OR cp_read")
    for values in db.execute(
        f"""SELECT {fields} FROM usage u WHERE (u.part > 0 OR u.new_turn = 0) AND u.input IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.id = u.attempt_id AND a.copied_from IS NOT NULL)"""
    ).fetchall():
        r = _keyed_before_m021(facts.UsageRow(*values))
        db.execute(
            """UPDATE rollup SET cp_prompt = cp_prompt + ?, cp_output = cp_output + ?, cp_read = cp_read + ?
               WHERE conv = ? AND bucket = ? AND model = ? AND batch = ? AND band = ?""",
            (r.aside_prompt, r.aside_output, r.aside_read, r.conv, r.bucket, r.model, r.batch, r.band),
        )


@migrations(name="m018_conversation_ended_at")
def m018_conversation_ended_at(db: Database) -> None:
    # A conversation's Duration (`list --json`'s duration_s, the browser's column and its sort)
    # ran from its first call's start to its last call's start (last_at): a one-turn conversation
    # whose call took 4 s showed 0s, while `compare` counted the last call's latency. ended_at is
    # when its last reply came back: the latest of its attempts' ends (start + latency; an attempt
    # with no latency, its start), which the writer keeps as it writes each attempt (ingest.py).
    # Filled here from the attempts, a conversation's at a time through the turns' and attempts'
    # indexes: 0.2 to 0.45 s for 20,000 conversations of 100,000 turns (a busy 2-core machine).
    # The list sorts by it in 0.04 s there; computed from the attempts at each sort (the live
    # list polls with its sort), it was measured at 0.6 s.
    db.execute("ALTER TABLE conversations ADD COLUMN ended_at TEXT")
    db.execute(
        f"""UPDATE conversations SET ended_at = COALESCE(
                (SELECT {ENDED_SQL} FROM turns t JOIN attempts a ON a.turn_id = t.id
                 WHERE t.conversation_id = conversations.id),
                last_at)"""
    )


ENDED_SQL = f"""strftime('%Y-%m-%dT%H:%M:%fZ', MAX(
    CAST(ROUND((julianday(a.started_at) - 2440587.5) * 86400000) AS INTEGER)
    + CASE WHEN a.latency_ms > 0 AND a.latency_ms < {LONGEST_MS:.0f} THEN CAST(a.latency_ms AS INTEGER) ELSE 0 END
) / 1000.0, 'unixepoch')"""
"""The latest end of the attempts `a`, as codec.iso_after writes each: start (exact to the
millisecond: julianday is within 0.04 ms of it) plus latency cut to a whole millisecond."""


@migrations(name="m019_context_text")
def m019_context_text(db: Database) -> None:
    # `/` in a conversation found nothing in the system prompt or the tools, which turn_text never
    # held (a turn's row there is the messages it added). They get an index of their own, one row
    # per distinct system prompt or tool list (rowid: its blob), as the store keeps them: an agent
    # sending the same ones every turn, run after run, has them indexed once. The writer adds a
    # row for each new one (store/ingest.py); here every one a turn names.
    from ..text import context_searchable

    db.execute(CONTEXT_TEXT_TABLE)
    done: set[int] = set()  # (an empty list can be both a system prompt and a tool list)
    for kind in ("system", "tools"):
        for (blob,) in db.execute(
            f"SELECT DISTINCT {kind}_blob FROM turns WHERE {kind}_blob IS NOT NULL ORDER BY 1"
        ).fetchall():
            text = context_searchable(kind, blob_obj(db, blob))
            if text and blob not in done:
                db.execute("INSERT INTO context_text(rowid, text) VALUES (?, ?)", [blob, text])
            done.add(blob)


@migrations(name="m020_cache_writes_by_their_total")
def m020_cache_writes_by_their_total(db: Database) -> None:
    # A usage whose `cache_creation` split didn't add up to `cache_creation_input_tokens` (a
    # gateway or a transcript filling the split with zeros beside 5,300 writes) was stored with
    # the split's writes: `list` said a 10,900-token prompt where `show` (the total) said 16,200,
    # and the cost left the writes out ($0.0101 for $0.0432). The total now wins
    # (pricing.token_parts); the rows stored by the split are counted again (the rollup is summed
    # again from them by m021, which comes next). Only usage that has a split is read.
    from . import facts

    fields = ", ".join("u." + c.strip() for c in facts.USAGE_COLUMNS.split(","))
    for *values, usage_json in db.execute(
        f"""SELECT {fields}, a.usage_json
            FROM usage u JOIN attempts a ON a.id = u.attempt_id
            WHERE u.input IS NOT NULL AND a.usage_json LIKE '%"cache_creation"%'"""
    ).fetchall():
        u = facts.UsageRow(*values)
        try:
            usage = json.loads(usage_json)
            source = usage if u.part == 0 else usage["iterations"][u.part - 1]
            _inp, _out, w5m, w1h, reads, _web, _batch = facts.token_parts(source)
        except (ValueError, TypeError, KeyError, IndexError):
            continue
        if (w5m, w1h) == (u.cache_write_5m, u.cache_write_1h):
            continue
        rewrite = u.part == 0 and facts.is_rewrite(w5m + w1h, reads, facts.prev_reads(db, u.conv, u.idx))
        new = u._replace(cache_write_5m=w5m, cache_write_1h=w1h, rewrite=1 if rewrite else 0)
        db.execute(
            "UPDATE usage SET w5m = ?, w1h = ?, rewrite = ? WHERE conv = ? AND idx = ? AND attempt_id = ? AND part = ?",
            (w5m, w1h, new.rewrite, u.conv, u.idx, u.attempt_id, u.part),
        )


@migrations(name="m021_rollup_per_user")
def m021_rollup_per_user(db: Database) -> None:
    # Spend was billed to a conversation's user (its first), so a conversation continued by
    # another user (`record --user u2` into u1's conversation, a request's metadata.user_id
    # changing) put u2's calls in u1's stats, budget and dashboard row while export said u2. The
    # rollup's key now holds each turn's user (facts.py), so the table is made again and summed
    # from `usage` as the writer sums it (a fork's copies left out): every usage row is read once,
    # and what the migrations before this one moved in the rollup is in those rows already.
    from . import facts

    db.execute("DROP TABLE rollup")
    db.execute(facts.ROLLUP_TABLE)
    fields = ", ".join("u." + c.strip() for c in facts.USAGE_COLUMNS.split(","))
    rows = db.execute(
        f"""SELECT {fields}, COALESCE(t.user_id, '') FROM usage u LEFT JOIN turns t ON t.rowid = u.turn
            WHERE NOT EXISTS (SELECT 1 FROM attempts a WHERE a.id = u.attempt_id AND a.copied_from IS NOT NULL)"""
    )
    facts.add_to_rollup(db.conn, (facts.rollup_row(facts.UsageRow(*r[:-1]), r[-1]) for r in rows))


@migrations(name="m022_turns_by_context")
def m022_turns_by_context(db: Database) -> None:
    # The conversation list's search (`list -q`, `/` in the list) looked only in the messages, so a
    # word only in a system prompt or a tool list (a tool's name, a phrase of the prompt) listed
    # nothing, while find in the conversation found it. It now looks in context_text too, and
    # these find the conversations that sent a matching system prompt or tool list (conversation_id
    # in them: the list reads no turn row). 0.2-0.6 s to build both on 100,000 turns; 4.3 MB; a
    # turn's insert takes 2-4 us more with them (10-12 us without; the writer spends ~600 us a turn).
    db.execute(
        "CREATE INDEX turns_system ON turns(system_blob, conversation_id) WHERE system_blob IS NOT NULL"
    )
    db.execute("CREATE INDEX turns_tools ON turns(tools_blob, conversation_id) WHERE tools_blob IS NOT NULL")


@migrations(name="m023_rollup_by_user")
def m023_rollup_by_user(db: Database) -> None:
    # A user is anyone a call was made for, and the rollup's key holds each turn's user (m021);
    # but it is keyed by conversation first, so `list --user U` read the whole rollup to find U's
    # conversations, and a user named by a prefix was looked for among conversations' first users
    # only (a user seen only in a later turn of another's conversation could be named whole but
    # not in part). This index answers both by a range; a new rollup row (a conversation's first
    # call in a quarter hour, model and prompt-size band) writes one more entry.
    db.execute("CREATE INDEX rollup_user ON rollup(user, conv)")


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return conn


def _is_foreign(db: Database) -> bool:
    names = set(db.table_names())
    if not names:
        return False
    if "_sqlite_migrations" in names:
        row = db.execute("SELECT 1 FROM _sqlite_migrations WHERE migration_set = ? LIMIT 1", [MIGRATION_SET]).fetchone()
        if row:
            return False
    return True


def _newer(db: Database) -> list[str]:
    """Migrations applied to this database that this version doesn't know: a newer replayer
    wrote it, and its tables may not be what this one reads and writes."""
    applied = {m.name for m in migrations.applied(db)}
    if not applied:
        return []
    return sorted(applied - _known())


_KNOWN: set[str] = set()


def _known() -> set[str]:
    """The names of this version's migrations: all of them are pending for an empty database
    (one in memory, made once; no sqlite-utils plugins, as in open_db)."""
    if not _KNOWN:
        _KNOWN.update(m.name for m in migrations.pending(Database(memory=True, execute_plugins=False)))
    return _KNOWN


EMPTY_WAIT_SECONDS = 1.0
"""How long a reader waits for a 0-byte database to get its first pages before calling it empty: a
recorder creates the file empty, then SQLite writes it (a `list` run at that moment saw "empty")."""


def _stays_empty(path: Path) -> bool:
    deadline = time.monotonic() + EMPTY_WAIT_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.05)
        if not is_empty(path):
            return False
    return True


def is_empty(path: Path) -> bool:
    """A file of 0 bytes with no write-ahead log beside it holding its first pages: nothing was
    ever written to it (recording into it makes it a database)."""
    try:
        if path.stat().st_size:
            return False
        wal = path.with_name(path.name + "-wal")
        return not wal.exists() or wal.stat().st_size == 0
    except OSError:
        return False


def open_db(path: str | os.PathLike[str], *, create: bool = True, migrate: bool = True) -> Database:
    """Open (and by default create and migrate) a replayer database.

    Raises DBError with a one-line message for a path that can't be used, a file that isn't
    SQLite, or a SQLite file that isn't a replayer database.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise DBError(f"{path} is a directory: give a database file path (--db FILE or $REPLAYER_DB)")
    if not path.exists():
        if not create:
            raise DBError(f"no database at {path}: record something first, or pass --db / set $REPLAYER_DB")
        try:
            if not path.parent.exists():
                path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
            # created empty with owner-only permissions; SQLite gives its -wal/-shm the same mode
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as e:
            raise DBError(f"cannot create database {path}: {e.strerror}; choose a writable path with --db") from None
    elif not create and is_empty(path) and _stays_empty(path):
        # SQLite would make it a database on the first read: a command that only reads leaves it be
        raise DBError(f"{path} is empty (0 bytes), not a replayer database: record into it, or give another --db")
    try:
        conn = _connect(path)
        # no sqlite-utils plugins: they are for its own CLI, finding them reads the entry points
        # of every installed package (14 ms of CPU with 80 of them, in each process's first open,
        # the writer process's too), and they would run third-party code on replayer's connections
        db = Database(conn, execute_plugins=False)
        if _is_foreign(db):
            conn.close()
            raise DBError(f"{path} is not a replayer database: point --db at a replayer file or a new path")
        newer = _newer(db)
        if newer:
            conn.close()
            raise DBError(
                f"{path} was written by a newer replayer (its schema has {', '.join(newer)}): "
                "upgrade replayer to open it (pip install -U replayer); it was left as it was"
            )
        if not db.table_names():
            # 8 KB pages: with 4 KB ones a ~2 KB tool result per row leaves half of each page empty
            db.execute(f"PRAGMA page_size={PAGE_SIZE}")
        try:
            db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:
            pass  # read-only file or directory: reads still work
        db.execute("PRAGMA synchronous=NORMAL")
        if migrate and migrations.pending(db):
            if "turns" in db.table_names() and db.execute("SELECT 1 FROM turns LIMIT 1").fetchone():
                names = ", ".join(m.name for m in migrations.pending(db))
                logging.getLogger("replayer").warning(
                    "replayer: updating %s to the current schema (%s); a big database takes a minute", path, names
                )
            apply_migrations(db)
        return db
    except sqlite3.DatabaseError as e:
        msg = str(e)
        fault = fault_of(e)
        if fault is Fault.CORRUPT:
            raise corrupt(path, msg) from None
        if fault is Fault.READ_ONLY:
            raise DBError(
                read_only_folder(e, path)
                or f"{path} is read-only and needs migrating: run 'replayer db migrate' with write access"
            ) from None
        if fault is Fault.LOCKED:
            raise DBError(locked(path)) from None
        raise DBError(f"cannot open {path}: {msg}") from None


def apply_migrations(db: Database) -> list[str]:
    """Apply pending migrations under one write lock, so concurrent openers don't race."""
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        pending = [m.name for m in migrations.pending(db)]
        migrations.apply(db)
        db.conn.execute("COMMIT")
    except BaseException:
        db.rollback()
        raise
    return pending
