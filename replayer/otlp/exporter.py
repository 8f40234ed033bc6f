"""The OTLP export of what the writer stored: a bounded hand-off from the writer, a worker thread
that reads each attempt's values back and makes its span, and the official SDK's
BatchSpanProcessor and OTLP/HTTP exporter, which send them to the endpoint the standard
variables name (OTEL_EXPORTER_OTLP_ENDPOINT, _TRACES_ENDPOINT, _HEADERS, ...; read by the SDK).

Off the agent's thread and off the writer's critical path: after each commit the writer hands
over (attempt id, caller's span, server) per stored attempt, a few tuples appended to a deque;
everything else (the SDK's import, the reading back, the JSON, the spans, the HTTP) happens on
this module's worker thread and the SDK's: in the writer process when there is one (it yields
the CPU to the agent: SCHED_BATCH, store/child.py), at their process's priority unless NICE_ENV asks
for a lower one. The values are read back from the database (otlp/lines.py: the attempt's row
and small parts, the history joined from stored texts, never parsed again), so a span holds
exactly what `replayer export` writes (and the import side can rebuild that line); with a
redact hook the whole line is made and handed to it first.

A dead or slow collector never slows the agent or the writer: the hand-off and the spans waiting
for the SDK (by count, the SDK's queue, and by size, WAITING_BYTES) are bounded, and what doesn't
fit or doesn't get through is dropped and counted. The first drop is logged once on the
"replayer" logger (the writer's channel: the writer process forwards it to the recording
process), with the reason; at the end a single line gives the total. The SDK's own log records
about a failed export are kept out of the user's output while this module's exporter runs (a
thread-local filter: an application's own exporter is left alone). At interpreter exit the
writers are closed first, then the spans get EXIT_SECONDS (REPLAYER_OTLP_EXIT_TIMEOUT) to go out
(`close_all`, from the writer's exit hook). With content, an attribute length limit in the
environment (the SDK cuts every text past it) is said once as the export starts: such spans
can't be imported whole.

About 610 lines: one exporter (the Exporter class, 226) and what it tells the user about a
collector that is down, slow or refusing (the trouble lines and the drop counts its worker keeps),
which reads its state as it runs."""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
from collections import deque
from http import HTTPStatus
from typing import Any

from .. import environment
from ..captured import Captured
from ..store.attempt import Redact
from ..store.codec import split
from . import names, protocol, spans

log = logging.getLogger("replayer")

MAX_HANDOFF = 10_000
"""Attempts waiting for the worker thread; more are dropped (counted)."""
BATCH = 256
"""Attempts the worker reads back in one query."""
REQUEST_BYTES = 4 << 20
"""About how much span text one export request carries (a collector's gRPC default limit is 4 MiB)."""
NICE_ENV = "REPLAYER_OTLP_NICE"
"""How much lower the export's threads run than the rest of the process (a nice increment; 0, the
default: the same). Lower looks right, since a span of a long history with content is a megabyte
of text the SDK encodes in several copies, but a niced thread is descheduled while it holds the
writer process's GIL, and the writer then waits for it. bench/otlp.py could not tell the two apart
when it ran the kinds in a rotation: in six runs (15 loops each, each run waiting for the receiver
to finish the one before) niced +10 gave 1.023, 1.049, 1.057, 1.085, 0.993, 1.109x and not niced
1.109, 1.108, 1.209, 1.126, 1.041, 1.124x, with not niced the rotation's second kind; with the two
swapped in the rotation (three runs) niced gave 1.089, 1.071, 1.266x and not niced 1.133, 1.009,
1.082x. The place in the rotation moved the ratio as much as the priority did (the bench now runs
the target's two kinds back to back)."""
WAITING_BYTES = 256 << 20
"""About how much span text may wait for the SDK to send it; more spans are dropped (counted)."""
EXIT_SECONDS: float = environment.value("REPLAYER_OTLP_EXIT_TIMEOUT")
"""At exit, how long the spans still waiting may take to go out (then they are counted as dropped)."""

Item = tuple[int, tuple[int, int, int] | None, tuple[str, int] | None]
"""(attempt id, the caller's span as (trace id, span id, flags), (server host, port))."""

