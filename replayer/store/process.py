"""The writer in a process of its own: where a Recorder's records are parsed and written.

Why a process: the writer's work (parsing, deduplicating, SQLite; about 0.5 ms of Python a
record) on a thread of the agent's process competes with the agent for the GIL. In the 200-turn
loop of bench/record_overhead.py that made the loop 1.08-1.19x its bare time. Here the agent's
process only hands each record over: a feeder thread turns it into a `Captured` (protocol headers
picked out, credentials dropped) and writes a burst of them to a pipe (store/frames.py); a child
process runs the ordinary `Writer` (store/writer.py) on a GIL of its own.

The child starts when the recorder is installed in a client (or, for `record()` calls, at the
first record that is not part of a burst: an import of many turns at once is written here and
needs no child), in a session of its own (Ctrl+C in the terminal goes to the agent, which
flushes at exit, not to the writer under it). Its start-up takes a few tenths of a second
(Python and the store's imports). An agent's records made meanwhile wait for it; but a burst (a
full batch of `record()` calls) and records a flush() waits for are written at once by a thread
writer here, which keeps a burst to its end; the child takes over once those are written (so a
conversation's turns stay in order; see `_send_batch`). It ends when its stdin
closes: after a close() that wrote everything, or when the agent's process ends (even killed),
having written all that reached the pipe and checkpointed the WAL.

Frames, both ways, are a 4-byte big-endian length and a pickle (store/frames.py; bodies go as
they are, not pickled, and a request that repeats most of its caller's last as what differs):
  to the child:   ("put", [Captured, ...]) | ("flush", seq, closing)
  to the parent:  ("ready",) | ("done", seq, ok, Counts) | ("counts", Counts) | ("log", levelno, message)
The child's log records (a database that can't be written, a record skipped) are logged again
here, on the "replayer" logger, where the user sees them.

A thread writer in this process (the same behaviour, sharing the GIL) is used instead when the
recorder has a `redact` hook or `log_events` (the user's code and logging live here), when
REPLAYER_WRITER=thread, where a child can't be started (not POSIX, a frozen program, an
interpreter that can't import replayer), and for a record that can't be pickled (a tag holding
an object of the program's). If the child dies, the records it had not confirmed are reported as
possibly lost and the rest go to a thread writer.

About 670 lines on purpose: one class, whose feeder thread, acknowledgement thread and callers
share its lock, its counts of what was sent and confirmed, and the hand-over between the child
and the thread writer; each part is only right beside the others.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any

from .. import environment
from ..captured import Captured, Handoff
from ..paths import REPORT_ENV
from . import writer as writer_module
from .attempt import read_headers
from .frames import Bodies, encode, read_frame
from .writer import Writer, _Flush

log = logging.getLogger("replayer")

WRITER_ENV = "REPLAYER_WRITER"
"""`thread` keeps the writer in the recording process (the default is a process of its own)."""
FRAME_BYTES = 4 << 20
"""A burst goes over in writes of about this size: the child takes records as they come, and a
write of 500 records of long histories would wait for it to read a hundred megabytes."""
READY_SECONDS = 20.0
"""How long a child may take to start before it is given up and a thread writer writes everything."""
CLOSE_WAIT_SECONDS = 5.0
"""How long the feeder waits for a close's answer before it ends (a close that took longer keeps it)."""
CHILD_CODE = "import gc; gc.disable(); from replayer.store.child import main; main()"
"""The child's program. The cyclic GC is off while it imports (its collections of the modules' own
objects cost 8% of the start-up's instructions), and `main()` turns it back on, with those objects
frozen out of later collections. The few hundred of them that are garbage (405 of 23,000 here)
stay: a collection to free them takes about 12 ms."""
FEED_LINGER_SECONDS = 0.05
"""How long the feeder waits after a record arrives, for more to share its write to the child
(the thread writer's LINGER_SECONDS, shorter). The child writes each frame as it comes, so this
is how far the database lags the agent, and what a flush() finds still to write: with 0.2 s, a
200-turn loop's closing flush waited 14-23 ms (median of 10 loops) for the child to store the
last fifth of a second of turns; with 0.05 s, 3-4 ms. At most 20 wake-ups a second take the
GIL from the agent for it."""


