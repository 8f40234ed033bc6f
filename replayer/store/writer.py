"""The background writer: the thread, queue, batching and retry that get what the agent's thread
captured into the database (the Ingestor, store/ingest.py, writes each attempt).

In the recording process the agent's thread only puts a `Captured` (or a `Capturable`) on a queue:
the writer process's feeder thread (store/process.py) takes it from there, or, for the thread
writer, this thread does. The parsing and writing happen on this thread, whether it runs in the
writer process (store/child.py) or in the recording process, in batches, one transaction per batch
(`BEGIN IMMEDIATE`, so writers in other processes queue up behind the busy timeout instead of
failing). When the database can't be written (locked for long, read-only, disk full, corrupt, a
folder that can't be created) the problem is logged once with the path and the remedy, and records
wait in a bounded buffer until it can (retried with a growing delay, and at every flush); what
doesn't fit is counted and reported. The agent never sees any of this: a flush() or close() returns
False as soon as the writer's attempt has failed, rather than waiting for a database that may never
come back.

Closing (close(), and interpreter exit) checkpoints the WAL into the database file and closes the
connection, so the `.db` file alone holds every record: users copy or upload just that file.

About 720 lines on purpose: one class, whose thread, queue, batching, retry, spill file and
closing share its state (what is pending, the database's fault, the flushes waiting); each part is
only right beside the others, as in store/process.py.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeGuard

from .. import environment
from ..captured import Capturable, Captured, Handoff
from ..paths import REPORT_ENV
from . import codec, spill
from .attempt import Redact
from .faults import DBError, Fault, fault_of

if TYPE_CHECKING:
    from .ingest import Ingestor

log = logging.getLogger("replayer")

MAX_BATCH = 500
_BAD_VALUE = (sqlite3.InterfaceError, sqlite3.ProgrammingError)
"""What SQLite raises for a value it can't bind (a list where text goes): the record's fault,
not the database's, so it is skipped instead of retried (with every record after it) forever."""


def _db_fault(e: BaseException) -> TypeGuard[sqlite3.Error]:
    """The database failed (locked, read-only, full, corrupt), not the record being written."""
    return isinstance(e, sqlite3.Error) and not isinstance(e, _BAD_VALUE)

_REMEDY: dict[Fault | None, str] = {
    Fault.READ_ONLY: "the file is read-only: fix its permissions or record to another --db / $REPLAYER_DB",
    Fault.LOCKED: "the database is locked by another process: it will be retried",
    Fault.FULL: "the disk is full: free some space",
    Fault.CORRUPT: "the file is corrupt: move it aside; a new one will be created",
}
"""What the writer logs (once) for each kind of database failure."""

LINGER_SECONDS = 0.2
"""How long the writer waits after a record arrives, for more to share its transaction. A
commit costs about 0.4 ms of CPU however few records it holds (each of the ~25 pages it dirties
is checksummed and written to the WAL), so a fast loop's records are cheapest written some
dozens at a time. Records become visible to readers this much later; flush() doesn't wait."""
_started: set[Any] = set()
"""Every writer that started a thread in this process (ended since, after a close, or not), held
strongly so a Recorder that was garbage collected still has its queue flushed at exit, and its
counts reach `replayer record`'s report (autorecord.py)."""


def closed_at_exit(writer: Any) -> None:
    """Have `writer` (a Writer, or a ProcessWriter) flushed and closed when this process ends."""
    _started.add(writer)
    mp = sys.modules.get("multiprocessing.util")
    if mp is not None:
        # a multiprocessing child ends with os._exit, skipping atexit: flush there too
        mp.Finalize(writer, _at_exit, args=(writer,), exitpriority=100)
        # a spawned or forkserver child imports its main module (which may record) before it
        # clears the finalizers registered so far; it runs the after-fork hooks after that
        mp.register_after_fork(writer, _close_at_child_exit)


def _close_at_child_exit(writer: Any) -> None:
    sys.modules["multiprocessing.util"].Finalize(writer, _at_exit, args=(writer,), exitpriority=100)