_live: set[Exporter] = set()


Trouble = tuple[str, bool]
"""Why spans did not (surely) get through, in a few words, and whether that is sure: False when
the collector may have them (it was sent and no answer came in time)."""


class _Quiet(threading.local):
    active = False
    last: str | None = None
    """The last message the SDK logged during our export: the reason an export failed."""
    trouble: Trouble | None = None
    """What the SDK's records during our export said went wrong (`_trouble`), the latest."""
    owner: Exporter | None = None


_quiet = _Quiet()


class _QuietFilter(logging.Filter):
    """Keeps the SDK's records out of the user's log while our exporter runs on this thread, and
    keeps what they say went wrong (the SDK's exporter returns only "failure")."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _quiet.active:
            _quiet.last = record.getMessage()
            got = _trouble(record)
            if got is not None:
                _quiet.trouble = got
                if _quiet.owner is not None:
                    _quiet.owner.trying = got
            return False
        return True


def quiet_sdk_logs() -> None:
    """Put the filter on the SDK's loggers (once)."""
    global _filtering
    if not _filtering:
        _filtering = True
        quiet = _QuietFilter()
        for name in _QUIET_LOGGERS:
            logging.getLogger(name).addFilter(quiet)


_filtering = False


def export_timeout() -> float:
    """How long the SDK's exporter waits for the collector (its standard variables; 10 s)."""
    for name in ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"):
        try:
            seconds = float(os.environ.get(name) or "nan")
        except ValueError:
            continue
        if seconds > 0:
            return seconds
    return 10.0


def _trouble(record: logging.LogRecord) -> Trouble | None:
    """What a log record of the SDK's exporter says went wrong, if it says (an error it passes,
    an HTTP status), or None. Read from its arguments: they hold the error object itself."""
    args = record.args if isinstance(record.args, tuple) else ()
    for arg in args:
        if isinstance(arg, BaseException):
            return _error_trouble(arg)
        code = getattr(arg, "name", None) if type(arg).__name__ == "StatusCode" else None  # gRPC's status code
        if code == "DEADLINE_EXCEEDED":
            return f"no answer within {export_timeout():g} s", False
        if code == "UNAVAILABLE":
            # gRPC says why only in the details text it logs beside the code ("failed to connect to
            # all addresses; last error: ...: Connection refused"), no error object
            details = " ".join(a for a in args if isinstance(a, str)).lower()
            if "connection refused" in details:
                return "connection refused", True
            if "dns resolution failed" in details:
                return "the collector's host name does not resolve", True
    msg = record.msg if isinstance(record.msg, str) else ""
    if msg.startswith("Failed to export") and "code:" in msg and len(args) > 2 and isinstance(args[1], int):
        return f"the collector answered HTTP {args[1]} {args[2]}".rstrip(), True
    if msg.startswith("Transient error") and args and isinstance(args[0], str) and args[0] in _STATUS:
        return f"the collector answered HTTP {_STATUS[args[0]]} {args[0]}", True  # the reason phrase only
    return None


def _no_answer(took: float) -> Trouble | None:
    """When the export failed with the SDK's "timeout" and took its whole timeout: the request
    went and no answer came (the SDK says no more). A quick failure (a connection refused with
    no time left to retry) is not that."""
    limit = export_timeout()
    if "timeout" in (_quiet.last or "") and took >= 0.9 * limit:
        return f"no answer within {limit:g} s", False
    return None


_STATUS = {status.phrase: status.value for status in HTTPStatus}


def _error_trouble(error: BaseException) -> Trouble:
    """The few words for an error sending spans: the root cause along the chain of errors the HTTP
    libraries wrap it in (requests in urllib3's, urllib3's in the socket's)."""
    seen: list[BaseException] = []
    todo: list[Any] = [error]
    while todo:
        e = todo.pop()
        if not isinstance(e, BaseException) or any(e is s for s in seen):
            continue
        seen.append(e)
        todo += [e.__cause__, e.__context__, getattr(e, "reason", None), *e.args]
    names = [type(e).__name__ for e in seen]
    if any(isinstance(e, ConnectionRefusedError) for e in seen):
        return "connection refused", True
    if any(isinstance(e, socket.gaierror) for e in seen) or "NameResolutionError" in names:
        return "the collector's host name does not resolve", True
    if any("ConnectTimeout" in n for n in names):
        return f"no connection within {export_timeout():g} s", True
    if any(isinstance(e, TimeoutError) or "Timeout" in n for n in names):
        return f"no answer within {export_timeout():g} s", False
    text = f"{type(error).__name__}: {error}"
    return (text if len(text) <= 200 else text[:199] + "…"), True


