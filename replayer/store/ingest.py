"""The Ingestor: writes one captured attempt (and its turn and conversation when new) into the
database, and owns every cache that makes that cheap. Runs on the background writer only.

`Ingestor.store(captured)` reads the attempt (store/attempt.py), scans its request into blobs
and nodes (store/scan.py, store/blobs.py), finds or starts its conversation (store/threads.py),
inserts its turn and attempt, and keeps what nothing reads back mid-batch (search text, usage
and rollup rows, thread tips, conversations' turn counts and ends) for `write_pending`, which
the writer calls once per batch before committing.

About 750 lines on purpose: one class, whose caches (blobs, nodes, thread tips, failed turns,
last reads) each step reads and fills; split, every step would take them all as arguments.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlite_utils import Database

from ..bounded import BoundedDict
from ..captured import Captured
from ..text import context_searchable, searchable
from . import attempt, codec, facts, search_index
from .agent_ids import metadata_user, with_session
from .attempt import Redact, label
from .blobs import Blobs
from .codec import Decoder, digest, dumps_plain, iso, iso_after, new_id, stored_json
from .events import Streams
from .inserts import INSERT_ATTEMPT, INSERT_TURN
from .scan import ParsedRequest, RequestScanner
from .threads import OpenConversations
from .tool_results import ToolResults

MAX_TURNS = 10_000
"""Turns (by call key) and conversations this connection remembers writing."""
RETRY_WINDOW_S = 120.0
"""How long after a failed turn's last attempt the same request sent again is a retry of it."""


class Turn(NamedTuple):
    """A turn this connection wrote or looked up: what its later attempts (retries) need."""

    id: str
    conversation_id: str
    rowid: int
    conversation_rowid: int
    idx: int
    system_blob: int | None
    user: str
    """Its user as the rollup keys it (facts.rollup_user): its usage bills that user."""


RequestIds = tuple[int | None, str, int | None, int | None]
"""A request's context node, the digest of its skeleton without `stream`, its system and tools
blobs: the same for the same request sent again. `stream` is left out because a client sends a
request whose stream broke again without it (Claude Code's non-streaming fallback: the same body,
`"stream": true` gone), the same call."""


def request_ids(parsed: ParsedRequest) -> RequestIds:
    """The RequestIds of a scanned request (only a retry's lookup needs them: rarely made)."""
    rest = {k: v for k, v in parsed.skeleton.items() if k != "stream"}
    return parsed.node, digest(codec.canon(rest)), parsed.system, parsed.tools


def _retried(status: int | None) -> bool:
    """Whether clients retry a call that failed this way: no answer (a dropped connection, a
    timeout), 408, 409, 429, a 5xx (529 among them), or an error event in a 2xx stream. A 400
    sent again is the agent's choice, not a retry."""
    return status is None or status in (408, 409, 429) or status >= 500 or 200 <= status < 300


class FailedTurn(NamedTuple):
    """A conversation's latest turn, whose attempts all failed in a way clients retry (`_retried`):
    the same request sent again soon after (by a client that retries on its own: Claude Code, a
    framework around the SDK, with a new idempotency key and no retry count) is its next
    attempt, not a turn of its own."""

    turn: Turn
    attempts: int
    """The attempt number the next one takes."""
    ended: float
    request: RequestIds


class Stored(NamedTuple):
    """What `Ingestor.store` wrote: its conversation, whether it started a turn, its log event,
    the attempt's row id (for the OTLP export, which reads it back after the commit), and the turn
    (new, cached, or found in the database: an import marks it)."""

    conversation_id: str
    new_turn: bool
    event: dict[str, Any] | None
    attempt_id: int
    turn: Turn


class LastTurn(NamedTuple):
    """Of a conversation this connection added turns to: the next turn's index, and the last
    turn's context node and length."""

    next_idx: int
    context_node: int | None
    context_len: int


class LastReads(NamedTuple):
    """Of a conversation: the turn index and cache reads of the last usage this connection wrote."""

    idx: int
    cache_read: int | None


class Reply(NamedTuple):
    """What a new turn's first attempt got back, when it succeeded."""

    response_id: str | None
    model: str | None