def _at_exit(writer: Any) -> None:
    writer.at_exit(environment.value("REPLAYER_EXIT_TIMEOUT"))


BEFORE_EXIT: list[Callable[[], None]] = []
"""Run at exit before the writers are flushed (capture.py's finishes the streams still open)."""


@atexit.register
def _flush_at_exit() -> None:
    for hook in BEFORE_EXIT:
        try:
            hook()
        except Exception:  # noqa: BLE001, S110 - the exit goes on
            pass
    timeout = environment.value("REPLAYER_EXIT_TIMEOUT")
    for writer in list(_started):
        writer.at_exit(timeout)
    exporting = sys.modules.get("replayer.otlp.exporter")
    if exporting is not None:  # then the OTLP spans of what they stored go out (bounded: otlp/exporter.py)
        exporting.close_all()


BUSY_SECONDS = 5.0
"""How long an attempt waits for another process's lock at most (schema.BUSY_TIMEOUT_MS)."""
RETRY_SECONDS = (0.25, 0.5, 1.0, 2.0, 5.0)
IDLE_SECONDS = 0.5
"""How long no record has arrived before the writer merges the search index (store/search_index.py):
an agent waiting on the API leaves it seconds; a burst's records come faster than this."""
CHECKPOINT_WAIT_MS = 500
"""How long closing waits for readers to let the WAL be checkpointed into the database file."""


class _Flush:
    """Put on the queue by flush() and close(): the writer sets `done` once it has tried to write
    everything queued before it, with `ok` saying whether it all went in."""

    __slots__ = ("done", "ok", "closing", "deadline")

    def __init__(self, closing: bool = False, final: float | None = None) -> None:
        self.done = threading.Event()
        self.ok = False
        self.closing = closing
        """close(): once everything is written, checkpoint the WAL and close the connection."""
        self.deadline = None if final is None else time.monotonic() + final
        """The last close of a process's writer: while the database is locked, keep trying until
        this time (time.monotonic()); then save what is still unwritten beside it (store/spill.py)."""