_QUIET_LOGGERS = ("opentelemetry.exporter.otlp.proto.http", "opentelemetry.exporter.otlp.proto.http.trace_exporter",
                  "opentelemetry.exporter.otlp.proto.http._common", "opentelemetry.exporter.http.transport",
                  "opentelemetry.sdk._shared_internal", "opentelemetry.sdk.trace.export",
                  "opentelemetry.exporter.otlp.proto.grpc.exporter",
                  "opentelemetry.exporter.otlp.proto.grpc.trace_exporter")


def endpoint() -> str:
    """Where the spans go, as the SDK resolves it from the standard variables (for messages)."""
    given = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if given:
        return given
    if protocol() == "grpc":  # gRPC names no path
        return os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or "http://localhost:4317"
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or "http://localhost:4318"
    return base.rstrip("/") + "/v1/traces"


def span_exporter() -> Any:
    """The SDK's OTLP span exporter for the protocol the standard variables ask for: gRPC (the
    official gRPC exporter, an optional extra: otlp.problem() tells when it is missing) or
    HTTP with protobuf. The SDK for Python sends no JSON: http/json is sent as protobuf, and said
    once."""
    asked = protocol()
    if asked == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc

        return Grpc()
    if asked != "http/protobuf":
        log.warning("replayer: the OTLP protocol %r is not one the OpenTelemetry SDK for Python sends; "
                    "spans go as http/protobuf", asked)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