class ThreadParent(NamedTuple):
    """The turn a tool-runner thread request continues (by its reply's message id)."""

    conversation_id: str
    context_node: int | None
    context_len: int | None
    system_blob: int | None
    tools_blob: int | None
    response_content: int


@dataclass(slots=True)
class Touched:
    """A known conversation's new turns and attempts, waiting for `write_pending` to update its row."""

    last_at: str | None
    """Its newest new turn's start (None: only attempts of turns it had came)."""
    ended_at: str
    """When the latest of those attempts ended (see `Ingestor.store`)."""
    turns: int
    user_id: str | None
    tags: str | None


def response_parts(resp: Any) -> tuple[Any, dict[str, Any] | None]:
    """(skeleton with content and usage nulled, the assistant message its content makes).

    Usage is kept in its own column (for aggregates) and content as a blob (the next request
    usually sends it back), so neither is stored twice."""
    if not isinstance(resp, dict):
        return resp, None
    skeleton = dict(resp)
    if isinstance(resp.get("usage"), dict):
        skeleton["usage"] = None
    if not isinstance(resp.get("content"), list):
        return skeleton, None
    skeleton["content"] = None
    return skeleton, {"role": resp.get("role", "assistant"), "content": resp["content"]}


class Ingestor:
    """Writes attempts into one Database. Owned by a single writer thread."""

    def __init__(self, db: Database):
        self.db = db
        self.decoder = Decoder()
        self.blobs = Blobs(db)
        self.scanner = RequestScanner(self.blobs, self.decoder)
        self.threads = OpenConversations(db)
        self.tool_results = ToolResults(db)
        self.streams = Streams(db)
        self.turn_by_call: OrderedDict[str, Turn] = OrderedDict()
        """Call key -> its turn, for the call's retries (the oldest forgotten first)."""
        self.next_idx: BoundedDict[str, LastTurn] = BoundedDict(MAX_TURNS)
        """Conversations this connection added turns to (see `LastTurn`)."""
        self.last_reads: BoundedDict[int, LastReads] = BoundedDict(MAX_TURNS)
        """Conversation rowid -> the last usage this connection wrote of it."""
        self.conv_rowids: BoundedDict[str, int] = BoundedDict(MAX_TURNS)
        """Conversations this connection wrote a turn of: id -> rowid."""
        self.conv_tags: BoundedDict[str, str | None] = BoundedDict(MAX_TURNS)
        """...and the tags their row holds (a turn whose tags differ keeps its own: turn_tags)."""
        self.data_version: int | None = None
        self.merges_deferred = False
        """Whether this connection has seen the search index's merges left to idle time
        (store/search_index.py)."""
        self.texts: list[tuple[int, str]] = []
        """Search text waiting for `write_pending` (turn_text rowid, text)."""
        self.context_texts: dict[int, str] = {}
        """A new system prompt's or tool list's search text waiting for `write_pending`, by its
        blob (context_text's rowid)."""
        self.context_indexed: BoundedDict[int, bool] = BoundedDict(MAX_TURNS)
        """Blobs of system prompts and tool lists known to be in context_text: a turn that sends
        the same ones as the last (nearly every turn) looks no further."""
        self.usage: list[facts.Billed] = []
        """Attempts' usage rows (and whom they bill) waiting for `write_pending` (the rollup is
        summed from them)."""
        self.copied_usage: list[facts.UsageRow] = []
        """Usage rows of copied attempts (Captured.copied_from): written, but not to the rollup."""
        self.touched: dict[int, Touched] = {}
        """Conversations' new turns waiting for `write_pending`, by conversation rowid."""
        self.header_blobs: BoundedDict[tuple[Any, ...], int] = BoundedDict(64)
        """Protocol headers' (and response headers') items -> their blob."""
        self.failed: BoundedDict[str, FailedTurn] = BoundedDict(MAX_TURNS)
        """Conversation id -> its latest turn when every attempt of it failed (see FailedTurn)."""
        self.failed_at: dict[RequestIds, str] = {}
        """...found by its request (FailedTurn.request) -> the conversation."""
        self.attempt_base: BoundedDict[str, int] = BoundedDict(MAX_TURNS)
        """Call key -> what its attempts' numbers start from, for a call that joined a failed turn."""

    # -- the batch around the attempts --------------------------------------------------------
    def others_wrote(self) -> None:
        """At the start of a transaction: when another connection has committed since our last one,
        drop what it may have changed (its turns and thread tips); blobs and nodes never change."""
        version = self._data_version()
        if version != self.data_version:
            self.data_version = version
            self.threads.forget()
            self.next_idx.clear()
            self.last_reads.clear()
            self.conv_rowids.clear()
            self.conv_tags.clear()
            self.failed.clear()
            self.failed_at.clear()

    def touch_conversation(self, rowid: int, ended: str, started: str | None = None, user_id: str | None = None,
                           tags: str | None = None) -> None:
        """Keep a known conversation's new attempt for `write_pending`: one that ended at `ended`,
        of a new turn that started at `started` (None: another attempt of a turn it has)."""
        got = self.touched.get(rowid)
        if got is None:
            self.touched[rowid] = Touched(started, ended, 0 if started is None else 1, user_id, tags)
            return
        got.ended_at = max(got.ended_at, ended)
        if started is not None:
            got.last_at = started if got.last_at is None else max(got.last_at, started)
            got.turns += 1
        got.user_id = got.user_id or user_id
        got.tags = got.tags or tags

    def write_pending(self, *, index: bool = True) -> None:
        """Write the rows that nothing reads back while a batch is written: at its end, a few
        statements for the whole batch instead of several per attempt. `index=False`, for the
        two queries that read such rows mid-batch (cache reads of the turn before, open conversations),
        leaves the search text for the end.

        The search text goes last, in rowid order. FTS5 keeps what it is given in memory until
        the transaction ends, but writes it out as a new index segment whenever another
        statement opens a savepoint (an upsert does), and merges those segments as they pile
        up: indexing turn by turn between the other writes made one tiny segment per turn, and
        most of the writer's time went to merging them."""
        conn = self.db.conn
        if self.touched:
            conn.executemany(
                """UPDATE conversations SET last_at = MAX(last_at, COALESCE(?, last_at)), ended_at = MAX(ended_at, ?),
                       turn_count = turn_count + ?, user_id = COALESCE(user_id, ?), tags_json = COALESCE(tags_json, ?)
                   WHERE rowid = ?""",
                [(t.last_at, t.ended_at, t.turns, t.user_id, t.tags, rowid) for rowid, t in self.touched.items()],
            )
            self.touched = {}
        if self.usage:
            facts.write(conn, self.usage)
            self.usage = []
        if self.copied_usage:
            conn.executemany(facts.INSERT_USAGE, self.copied_usage)
            self.copied_usage = []
        self.threads.write()
        if self.texts and index:
            self.texts.sort()
            conn.executemany("INSERT INTO turn_text(rowid, text) VALUES (?, ?)", self.texts)
            self.texts = []
        if self.context_texts and index:
            conn.executemany("INSERT INTO context_text(rowid, text) VALUES (?, ?)", sorted(self.context_texts.items()))
            self.context_texts = {}

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A batch of `store` calls as one transaction (an import's): others' commits seen first,
        the waiting rows written and committed at the end; on any error rolled back and every
        cache dropped (the ids they hold may not exist), and the error raised."""
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if not self.merges_deferred:
                search_index.defer_merges(conn)
                self.merges_deferred = True
            self.others_wrote()
            yield
            self.write_pending()
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self.forget()
            raise

    def merge_search_index(self) -> bool:
        """One bounded step of merging the search index (the writer's idle work): True when
        there may be more to do; False when another connection has written since this one's last
        transaction: the writer that wrote last merges once it is idle. (The thread writer that
        wrote while the writer process started, merging in the agent's process beside the
        child's writes, took 50 ms of the agent's CPU in a 200-turn loop that began 0.3 s after
        a first call, and each of its steps held the write lock the child waited for.)"""
        if self._data_version() != self.data_version:
            return False
        return search_index.merge_step(self.db.conn)

    def _data_version(self) -> int:
        """SQLite's count of other connections' commits, as this connection sees it."""
        return int(self.db.conn.execute("PRAGMA data_version").fetchone()[0])

    def forget(self) -> None:
        """Drop every cache (after a rollback the ids they hold may not exist)."""
        self.texts, self.usage, self.copied_usage, self.touched = [], [], [], {}
        self.context_texts = {}
        self.context_indexed.clear()
        self.merges_deferred = False
        self.conv_rowids.clear()
        self.conv_tags.clear()
        self.threads.drop()
        self.next_idx.clear()
        self.last_reads.clear()
        self.tool_results.forget()
        self.blobs.forget()
        self.header_blobs.clear()
        self.streams.forget()
        self.scanner.forget()
        self.turn_by_call.clear()
        self.failed.clear()
        self.failed_at.clear()
        self.attempt_base.clear()

    # -- one attempt ----------------------------------------------------------------------------
    def store(
        self,
        captured: Captured,
        redact: Redact | None = None,
        log_event: bool = False,
        *,
        new_turn_id: bool = False,
        parsed: ParsedRequest | None = None,
    ) -> Stored | None:
        """Write one attempt (and its turn and conversation when new). None when `redact` kept
        nothing of it. `new_turn_id`: the caller knows that no turn has `captured.turn_id` yet (a
        bulk import asks for a batch's turns at once), so none is looked up. `parsed`: its request
        scanned already, with this database's blob and node ids (an import's reader process did
        the scan's database-free half: store/imported_spans.py); the captured request is not read.

        Some rows (search text, usage and rollup, thread tips, turn counts) wait here for the
        batch's end: call `write_pending()` before committing, as `Writer` does."""
        read = attempt.read(captured, self.decoder, redact)
        if read is None:
            return None
        response, error, plain = read.response, read.error, read.plain
        scanner = self.scanner
        if parsed is None:
            made = self.blobs.nodes_made
            parsed = (
                scanner.parse_request(read.request_raw)
                if read.request_raw is not None
                else scanner.parse_request_obj(read.request_obj)
            )
            parsed.known = max(0, len(parsed.nodes) - (self.blobs.nodes_made - made))
        else:
            parsed.known = self.blobs.send(parsed.nodes)
        body = parsed.skeleton
        conn = self.db.conn
        started = iso(captured.t_start)
        # when its answer (or error) came back: its conversation's end (ended_at) when no other
        # attempt of it ended later
        ended = iso_after(captured.t_start, captured.latency_ms)
        ctx = captured.ctx

        # the turn this attempt belongs to
        call_key = digest(captured.call_key)[:16]
        turn = self.turn_by_call.get(call_key)
        if turn is None and (captured.attempt > 0 or captured.turn_id is not None) and not new_turn_id:
            # a given turn id (an import of replayer's own spans) finds its turn by that id
            by, key = ("t.id", captured.turn_id) if captured.turn_id is not None else ("t.call_key", call_key)
            row = conn.execute(
                f"""SELECT t.id, t.conversation_id, t.rowid, c.rowid, t.idx, t.system_blob, COALESCE(t.user_id, '')
                   FROM turns t JOIN conversations c ON c.id = t.conversation_id WHERE {by} = ?""",
                (key,),
            ).fetchone()
            turn = Turn(*row) if row else None
        skeleton = scanner.skeleton_blob(parsed)
        # a call of the agent's own (not an import's, a fork's copy, or a rerun's sample: each
        # sample is a call of its own, the same request sent again on purpose)
        own = (captured.turn_id is None and captured.copied_from is None and not new_turn_id
               and not (ctx is not None and ctx.tags and "rerun_of" in ctx.tags))
        if turn is None and own and self.failed_at:  # (none failed: no request to compare)
            turn = self._retried(call_key, request_ids(parsed), captured.t_start)
        number = captured.attempt + self.attempt_base.get(call_key, 0)
        ok = error is None and isinstance(response, dict) and response.get("type", "message") == "message"
        model = (label(response.get("model")) if isinstance(response, dict) else None) or label(body.get("model"))
        response_id = label(response.get("id")) if ok else None
        new_turn = turn is None
        tools = (0, 0)
        if turn is None:
            reply = Reply(response_id, model) if ok else None
            turn, tools = self._new_turn(captured, parsed, started, ended, call_key, reply)
            self.turn_by_call[call_key] = turn
            if len(self.turn_by_call) > MAX_TURNS:
                self.turn_by_call.popitem(last=False)
        else:  # another attempt of a turn (a retry): it may end the conversation later
            self.touch_conversation(turn.conversation_rowid, ended)

        response_skeleton, assistant = response_parts(response) if response is not None else (None, None)
        content_blob, reply_key = (
            self.blobs.message_blob(assistant, parsed.thread_keys[-1] if parsed.thread_keys else "", plain)
            if assistant is not None
            else (None, "")
        )
        usage = response.get("usage") if isinstance(response, dict) else None
        stop_reason = label(response.get("stop_reason")) if isinstance(response, dict) else None
        cur = INSERT_ATTEMPT(
            conn,
            (
                turn.id,
                number,
                started,
                captured.latency_ms,
                captured.ttft_ms,
                captured.status,
                skeleton,
                parsed.system,
                parsed.tools,
                parsed.node,
                self._headers_blob(captured.headers) if captured.headers else None,
                (dumps_plain(response_skeleton) if plain else codec.dumps(response_skeleton))
                if response_skeleton is not None
                else None,
                content_blob,
                codec.dumps(error) if error else None,
                captured.request_id,
                model,
                stop_reason,
                (dumps_plain(usage) if plain else json.dumps(usage)) if usage is not None else None,
                codec.dumps(read.unknown_events) if read.unknown_events else None,
                1 if captured.abandoned else 0,
                captured.copied_from,
                self._headers_blob(captured.response_headers) if captured.response_headers else None,
            ),
        )
        attempt_id = int(cur.lastrowid or 0)
        if read.sse is not None:
            self.streams.store(attempt_id, read.sse, captured.event_clock())
        prev_reads = None
        conv_rowid = turn.conversation_rowid
        if isinstance(usage, dict):
            last = self.last_reads.get(conv_rowid)
            if last is not None and last.idx == turn.idx - 1:
                prev_reads = last.cache_read
            elif turn.idx > 0:
                self.write_pending(index=False)
                prev_reads = facts.prev_reads(conn, conv_rowid, turn.idx)
        rows = facts.usage_rows(
            conv=conv_rowid,
            idx=turn.idx,
            attempt_id=attempt_id,
            turn=turn.rowid,
            at=captured.t_start,
            model=model,
            status=captured.status,
            latency_ms=captured.latency_ms,
            error=facts.error_kind(captured.status, error),
            new_turn=new_turn,
            usage=usage,
            tools=tools,
            system=turn.system_blob,
            prev_reads=prev_reads,
        )
        if isinstance(usage, dict) and not new_turn:  # a later attempt with usage: its tokens and model are the turn's
            self.write_pending(index=False)
            rows[0] = facts.take_turn(conn, rows[0], user=turn.user, rollup=captured.copied_from is None)
        if own:
            retried = error is not None and not captured.abandoned and _retried(captured.status)
            self._failed(turn, new_turn, number, parsed, captured, failed=retried)
        if captured.copied_from is None:
            self.usage.append((turn.user, rows))
        else:  # a copy costs nothing now: its tokens are shown, never summed into spend
            self.copied_usage += rows
        if isinstance(usage, dict):
            self.last_reads[conv_rowid] = LastReads(turn.idx, rows[0].cache_read)
        if ok:
            if not new_turn:  # a retry that succeeded (a new turn got them as it was inserted)
                conn.execute(
                    "UPDATE turns SET response_id = ?, model = ? WHERE id = ?", (response_id, model, turn.id)
                )
            if assistant is not None:
                text = searchable(assistant)
                if text:
                    self.texts.append((turn.rowid * 2 + 1, text))
            if assistant is not None and parsed.thread_keys and not (ctx and ctx.tags and "rerun_of" in ctx.tags):
                # the conversation's latest context is now this request and its reply: the next
                # request that extends them continues it (an agent never continues a rerun; a
                # fork's live calls do continue theirs, a subagent's among them). A
                # tool-runner thread request's messages are only its new ones: its conversation can
                # no longer be found by keys.
                self.threads.make_room()
                self.threads.move(
                    turn.conversation_id,
                    reply_key if body.get("thread") is None else None,
                    attempt_id,
                    captured.caller,
                    captured.t_start + (captured.latency_ms or 0.0) / 1000,
                )
        event = None
        if log_event:
            event = attempt.event(
                captured, turn.id, turn.conversation_id, body, model, usage, stop_reason, response, error
            )
        return Stored(turn.conversation_id, new_turn, event, attempt_id, turn)

    def _retried(self, call_key: str, request: RequestIds, started: float) -> Turn | None:
        """The failed turn a call with this request repeats (see FailedTurn), or None."""
        conversation = self.failed_at.get(request)
        failed = self.failed.get(conversation) if conversation is not None else None
        if failed is None or failed.request != request or not 0 <= started - failed.ended <= RETRY_WINDOW_S:
            return None
        self.turn_by_call[call_key] = failed.turn  # the call's own retries come here too
        self.attempt_base[call_key] = failed.attempts
        return failed.turn

    def _failed(self, turn: Turn, new_turn: bool, number: int, parsed: ParsedRequest, captured: Captured, *,
                failed: bool) -> None:
        """After one attempt of `turn`: keep its conversation's failed latest turn (FailedTurn) up
        to date: set by a new turn that failed, moved on by its failed retries, dropped by a success
        or a newer turn."""
        conversation = turn.conversation_id
        was = self.failed.get(conversation)
        if was is not None and (new_turn or not failed or was.turn.id != turn.id):
            self.failed.pop(conversation, None)
            self.failed_at.pop(was.request, None)
            was = None
        if not failed or (was is None and not new_turn):
            return  # a success, or a retry of a turn not known here as failed
        if len(self.failed_at) >= MAX_TURNS:
            self.failed.clear()
            self.failed_at.clear()
        ended = captured.t_start + (captured.latency_ms or 0.0) / 1000
        request = request_ids(parsed)
        self.failed[conversation] = FailedTurn(turn, number + 1, ended, request)
        self.failed_at[request] = conversation

    def _headers_blob(self, headers: dict[str, Any]) -> int:
        """The blob of an attempt's protocol headers (or its response's kept headers): nearly
        always the last ones, found by their items without writing their canonical JSON again."""
        try:
            key = tuple(headers.items())
            got = self.header_blobs.get(key)
        except TypeError:  # (a redaction hook can leave anything there)
            return self.blobs.blob(headers)
        if got is None:
            got = self.header_blobs[key] = self.blobs.blob(headers)
        return got

    def _new_turn(
        self, captured: Captured, parsed: ParsedRequest, started: str, ended: str, call_key: str, reply: Reply | None
    ) -> tuple[Turn, tuple[int, int]]:
        """Insert a turn (and its conversation when new); `ended`: when this attempt ended;
        `reply`: when it succeeded. Returns the turn and the tool results its request added."""
        conn = self.db.conn
        body = parsed.skeleton
        ctx = captured.ctx
        # the API takes a string (Claude Code's holds JSON: see agent_ids); the request keeps
        # whatever was sent
        meta = metadata_user(body.get("metadata"))
        user_id = (ctx.user_id if ctx else None) or meta.user
        context_node, context_len = parsed.node, len(parsed.nodes)
        system, tools = parsed.system, parsed.tools
        conversation_id = ctx.conversation_id if ctx else None
        origin = "explicit" if conversation_id else "auto"
        if ctx and ctx.tags and "rerun_of" in ctx.tags:
            origin = "rerun"  # a variant sent by `replayer rerun`: kept out of the conversation list
        elif ctx and ctx.tags and "fork_of" in ctx.tags:
            origin = "fork"  # a fork (replay --live-from): listed as a variant, kept out of the metrics

        thread = body.get("thread")
        if isinstance(thread, dict) and thread.get("type") == "continue" and thread.get("previous_message_id"):
            # tool-runner thread mode: the request carries only new messages; the context is the
            # previous turn's context, its reply, and these
            row = conn.execute(
                """SELECT t.conversation_id, t.context_node, t.context_len, t.system_blob, t.tools_blob,
                          a.response_content
                   FROM turns t JOIN attempts a ON a.turn_id = t.id
                   WHERE t.response_id = ? AND a.response_content IS NOT NULL
                   ORDER BY a.attempt DESC LIMIT 1""",
                (thread["previous_message_id"],),
            ).fetchone()
            if row is not None:
                prev = ThreadParent(*row)
                conversation_id = conversation_id or prev.conversation_id
                origin = "thread" if origin == "auto" else origin
                parent, depth = prev.context_node or 0, prev.context_len or 0
                depth += 1
                parent = self.blobs.node(parent, prev.response_content, depth)
                for blob in parsed.blobs:
                    depth += 1
                    parent = self.blobs.node(parent, blob, depth)
                context_node, context_len = parent, depth
                system = system if system is not None else prev.system_blob
                tools = tools if tools is not None else prev.tools_blob

        if conversation_id is None and len(parsed.thread_keys) > 1:
            # a conversation whose latest reply ends a prefix of these messages (the longest)
            conversation_id = self.threads.find(parsed.thread_keys, captured.caller, captured.t_start)
        if conversation_id is None:  # a new id (64 random bits): no row or turn of it exists yet
            fresh, conversation_id = True, new_id("conv_", captured.t_start)
        else:
            fresh = False

        # a Claude Code session named only in the metadata (no session header came) is tagged too
        tag_dict = with_session(ctx.tags if ctx else None, meta.session)
        tags = json.dumps(tag_dict, default=str) if tag_dict else None  # what JSON can't hold, as its text
        conv_rowid = None if fresh else self.conv_rowids.get(conversation_id)
        conv_tags = self.conv_tags.get(conversation_id) or tags  # as write_pending's COALESCE leaves them
        if conv_rowid is None:
            insert = """INSERT INTO conversations(id, user_id, tags_json, origin, started_at, last_at, ended_at,
                                                  turn_count)
                        VALUES (?, ?, ?, ?, ?, ?, ?, 1)"""
            if not fresh:
                insert += """ ON CONFLICT(id) DO UPDATE SET last_at = MAX(last_at, excluded.last_at),
                                  ended_at = MAX(ended_at, excluded.ended_at), turn_count = turn_count + 1,
                                  user_id = COALESCE(user_id, excluded.user_id),
                                  tags_json = COALESCE(tags_json, excluded.tags_json)"""
            conv_rowid, conv_tags = conn.execute(
                insert + " RETURNING rowid, tags_json",
                (conversation_id, user_id, tags, origin, started, started, ended),
            ).fetchone()
            self.conv_rowids[conversation_id] = conv_rowid
            if origin == "fork" and tag_dict:
                _link_fork(conn, conversation_id, tag_dict)
        else:  # known to this connection: its new turn is counted at the batch's end
            if conversation_id not in self.conv_tags:  # its tags forgotten apart from its rowid: read them
                row = conn.execute("SELECT tags_json FROM conversations WHERE rowid = ?", (conv_rowid,)).fetchone()
                pending = self.touched.get(conv_rowid)
                conv_tags = (row[0] if row else None) or (pending.tags if pending else None) or tags
            self.touch_conversation(conv_rowid, ended, started, user_id, tags)
        self.conv_tags[conversation_id] = conv_tags
        # the previous turn of this conversation: from what this connection wrote, else one query
        last = LastTurn(0, None, 0) if fresh else self.next_idx.get(conversation_id)
        if last is None:
            row = conn.execute(
                """SELECT idx + 1, context_node, context_len FROM turns WHERE conversation_id = ?
                   ORDER BY idx DESC LIMIT 1""",
                (conversation_id,),
            ).fetchone()
            last = LastTurn(*row) if row else LastTurn(0, None, 0)
        idx = last.next_idx
        if captured.turn_index is not None and captured.turn_index != idx:
            # given (an import of a slice): the turn before isn't the one known here, so its tool
            # results are counted from nothing; the next index stays after the furthest turn
            furthest, idx = last, captured.turn_index
            last = LastTurn(idx, None, 0)
            ahead = idx >= furthest.next_idx
            self.next_idx[conversation_id] = LastTurn(idx + 1, context_node, context_len) if ahead else furthest
        else:
            self.next_idx[conversation_id] = LastTurn(idx + 1, context_node, context_len)
        turn_id = captured.turn_id or new_id("turn_", captured.t_start)
        cur = INSERT_TURN(
            conn,
            (
                turn_id,
                conversation_id,
                call_key,
                idx,
                started,
                user_id,
                ctx.trace_id if ctx else None,
                captured.endpoint,
                reply.model if reply else body.get("model"),
                1 if captured.stream else 0,
                system,
                tools,
                context_node,
                context_len,
                reply.response_id if reply else None,
            ),
        )
        rowid = int(cur.lastrowid or 0)
        if tags is not None and tags != conv_tags and tag_dict != (json.loads(conv_tags) if conv_tags else None):
            # tags are per call: this turn's differ from its conversation's (another run continued it)
            conn.execute(
                "INSERT INTO turn_tags(turn_id, conversation_id, tags_json) VALUES (?, ?, ?)",
                (turn_id, conversation_id, tags),
            )
        # what this request added, for search (replies are indexed from responses, once): past the
        # messages reused byte for byte, and past the previous turn's context and reply when this
        # request extends them as threading compares messages (an agent that moves its cache
        # breakpoint to the newest block resends the one before as other bytes: not new to it)
        new_from = parsed.reused
        tip = None if fresh else self.threads.tip_of.get(conversation_id)
        if tip is not None and parsed.messages:
            keys = parsed.thread_keys
            j = len(keys) - 1
            while j >= new_from and keys[j] != tip:
                j -= 1
            new_from = max(new_from, j + 1)
        text = "\n".join(
            searchable(m)
            for m in (parsed.messages[new_from:] if parsed.messages else ())
            if m is not None and (not isinstance(m, dict) or m.get("role") != "assistant" or idx == 0)
        )
        if text:
            self.texts.append((rowid * 2, text))
        self._index_context("system", system)
        self._index_context("tools", tools)
        added = self.tool_results.added(
            parsed, last.context_node, last.context_len or 0, threaded=context_node != parsed.node
        )
        return Turn(turn_id, conversation_id, rowid, conv_rowid, idx, system, facts.rollup_user(user_id)), added

    def _index_context(self, kind: str, blob: int | None) -> None:
        """Put a system prompt's or tool list's text in the search index (context_text) unless it
        is there: once per distinct one, however many turns and conversations send it (its blob is
        read back only then)."""
        if blob is None or blob in self.context_indexed:
            return
        self.context_indexed[blob] = True
        if blob in self.context_texts:
            return
        conn = self.db.conn
        if conn.execute("SELECT 1 FROM context_text WHERE rowid = ?", (blob,)).fetchone():
            return
        text = context_searchable(kind, json.loads(stored_json(conn, blob)))
        if text:
            self.context_texts[blob] = text


def _link_fork(conn: Any, conversation_id: str, tags: dict[str, Any]) -> None:
    """A fork's link to its source (store/runs.py), from the tags its records carry, written with
    them: a fork whose records are written after its command ended (a locked database: the writer
    process kept trying, or they were saved beside it) is a fork all the same. The command writes
    it too, at its end (`add_fork_link`)."""
    turn = tags.get("fork_turn")
    if not isinstance(tags.get("fork_of"), str) or not isinstance(turn, int):
        return
    edits = tags.get("edits") if isinstance(tags.get("edits"), dict) else {}
    conn.execute(
        """INSERT OR IGNORE INTO conversation_links(conversation_id, parent_id, kind, turn_index, edits_json)
           VALUES (?, ?, 'fork', ?, ?)""",
        (conversation_id, tags["fork_of"], turn, json.dumps(edits, ensure_ascii=False)),
    )