class Writer:
    def __init__(
        self,
        path: str,
        *,
        redact: Redact | None = None,
        log_events: bool = False,
        max_pending: int = 20_000,
        linger: float | None = None,
        owned: bool = False,
        otlp: str | None = None,
    ):
        self.path = path
        self.otlp = otlp
        """OTLP export of what is stored: None, or replayer.otlp.SPANS / CONTENT (otlp/exporter.py)."""
        self.exporter: Any = None
        self.owned = owned
        """Closed by the writer that owns it (a ProcessWriter's stand-in), not at exit on its own:
        its records are counted and reported once, by the owner."""
        self.linger = LINGER_SECONDS if linger is None else linger
        """See LINGER_SECONDS; the writer process gets records in bursts already and takes none."""
        self.redact = redact
        self.log_events = log_events
        self.max_pending = max_pending
        self.dropped = 0
        """Records lost because the buffer was full while the database could not be written."""
        self.failed = 0
        """Records that could not be stored because of their content, or neither written nor saved
        beside the database at the end (logged): lost."""
        self.spilled = 0
        """Records that could not be written, saved in a file beside the database (store/spill.py)
        for the next writer to write in."""
        self._problem: str | None = None
        self._told = (0, 0)
        """(records left, records dropped) the last close() warned about."""
        self._lock = threading.Lock()
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # also runs in a forked child: the parent's thread and connection don't exist there
        self.q: queue.SimpleQueue[Handoff | _Flush] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._put_after_close = False
        """A record came after close(): exit closes the writer again. Records that close() already
        failed to write are not retried at exit (close() said so; the exit would only wait again)."""
        self._pending: list[Captured] = []
        self._waiting: list[_Flush] = []
        self._ingestor: Ingestor | None = None
        self._file: tuple[int, int] | None = None
        """The device and inode of the file `_ingestor` has open: the path may come to name another."""
        self._merge_owed = False
        """Records went in since the search index was last in shape: merge it when idle."""
        self._skipped_before_fault = 0
        """The records skipped (their content) by the last `_one_by_one` before the database failed."""
        self._deadline: float | None = None
        """The earliest deadline of the final closes waiting (see `_Flush.deadline`)."""
        self._fault: Fault | None = None
        """What made the last attempt fail: only a lock is worth waiting out at the end."""
        self._final_from = 0
        """Records waiting when a final close came: said when they go in after all."""
        self._lock = threading.Lock()
        self._wake = threading.Event()
        """Set by flush() to end the writer's linger early."""
        self.calls = self.attempts = 0
        """Calls (turns) and attempts this process stored (a forked child counts its own)."""
        self.conversations: set[str] | None = set() if os.environ.get(REPORT_ENV) else None
        """The conversations they went to: kept only under `replayer record`, which reports them."""

    # -- called from any thread -------------------------------------------------------------
    def put(self, record: Handoff) -> None:
        """Queue a `Captured`, or a `Capturable` whose `captured()` makes one on the writer's thread
        (`capture._Attempt`: the agent's thread leaves reading the call to the writer)."""
        self.q.put(record)
        if self._closed:
            self._put_after_close = True
        if self._thread is None:
            self._start()
        elif self.q.qsize() == MAX_BATCH:
            self._wake.set()  # a full batch doesn't wait out the linger

    def start(self) -> None:
        """Start the writer thread now rather than at the first record."""
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        if sys.is_finalizing():
            return  # a thread can't start while the interpreter shuts down: it would never return
        with self._lock:
            if self._thread is None:
                t = threading.Thread(target=self._run, name="replayer-writer", daemon=True)
                t.start()
                self._thread = t
                if not self.owned:
                    closed_at_exit(self)

    def flush(self, timeout: float | None = None, *, closing: bool = False, final: float | None = None) -> bool:
        """Wait until everything put so far is written. False when it could not be: the database
        failed (the writer tried once more for this flush), or not in time. `final`: see `close`."""
        marker = self.flush_started(closing, final)
        return marker is None or (marker.done.wait(timeout) and marker.ok)

    def flush_started(self, closing: bool = False, final: float | None = None) -> _Flush | None:
        """A flush not waited for: its `done` is set once what was put before it has been tried,
        `ok` saying whether it all went in. None: nothing to write."""
        if self._thread is None and self.q.empty():
            return None
        marker = _Flush(closing, final)
        self.put(marker)  # type: ignore[arg-type]  # a marker takes a record's way (put is typed for callers)
        self._wake.set()
        return marker

    @property
    def unwritten(self) -> int:
        """Records held here and not yet in the database: waiting for it, or still queued."""
        return len(self._pending) + self.q.qsize()

    def close(self, timeout: float | None = 10.0, *, final: float | None = None, tell: bool = True) -> bool:
        """Write what is queued, then leave the database file whole (WAL checkpointed into it) and
        close the connection. A record put afterwards opens it again (closed again at exit).

        `final` (this process's last close: at exit, and the writer process's at its end): while
        the database is locked, keep trying for that many seconds; then save the records still
        unwritten in a file beside it (store/spill.py), which the next writer to open it writes
        in. `tell`: say here what is left unwritten (the writer process's owner says it instead)."""
        ok = self.flush(timeout, closing=True, final=final)
        self._closed, self._put_after_close = True, False
        left = self.unwritten if not ok or self._pending else 0
        told, self._told = self._told, (left, self.dropped)  # closed again at exit: say only what changed
        if left and left != told[0] and tell:
            log.warning(
                "replayer: %d record(s) not yet written to %s%s: %s",
                left,
                self.path,
                f" ({self.problem})" if self.problem else "",
                "retried while this program runs; saved in a file beside it at exit if still unwritten"
                if final is None
                else "the writer did not finish in time: they are lost",
            )
        if self.dropped and self.dropped != told[1]:
            log.warning(
                "replayer: %d record(s) were dropped because the buffer was full while %s could not be written",
                self.dropped,
                self.path,
            )
        return ok

    def end_export(self) -> None:
        """After a close() that ends the recording (`replayer record`'s, before its summary): the
        OTLP spans of what was written go out now, or are told as not exported (as at exit)."""
        if self.exporter is not None:
            self.exporter.close()

    def at_exit(self, timeout: float) -> None:
        """This process ends: write what is left, trying for up to `timeout` seconds while the
        database is locked, else save it beside the database (at once when it can't be written
        for another reason). Records a close() already failed to write get the same wait: the
        program's own close() at its end is no reason to give up on a lock sooner."""
        # waited for past `timeout`: by then the writer thread has saved what it could not write
        # (its last attempt waits for a lock no longer; opening the file may wait once more)
        bound = timeout + 2 * BUSY_SECONDS + 1.0
        if not self._closed or self._put_after_close or self.unwritten:
            self.close(bound, final=timeout)

    # -- the writer thread ------------------------------------------------------------------
    def _run(self) -> None:
        delay_i = 0
        while True:
            if self._pending:
                delay = RETRY_SECONDS[min(delay_i, len(RETRY_SECONDS) - 1)]
                if self._deadline is not None:  # a final close's wait ends at its deadline
                    delay = max(0.0, min(delay, self._deadline - time.monotonic()))
                timeout: float | None = delay
            else:
                timeout = IDLE_SECONDS if self._merge_owed else None
            try:
                items = [self.q.get(timeout=timeout)]
            except queue.Empty:
                items = []
                if not self._pending:
                    self._merge_while_idle()
                    continue
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
            for item in items:
                if isinstance(item, _Flush):
                    self._waiting.append(item)
                    if item.deadline is not None:
                        if self._deadline is None:
                            self._final_from = len(self._pending)
                        self._deadline = min(item.deadline, self._deadline or item.deadline)
                elif len(self._pending) < self.max_pending:
                    captured = item if isinstance(item, Captured) else self._captured(item)
                    if captured is not None:
                        self._pending.append(captured)
                else:
                    self.dropped += 1
            # not kept while we wait for the next item: a stream's capture holds its HTTP response
            # (for a second read of the body), and with it the request and its credentials
            items = item = captured = None  # type: ignore[assignment]
            if self._pending and self._write_pending():
                delay_i = 0
                self._merge_owed = True
            elif self._pending:
                delay_i += 1
            if self._waiting:
                spilled = False
                if self._pending and self._deadline is not None:
                    if self._fault is Fault.LOCKED and time.monotonic() < self._deadline:
                        continue  # the last close waits out a lock, up to its deadline
                    self._spill()
                    spilled = True
                self._deadline, self._final_from = None, 0
                # records still pending here means this very attempt failed: a flush gets its
                # answer now instead of waiting for a database that may stay unwritable
                ok = not self._pending and not spilled
                closed = ok and any(m.closing for m in self._waiting)
                if closed:
                    self._close_db()
                for marker in self._waiting:
                    marker.ok = ok
                    marker.done.set()
                self._waiting.clear()
                if closed and self._end_thread():
                    return

    def _end_thread(self) -> bool:
        """After a close that wrote everything, this thread ends (a program that makes a Recorder
        per job must not collect idle threads) unless a record came meanwhile; one put later
        starts another."""
        with self._lock:
            if not self.q.empty():
                return False
            self._thread = None
        if not self.q.empty():  # put between the look and the hand-back: that put saw a thread
            self.start()
        return True

    def _merge_while_idle(self) -> None:
        """Merge the search index a step at a time while no record is waiting (a record that
        arrives waits for the step under way, about 11 ms: search_index.MERGE_PAGES)."""
        ingestor = self._ingestor
        while self._merge_owed and ingestor is not None and self.q.empty():
            self._merge_owed = ingestor.merge_search_index()
        if ingestor is None:
            self._merge_owed = False

    def _close_db(self) -> None:
        """Move the WAL's content into the database file, truncate the WAL, close the connection.

        A reader in the middle of a query (a browser open on the file) is waited for up to
        CHECKPOINT_WAIT_MS, not the whole busy timeout: a script's exit must not stall on it. When
        the checkpoint can't finish, the last connection to close the file does it."""
        ingestor, self._ingestor = self._ingestor, None
        if ingestor is None:
            return
        try:
            ingestor.db.conn.execute(f"PRAGMA busy_timeout={CHECKPOINT_WAIT_MS}")
            ingestor.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as e:
            log.info("replayer: could not checkpoint %s on closing (%s)", self.path, e)
        finally:
            try:
                ingestor.db.conn.close()
            except sqlite3.Error:
                pass

    def _captured(self, attempt: Capturable) -> Captured | None:
        """The record of an attempt the middleware handed over (see `capture._Attempt`)."""
        try:
            return attempt.captured()
        except Exception as e:  # noqa: BLE001 - never let the writer die
            self.failed += 1
            log.warning("replayer: could not read a captured call (%s: %s); it was skipped", type(e).__name__, e)
            return None

    @property
    def problem(self) -> str | None:
        """Why the database can't be written, while it can't: its fault in a word, else the message."""
        return str(self._fault) if self._fault is not None and self._problem else self._problem

    def _spill(self) -> None:
        """At the last close's deadline: save the records still waiting in a file beside the
        database (store/spill.py), redacted first when the recorder redacts; say where."""
        records, self._pending = self._pending, []
        if self.redact is not None:
            records = [r for r in map(self._redacted, records) if r is not None]
        why = self.problem
        problem = f" ({why})" if why else ""
        if not records:
            return
        try:
            saved, left_out = spill.save(self.path, records)
        except OSError as e:
            log.warning(
                "replayer: %d record(s) could not be written to %s%s nor saved beside it (%s): they are lost",
                len(records), self.path, problem, e.strerror or e,
            )
            self.failed += len(records)
            return
        self.failed += left_out
        self.spilled += len(records) - left_out
        if left_out:
            log.warning("replayer: %d record(s) hold what JSON can't: they are lost", left_out)
        if len(records) > left_out:
            log.warning(
                "replayer: %d record(s) could not be written to %s%s; saved to %s: the next recorder "
                "that opens %s writes them in",
                len(records) - left_out, self.path, problem, saved, self.path,
            )

    def _redacted(self, captured: Captured) -> Captured | None:
        """`captured` as the redaction keeps it (None: nothing), to be saved: an unredacted record
        must not lie beside the database, nor reach it through a writer without the hook."""
        from .attempt import read
        from .codec import Decoder

        try:
            kept = read(captured, Decoder(), self.redact)
        except Exception as e:  # noqa: BLE001 - the user's hook failed on it: as when it is stored
            self.failed += 1
            log.warning("replayer: could not store a record (%s: %s); it was skipped", type(e).__name__, e)
            return None
        if kept is None:
            return None
        captured.request_obj, captured.request_bytes = kept.request_obj, kept.request_raw
        captured.response_obj, captured.response_bytes = kept.response, None
        captured.error, captured.sse = kept.error, kept.sse
        if kept.sse is None:
            captured.sse_chunks = captured.chunk_clock = None
        return captured

    def _take_spilled(self, ingestor: Ingestor) -> bool:
        """Write in the records earlier writers saved beside this database, oldest file first, each
        file deleted once its records are committed. False when the database failed meanwhile."""
        for file in spill.waiting(self.path):
            with spill.taken(file) as got:
                if got is None:
                    continue  # another writer is taking it in
                records, bad = got
                total, skipped = len(records), 0
                # redacted before it was saved; an earlier process's records, not counted as this one's
                events: list[dict[str, Any]] | None
                try:
                    events = self._transaction(ingestor, records, redact=None, own=False)
                except Exception as e:  # noqa: BLE001
                    if _db_fault(e):
                        self._db_failed(ingestor, e)
                        return False
                    got_one = self._one_by_one(ingestor, records, redact=None, own=False)
                    if got_one is None:
                        if len(records) < total:
                            self._keep_rest(file, records, total - len(records) - self._skipped_before_fault)
                        return False
                    events, skipped = got_one
                self._log_events(events)
                try:
                    os.unlink(file)
                except OSError as e:
                    log.warning("replayer: could not delete %s (%s): delete it, its records are written", file, e)
                unread = [f"{bad} unreadable line(s)"] if bad else []
                unread += [f"{skipped} record(s) that could not be stored"] if skipped else []
                log.warning(
                    "replayer: wrote %d record(s) saved in %s by an earlier recorder into %s%s",
                    total - skipped, file, self.path, f" ({' and '.join(unread)} skipped)" if unread else "",
                )
        return True

    def _keep_rest(self, file: str, rest: list[Captured], done: int) -> None:
        """The database failed partway through a saved file taken in one by one, `done` records of
        it stored: the file keeps only the records not yet handled (stored, or skipped as warned),
        so the next writer doesn't store them again."""
        try:
            spill.rewrite(file, rest)
        except OSError as e:
            log.warning(
                "replayer: %d record(s) of %s are written into %s, but it could not be rewritten without them "
                "(%s): the next recorder writes them in again",
                done, file, self.path, e.strerror or e,
            )
            return
        log.warning(
            "replayer: wrote %d record(s) saved in %s by an earlier recorder into %s before it failed; "
            "the other %d stay there",
            done, file, self.path, len(rest),
        )

    def _report(self, problem: str) -> None:
        if problem != self._problem:
            self._problem = problem
            log.warning(
                "replayer: cannot write %s: %s. Records are kept in memory until it works.", self.path, problem
            )

    def _moved(self) -> bool:
        """Whether the file the connection has open is no longer at the path (deleted, or another
        put there): SQLite would go on writing into it unseen. The connection is then let go of,
        so the next write opens (or makes) the file the path names now."""
        try:
            st = os.stat(self.path)
            now: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except OSError:
            now = None
        if now == self._file:
            return False
        ingestor, self._ingestor = self._ingestor, None
        if ingestor is not None:
            try:
                ingestor.db.conn.close()
            except sqlite3.Error:
                pass
        how, where = ("deleted", "a new file there") if now is None else ("replaced", "the file there now")
        log.warning("replayer: %s was %s while recording; the next records go to %s", self.path, how, where)
        return True

    def _write_pending(self) -> bool:
        if self._ingestor is not None:
            self._moved()
        if self._ingestor is None:
            # imported here, in the thread that writes: with the writer process (the default),
            # the recording process never does, and never imports sqlite-utils (60 ms of CPU)
            from .ingest import Ingestor
            from .schema import open_db

            try:
                self._ingestor = Ingestor(open_db(self.path))
                st = os.stat(self.path)
                self._file = (st.st_dev, st.st_ino)
            except DBError as e:
                self._fault = None
                self._report(str(e))
                return False
            except Exception as e:  # noqa: BLE001 - never let the writer die
                self._fault = fault_of(e)
                self._report(f"{type(e).__name__}: {e}")
                return False
            with self._limited_wait(self._ingestor):
                if not self._take_spilled(self._ingestor):
                    return False
        ingestor = self._ingestor
        with self._limited_wait(ingestor):
            return self._write_batch(ingestor)

    def _write_batch(self, ingestor: Ingestor) -> bool:
        batch = self._pending
        try:
            events = self._transaction(ingestor, batch)
        except Exception as e:  # noqa: BLE001
            if _db_fault(e):
                self._db_failed(ingestor, e)
                return False
            before = len(batch)
            got = self._one_by_one(ingestor, batch)  # a record we can't handle: find it, keep the rest
            if got is None:  # those before the fault are out of `batch` (self._pending): not stored twice
                self._final_from = max(0, self._final_from - (before - len(batch)))
                return False
            events = got[0]
        self._pending = []
        if self._final_from and self._problem:  # said only when they had waited for the database
            log.warning("replayer: wrote the %d waiting record(s) to %s", self._final_from, self.path)
            self._problem, self._final_from = None, 0
        elif self._problem:
            log.warning("replayer: %s is writable again; the waiting records were written", self.path)
            self._problem = None
        self._log_events(events)
        return True

    def _log_events(self, events: list[dict[str, Any]]) -> None:
        if self.log_events:
            for ev in events:
                log.info(codec.dumps(ev))

    @contextmanager
    def _limited_wait(self, ingestor: Ingestor) -> Iterator[None]:
        """While a final close waits, an attempt waits for a lock no longer than its deadline.
        The connection's own busy timeout is back once the attempt ends: a final close that does
        not close the connection (a flush(final=...), or a close whose records are still pending)
        must not leave the writer that goes on giving up on a lock at once."""
        if self._deadline is None:
            yield
            return
        from .schema import BUSY_TIMEOUT_MS

        left = int(max(0.0, self._deadline - time.monotonic()) * 1000)
        try:
            ingestor.db.conn.execute(f"PRAGMA busy_timeout={min(BUSY_TIMEOUT_MS, left)}")
        except sqlite3.Error:
            pass
        try:
            yield
        finally:
            try:  # a connection the attempt closed (a database fault) raises here: nothing to restore
                ingestor.db.conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            except sqlite3.Error:
                pass

    def _one_by_one(
        self, ingestor: Ingestor, batch: list[Captured], redact: Redact | None | bool = True, own: bool = True
    ) -> tuple[list[dict[str, Any]], int] | None:
        """Write a batch that failed record by record: find the records we can't handle, skip
        them, keep the rest; (the events, how many were skipped). None when the database itself
        failed: the records before the one it failed on (committed, or skipped) are then taken out
        of `batch`, so that they are not stored again."""
        events, skipped = [], 0
        for i, captured in enumerate(batch):
            try:
                events += self._transaction(ingestor, [captured], redact, own)
            except Exception as e:  # noqa: BLE001
                if _db_fault(e):
                    self._db_failed(ingestor, e)
                    del batch[:i]
                    self._skipped_before_fault = skipped
                    return None
                skipped += 1
                if own:  # an earlier writer's record is not one this process failed to store
                    self.failed += 1
                log.warning("replayer: could not store a record (%s: %s); it was skipped", type(e).__name__, e)
        return events, skipped

    def _export(self, stored: list[tuple[int, Captured]]) -> None:
        """Hand what was just committed to the OTLP export (a few tuples on its queue; the spans
        are made on its own thread). Never fails the batch."""
        try:
            if self.exporter is None:
                from ..otlp.exporter import Exporter

                self.exporter = Exporter(self.path, content=self.otlp == "content", redact=self.redact)
            self.exporter.stored(stored)
        except Exception as e:  # noqa: BLE001 - the records are stored; only their spans are lost
            log.warning("replayer: OTLP export failed (%s: %s); recording goes on", type(e).__name__, e)

    def _db_failed(self, ingestor: Ingestor, e: sqlite3.Error) -> None:
        # start over with a new connection next time: one that failed (read-only, corrupt)
        # stays that way even after the file is fixed
        try:
            ingestor.db.rollback()
            ingestor.db.conn.close()
        except sqlite3.Error:
            pass
        self._ingestor = None
        self._fault = fault_of(e)
        self._report(_REMEDY.get(self._fault) or str(e))

    def _transaction(
        self, ingestor: Ingestor, batch: list[Captured], redact: Redact | None | bool = True, own: bool = True
    ) -> list[dict[str, Any]]:
        """Store `batch` in one transaction; `redact`: the hook to use (True: the writer's own).
        `own`: this process's records, counted as stored by it (not an earlier writer's saved ones)."""
        hook = self.redact if redact is True else redact or None
        stored = []
        exported: list[tuple[int, Captured]] | None = [] if self.otlp else None
        with ingestor.transaction():
            for captured in batch:
                got = ingestor.store(captured, hook, self.log_events)
                if got is not None:
                    stored.append(got)
                    if exported is not None:
                        exported.append((got.attempt_id, captured))
        if exported:
            self._export(exported)
        if not own:
            return [s.event for s in stored if s.event is not None]
        self.attempts += len(stored)
        self.calls += sum(s.new_turn for s in stored)
        if self.conversations is not None:
            self.conversations.update(s.conversation_id for s in stored)
        return [s.event for s in stored if s.event is not None]
