"""The background writer: parse, deduplicate and write what the agent's thread captured.

The agent's thread only puts a `Captured` on a queue. Everything else happens here, in batches,
one transaction per batch (`BEGIN IMMEDIATE`, so writers in other processes queue up behind the
busy timeout instead of failing). When the database can't be written (locked for long, read-only,
disk full, corrupt, a folder that can't be created) the problem is logged once with the path and
the remedy, and records wait in a bounded buffer until it can (retried with a growing delay, and
at every flush); what doesn't fit is counted and reported. The agent never sees any of this: a
flush() or close() returns False as soon as the writer's attempt has failed, rather than waiting
for a database that may never come back.

Closing (close(), and interpreter exit) checkpoints the WAL into the database file and closes the
connection, so the `.db` file alone holds every record: users copy or upload just that file.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import sqlite3
import sys
import threading
from collections.abc import Callable
from typing import Any

from .. import sse
from ..autorecord import REPORT_ENV
from ..captured import Captured, Context
from ..text import searchable
from . import codec, facts
from .ingest import MAX_CACHE, Ingestor, digest, dumps_plain, iso, loads_or_text, new_id, response_parts
from .schema import DBError, blob_obj, open_db

log = logging.getLogger("replayer")

MAX_BATCH = 500
_BAD_VALUE = (sqlite3.InterfaceError, sqlite3.ProgrammingError)
"""What SQLite raises for a value it can't bind (a list where text goes): the record's fault,
not the database's, so it is skipped instead of retried (with every record after it) forever."""


def _db_fault(e: BaseException) -> bool:
    """The database failed (locked, read-only, full, corrupt), not the record being written."""
    return isinstance(e, sqlite3.Error) and not isinstance(e, _BAD_VALUE)

LINGER_SECONDS = 0.2
"""How long the writer waits after a record arrives, for more to share its transaction. A
commit costs about 0.4 ms of CPU however few records it holds (each of the ~25 pages it dirties
is checksummed and written to the WAL), so a fast loop's records are cheapest written some
dozens at a time. Records become visible to readers this much later; flush() doesn't wait."""
_started: set[Writer] = set()
"""Every writer with a thread in this process, held strongly so a Recorder that was garbage
collected still has its queue flushed at exit."""


@atexit.register
def _flush_at_exit() -> None:
    timeout = float(os.environ.get("REPLAYER_EXIT_TIMEOUT", "10"))
    for writer in list(_started):
        if not writer._closed or writer._put_after_close:
            writer.close(timeout)


RETRY_SECONDS = (0.25, 0.5, 1.0, 2.0, 5.0)
CHECKPOINT_WAIT_MS = 500
"""How long closing waits for readers to let the WAL be checkpointed into the database file."""


class _Flush:
    """Put on the queue by flush() and close(): the writer sets `done` once it has tried to write
    everything queued before it, with `ok` saying whether it all went in."""

    __slots__ = ("done", "ok", "closing")

    def __init__(self, closing: bool = False) -> None:
        self.done = threading.Event()
        self.ok = False
        self.closing = closing
        """close(): once everything is written, checkpoint the WAL and close the connection."""


