"""Recorder: the one object a user creates. Cheap to import (no SDK, no Textual at load)."""

from __future__ import annotations

import json
import math
import numbers
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from . import context
from .autorecord import REPLAY_ENV
from .captured import Captured, Context
from .otlp import current_parent
from .otlp import problem as otlp_problem
from .otlp import setting as otlp_setting
from .paths import default_db_path
from .store.codec import new_id, storable
from .store.frames import shared_head, shared_tail
from .store.process import make_writer

if TYPE_CHECKING:
    from .capture import RecorderMiddleware

BEHIND = 500
"""`record()` keeps within about twice this many records (or BEHIND_BYTES) of the writer: a loop
of record() calls, an import of history, runs far ahead of the writer, and without a bound it
held every record in memory until the end (100,000 calls: 299 MB, then 22 s of flush). Every
BEHIND records it starts a flush and waits for the one it started before, so the writer always
has the latest records to work on meanwhile. The middleware never waits: an agent's call is
never slowed by recording."""
BEHIND_BYTES = 64 << 20
BEHIND_WAIT_SECONDS = 30.0
"""The longest `record()` waits for one flush (a writer that answers none is not waited for again)."""


class Recorder:
    """Records every Messages API call of the clients it wraps into one SQLite file.

    >>> rec = Recorder("agent.db")
    >>> client = rec.wrap(anthropic.Anthropic())
    >>> with rec.conversation("conv_abc123", user_id="user_789"):
    ...     client.messages.create(...)
    """

    def __init__(
        self,
        db: str | os.PathLike[str] | None = None,
        *,
        redact: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
        log_events: bool = False,
        max_pending: int = 20_000,
        otlp: bool = False,
        otlp_content: bool = False,
    ):
        """`otlp`: also send each recorded attempt as an OpenTelemetry span (GenAI semantic
        conventions) to the endpoint the standard OTEL_EXPORTER_OTLP_* variables name, off the
        agent's thread; `otlp_content` (or OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true)
        puts the messages, system prompt and tools in it too, after `redact`. Needs
        `pip install 'replayer[otlp]'` (else a RuntimeError saying so, here)."""
        # fixed now: an agent that changes its working folder later still records here
        self.path = Path(os.path.abspath(Path(db).expanduser())) if db is not None else default_db_path()
        export = otlp_setting(otlp, otlp_content)
        if export is not None and (missing := otlp_problem()):
            raise RuntimeError(f"replayer: {missing}")
        self._last_clean = b""
        """The last request `record()` serialised that held no null (see `_dumps`; one request's
        bytes kept alive)."""
        self._writer = make_writer(
            str(self.path), redact=redact, log_events=log_events, max_pending=max_pending, otlp=export
        )
        self._middleware: RecorderMiddleware | None = None
        self._closed = False
        self._clock: Callable[[], float] = time.time
        """Wall clock for `started_at`."""
        self._perf: Callable[[], float] = time.perf_counter
        """Interval clock for latencies and a stream's chunk times, taken when the middleware is
        made (the demo runs both clocks on its simulated time: demo.py)."""
        self._put = self._put_bytes = 0
        """Records and bytes `record()` put since it last started a flush."""
        self._started: Any = None
        """That flush (see BEHIND)."""
        self._stalled = 0
        """Records to put before waiting for the writer again, after it could not write (a locked
        or unwritable database): it is not waited for meanwhile, its records buffered as ever."""

    # -- installing ---------------------------------------------------------------------------
    @property
    def middleware(self) -> RecorderMiddleware:
        """An `anthropic.Middleware` for `Anthropic(middleware=[...])` or `AsyncAnthropic`."""
        if self._middleware is None:
            from .capture import RecorderMiddleware

            self._middleware = RecorderMiddleware(self._writer.put, lambda: self._clock(), self._perf)
            self._writer.start()  # installed: records will come
        return self._middleware

    def wrap(self, client: Any) -> Any:
        """A copy of `client` (Anthropic or AsyncAnthropic) that records every call."""
        current = tuple(getattr(client, "middleware", ()) or ())
        if self.middleware in current:
            return client
        return client.with_options(middleware=[*current, self.middleware])

    # -- ids ----------------------------------------------------------------------------------
    @contextmanager
    def conversation(
        self,
        conversation_id: str | None = None,
        *,
        user_id: str | None = None,
        tags: dict[str, Any] | None = None,
        trace_id: str | None = None,
    ) -> Iterator[str]:
        """Calls inside belong to this conversation (also in threads and tasks started inside)."""
        context.inherit_in_threads()
        cid = conversation_id or new_id("conv_")
        token = context.current.set(Context(cid, user_id, dict(tags) if tags else None, trace_id))
        try:
            yield cid
        finally:
            context.current.reset(token)

    # -- the hook for other loops -------------------------------------------------------------
    def record(
        self,
        request: dict[str, Any] | str | bytes,
        response: Any = None,
        *,
        error: Any = None,
        latency_ms: float | None = None,
        conversation_id: str | None = None,
        user_id: str | None = None,
        started_at: float | datetime | None = None,
        headers: dict[str, str] | None = None,
        status: int | None = None,
    ) -> None:
        """Record a call made some other way.

        `request` is the JSON body as sent: a dict (serialised here, so changing your history
        afterwards doesn't change what was recorded) or the exact bytes/str you sent.
        `response` is the message as a dict, JSON text/bytes, or an SDK object; `error` an
        exception or {type, message, status}. `started_at` is when the call was sent: seconds
        since the epoch or an aware `datetime` (a naive one is refused: its zone would be a guess).
        `headers` are the request's headers: only the protocol ones (anthropic-version,
        anthropic-beta) are kept; Claude Code's `x-claude-code-session-id` becomes a conversation tag.

        An argument of the wrong type raises TypeError (a value out of range ValueError) here,
        on the caller's thread; only the database's own trouble is kept off it (logged, and the
        record waits in the buffer)."""
        if isinstance(request, str):
            body = _utf8(request)
        elif isinstance(request, bytes):
            body = request
        elif isinstance(request, dict):
            body, null_free = _dumps(request, self._last_clean)
            if null_free:
                self._last_clean = body
        else:
            raise TypeError(f"record(): request must be a dict or the JSON sent (str or bytes), not {_kind(request)}")
        # cheap checks first (a float is the usual latency): this runs on the caller's thread
        t_start = self._clock() if started_at is None else _epoch_seconds(started_at)
        if latency_ms is not None:
            if type(latency_ms) is not float:
                latency_ms = _number("latency_ms", latency_ms)
            if not 0 <= latency_ms < math.inf:  # NaN fails this too
                raise ValueError(f"record(): latency_ms must be 0 or more milliseconds, not {latency_ms!r}")
        if conversation_id is not None and not isinstance(conversation_id, str):
            raise TypeError(f"record(): conversation_id must be a str, not {_kind(conversation_id)}")
        if user_id is not None and not isinstance(user_id, str):
            raise TypeError(f"record(): user_id must be a str, not {_kind(user_id)}")
        if status is not None and type(status) is not int and (not isinstance(status, int) or isinstance(status, bool)):
            raise TypeError(f"record(): status must be an int (the HTTP status), not {_kind(status)}")
        if headers is not None and not (
            isinstance(headers, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
        ):
            raise TypeError(f"record(): headers must be a dict of str to str, not {_kind(headers)}")
        if response is not None and not isinstance(response, (dict, str, bytes)) and not hasattr(response, "to_dict"):
            raise TypeError(
                "record(): response must be the message as a dict, JSON text or bytes, or an SDK object, "
                f"not {_kind(response)}"
            )
        if error is not None and not isinstance(error, (BaseException, dict)):
            raise TypeError(
                f"record(): error must be an exception or a dict {{type, message, status}}, not {_kind(error)}"
            )
        if _answered_from_recording():
            return  # its record is in the recording already (as the middleware passes such calls through)
        ctx = context.current.get()
        parent = current_parent()
        if conversation_id or user_id or parent:
            ctx = Context(
                conversation_id or (ctx.conversation_id if ctx else None),
                user_id or (ctx.user_id if ctx else None),
                ctx.tags if ctx else None,
                (ctx.trace_id if ctx else None) or (format(parent[0], "032x") if parent else None),
                parent,
            )
        captured = Captured(
            call_key=uuid.uuid4().hex,
            attempt=0,
            t_start=t_start,
            stream=bool(request.get("stream")) if isinstance(request, dict) else False,
            request_bytes=body,
            # the writer keeps the protocol headers and reads Claude Code's session header (a tag)
            raw_request_headers=list(headers.items()) if headers else None,
            latency_ms=latency_ms,
            ctx=ctx,
        )
        if response is not None:
            if isinstance(response, bytes | str):
                captured.response_bytes = _utf8(response) if isinstance(response, str) else response
            else:
                doc = response.to_dict() if hasattr(response, "to_dict") else response
                captured.response_bytes = _dumps(doc)[0]
            captured.status = status or 200
        if error is not None:
            captured.error = _error_dict(error)
            if captured.error.get("status") is None:  # the status given is this error's, as a caught one carries it
                captured.error["status"] = status
            captured.status = status if status is not None else captured.error.get("status")
        self._writer.put(captured)
        self._put += 1
        self._put_bytes += len(body) + len(captured.response_bytes or b"")
        if self._put >= BEHIND or self._put_bytes >= BEHIND_BYTES:
            self._keep_up()

    def _keep_up(self) -> None:
        """Start a flush, and wait for the one started before it (see BEHIND)."""
        self._stalled = max(0, self._stalled - self._put)
        self._put = self._put_bytes = 0
        before, self._started = self._started, self._writer.flush_started()
        if before is None or self._stalled:
            return
        if not before.done.wait(BEHIND_WAIT_SECONDS) or not before.ok:
            # tried and failed: wait again only once as much again is buffered
            self._stalled = max(BEHIND, self._writer.unwritten)

    # -- lifecycle ----------------------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> bool:
        """Block until everything recorded so far is in the database (False if it can't be)."""
        return self._writer.flush(timeout)

    def close(self, timeout: float | None = 10.0) -> bool:
        """Flush, then leave the `.db` file holding everything (its WAL checkpointed into it) and
        close the connection. False if some records could not be written (they stay buffered)."""
        self._closed = True
        return self._writer.close(timeout)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def dropped(self) -> int:
        """Records lost because the buffer filled while the database couldn't be written."""
        return self._writer.dropped


def _answered_from_recording() -> bool:
    """Calls are answered from a recording (capture._replayed; read here without importing the
    SDK, which a script that only calls record() never needs)."""
    capture = sys.modules.get("replayer.capture")
    return bool(capture._replayed if capture is not None else os.environ.get(REPLAY_ENV))


def _kind(value: Any) -> str:
    return type(value).__name__


def _number(name: str, value: Any) -> float:
    """A real number given for `name` (an int, a float, numpy's), as a float SQLite can bind."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"record(): {name} must be a number, not {_kind(value)}")
    return float(value)


_LAST_EPOCH_SECOND = 253402300799  # 9999-12-31T23:59:59Z, the last second a timestamp can be written as


def _epoch_seconds(started_at: Any) -> float:
    """`started_at` as seconds since the epoch: from a number, or from an aware datetime."""
    if isinstance(started_at, datetime):
        if started_at.utcoffset() is None:
            raise TypeError(
                "record(): started_at is a naive datetime: give an aware one, e.g. "
                "datetime.now(timezone.utc) or dt.replace(tzinfo=timezone.utc), or epoch seconds"
            )
        t = started_at.timestamp()
    elif isinstance(started_at, bool) or not isinstance(started_at, numbers.Real):
        raise TypeError(f"record(): started_at must be epoch seconds or an aware datetime, not {_kind(started_at)}")
    else:
        t = float(started_at)
    if not 0 <= t <= _LAST_EPOCH_SECOND:  # also NaN
        raise ValueError(f"record(): started_at={started_at!r} is not a time since 1970-01-01 UTC (milliseconds?)")
    return t


def _utf8(json_text: str) -> bytes:
    """JSON text as UTF-8; a lone surrogate in it written as its escape (one encode when there is none)."""
    try:
        return json_text.encode("utf-8")
    except UnicodeEncodeError:
        return storable(json_text).encode("utf-8")


_SHARED_MIN = 16384
"""A request this long is searched for nulls only where it differs from the last clean one."""


def _dumps(doc: Any, clean: bytes = b"") -> tuple[bytes, bool]:
    """Compact JSON of a request or response handed to `record()`, and whether it holds no null.

    The snapshot is taken on the caller's thread, so it must be quick: orjson (27 us for a 50 KB
    request here, where json takes 500). But orjson writes NaN and infinities as null, where json (and
    the SDK, which sends with json) keeps them as written: when the output holds a null, the
    document is searched for such a float, and json writes it if one is there. json also takes
    what orjson refuses (non-string keys, huge ints).

    Looking for "null" in 50 KB costs about 40 us here, as much as writing it. An agent's next
    request is its last one with a few messages more, so when `clean` (the last output that held
    no null) shares a long prefix and suffix with this one, only the bytes between them are
    searched (plus three either side, for a null across the edge): the rest are `clean`'s own.

    orjson's output is copied: orjson (3.13 here) hands back its whole write buffer (traced: 4 KiB
    for 100 bytes, 63 KiB for 5-7 KB, 254 KiB for 20 KB), and a snapshot lives on (in the
    writer's queue, and as the writer's candidate for the next request, bounded by length).
    20,000 outputs of 108 bytes kept: 79 MB more resident, against 2 MB copied. The copy costs
    a memcpy."""
    try:
        out = bytes(memoryview(orjson.dumps(doc)))  # a copy to its length: see the docstring
    except TypeError:
        return _json_dumps(doc), False
    if not _has_null(out, clean):
        return out, True
    if _non_finite(doc):
        return _json_dumps(doc), False
    return out, False


def _json_dumps(doc: Any) -> bytes:
    return _utf8(json.dumps(doc, separators=(",", ":"), ensure_ascii=False))


def _has_null(out: bytes, clean: bytes) -> bool:
    """Whether `out` holds b"null", given that `clean` holds none: searched only between the bytes
    they share at the start and at the end (store/frames.py finds those for the writer's pipe
    too), and three either side."""
    n = min(len(out), len(clean))
    if n < _SHARED_MIN:
        return b"null" in out
    start = shared_head(clean, out)
    end = len(out) - shared_tail(clean, out, n - start)
    return out.find(b"null", max(start - 3, 0), min(end + 3, len(out))) >= 0


def _non_finite(doc: Any) -> bool:
    """Whether a NaN or an infinity is anywhere in `doc`'s dicts and lists (walked without recursion)."""
    stack = [doc]
    while stack:
        value = stack.pop()
        kind = type(value)
        if kind is str or kind is int or value is None or kind is bool:
            continue
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
        elif isinstance(value, float) and not math.isfinite(value):
            return True
    return False


def _error_dict(error: Any) -> dict[str, Any]:
    if isinstance(error, dict):
        return {"type": error.get("type"), "message": error.get("message"), "status": error.get("status")}
    status = getattr(error, "status_code", None)
    body = getattr(error, "body", None)
    kind = None
    if isinstance(body, dict):
        inner = body.get("error")
        kind = (inner if isinstance(inner, dict) else body).get("type")
    return {"type": kind or type(error).__name__, "message": str(error), "status": status}