class Exporter:
    """One writer's OTLP export (store/writer.py makes it on its first stored attempt)."""

    def __init__(self, path: str, *, content: bool, redact: Redact | None = None) -> None:
        self.path = path
        self.endpoint = endpoint()
        """Where the spans go (for messages: the SDK reads the same variables)."""
        self.content = content
        self.redact = redact
        self.dropped = 0
        """Spans lost: the hand-off or the SDK's queue full, an export that failed, or exit came first."""
        self.why: dict[Trouble, int] = {}
        """The dropped spans by what went wrong, for the one line at the end."""
        self.sending = 0
        """Spans in an export request not yet answered (or failed)."""
        self.trying: Trouble | None = None
        """What went wrong on the last export request (being retried, or failed), if it did (the SDK
        retries a refused connection or a busy collector until its timeout)."""
        self.ended = 0
        """Spans handed to the SDK."""
        self.resolved = 0
        """Spans whose export finished, sent or failed."""
        self.waiting = 0
        """About how many bytes of text the spans handed to the SDK and not yet resolved hold."""
        self.limit = int(os.environ.get("OTEL_BSP_MAX_QUEUE_SIZE") or 2048)
        """Spans that may wait in the SDK's queue (its own max_queue_size)."""
        self._told = False
        self._lock = threading.Lock()
        self._reset()
        _live.add(self)
        if content:
            _say_content_cut()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self.closed = False
        """close() told the end: what comes after (an export that ends late) is not counted again."""
        self.q: deque[Item] = deque()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._provider: Any = None
        self._tracer: Any = None
        self._reader: Any = None
        self._store: Any = None
        """The whole-line reader, made when a redact hook needs the whole line."""

    # -- the writer's thread: cheap ------------------------------------------------------------
    def stored(self, pairs: list[tuple[int, Captured]]) -> None:
        """Attempts the writer just committed, by id, with what only the capture knows."""
        items = [(aid, c.ctx.parent if c.ctx is not None else None, c.server) for aid, c in pairs]
        room = MAX_HANDOFF - len(self.q)
        if room < len(items):
            self.drop(len(items) - max(room, 0), "the export queue is full: the exporter can't keep up")
            items = items[: max(room, 0)]
        self.q.extend(items)
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="replayer-otlp", daemon=True)
                    self._thread.start()
        self._wake.set()

    def drop(self, count: int, reason: str, sure: bool = True) -> None:
        """Count `count` spans lost for `reason`; `sure`: False when the collector may have them
        after all (sent, and no answer in time)."""
        with self._lock:
            if self.closed:
                return
            self.dropped += count
            self.why[(reason, sure)] = self.why.get((reason, sure), 0) + count
            first, self._told = not self._told, True
        if first:
            log.warning(
                "replayer: OTLP spans %s exported to %s (%s); such spans are counted as not exported, "
                "and recording goes on",
                "could not be" if sure else "may not have been", self.endpoint, reason,
            )

    # -- the worker thread ---------------------------------------------------------------------
    def _run(self) -> None:
        _lower_priority()
        try:
            self._setup()
        except Exception as e:  # noqa: BLE001 - never let the export reach the writer
            self._closing = True
            self.drop(len(self.q), f"cannot start: {type(e).__name__}: {e}")
            self.q.clear()
            return
        while True:
            self._wake.wait()
            self._wake.clear()
            while self.q:
                items = [self.q.popleft() for _ in range(min(BATCH, len(self.q)))]
                try:
                    self._export(items)
                except Exception as e:  # noqa: BLE001
                    self.drop(len(items), f"{type(e).__name__}: {e}")
            if self._closing:
                return

    def _setup(self) -> None:
        from opentelemetry.sdk.resources import _DEFAULT_RESOURCE, SERVICE_NAME, OTELResourceDetector, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from ..store.schema import open_db
        from .lines import Reader

        quiet_sdk_logs()
        # Resource.create() would run its detectors on a thread pool, which can't start at
        # interpreter exit (a short script's records are often written then): the SDK's
        # defaults and the standard variables (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES)
        resource = Resource({SERVICE_NAME: "replayer"}).merge(_DEFAULT_RESOURCE).merge(OTELResourceDetector().detect())
        provider = TracerProvider(resource=resource, shutdown_on_exit=False)  # exit: see close()
        counting: Any = _Counting(span_exporter(), self)  # a SpanExporter by its methods
        provider.add_span_processor(BatchSpanProcessor(counting, max_queue_size=self.limit))
        self._provider = provider
        self._tracer = provider.get_tracer(names.INSTRUMENTATION)
        self._reader = Reader(open_db(self.path, create=False, migrate=False))

    def _export(self, items: list[Item]) -> None:
        if self.redact is not None:
            self._export_redacted(items)
            return
        by_id = {aid: (parent, server) for aid, parent, server in items}
        rows = self._reader.rows(list(by_id))
        for row in rows:
            if self._full():
                continue
            parent, server = by_id[row["id"]]
            line, texts, messages = self._reader.line(row, content=self.content)
            tags = json.loads(row["turn_tags"]) if row["turn_tags"] else None
            attrs = spans.attributes(line, content=self.content, texts=texts, tags=tags, server=server,
                                     messages=messages)
            self._end(line, attrs, parent)
        if len(rows) < len(by_id):
            self.drop(len(by_id) - len(rows), "attempts not found in the database")

    def _export_redacted(self, items: list[Item]) -> None:
        """With a `redact` hook: each attempt's whole export line, read back and parsed, given to
        the hook as `replayer export` would, and the span made of what it returns."""
        from ..store.export import _lines
        from ..store.queries import Store

        redact = self.redact
        assert redact is not None
        by_id = {aid: (parent, server) for aid, parent, server in items}
        tags = {row["id"]: row["turn_tags"] for row in self._reader.rows(list(by_id))}
        marks = ",".join("?" * len(by_id))
        found = 0
        if self._store is None:
            self._store = Store(self._reader.db)
        for row, line_text in _lines(self._store, f"WHERE a.id IN ({marks})", list(by_id)):
            found += 1
            parent, server = by_id[row["id"]]
            line = redact(split(line_text)[0])
            if line is None:
                continue
            if self._full():
                continue
            # the hook may have changed any value: the texts are made again from the values
            turn_tags = tags.get(row["id"])
            attrs = spans.attributes(line, content=self.content, tags=json.loads(turn_tags) if turn_tags else None,
                                     server=server)
            self._end(line, attrs, parent)
        if found < len(by_id):
            self.drop(len(by_id) - found, "attempts not found in the database")

    def _full(self) -> bool:
        """Whether the spans waiting for the SDK leave no room for another (then it is dropped):
        a slow collector must not make them pile up in memory, by count (the SDK's queue) or by
        size (with content a long history's span is a megabyte or more)."""
        if self.ended - self.resolved >= self.limit or self.waiting >= WAITING_BYTES:
            self.drop(1, "the collector is slow: the SDK's span queue is full")
            return True
        return False

    def _end(self, line: dict[str, Any], attrs: dict[str, Any], parent: tuple[int, int, int] | None) -> None:
        made = spans.span(self._tracer, line, attrs, parent)
        with self._lock:
            self.ended += 1
            self.waiting += weight(made.attributes or {})  # as the SDK keeps them (limits applied)

    # -- closing -------------------------------------------------------------------------------
    def close(self, timeout: float = EXIT_SECONDS) -> None:
        """Make the spans of everything handed over and give them `timeout` seconds to go out;
        what doesn't is counted as dropped, and the drops are reported in one line. Once: `replayer
        record` closes its writer's exporter before its summary, and exit closes every one."""
        if self.closed:
            return
        self._closing = True
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout / 2)
        provider = self._provider
        if provider is not None:
            done = threading.Thread(target=_flush, args=(provider,), name="replayer-otlp-flush", daemon=True)
            done.start()
            done.join(timeout / 2)
        reader, self._reader = self._reader, None
        if reader is not None and (thread is None or not thread.is_alive()):
            reader.db.conn.close()  # the database is left to its writer (its WAL file gone when that closes)
        with self._lock:
            # in a request with no answer yet: the collector may have them, unless the request is
            # being retried after a sure failure (a refused connection); the rest were never sent
            sending, trying = max(self.sending, 0), self.trying
            unsent = max(len(self.q) + self.ended - self.resolved - sending, 0)
            self.q.clear()
            self.ended = self.resolved = self.waiting = self.sending = 0
            why, self.why, self.dropped = self.why, {}, 0
            self.closed = True  # an export that ends after this line is not counted again
        # a collector that surely fails (refuses connections) lost those waiting behind too
        failing = trying if trying is not None and trying[1] else None
        if sending:
            late = failing or (f"no answer within {timeout:g} s at exit", False)
            why[late] = why.get(late, 0) + sending
        if unsent:
            never = failing or (f"not sent within {timeout:g} s at exit", True)
            why[never] = why.get(never, 0) + unsent
        told = told_line(why, self.endpoint)
        if told:
            log.warning("%s", told)
        _live.discard(self)