class Writer:
    def __init__(
        self,
        path: str,
        *,
        redact: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
        log_events: bool = False,
        max_pending: int = 20_000,
        linger: float | None = None,
    ):
        self.path = path
        self.linger = LINGER_SECONDS if linger is None else linger
        """See LINGER_SECONDS; the writer process gets records in bursts already and takes none."""
        self.redact = redact
        self.log_events = log_events
        self.max_pending = max_pending
        self.dropped = 0
        """Records lost because the buffer was full while the database could not be written."""
        self.failed = 0
        """Records that could not be stored because of their content (logged)."""
        self.written = 0
        self._problem: str | None = None
        self._told = (0, 0)
        """(records left, records dropped) the last close() warned about."""
        self._lock = threading.Lock()
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # also runs in a forked child: the parent's thread and connection don't exist there
        self.q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._put_after_close = False
        """A record came after close(): exit closes the writer again. Records that close() already
        failed to write are not retried at exit (close() said so; the exit would only wait again)."""
        self._pending: list[Captured] = []
        self._waiting: list[_Flush] = []
        self._ingestor: Ingestor | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        """Set by flush() to end the writer's linger early."""
        self.calls = self.attempts = 0
        """Calls (turns) and attempts this process stored (a forked child counts its own)."""
        self.conversations: set[str] | None = set() if os.environ.get(REPORT_ENV) else None
        """The conversations they went to: kept only under `replayer record`, which reports them."""

    # -- called from any thread -------------------------------------------------------------
    def put(self, cap: Any) -> None:
        """Queue a `Captured`, or an object whose `captured()` makes one on the writer's thread
        (`capture._Attempt`: the agent's thread leaves reading the call to the writer)."""
        self.q.put(cap)
        if self._closed:
            self._put_after_close = True
        if self._thread is None:
            self._start()

    def start(self) -> None:
        """Start the writer thread now rather than at the first record."""
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                t = threading.Thread(target=self._run, name="replayer-writer", daemon=True)
                t.start()
                self._thread = t
                _started.add(self)
                mp = sys.modules.get("multiprocessing.util")
                if mp is not None:
                    # a multiprocessing child ends with os._exit, skipping atexit: flush there too
                    mp.Finalize(self, self.close, exitpriority=100)

    def flush(self, timeout: float | None = None, *, closing: bool = False) -> bool:
        """Wait until everything put so far is written. False when it could not be: the database
        failed (the writer tried once more for this flush), or not in time."""
        if self._thread is None and self.q.empty():
            return True
        marker = _Flush(closing)
        self.put(marker)  # type: ignore[arg-type]
        self._wake.set()
        return marker.done.wait(timeout) and marker.ok

    @property
    def unwritten(self) -> int:
        """Records held here and not yet in the database: waiting for it, or still queued."""
        return len(self._pending) + self.q.qsize()

    def close(self, timeout: float | None = 10.0) -> bool:
        """Write what is queued, then leave the database file whole (WAL checkpointed into it) and
        close the connection. A record put afterwards opens it again (closed again at exit)."""
        ok = self.flush(timeout, closing=True)
        self._closed, self._put_after_close = True, False
        left = self.unwritten if not ok or self._pending else 0
        told, self._told = self._told, (left, self.dropped)  # closed again at exit: say only what changed
        if left and left != told[0]:
            log.warning(
                "replayer: %d record(s) could not be written to %s before closing%s",
                left,
                self.path,
                f" ({self._problem})" if self._problem else "",
            )
        if self.dropped and self.dropped != told[1]:
            log.warning(
                "replayer: %d record(s) were dropped because the buffer was full while %s could not be written",
                self.dropped,
                self.path,
            )
        return ok

    # -- the writer thread ------------------------------------------------------------------
    def _run(self) -> None:
        delay_i = 0
        while True:
            timeout = RETRY_SECONDS[min(delay_i, len(RETRY_SECONDS) - 1)] if self._pending else None
            try:
                items = [self.q.get(timeout=timeout)]
            except queue.Empty:
                items = []
            if items and self.linger and not isinstance(items[0], _Flush) and self.q.qsize() < MAX_BATCH:
                # Linger a moment to write a burst of calls in one transaction: fewer commits, and
                # less time holding the GIL while the agent works. Puts don't wake us meanwhile
                # (each wake-up would take the GIL from the agent's thread to queue one item); a
                # flush() does.
                self._wake.wait(self.linger)
                self._wake.clear()
            while len(items) < MAX_BATCH:
                try:
                    items.append(self.q.get_nowait())
                except queue.Empty:
                    break
            for it in items:
                if isinstance(it, _Flush):
                    self._waiting.append(it)
                elif len(self._pending) < self.max_pending:
                    cap = it if isinstance(it, Captured) else self._captured(it)
                    if cap is not None:
                        self._pending.append(cap)
                else:
                    self.dropped += 1
            # not kept while we wait for the next item: a stream's capture holds its HTTP response
            # (for a second read of the body), and with it the request and its credentials
            items = it = cap = None  # type: ignore[assignment]
            if self._pending and self._write_pending():
                delay_i = 0
            elif self._pending:
                delay_i += 1
            if self._waiting:
                # records still pending here means this very attempt failed: a flush gets its
                # answer now instead of waiting for a database that may stay unwritable
                ok = not self._pending
                if ok and any(m.closing for m in self._waiting):
                    self._close_db()
                for marker in self._waiting:
                    marker.ok = ok
                    marker.done.set()
                self._waiting.clear()

    def _close_db(self) -> None:
        """Move the WAL's content into the database file, truncate the WAL, close the connection.

        A reader in the middle of a query (a browser open on the file) is waited for up to
        CHECKPOINT_WAIT_MS, not the whole busy timeout: a script's exit must not stall on it. When
        the checkpoint can't finish, the last connection to close the file does it."""
        ing, self._ingestor = self._ingestor, None
        if ing is None:
            return
        try:
            ing.db.conn.execute(f"PRAGMA busy_timeout={CHECKPOINT_WAIT_MS}")
            ing.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as e:
            log.info("replayer: could not checkpoint %s on closing (%s)", self.path, e)
        finally:
            try:
                ing.db.conn.close()
            except sqlite3.Error:
                pass

    def _captured(self, attempt: Any) -> Captured | None:
        """The record of an attempt the middleware handed over (see `capture._Attempt`)."""
        try:
            return attempt.captured()
        except Exception as e:  # noqa: BLE001 - never let the writer die
            self.failed += 1
            log.warning("replayer: could not read a captured call (%s: %s); it was skipped", type(e).__name__, e)
            return None

    def _report(self, problem: str) -> None:
        if problem != self._problem:
            self._problem = problem
            log.warning("replayer: cannot write %s: %s. Records are kept in memory until it works.", self.path, problem)

    def _write_pending(self) -> bool:
        if self._ingestor is None:
            try:
                self._ingestor = Ingestor(open_db(self.path))
            except DBError as e:
                self._report(str(e))
                return False
            except Exception as e:  # noqa: BLE001 - never let the writer die
                self._report(f"{type(e).__name__}: {e}")
                return False
        ing = self._ingestor
        batch = self._pending
        try:
            events: list[dict[str, Any]] | None = self._transaction(ing, batch)
        except Exception as e:  # noqa: BLE001
            if _db_fault(e):
                self._db_failed(ing, e)
                return False
            events = self._one_by_one(ing, batch)  # a record we can't handle: find it, keep the rest
        if events is None:
            return False
        self.written += len(batch)
        self._pending = []
        if self._problem:
            log.warning("replayer: %s is writable again; the waiting records were written", self.path)
            self._problem = None
        if self.log_events:
            for ev in events:
                log.info(codec.dumps(ev))
        return True

    def _one_by_one(self, ing: Ingestor, batch: list[Captured]) -> list[dict[str, Any]] | None:
        """Write a batch that failed record by record: find the records we can't handle, skip
        them, keep the rest. None when the database itself failed."""
        events = []
        for cap in batch:
            try:
                events += self._transaction(ing, [cap])
            except Exception as e:  # noqa: BLE001
                if _db_fault(e):
                    self._db_failed(ing, e)
                    return None
                self.failed += 1
                log.warning("replayer: could not store a record (%s: %s); it was skipped", type(e).__name__, e)
        return events

    def _db_failed(self, ing: Ingestor, e: sqlite3.Error) -> None:
        # start over with a new connection next time: one that failed (read-only, corrupt)
        # stays that way even after the file is fixed
        try:
            ing.db.rollback()
            ing.db.conn.close()
        except sqlite3.Error:
            pass
        self._ingestor = None
        msg = str(e)
        if "readonly" in msg or "read-only" in msg:
            self._report("the file is read-only: fix its permissions or record to another --db / $REPLAYER_DB")
        elif "locked" in msg or "busy" in msg:
            self._report("the database is locked by another process: it will be retried")
        elif "full" in msg:
            self._report("the disk is full: free some space")
        elif "malformed" in msg or "not a database" in msg:
            self._report("the file is corrupt: move it aside; a new one will be created")
        else:
            self._report(msg)

    def _transaction(self, ing: Ingestor, batch: list[Captured]) -> list[dict[str, Any]]:
        conn = ing.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            ing.others_wrote()
            events = []
            stored: list[tuple[str, bool]] = []
            for cap in batch:
                ev = store(ing, cap, self.redact, self.log_events, stored)
                if ev is not None:
                    events.append(ev)
            ing.write_pending()
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            ing.forget()
            raise
        self.attempts += len(stored)
        self.calls += sum(new_turn for _, new_turn in stored)
        if self.conversations is not None:
            self.conversations.update(conv for conv, _ in stored)
        return events


