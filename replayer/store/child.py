"""The writer process's own side (see store/process.py): read records from stdin, write them
with the ordinary `Writer`, answer flushes and report counters and log records on stdout, until
stdin ends; then close the database whole and exit."""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from .. import environment
from .frames import Bodies, encode, read_frame
from .process import Counts
from .writer import Writer

COUNTS_SECONDS = 0.1
"""How often the child looks whether records were dropped or skipped, to say so between flushes."""


class _Forward(logging.Handler):
    """Sends the child's log records to the recording process, which logs them as its own."""

    def __init__(self, send: Any) -> None:
        super().__init__(logging.DEBUG)
        self.send = send

    def emit(self, record: logging.LogRecord) -> None:
        self.send(("log", record.levelno, record.getMessage()))


def batch_scheduling() -> bool:
    """Run this process under Linux's SCHED_BATCH (True when it does). The writer's work is
    throughput; the recording process's is latency (an agent handling its reply, the proxy passing
    a token on). Under SCHED_BATCH the writer keeps its share of the CPU (no lower nice value, so a
    saturated machine doesn't starve it until records are dropped), but its wake-ups, a batch of
    records arriving, don't preempt the process that is running. Set first, in the main thread:
    the threads started later inherit it. REPLAYER_WRITER_BATCH=0 turns it off."""
    if environment.value("REPLAYER_WRITER_BATCH") == "0" or not hasattr(os, "SCHED_BATCH"):
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except OSError:
        return False
    return True


def main() -> None:
    """Run in the child: read frames from stdin, write records, answer flushes, until stdin ends."""
    gc.freeze()  # what the imports made lives as long as the process: no collection need look at it
    gc.enable()  # off while importing (process.CHILD_CODE)
    batch_scheduling()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    path, max_pending = sys.argv[1], int(sys.argv[2])
    otlp = sys.argv[3] if len(sys.argv) > 3 else None  # the OTLP setting (Writer.otlp), when exporting
    inp = os.fdopen(os.dup(0), "rb")
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print() must not land in the frames
    send_lock = threading.Lock()

    def send(msg: Any) -> None:
        frame = b"".join(encode(msg))
        with send_lock:
            try:
                out.write(frame)
                out.flush()
            except (OSError, ValueError):
                pass  # the recording process is gone; the records are still written

    replayer_log = logging.getLogger("replayer")
    forward = _Forward(send)
    replayer_log.addHandler(forward)
    replayer_log.setLevel(logging.DEBUG)
    replayer_log.propagate = False
    if otlp:
        # the OTLP export's threads share this process's GIL with the writer, and the writer
        # gives it up at every SQLite call: switching every 0.5 ms (not 5) lets it win it back
        # soon, so a flush doesn't wait behind the SDK encoding spans (this process runs no user code)
        sys.setswitchinterval(0.0005)
    writer = Writer(path, max_pending=max_pending, linger=0.0, otlp=otlp)
    received = 0

    def counts() -> Counts:
        return Counts(
            writer.calls, writer.attempts, writer.dropped, writer.failed, writer.unwritten, received,
            sorted(writer.conversations or ()), writer.problem if writer.unwritten else None, writer.spilled,
        )

    def report_changes() -> None:
        """Between flushes, the counters the recording process shows (`Recorder.dropped`)."""
        last: tuple[int, int, str | None] = (0, 0, None)
        while True:
            time.sleep(COUNTS_SECONDS)
            now = (writer.dropped, writer.failed, writer.problem)
            if now != last:
                send(("counts", counts()))
            last = now

    threading.Thread(target=report_changes, daemon=True).start()
    send(("ready",))
    bodies = Bodies()
    while True:
        msg = read_frame(inp, bodies)
        if msg is None:
            break
        if msg[0] == "put":
            received += len(msg[1])
            for captured in msg[1]:
                writer.put(captured)
        elif msg[0] == "flush":
            _, seq, closing = msg
            # the recording process says what is left unwritten (it knows whether it is ending)
            ok = writer.close(None, tell=False) if closing else writer.flush(None)
            send(("done", seq, ok, counts()))
    # the recording process no longer listens: what is logged from here on (records that could
    # not be written after all, the OTLP export's count of spans that did not go out) goes to
    # stderr, the user's terminal, which this process shares
    replayer_log.removeHandler(forward)
    told = logging.StreamHandler(sys.stderr)
    told.setLevel(logging.WARNING)
    replayer_log.addHandler(told)
    # the last close: a locked database is waited for up to the exit timeout, then what is still
    # unwritten is saved beside it (the writer says which, on stderr)
    timeout = environment.value("REPLAYER_EXIT_TIMEOUT")
    writer.close(None, final=timeout, tell=False)