LENGTH_LIMITS = ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT")
"""The SDK's attribute length limits, the first one set winning (as its SpanLimits reads them)."""
_said_cut = False


def _say_content_cut() -> None:
    """Say once, as the export with content starts, that an attribute length limit will cut its
    texts (the SDK cuts every text attribute past it): such spans can't be imported whole."""
    global _said_cut
    for name in LENGTH_LIMITS:
        value = os.environ.get(name, "").strip()
        if not value:
            continue
        if value.isdigit() and not _said_cut:
            _said_cut = True
            log.warning(
                "replayer: %s=%s: the SDK cuts span texts past %s characters, so exported content (messages, "
                "replayer.request/.response) will be cut short and `replayer import otlp` can't bring those calls "
                "back whole (it rebuilds them, marked reconstructed); unset it or raise it for whole spans",
                name, value, value,
            )
        return


def told_line(why: dict[Trouble, int], url: str) -> str | None:
    """The one line on the spans that did not get through, by what is known: those surely not
    exported, and those that may not have been (no answer came), each with why."""
    def listed(sure: bool) -> tuple[int, str]:
        got = [(reason, n) for (reason, s), n in why.items() if s is sure and n]
        text = got[0][0] if len(got) == 1 else "; ".join(f"{reason}: {n}" for reason, n in got)
        return sum(n for _, n in got), text

    (lost, lost_why), (unsure, unsure_why) = listed(True), listed(False)
    if lost and unsure:
        return (f"replayer: {lost} OTLP span(s) were not exported to {url} ({lost_why}), and {unsure} may not "
                f"have been ({unsure_why})")
    if lost:
        return f"replayer: {lost} OTLP span(s) were not exported to {url} ({lost_why})"
    if unsure:
        return f"replayer: {unsure} OTLP span(s) may not have been exported to {url} ({unsure_why})"
    return None