# -- turning one capture into rows ---------------------------------------------------------


def _error_from_body(status: int, body: Any, text: str | None) -> dict[str, Any]:
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return {"type": err.get("type"), "message": err.get("message"), "status": status}
    default = {429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
    return {"type": default, "message": (text or "")[:2000], "status": status}


_PROTOCOL = {b"anthropic-version": "anthropic-version", b"anthropic-beta": "anthropic-beta"}


def _read_headers(cap: Captured) -> None:
    """Keep the protocol headers and the request id; drop the raw lists (they hold credentials)."""
    if cap.raw_request_headers is not None:
        kept = {}
        for key, value in getattr(cap.raw_request_headers, "raw", cap.raw_request_headers):
            name = _PROTOCOL.get(key.lower())
            if name is not None:
                kept[name] = value.decode("latin-1")
        cap.headers = kept
        cap.raw_request_headers = None
    if cap.raw_response_headers is not None:
        for key, value in getattr(cap.raw_response_headers, "raw", cap.raw_response_headers):
            if key.lower() == b"request-id":
                cap.request_id = value.decode("latin-1")
        cap.raw_response_headers = None


def _label(value: Any) -> str | None:
    """A response's model, id or stop reason for its column: a string (a lone surrogate as
    U+FFFD) or a number's text; anything else (a list, a dict) None. The stored response keeps
    the value as it came."""
    if isinstance(value, str):
        return codec.readable(value)
    if isinstance(value, int | float):
        return str(value)
    return None


def _id_text(value: Any) -> str | None:
    """An id a caller gave (conversation, user, trace) as text SQLite takes."""
    if value is None:
        return None
    return codec.readable(value if isinstance(value, str) else str(value))


def _bindable(ctx: Context | None) -> Context | None:
    """The caller's ids as text: an id that is a number, a list or has a lone surrogate would
    otherwise cost its record (SQLite can't bind it)."""
    if ctx is None:
        return None
    ids = (ctx.conversation_id, ctx.user_id, ctx.trace_id)
    if all(v is None or (isinstance(v, str) and v.isascii()) for v in ids):
        return ctx
    conv, user, trace = (_id_text(v) for v in ids)
    return Context(conv, user, ctx.tags, trace)


def store(
    ing: Ingestor,
    cap: Captured,
    redact: Callable[..., Any] | None = None,
    log_event: bool = False,
    stored: list[tuple[str, bool]] | None = None,
) -> dict[str, Any] | None:
    """Write one attempt (and its turn and conversation when new). Returns its log event, and
    appends (conversation id, whether the turn is new) to `stored` when given.

    Some rows (search text, usage and rollup, thread tips, turn counts) wait in `ing` for the
    batch's end: call `ing.write_pending()` before committing, as `Writer` does."""
    _read_headers(cap)
    cap.ctx = _bindable(cap.ctx)

    # the response, as received
    response: Any = None
    plain = False  # parsed here and holding no float: its parts may be written by orjson
    error = cap.error
    unknown_events = None
    if cap.sse is not None:
        asm = sse.assemble(cap.sse)
        response = asm.message
        unknown_events = asm.unknown_events or None
        if asm.error and not error:
            error = asm.error
        if asm.complete:
            cap.abandoned = False  # closed after its message_stop: nothing was cut off
    elif cap.response_bytes is not None:
        text = cap.response_bytes.decode("utf-8", "replace")
        try:
            response = ing.decoder.loads(text)
            plain = not ing.decoder.floats
        except ValueError:
            response = None
        if cap.status is not None and cap.status >= 400 and not error:
            error = _error_from_body(cap.status, response, text)

    request_obj = cap.request_obj
    request_raw = cap.request_bytes if request_obj is None else None
    ctx = cap.ctx
    if redact is not None:
        request_text = request_raw.decode("utf-8", "surrogateescape") if request_raw is not None else "null"
        record = {
            "request": request_obj if request_obj is not None else loads_or_text(request_text),
            "request_headers": dict(cap.headers),
            "response": response,
            "error": error,
            "status": cap.status,
            "conversation_id": ctx.conversation_id if ctx else None,
            "user_id": ctx.user_id if ctx else None,
        }
        record = redact(record)
        if record is None:
            return None
        plain = False
        request_obj, request_raw = record.get("request"), None
        response, error = record.get("response"), record.get("error")
        cap.headers = record.get("request_headers") or {}

    pr = ing.parse_request(request_raw) if request_raw is not None else ing.parse_request_obj(request_obj)
    body = pr.skeleton
    conn = ing.db.conn
    started = iso(cap.t_start)

    # the turn this attempt belongs to
    call_key = digest(cap.call_key)[:16]
    turn = ing.turn_by_call.get(call_key)
    if turn is None and cap.attempt > 0:
        row = conn.execute(
            """SELECT t.id, t.conversation_id, t.rowid, c.rowid, t.idx, t.system_blob
               FROM turns t JOIN conversations c ON c.id = t.conversation_id WHERE t.call_key = ?""",
            (call_key,),
        ).fetchone()
        turn = tuple(row) if row else None
    ok = error is None and isinstance(response, dict) and response.get("type", "message") == "message"
    model = (_label(response.get("model")) if isinstance(response, dict) else None) or _label(body.get("model"))
    response_id = _label(response.get("id")) if ok else None
    new_turn = turn is None
    tools = (0, 0)
    if turn is None:
        reply = (response_id, model) if ok else None
        turn, tools = _new_turn(ing, cap, pr, started, call_key, reply)
        ing.turn_by_call[call_key] = turn
        if len(ing.turn_by_call) > 10_000:
            ing.turn_by_call.popitem(last=False)
    turn_id, conversation_id, turn_rowid, conv_rowid, turn_idx, system_blob = turn
    if stored is not None:
        stored.append((conversation_id, new_turn))

    resp_skeleton, assistant = response_parts(response) if response is not None else (None, None)
    content_blob, reply_key = (
        ing.message_blob(assistant, pr.tkeys[-1] if pr.tkeys else "", plain) if assistant is not None else (None, "")
    )
    usage = response.get("usage") if isinstance(response, dict) else None
    stop_reason = _label(response.get("stop_reason")) if isinstance(response, dict) else None
    cur = conn.execute(
        """INSERT INTO attempts(turn_id, attempt, started_at, latency_ms, ttft_ms, status, request_skel,
               request_system, request_tools, request_node, request_headers, response_json,
               response_content, error_json, request_id, model, stop_reason, usage_json,
               unknown_events_json, abandoned)
           VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
        (
            turn_id,
            cap.attempt,
            started,
            cap.latency_ms,
            cap.ttft_ms,
            cap.status,
            ing.skeleton_blob(pr),
            pr.system,
            pr.tools,
            pr.node,
            ing.blob(cap.headers) if cap.headers else None,
            (dumps_plain(resp_skeleton) if plain else codec.dumps(resp_skeleton))
            if resp_skeleton is not None
            else None,
            content_blob,
            codec.dumps(error) if error else None,
            cap.request_id,
            model,
            stop_reason,
            (dumps_plain(usage) if plain else json.dumps(usage)) if usage is not None else None,
            codec.dumps(unknown_events) if unknown_events else None,
            1 if cap.abandoned else 0,
        ),
    )
    prev_reads = None
    if isinstance(usage, dict):
        last = ing.last_reads.get(conv_rowid)
        if last is not None and last[0] == turn_idx - 1:
            prev_reads = last[1]
        elif turn_idx > 0:
            ing.write_pending(index=False)
            prev_reads = facts.prev_reads(conn, conv_rowid, turn_idx)
    rows = facts.usage_rows(
        conv=conv_rowid,
        idx=turn_idx,
        attempt_id=int(cur.lastrowid or 0),
        turn=turn_rowid,
        at=cap.t_start,
        model=model,
        status=cap.status,
        latency_ms=cap.latency_ms,
        error=error is not None,
        new_turn=new_turn,
        usage=usage,
        tools=tools,
        system=system_blob,
        prev_reads=prev_reads,
    )
    ing.usage += rows
    if isinstance(usage, dict):
        if len(ing.last_reads) > 10_000:
            ing.last_reads.clear()
        ing.last_reads[conv_rowid] = (turn_idx, rows[0][15])
    if ok:
        if not new_turn:  # a retry that succeeded (a new turn got them as it was inserted)
            conn.execute(
                "UPDATE turns SET response_id = ?, model = ? WHERE id = ?", (response_id, model, turn_id)
            )
        if assistant is not None:
            text = searchable(assistant)
            if text:
                ing.texts.append((turn_rowid * 2 + 1, text))
        if assistant is not None and pr.tkeys and not (ctx and ctx.tags and "rerun_of" in ctx.tags):
            # the conversation's latest context is now this request and its reply: the next
            # request that extends them continues it (an agent never continues a rerun). A
            # tool-runner thread request's messages are only its new ones: its conversation can
            # no longer be found by keys.
            ing.move_tip(conversation_id, reply_key if body.get("thread") is None else None, int(cur.lastrowid or 0))
    if not log_event:
        return None
    return _event(cap, turn_id, conversation_id, body, model, usage, stop_reason, response, error)


def _new_turn(
    ing: Ingestor, cap: Captured, pr: Any, started: str, call_key: str, reply: tuple[Any, Any] | None
) -> tuple[tuple[str, str, int, int, int, int | None], tuple[int, int]]:
    """Insert a turn (and its conversation when new); `reply`: (response id, model) when this
    attempt succeeded. Returns (turn id, conversation id, turn rowid, conversation rowid, index,
    system blob) and the tool results its request added."""
    conn = ing.db.conn
    body = pr.skeleton
    ctx = cap.ctx
    meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    meta_user = meta.get("user_id")  # the API takes a string; the request keeps whatever was sent
    user_id = (ctx.user_id if ctx else None) or (codec.readable(meta_user) if isinstance(meta_user, str) else None)
    context_node, context_len = pr.node, len(pr.nodes)
    system, tools = pr.system, pr.tools
    conversation_id = ctx.conversation_id if ctx else None
    origin = "explicit" if conversation_id else "auto"
    if ctx and ctx.tags and "rerun_of" in ctx.tags:
        origin = "rerun"  # a variant sent by `replayer rerun`: kept out of the conversation list

    thread = body.get("thread")
    if isinstance(thread, dict) and thread.get("type") == "continue" and thread.get("previous_message_id"):
        # tool-runner thread mode: the request carries only new messages; the context is the
        # previous turn's context, its reply, and these
        prev = conn.execute(
            """SELECT t.conversation_id, t.context_node, t.context_len, t.system_blob, t.tools_blob,
                      a.response_content
               FROM turns t JOIN attempts a ON a.turn_id = t.id
               WHERE t.response_id = ? AND a.response_content IS NOT NULL
               ORDER BY a.attempt DESC LIMIT 1""",
            (thread["previous_message_id"],),
        ).fetchone()
        if prev is not None:
            conversation_id = conversation_id or prev[0]
            origin = "thread" if origin == "auto" else origin
            parent, depth = prev[1] or 0, prev[2] or 0
            depth += 1
            parent = ing.node(parent, prev[5], depth)
            for b in pr.blobs:
                depth += 1
                parent = ing.node(parent, b, depth)
            context_node, context_len = parent, depth
            system = system if system is not None else prev[3]
            tools = tools if tools is not None else prev[4]

    if conversation_id is None and len(pr.tkeys) > 1:
        # a conversation whose latest reply ends a prefix of these messages (the longest)
        conversation_id = ing.open_conversation(pr.tkeys)
    fresh = conversation_id is None  # a new id (64 random bits): no row or turn of it exists yet
    if fresh:
        conversation_id = new_id("conv_", cap.t_start)

    tags = json.dumps(ctx.tags, default=str) if ctx and ctx.tags else None  # what JSON can't hold, as its text
    conv_rowid = None if fresh else ing.conv_rowids.get(conversation_id)
    if conv_rowid is None:
        insert = """INSERT INTO conversations(id, user_id, tags_json, origin, started_at, last_at, turn_count)
                    VALUES (?, ?, ?, ?, ?, ?, 1)"""
        if not fresh:
            insert += """ ON CONFLICT(id) DO UPDATE SET last_at = MAX(last_at, excluded.last_at),
                              turn_count = turn_count + 1, user_id = COALESCE(user_id, excluded.user_id),
                              tags_json = COALESCE(tags_json, excluded.tags_json)"""
        conv_rowid = conn.execute(
            insert + " RETURNING rowid", (conversation_id, user_id, tags, origin, started, started)
        ).fetchone()[0]
        if len(ing.conv_rowids) > 10_000:
            ing.conv_rowids.clear()
        ing.conv_rowids[conversation_id] = conv_rowid
    else:  # known to this connection: its new turn is counted at the batch's end
        ing.touch_conversation(conv_rowid, started, user_id, tags)
    # the previous turn of this conversation: from what this connection wrote, else one query
    last = (0, None, 0) if fresh else ing.next_idx.get(conversation_id)
    if last is None:
        last = conn.execute(
            "SELECT idx + 1, context_node, context_len FROM turns WHERE conversation_id = ? ORDER BY idx DESC LIMIT 1",
            (conversation_id,),
        ).fetchone() or (0, None, 0)
    idx, prev_node, prev_len = last
    if len(ing.next_idx) > 10_000:
        ing.next_idx.clear()
    ing.next_idx[conversation_id] = (idx + 1, context_node, context_len)
    turn_id = new_id("turn_", cap.t_start)
    cur = conn.execute(
        """INSERT INTO turns(id, conversation_id, call_key, idx, started_at, user_id, trace_id, endpoint, model,
               stream, system_blob, tools_blob, context_node, context_len, response_id)
           VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
        (
            turn_id,
            conversation_id,
            call_key,
            idx,
            started,
            user_id,
            ctx.trace_id if ctx else None,
            cap.endpoint,
            reply[1] if reply else body.get("model"),
            1 if cap.stream else 0,
            system,
            tools,
            context_node,
            context_len,
            reply[0] if reply else None,
        ),
    )
    rowid = int(cur.lastrowid or 0)
    # what this request added, for search (replies are indexed from responses, once)
    text = "\n".join(
        searchable(m)
        for m in (pr.msgs[pr.reused :] if pr.msgs else ())
        if m is not None and (not isinstance(m, dict) or m.get("role") != "assistant" or idx == 0)
    )
    if text:
        ing.texts.append((rowid * 2, text))
    tools = _added_tool_results(ing, pr, prev_node, prev_len or 0, threaded=context_node != pr.node)
    return (turn_id, conversation_id, rowid, conv_rowid, idx, system), tools


def _added_tool_results(
    ing: Ingestor, pr: Any, prev_node: int | None, prev_len: int, threaded: bool
) -> tuple[int, int]:
    """tool_result blocks (and how many are errors) in the messages this request added to its
    conversation: those after what it shares with the previous turn's context (all of them for a
    tool-runner thread request, which carries only new ones). Counted once per message blob."""
    msgs = pr.msgs or []
    if threaded:
        return facts.tool_counts([m for m in msgs if m is not None])
    if prev_node is None:
        shared = 0
    elif 0 < prev_len <= len(pr.nodes) and pr.nodes[prev_len - 1] == prev_node:
        shared = prev_len  # the usual case: the whole previous context, then new messages
    else:  # compacted or edited: compare node by node (equal node ids = equal prefixes)
        chain = [
            r[0]
            for r in ing.db.execute(
                """WITH RECURSIVE c(id, parent) AS (SELECT id, parent FROM nodes WHERE id = ?
                   UNION ALL SELECT n.id, n.parent FROM nodes n JOIN c ON n.id = c.parent) SELECT id FROM c""",
                (prev_node,),
            )
        ][::-1]
        shared = 0
        while shared < min(len(chain), len(pr.nodes)) and chain[shared] == pr.nodes[shared]:
            shared += 1
    if shared >= len(pr.nodes):
        return 0, 0
    end = _tool_total(ing, pr, len(pr.nodes) - 1)
    if not shared:
        return end
    start = _tool_total(ing, pr, shared - 1)
    return end[0] - start[0], end[1] - start[1]


def _tool_total(ing: Ingestor, pr: Any, k: int) -> tuple[int, int]:
    """tool_result blocks (and errors) in the request's messages 0..k, kept per node: a list's
    totals are its parent list's plus its last message's, so a long history is summed once,
    and each request adds the counts of its new messages only."""
    totals = ing.tool_totals
    got = totals.get(pr.nodes[k])
    if got is not None:
        return got
    j = k
    while j >= 0 and pr.nodes[j] not in totals:  # back to the longest list already summed
        j -= 1
    n, errors = totals[pr.nodes[j]] if j >= 0 else (0, 0)
    if len(totals) > MAX_CACHE:  # the latest lists are the ones asked for again
        totals.clear()
    for i in range(j + 1, k + 1):
        c = _tool_counts(ing, pr, i)
        n, errors = n + c[0], errors + c[1]
        totals[pr.nodes[i]] = (n, errors)
    return n, errors


def _tool_counts(ing: Ingestor, pr: Any, i: int) -> tuple[int, int]:
    """tool_result blocks (and errors) in the request's message i, counted once per blob."""
    blob = pr.blobs[i]
    counts = ing.tool_results.get(blob)
    if counts is None:
        m = pr.msgs[i] if pr.msgs else None
        if m is None:  # reused from a recent request without being parsed, and not counted yet
            m = blob_obj(ing.db, blob)
        counts = facts.tool_counts([m])
        if len(ing.tool_results) > MAX_CACHE:
            ing.tool_results.clear()
        ing.tool_results[blob] = counts
    return counts


def _event(cap, turn_id, conversation_id, body, model, usage, stop_reason, response, error) -> dict[str, Any]:
    from ..pricing import default_table

    usage = usage if isinstance(usage, dict) else {}
    tool_calls = []
    if isinstance(response, dict):
        for block in response.get("content") or ():
            if isinstance(block, dict) and block.get("type") in ("tool_use", "server_tool_use", "mcp_tool_use"):
                inp = block.get("input")
                tool_calls.append(
                    {"name": block.get("name"), "input_keys": sorted(inp) if isinstance(inp, dict) else []}
                )
    ctx = cap.ctx
    return {
        "event_type": "replayer.call",
        "trace_id": ctx.trace_id if ctx else None,
        "conversation_id": conversation_id,
        "turn_id": turn_id,
        "attempt": cap.attempt,
        "user_id": (ctx.user_id if ctx else None)
        or ((body.get("metadata") or {}).get("user_id") if isinstance(body.get("metadata"), dict) else None),
        "model": model,
        "input_tokens": usage.get("input_tokens"),
        "output_tokens": usage.get("output_tokens"),
        "cache_read_tokens": usage.get("cache_read_input_tokens"),
        "cache_write_tokens": usage.get("cache_creation_input_tokens"),
        "latency_ms": cap.latency_ms,
        "stop_reason": stop_reason,
        "tool_calls": tool_calls,
        "cost_usd": default_table().cost(usage, model) if usage else None,
        "error": error,
    }