@dataclass(slots=True)
class Counts:
    """What the child's writer reports with each flush: the same counters a `Writer` keeps."""

    calls: int = 0
    attempts: int = 0
    dropped: int = 0
    failed: int = 0
    unwritten: int = 0
    received: int = 0
    """Records the child has taken from the pipe."""
    conversations: list[str] = field(default_factory=list)
    problem: str | None = None
    """Why the database can't be written, while it can't (the writer's message)."""
    spilled: int = 0
    """Records saved in a file beside the database (`Writer.spilled`)."""


def make_writer(
    path: str, *, redact: Any = None, log_events: bool = False, max_pending: int = 20_000, otlp: str | None = None
) -> Writer | ProcessWriter:
    """The writer for a Recorder: in a process of its own where that can work, else a thread.
    `otlp`: also export what is stored as OTLP spans (see `Writer.otlp`)."""
    if redact is not None or log_events or environment.value(WRITER_ENV) == "thread" or not _can_spawn():
        return Writer(path, redact=redact, log_events=log_events, max_pending=max_pending, otlp=otlp)
    return ProcessWriter(path, max_pending=max_pending, otlp=otlp)


def _can_spawn() -> bool:
    """A POSIX Python whose `sys.executable` is a Python interpreter: embedded in a server
    (uWSGI, mod_wsgi) it is the server's binary, which must not be run as a writer."""
    name = os.path.basename(sys.executable or "")
    return (
        os.name == "posix"
        and name.startswith(("python", "pypy"))
        and not getattr(sys, "frozen", False)
    )