class _Counting:
    """The SDK's exporter with counts: what went out, what failed (and why, for the one warning).
    Its failure log records are kept from the user's output (see _QuietFilter)."""

    def __init__(self, inner: Any, owner: Exporter) -> None:
        self.inner, self.owner = inner, owner

    def export(self, batch: Any) -> Any:
        """The SDK's batch in requests of at most about REQUEST_BYTES: with content, a long
        history's spans are a megabyte each, and a collector refuses a request past its limit
        (the SDK's exporter drops one past 64 MiB whole)."""
        from opentelemetry.sdk.trace.export import SpanExportResult

        result = SpanExportResult.SUCCESS
        for part in _parts(batch):
            sent = self._send(part)
            if sent is not SpanExportResult.SUCCESS:
                result = sent
        return result

    def _send(self, batch: list[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        owner = self.owner
        _quiet.active, _quiet.last, _quiet.trouble, _quiet.owner = True, None, None, owner
        with owner._lock:
            owner.sending += len(batch)
        started = time.monotonic()
        try:
            result = self.inner.export(batch)
            trouble = (_quiet.trouble or _no_answer(time.monotonic() - started)
                       or (_quiet.last or "the collector refused them", True))
        except Exception as e:  # noqa: BLE001
            result, trouble = SpanExportResult.FAILURE, _error_trouble(e)
        finally:
            _quiet.active, _quiet.owner = False, None
        with owner._lock:
            owner.sending -= len(batch)
            owner.resolved += len(batch)
            owner.waiting -= sum(weight(span.attributes or {}) for span in batch)
            owner.trying = None if result is SpanExportResult.SUCCESS else trouble
        if result is not SpanExportResult.SUCCESS:
            owner.drop(len(batch), *trouble)
        return result

    def shutdown(self, *args: Any, **kwargs: Any) -> None:
        _quiet.active = True
        try:
            self.inner.shutdown()
        finally:
            _quiet.active = False

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def weight(attrs: Any) -> int:
    """About how many bytes a span's attributes make."""
    return 256 + sum(len(v) for v in attrs.values() if isinstance(v, str))


def _parts(batch: Any) -> Any:
    """`batch` in runs of spans whose text adds up to about REQUEST_BYTES (a bigger span alone)."""
    part: list[Any] = []
    size = 0
    for span in batch:
        size_of = weight(span.attributes or {})
        if part and size + size_of > REQUEST_BYTES:
            yield part
            part, size = [], 0
        part.append(span)
        size += size_of
    if part:
        yield part


def _flush(provider: Any) -> None:
    """The spans still waiting, sent on this thread (the SDK's force_flush exports on its
    caller's thread), which the closing thread started at its own priority: the SDK's thread
    may run niced (NICE_ENV), and at exit on a busy machine it would not send them in time."""
    provider.force_flush()
    provider.shutdown()


def _lower_priority() -> None:
    """This thread (and the SDK's, which it starts and which inherits it) at a lower CPU priority
    than the agent and the writer: on a busy machine the spans wait, not the agent. Linux only,
    where a thread's nice value is its own (elsewhere `setpriority` would take the id for a
    process's)."""
    nice = environment.value(NICE_ENV)
    if not sys.platform.startswith("linux") or nice <= 0:
        return
    try:
        me = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, me, min(19, os.getpriority(os.PRIO_PROCESS, me) + nice))
    except OSError:
        pass


def close_all(timeout: float = EXIT_SECONDS) -> None:
    """Every exporter's spans out (or counted as dropped), at interpreter exit: called by the
    writer's exit hook once the writers are closed, so their last records' spans are in.
    (An exit hook of this module's own would run before the writer's, or, registered while the
    exit hooks run, an exporter first made at exit, never.)"""
    for exporter in list(_live):
        exporter.close(timeout)