# -- the recording process's side -------------------------------------------------------------
class ProcessWriter:
    """A `Writer`'s interface (put, flush, close and its counters) for a writer in a child."""

    def __init__(self, path: str, *, max_pending: int = 20_000, otlp: str | None = None) -> None:
        self.path = path
        self.max_pending = max_pending
        self.otlp = otlp
        """Passed to the child's writer (and the thread writer's): see `Writer.otlp`."""
        self._told = 0
        """The records left unwritten the last close() warned about (exit closes again)."""
        self._lock = threading.Lock()
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # also runs in a forked child: the parent's threads don't exist there and its pipe to the
        # writer process is the parent's; the forked child starts one of its own if it records
        self.q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._feeder: threading.Thread | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self._to_child: IO[bytes] | None = None
        self._ready = threading.Event()
        """Set when the current child has started and can take records."""
        self._launched = 0.0
        self._eager = False
        """start() was called: the child is started with the feeder, not when records need it."""
        self._local_used = False
        """Records went to the thread writer while the child started: written before the child's."""
        self._flushes_queued = 0
        """Flushes put and not yet taken up by the feeder (guarded by `_lock`)."""
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._closed = False
        self._put_after_close = False
        self._local: Writer | None = None
        """The thread writer that takes over when the child can't (see the module docstring)."""
        self._seq = 0
        self._waiting: dict[int, tuple[_Flush, int, bool]] = {}
        """Flush number -> (its marker, records sent before it, the thread writer's answer)."""
        self._earlier = Counts()
        """What children that ended wrote."""
        self._counts = Counts()
        """The current child's last report."""
        self._sent = 0
        """Records sent to the current child."""
        self._io = threading.Lock()
        """Held while a frame is written to the child, or the pipe closed."""
        self._bodies = Bodies()
        """The request bodies sent to the current child lately (frames.Bodies): a request that
        repeats most of its caller's last goes over as what differs."""
        self._own_failed = 0
        self._lost = 0
        self._thread_only = False
        """Set when a child could not start or died: the thread writer writes everything after."""
        self._exporting: list[subprocess.Popen[bytes]] = []
        """Children asked to end while they export OTLP spans: they send the last ones as they end
        (and say which did not go out), which `end_export` waits for."""

    # -- counters, as a Writer's ----------------------------------------------------------------
    def _sum(self, name: str) -> int:
        local = getattr(self._local, name) if self._local is not None else 0
        return int(getattr(self._earlier, name) + getattr(self._counts, name) + local)

    @property
    def calls(self) -> int:
        return self._sum("calls")

    @property
    def attempts(self) -> int:
        return self._sum("attempts")

    @property
    def dropped(self) -> int:
        return self._sum("dropped")

    @property
    def failed(self) -> int:
        """Records that could not be stored for their content, or that a child which died had not
        confirmed writing."""
        return self._sum("failed") + self._own_failed + self._lost

    @property
    def spilled(self) -> int:
        """Records saved in a file beside the database (by the thread writer here: the child saves
        its own after this process has ended, and says so itself)."""
        return self._sum("spilled")

    @property
    def unwritten(self) -> int:
        held = self.q.qsize() + self._sent - self._counts.received + self._counts.unwritten
        return held + (self._local.unwritten if self._local is not None else 0)

    @property
    def conversations(self) -> set[str] | None:
        """Kept only under `replayer record`, which reports them (as a Writer's)."""
        if not os.environ.get(REPORT_ENV):
            return None
        local = (self._local.conversations or set()) if self._local is not None else set()
        return {*self._earlier.conversations, *self._counts.conversations, *local}

    # -- called from any thread -------------------------------------------------------------
    def put(self, item: Handoff | _Flush) -> None:
        """Queue a `Captured`, or an object whose `captured()` makes one (on the feeder thread)."""
        self.q.put(item)
        if self._closed:
            self._put_after_close = True
        if self._feeder is None:
            self._start()
        elif self.q.qsize() == writer_module.MAX_BATCH:
            self._wake.set()  # a full batch doesn't wait out the linger

    def start(self) -> None:
        """Start the child now, not at the first record (the recorder does when it is installed
        in a client): its start-up, a few tenths of a second, overlaps the agent's first call."""
        self._eager = True
        if self._feeder is None:
            self._start()

    def _start(self) -> None:
        if sys.is_finalizing():
            return  # as Writer._start: no thread starts while the interpreter shuts down
        with self._lock:
            if self._feeder is None:
                t = threading.Thread(target=self._feed, name="replayer-feeder", daemon=True)
                t.start()
                self._feeder = t
                writer_module.closed_at_exit(self)

    def flush(self, timeout: float | None = None, *, closing: bool = False) -> bool:
        """Wait until everything put so far is written (False when it could not be, or not in time)."""
        return self._flush(timeout, closing) is True

    def _flush(self, timeout: float | None, closing: bool) -> bool | None:
        """flush(): True, False (the writer answered: not written), or None (no answer in time)."""
        marker = self.flush_started(closing)
        if marker is None:
            return True
        return marker.ok if marker.done.wait(timeout) else None

    def flush_started(self, closing: bool = False, final: float | None = None) -> _Flush | None:
        """As `Writer.flush_started`: a flush not waited for (None: nothing to write)."""
        if self._feeder is None and self.q.empty():
            return None
        marker = _Flush(closing, final)
        with self._lock:
            self._flushes_queued += 1
        self.put(marker)
        self._wake.set()
        return marker

    def close(self, timeout: float | None = 10.0, *, final: float | None = None) -> bool:
        """As `Writer.close`: everything written and the `.db` file whole; then the child ends (a
        record put afterwards starts another). `final` is for the thread writer here, if any: the
        child makes its own last close when this process is gone (child.main)."""
        marker = self.flush_started(closing=True, final=final)
        ok = True if marker is None else marker.ok if marker.done.wait(timeout) else None
        self._closed, self._put_after_close = True, False
        # the child holds what it could not write, and keeps trying while this process lives,
        # then for the exit timeout after it ends, then saves it beside the database (and says
        # so itself, on the terminal this process shares with it)
        local = self._local.unwritten if self._local is not None else 0
        left = self.unwritten - local if ok is not True else 0
        told, self._told = self._told, left
        if left and left != told:
            problem = self._counts.problem
            log.warning(
                "replayer: %d record(s) not yet written to %s%s: the writer process keeps trying (while it is "
                "locked, for %g s after this program exits), then saves them in a file beside it",
                left, self.path, f" ({problem})" if problem else "", environment.value("REPLAYER_EXIT_TIMEOUT"),
            )
        return ok is True

    def at_exit(self, timeout: float) -> None:
        """As `Writer.at_exit`; what the child holds, it writes (or saves) itself after this
        process ends."""
        end = time.monotonic() + timeout
        if not self._closed or self._put_after_close:
            self.close(timeout, final=timeout)
        if self._local is not None and self._local.unwritten:
            # still unwritten by the thread writer here (a close() that failed on a lock, or the
            # final close above not done in time): its own exit, which waits out a lock for what
            # is left of the exit timeout (as the child does for its records), then saves them
            self._local.at_exit(max(0.0, end - time.monotonic()))
        self.end_export()

    def end_export(self, timeout: float | None = None) -> None:
        """After a close(): wait for the OTLP export of what was written to end, the children's
        (they send their last spans as they end, and say on the terminal this process shares
        what did not go out: that line comes before this program's own last words, and before
        the shell prompt) and the thread writer's. Up to `timeout` seconds (default: the OTLP
        exit timeout and some for the child's exit); a child still busy then is left to it."""
        if self._local is not None:
            self._local.end_export()
        if timeout is None:
            timeout = environment.value("REPLAYER_OTLP_EXIT_TIMEOUT") + 5.0
        deadline = time.monotonic() + timeout
        with self._lock:
            children, self._exporting = self._exporting, []
        for child in children:
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass

    # -- the feeder thread: the pipe's only writer ------------------------------------------
    def _feed(self) -> None:
        with self._io:
            if self._eager and self._to_child is None and not self._thread_only:
                self._spawn()  # started, not waited for: records go here until it is up
        behind = False  # the record that started this thread is no sign of a burst
        while True:
            items = [self.q.get()]
            if not isinstance(items[0], _Flush) and self.q.qsize() < writer_module.MAX_BATCH:
                # as the writer's linger: a burst of calls goes over in one write, and puts don't
                # wake this thread one by one (each wake-up takes the GIL from the agent)
                self._linger()
            while len(items) < writer_module.MAX_BATCH:
                try:
                    items.append(self.q.get_nowait())
                except queue.Empty:
                    break
            batch: list[Captured] = []
            size = 0
            # a burst: records came faster than this thread takes them, or a full batch in one linger
            burst = behind or len(items) >= writer_module.MAX_BATCH
            closed: _Flush | None = None  # a close() taken last
            for item in items:
                if isinstance(item, _Flush):
                    with self._lock:
                        self._flushes_queued -= 1
                    self._send_batch(batch, at_once=True, burst=burst)
                    batch, size = [], 0
                    self._send_flush(item)
                    closed = item if item.closing else None
                    continue
                closed = None
                captured = self._captured(item)
                if captured is None:
                    continue
                batch.append(captured)
                size += sum(len(b) for b in (captured.request_bytes, captured.response_bytes, captured.sse) if b)
                if size >= FRAME_BYTES:
                    burst = True  # a frame's worth within one linger
                    self._send_batch(batch, at_once=True, burst=True)
                    batch, size = [], 0
            self._send_batch(batch, burst=burst)
            behind = not self.q.empty()
            # not kept while waiting: a stream's capture holds its response, request and credentials
            items = batch = item = captured = None  # type: ignore[assignment]
            if closed is not None and self._end_feeder(closed):
                return

    def _end_feeder(self, marker: _Flush) -> bool:
        """After a close that wrote everything (the last thing this thread took), it ends, as the
        thread writer's does (writer.Writer._end_thread): a program that makes a Recorder per job
        must not collect idle threads. Not while anything is unwritten: flush() would answer True
        with no thread to ask."""
        if not marker.done.wait(CLOSE_WAIT_SECONDS) or not marker.ok:
            return False
        with self._lock:
            if not self.q.empty() or self._child is not None:
                return False
            self._feeder = None
        if not self.q.empty():  # put between the look and the hand-back: that put saw a thread
            self._start()
        return True

    def _linger(self) -> None:
        """Wait for more records, until a full batch or a flush comes, or FEED_LINGER_SECONDS pass. A
        wake-up left over from a flush this thread already took (it is set after the flush is put)
        doesn't cut the wait short: the round would look like the end of a burst."""
        deadline = time.monotonic() + FEED_LINGER_SECONDS
        while self._wake.wait(max(0.0, deadline - time.monotonic())):
            self._wake.clear()
            if self._flushes_queued or self.q.qsize() + 1 >= writer_module.MAX_BATCH:
                return
        self._wake.clear()

    def _captured(self, item: Any) -> Captured | None:
        try:
            captured = item if isinstance(item, Captured) else item.captured()
            read_headers(captured)
            return captured
        except Exception as e:  # noqa: BLE001 - never let the feeder die
            self._own_failed += 1
            log.warning("replayer: could not read a captured call (%s: %s); it was skipped", type(e).__name__, e)
            return None

    def _send_batch(self, batch: list[Captured], *, at_once: bool = False, burst: bool = False) -> None:
        """Hand `batch` to the child. While it starts, a burst (a full batch or frame of `record()`
        calls within one linger) or records a flush waits for (`at_once`) are written by the thread
        writer here; a few records of an agent's loop wait for the child instead (writing them here
        would take the agent's GIL).

        Once the thread writer has taken a burst, it keeps the burst's later records too (those a
        flush waits for at its end included), until a round that is no burst (`burst`): a writer
        that did not write a conversation's previous turn parses its whole history again (a cold
        writer took 3 ms a record against 0.5 warm), so handing a burst over to the child midway
        made `record()` bursts 3x slower. The child then takes everything (at most one hand-over
        per child). A burst when no child was started starts none: its start-up (a few tenths of
        a second of CPU) would only compete with the writing here."""
        if not batch:
            return
        if not (at_once or self._local_used or len(batch) >= writer_module.MAX_BATCH):
            self._await_child()
        here = burst and (self._local_used or self._child is None)
        if self._thread_only or here or not self._child_ready():
            self._local_used = not self._thread_only
            for captured in batch:
                self._fallback().put(captured)
            return
        if self._local_used and self._local is not None:
            # what the thread writer took while the child started is written first: a
            # conversation's later turns must not reach the database before its earlier ones
            if not self._local.flush(None) and self._local.unwritten:
                # it can't write them (the database can't be written): later records wait behind
                # them there, in order, and the trouble is told once, by that writer
                for captured in batch:
                    self._local.put(captured)
                return
            self._local_used = False
        try:
            frame = encode(("put", batch), self._bodies)
        except Exception:  # noqa: BLE001 - a record holds what can't be pickled: it is written here
            kept = []
            for captured in batch:
                try:
                    pickle.dumps(captured, protocol=pickle.HIGHEST_PROTOCOL)
                    kept.append(captured)
                except Exception:  # noqa: BLE001
                    self._fallback().put(captured)
            if not kept:
                return
            batch = kept
            frame = encode(("put", batch), self._bodies)
        if self._write(frame):
            self._sent += len(batch)
        else:
            for captured in batch:
                self._fallback().put(captured)

    def _send_flush(self, marker: _Flush) -> None:
        local_ok = True
        if self._local is not None:
            # closing: the thread writer says what it could not write, as a closed Writer does
            local_ok = (
                self._local.close(None, final=_left(marker.deadline)) if marker.closing else self._local.flush(None)
            )
        if self._to_child is None or not self._ready.is_set():
            # no record went to a child that is not up yet: the thread writer's answer is the answer
            if marker.closing and self._child is not None:
                self._end_child(self._child, self._sent)
            marker.ok = local_ok
            marker.done.set()
            return
        self._seq += 1
        self._waiting[self._seq] = (marker, self._sent, local_ok)
        self._write(encode(("flush", self._seq, marker.closing)))
        # a failed write ended the child, which answered every waiting flush with False

    def _end_child(self, child: subprocess.Popen[bytes], sent: int) -> None:
        """After a close() that wrote everything: the child's stdin closed, so it ends (the next
        record starts another). Not when records went to it after that close(), nor while the
        feeder is writing to it: then it ends at the next close, or with this process."""
        if not self._io.acquire(timeout=1.0):
            return
        try:
            with self._lock:
                if child is not self._child or self._sent != sent:
                    return
                out = self._to_child
                self._child = self._to_child = None
                if self.otlp:  # (those that have ended since are let go: a recorder closed again and again)
                    self._exporting = [c for c in self._exporting if c.poll() is None] + [child]
                self._bodies = Bodies()  # a closed Recorder holds no request bodies
                self._ready.clear()
                self._earlier = _plus(self._earlier, self._counts)
                self._counts, self._sent = Counts(), 0
            if out is not None:
                try:
                    out.close()  # the child closes the database and ends
                except OSError:
                    pass
        finally:
            self._io.release()

    def _await_child(self) -> None:
        """Wait for a starting child to be up (or given up: see READY_SECONDS), unless a flush is
        queued behind these records: then the thread writer takes them (an exit's flush gives up
        long before a slow child is given up, and would lose them)."""
        while not self._thread_only and not self._child_ready():
            if self._flushes_queued:
                return
            if self._ready.wait(0.05):
                return

    def _child_ready(self) -> bool:
        """Whether a child is up to take records; starts one if there is none."""
        if self._ready.is_set() and self._to_child is not None:
            return True
        with self._io:
            if self._to_child is None and not self._thread_only:
                self._spawn()
        child = self._child
        if child is not None and not self._ready.is_set() and time.monotonic() - self._launched > READY_SECONDS:
            child.kill()
            self._child_ended(child, quiet=True)
            log.info("replayer: the writer process did not start; writing from this process")
        return self._ready.is_set() and self._to_child is not None

    def _write(self, frame: list[bytes]) -> bool:
        with self._io:
            if self._to_child is None:
                return False
            out, child = self._to_child, self._child
            try:
                assert out is not None
                for part in frame:
                    out.write(part)
                out.flush()
                return True
            except (OSError, ValueError, AssertionError):
                pass
        self._child_ended(child)
        return False

    def _fallback(self) -> Writer:
        if self._local is None:
            self._local = Writer(self.path, max_pending=self.max_pending, owned=True, otlp=self.otlp)
        return self._local

    # -- the child --------------------------------------------------------------------------
    def _spawn(self) -> bool:
        here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        boot = os.path.join(here, "replayer", "_boot")
        env = dict(os.environ)
        # the child needs replayer and its dependencies, not `replayer record`'s start-up hook
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and os.path.abspath(p) != boot]
        env["PYTHONPATH"] = os.pathsep.join([here, *paths])
        try:
            child = subprocess.Popen(
                # -P: not the current folder first (`-c` would put it there): a `replayer` folder
                # where the agent runs (a checkout of another version) must not be the child's
                [sys.executable, "-P", "-c", CHILD_CODE,
                 self.path, str(self.max_pending), *([self.otlp] if self.otlp else [])],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
        except OSError as e:
            self._thread_only = True
            self._fallback()
            log.info("replayer: the writer process could not start (%s); writing from this process", e)
            return False
        assert child.stdin is not None and child.stdout is not None
        with self._lock:
            self._child, self._to_child = child, child.stdin
            self._bodies = Bodies()  # this pipe's, as the child's
            self._ready.clear()
            self._launched = time.monotonic()
        threading.Thread(
            target=self._listen, args=(child, child.stdout), name="replayer-acks", daemon=True
        ).start()
        return True

    def _listen(self, child: subprocess.Popen[bytes], pipe: IO[bytes]) -> None:
        """The acknowledgement thread: one child's reports, until its stdout closes."""
        up = False
        while True:
            msg = read_frame(pipe)
            if msg is None:
                break
            kind = msg[0]
            if kind == "ready":
                up = True
                with self._lock:
                    if self._child is child:
                        self._ready.set()
            elif kind == "done":
                _, seq, ok, counts = msg
                with self._lock:
                    entry = self._waiting.pop(seq, None)
                    if self._child is child:
                        self._counts = counts
                if entry is not None:
                    marker, sent, local_ok = entry
                    if marker.closing and ok:
                        self._end_child(child, sent)
                    marker.ok = ok and local_ok
                    marker.done.set()
            elif kind == "counts":
                with self._lock:
                    if self._child is child:
                        self._counts = msg[1]
            elif kind == "log":
                log.log(msg[1], msg[2])
        pipe.close()  # read to its end: closed here (else a ResourceWarning reaches the agent)
        code = child.wait()
        if not up and child is self._child:
            log.info("replayer: the writer process did not start (exit code %s); writing from this process", code)
        self._child_ended(child, code=code, quiet=not up)

    def _child_ended(self, child: subprocess.Popen[bytes] | None, *, code: int | None = None,
                     quiet: bool = False) -> None:
        """A child went away without being asked to: the thread writer takes over, and what the
        child had not confirmed is counted as possibly lost."""
        with self._lock:
            if child is None or child is not self._child:
                return
            self._child = self._to_child = None
            self._bodies = Bodies()
            self._ready.clear()
            unconfirmed = self._sent - self._counts.received + self._counts.unwritten
            self._lost += unconfirmed
            self._earlier = _plus(self._earlier, self._counts)
            self._counts, self._sent = Counts(), 0
            waiting, self._waiting = self._waiting, {}
            self._thread_only = True
            self._fallback()
        for marker, _, _ in waiting.values():
            marker.ok = False
            marker.done.set()
        if not quiet:
            log.warning(
                "replayer: the writer process ended%s%s; writing %s from this process from now on",
                f" (exit code {code})" if code is not None else "",
                f" with {unconfirmed} record(s) it had not confirmed writing" if unconfirmed else "",
                self.path,
            )


def _left(deadline: float | None) -> float | None:
    """The seconds until `deadline` (a final close's, `_Flush.deadline`)."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _plus(a: Counts, b: Counts) -> Counts:
    return Counts(
        a.calls + b.calls, a.attempts + b.attempts, a.dropped + b.dropped, a.failed + b.failed,
        conversations=sorted({*a.conversations, *b.conversations}), spilled=a.spilled + b.spilled,
    )

