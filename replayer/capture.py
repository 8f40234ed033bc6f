"""The SDK middleware: what runs on the agent's thread.

It runs once per HTTP attempt inside the SDK's retry loop, so retries, `.stream()`, `.parse()`,
`beta.*` and the tool runner are all seen. On the agent's thread it only reads the clocks and
the context and puts on the writer's queue what the HTTP layer already holds (the response, which
holds the request as sent; for a stream, its chunks as they pass): the writer reads them. A
stream is teed: the caller's iteration is untouched,
and the capture is finished when the stream ends, fails, or is closed early (then it is recorded
as far as it got, marked abandoned). Nothing here may raise into the agent: the agent sees
exactly the exceptions it would see without replayer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import anthropic
import httpx2

from . import context
from .autorecord import REPLAY_ENV, RUN_ENV
from .bodies import received
from .captured import Captured, Context, Put, connection_closed
from .otlp import current_parent
from .store import writer as writer_module
from .upstream import PROXIED_ENV, proxied
from .wire import RECORDED_HEADER

log = logging.getLogger("replayer")
_warned = False


_endpoints: dict[tuple[str, str], str | None] = {}


def _turn_endpoint(request: Any) -> str | None:
    """The endpoint of a Messages call, None for others (count_tokens and batches are not
    turns). Remembered per method and URL: this runs on the agent's thread for every call."""
    options = request.options
    key = (options.method, options.url)
    got = _endpoints.get(key, False)
    if got is not False:
        return got  # type: ignore[return-value]
    endpoint = str(key[1]).split("?", 1)[0]
    path = endpoint.rstrip("/")
    is_turn = str(key[0]).lower() == "post" and (path.endswith("/v1/messages") or path == "/messages")
    if len(_endpoints) < 1000:
        _endpoints[key] = endpoint if is_turn else None
    return endpoint if is_turn else None


def _server(req: Any) -> tuple[str, int] | None:
    """(host, port) the attempt went to (its HTTP request's URL), for its OTLP span; through
    `replayer record`'s proxy, the upstream that proxy goes on to (upstream.PROXIED_ENV)."""
    try:
        url = req.url
        server = url.host, url.port or _PORTS[url.scheme]
    except Exception:  # noqa: BLE001 - a URL without a host (a mocked transport): no server attributes
        return None
    return _proxied.get(server, server) if _proxied else server


_PORTS = {"https": 443, "http": 80}
_proxied = proxied(os.environ.get(PROXIED_ENV))
"""Set by `record` before the program starts: read once, not per call."""


def _task() -> int:
    """The asyncio task making an async call (the thread, under another event loop such as trio)."""
    try:
        return id(asyncio.current_task())
    except RuntimeError:
        return threading.get_ident()


def _warn(e: BaseException) -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning("replayer: a call could not be captured (%s: %s); the agent is unaffected", type(e).__name__, e)




def _environment_lookup() -> Callable[[], Any]:
    """A function that tells whether `replayer record` runs this process (its run id is in the
    environment), asked at every call. `os.environ.get` of a missing name raises and catches a
    KeyError inside, ~10 us on the agent's thread in a streamed call (its code is cold there);
    the dictionary behind `os.environ`, which it keeps up to date, answers in C."""
    data, encode = getattr(os.environ, "_data", None), getattr(os.environ, "encodekey", None)
    if isinstance(data, dict) and encode is not None:
        return partial(data.get, encode(RUN_ENV))
    return partial(os.environ.get, RUN_ENV)


_under_record = _environment_lookup()


def _mark(options: Any) -> None:
    """Add RECORDED_HEADER to the attempt's headers (when running under `replayer record`). On
    the attempt's own copy of the options (the SDK copies them per attempt), not with
    `request.copy()`, which deep-copies the whole message history on the agent's thread."""
    given = options.headers
    options.headers = {**given, RECORDED_HEADER: "1"} if isinstance(given, Mapping) else {RECORDED_HEADER: "1"}


_replayed = bool(os.environ.get(REPLAY_ENV))
"""Calls are answered from a recording (`replayer replay` or `fork` runs this process, or a
cassette replays in it: `replaying`): a recorder's middleware passes them through, recording
nothing. The answers are the recording's and cost nothing; a fork's live calls are recorded once,
by the fork, as sent."""


def replaying(on: bool) -> bool:
    """Set whether calls are answered from a recording (`_replayed`); the setting before."""
    global _replayed
    before, _replayed = _replayed, on
    return before


_GAVE_UP = (GeneratorExit, asyncio.CancelledError, KeyboardInterrupt)
"""What ends a stream's read because its reader stopped, not because the stream failed: a
close, a cancelled task (a timeout), Ctrl-C. The record is marked abandoned, with no error."""


class _Attempt:
    """One HTTP attempt as the agent's thread saw it: the HTTP response (which holds the request
    as sent), the SDK's few scalars and three clock readings. The writer turns it into a
    `Captured` (`captured()`), so reading headers, joining chunks and building the record cost
    the agent's thread nothing.

    It must not hold the SDK's request object: that holds the SDK's own deep copy of every
    message sent, and keeping a few dozen of those alive until the writer runs made the
    garbage collector's work in the agent's loop grow by a tenth."""

    __slots__ = ("key", "attempt", "stream", "http", "ctx", "t_start", "p0", "p1", "endpoint", "caller")

    def __init__(self, request: Any, http: Any, ctx: Context | None, t_start: float, p0: float, endpoint: str,
                 caller: int):
        self.key, self.attempt, self.stream = request.options.idempotency_key, request.retries_taken, request.stream
        self.http, self.ctx, self.t_start, self.p0, self.endpoint = http, ctx, t_start, p0, endpoint
        self.caller = caller
        self.p1 = 0.0

    def _base(self, req: Any, response_headers: Any, status: int) -> Captured:
        """The record's fields every attempt has: `req`, the HTTP request as sent."""
        return Captured(
            call_key=self.key or uuid.uuid4().hex,
            attempt=self.attempt,
            t_start=self.t_start,
            endpoint=self.endpoint,
            stream=bool(self.stream),
            ctx=self.ctx,
            request_bytes=req.content,
            # the headers as they are: the writer picks out the protocol headers and the
            # request id, and drops the rest
            raw_request_headers=req.headers,
            raw_response_headers=response_headers,
            status=status,
            latency_ms=round((self.p1 - self.p0) * 1000, 3),
            server=_server(req),
            caller=self.caller,
        )

    def captured(self) -> Captured:
        http = self.http
        record = self._base(http.request, http.headers, http.status_code)
        record.response_bytes = http._content
        self.http = None  # let go of the HTTP library's objects as soon as they are read
        return record


class _StreamCapture(_Attempt):
    """A body still to come (a stream, or an error answer not read yet), teed below the HTTP
    library: the response's byte stream is replaced by a `_SyncTee` or `_AsyncTee` over it, which
    passes each chunk on as it came off the connection. Per chunk the agent's thread appends the
    chunk to a list and a clock reading to another; the writer (`captured()`) undoes a
    content-encoding, times the stream's events and its first token by them (bodies.py).

    Replacing the stream, one attribute the response already has, is the cheapest tee on the
    agent's thread: the SDK reads the response as it would (its byte iterator, its decoder), and
    nothing is put back at the end. The capture keeps the request and headers, not the response,
    which holds the tee: the two would form a cycle that only the garbage collector frees,
    keeping the request as sent (the whole history) alive until then.

    Finishes exactly once: at the stream's end, its failure, or the response's close (then
    recorded as far as it got, marked abandoned)."""

    __slots__ = ("put", "perf", "chunks", "times", "n", "done", "read", "err", "err_kind", "abandoned", "req",
                 "headers", "status", "cut")  # fmt: skip

    def __init__(self, request: Any, http: Any, ctx: Context | None, t_start: float, p0: float, endpoint: str,
                 caller: int, put: Put, is_async: bool, perf: Callable[[], float] = time.perf_counter):
        # _Attempt.__init__'s fields, set here: every call the agent's thread makes costs it
        # microseconds in a streamed call, whose code is cold by then
        self.key, self.attempt, self.stream = request.options.idempotency_key, request.retries_taken, request.stream
        self.ctx, self.t_start, self.p0, self.endpoint = ctx, t_start, p0, endpoint
        self.caller, self.p1, self.put, self.perf = caller, 0.0, put, perf
        self.req, self.headers, self.status = http.request, http.headers, http.status_code
        self.chunks: list[bytes] = []
        self.times: list[float] = []
        """When each chunk arrived (the middleware's `perf` clock), for the stream's event times."""
        self.n = 0
        """How many chunks the body had when it ended (a read after the end is not its)."""
        self.done = self.read = self.abandoned = False
        self.err: str | None = None
        self.err_kind = "connection_error"
        self.cut = False
        """The connection broke while the body came (not a timeout): said in words (connection_closed)."""
        http.stream = (_AsyncTee if is_async else _SyncTee)(http.stream, self)
        _open.add(self)

    def finish(self, err: BaseException | None = None, *, abandoned: bool = False) -> None:
        """The agent's thread's part of the end: a clock reading and a hand-off."""
        if self.done:
            return
        self.p1 = self.perf()
        self.done = True
        _open.discard(self)
        self.n = len(self.chunks)
        if err is not None and not isinstance(err, _GAVE_UP):
            # its text, not the exception: the traceback would keep the agent's frames (and all
            # they hold) alive until the writer runs
            self.err = f"{type(err).__name__}: {err}"
            if isinstance(err, httpx2.TimeoutException | TimeoutError):
                self.err_kind = "timeout_error"  # as the SDK (APITimeoutError) and the proxy name it
            else:
                # what the connection raises as the body comes: closed without the rest
                # (RemoteProtocolError: peer closed connection ...) or reset (ReadError)
                self.cut = isinstance(err, httpx2.RemoteProtocolError | httpx2.NetworkError)
        self.abandoned = abandoned or isinstance(err, _GAVE_UP)
        self.put(self)

    def unread_error(self) -> bool:
        """An error status whose body nobody read: the SDK closes it unread before a retry."""
        return not self.read and self.status >= 400

    # -- off the agent's thread (the writer's feeder thread, or the thread writer) ------------
    def captured(self) -> Captured:
        headers = self.headers
        is_sse = (bool(self.stream) and self.status < 400) or "event-stream" in headers.get("content-type", "")
        record = self._base(self.req, headers, self.status)
        self.req = None
        got = received(headers.get("content-encoding"), self.chunks[: self.n], self.times)
        self.chunks, self.times = [], []
        if is_sse:
            record.sse = got.body
            record.chunk_clock = got.clock(self.p0)
            if self.stream:
                record.ttft_ms = got.ttft_ms(self.p0)
        else:
            record.response_bytes = got.body
        if self.cut:
            record.error = connection_closed("stream" if is_sse else "answer", self.err or "")
        elif self.err is not None:
            record.error = {"type": self.err_kind, "message": self.err, "status": None}
        elif got.problem is not None:
            record.error = {"type": "decode_error", "message": f"replayer: {got.problem}", "status": self.status}
        elif self.abandoned:
            record.abandoned = True
        return record


class _SyncTee(httpx2.SyncByteStream):
    """The response's byte stream, teed into its `_StreamCapture`."""

    def __init__(self, inner: Any, capture: _StreamCapture) -> None:
        self.inner, self.capture = inner, capture

    def __iter__(self) -> Any:
        capture = self.capture
        capture.read = True
        append, clock, stamp = capture.chunks.append, capture.perf, capture.times.append
        err: BaseException | None = None
        try:
            for chunk in self.inner:
                append(chunk)
                stamp(clock())
                yield chunk
        except BaseException as e:
            err = e
            raise
        finally:
            capture.finish(err)

    def close(self) -> None:
        capture = self.capture
        try:
            if capture.unread_error():
                # read the error body through the tee first, to record it; a failure to read it
                # is recorded, and not the agent's concern (it would not have read it)
                try:
                    for _chunk in self:
                        pass
                except Exception:  # noqa: BLE001, S110
                    pass
            self.inner.close()
        finally:
            capture.finish(abandoned=True)  # (nothing, when the body ended before: the usual case)

    def __del__(self) -> None:
        _dropped(self.capture)


class _AsyncTee(httpx2.AsyncByteStream):
    """`_SyncTee` for an async client."""

    def __init__(self, inner: Any, capture: _StreamCapture) -> None:
        self.inner, self.capture = inner, capture

    async def __aiter__(self) -> Any:
        capture = self.capture
        capture.read = True
        append, clock, stamp = capture.chunks.append, capture.perf, capture.times.append
        err: BaseException | None = None
        try:
            async for chunk in self.inner:
                append(chunk)
                stamp(clock())
                yield chunk
        except BaseException as e:
            err = e
            raise
        finally:
            capture.finish(err)

    async def aclose(self) -> None:
        capture = self.capture
        try:
            if capture.unread_error():  # as in _SyncTee.close
                try:
                    async for _chunk in self:
                        pass
                except Exception:  # noqa: BLE001, S110
                    pass
            await self.inner.aclose()
        finally:
            capture.finish(abandoned=True)

    def __del__(self) -> None:
        _dropped(self.capture)


_open: set[_StreamCapture] = set()
"""Bodies still to come. A stream the program still holds, unread, when it exits (a module-level
`for event in stream: break`) is finished at exit before the writers' last flush (abandoned, as
far as it got): its generator is only finalized after that, while the interpreter shuts down,
when the writer's thread can't be started again to take it."""


def _finish_open() -> None:
    for capture in list(_open):
        capture.finish(abandoned=True)


writer_module.BEFORE_EXIT.append(_finish_open)


def _dropped(capture: _StreamCapture) -> None:
    """A response let go of unread and unclosed (the agent raised between create() and reading
    the stream): recorded as far as it got, abandoned, as a close is. Usually when the agent's
    last reference goes (the tee is in no cycle); never an error of the agent's. Not while the
    interpreter shuts down (a module-level stream never read): the writer is closed by then, and
    starting its thread again would never return."""
    if not capture.done and not sys.is_finalizing():
        try:
            capture.finish(abandoned=True)
        except Exception:  # noqa: BLE001, S110 - (at interpreter exit, say): the agent goes on
            pass


class RecorderMiddleware(anthropic.Middleware):
    """Installed with `Recorder.wrap(client)` or `Anthropic(middleware=[rec.middleware])`.

    On the agent's thread it reads the clocks, the context and three of the SDK's scalars, and
    hands the writer the HTTP response (teed, for a body still to come); the writer reads it
    (`_Attempt.captured`).

    Built from what it needs: `put`, which hands a record to the writer, `clock`, the wall
    clock for when an attempt started (`Recorder._clock`), and `perf`, the interval clock its
    latency and a stream's chunk times are read on (`Recorder._perf`, `time.perf_counter`). The
    demo runs both on its simulated time (demo.py).

    While calls are replayed (`_replayed`) it records nothing: each is passed on untouched."""

    def __init__(self, put: Put, clock: Callable[[], float], perf: Callable[[], float] = time.perf_counter):
        self.put = put
        self.clock = clock
        self.perf = perf

    def _context(self) -> Context | None:
        """The conversation in force, with the application's current OpenTelemetry span (only
        when the application loaded OpenTelemetry): its trace id when none was given, and the
        span itself as the parent of the attempt's OTLP span."""
        ctx = context.current.get()
        parent = current_parent()
        if parent is not None:
            ctx = (
                Context(ctx.conversation_id, ctx.user_id, ctx.tags, ctx.trace_id or format(parent[0], "032x"), parent)
                if ctx
                else Context(trace_id=format(parent[0], "032x"), parent=parent)
            )
        return ctx

    def _failed(self, request: Any, endpoint: str, ctx: Context | None, t_start: float, p0: float,
                e: BaseException) -> None:
        try:
            record = Captured(
                call_key=request.options.idempotency_key or uuid.uuid4().hex,
                attempt=request.retries_taken,
                t_start=t_start,
                endpoint=endpoint,
                stream=bool(request.stream),
                ctx=ctx,
                latency_ms=round((self.perf() - p0) * 1000, 3),
            )
            req: Any = getattr(e, "request", None)
            content = getattr(req, "content", None) if req is not None else None
            if isinstance(content, bytes):
                record.request_bytes = content
                record.raw_request_headers = req.headers
                record.server = _server(req)
            if record.request_bytes is None:
                record.request_obj = request.json
            if isinstance(e, _GAVE_UP):
                # the agent gave up (a task cancelled, asyncio.wait_for's timeout, Ctrl+C) before
                # any answer: abandoned, as when it gives up on a body, not an API error
                record.abandoned = True
            else:
                kind = "timeout_error" if isinstance(e, anthropic.APITimeoutError) else "connection_error"
                if not isinstance(e, anthropic.APIConnectionError):
                    kind = type(e).__name__
                record.error = {"type": kind, "message": str(e), "status": None}
            self.put(record)
        except Exception as inner:  # noqa: BLE001
            _warn(inner)

    def _answered(self, request: Any, endpoint: str, ctx: Context | None, t_start: float, p0: float, resp: Any,
                  is_async: bool) -> None:
        """Hand over an answered attempt: now, or, when its body is still to come, once the tee
        has seen it end."""
        http = resp.http_response
        put = self.put
        # who made the call (the writer tells identical conversations run at once apart by it)
        caller = _task() if is_async else threading.get_ident()
        if hasattr(http, "_content"):  # already read: a plain call
            attempt = _Attempt(request, http, ctx, t_start, p0, endpoint, caller)
            attempt.p1 = self.perf()
            put(attempt)
            return
        _StreamCapture(request, http, ctx, t_start, p0, endpoint, caller, put, is_async, self.perf)

    def handle(self, request: Any, call_next: Any) -> Any:
        if _replayed:
            return call_next(request)
        options = request.options
        endpoint: Any = _endpoints.get((options.method, options.url), False)  # _turn_endpoint, inline
        if endpoint is False:
            endpoint = _turn_endpoint(request)
        if endpoint is None:
            return call_next(request)
        try:
            ctx = self._context()
            t_start = self.clock()
            if _under_record():
                _mark(options)
        except Exception as e:  # noqa: BLE001
            _warn(e)
            return call_next(request)
        p0 = self.perf()
        try:
            resp = call_next(request)
        except BaseException as e:
            self._failed(request, endpoint, ctx, t_start, p0, e)
            raise
        try:
            self._answered(request, endpoint, ctx, t_start, p0, resp, False)
        except Exception as e:  # noqa: BLE001
            _warn(e)
        return resp

    async def handle_async(self, request: Any, call_next: Any) -> Any:
        if _replayed:
            return await call_next(request)
        options = request.options
        endpoint: Any = _endpoints.get((options.method, options.url), False)  # _turn_endpoint, inline
        if endpoint is False:
            endpoint = _turn_endpoint(request)
        if endpoint is None:
            return await call_next(request)
        try:
            ctx = self._context()
            t_start = self.clock()
            if _under_record():
                _mark(options)
        except Exception as e:  # noqa: BLE001
            _warn(e)
            return await call_next(request)
        p0 = self.perf()
        try:
            resp = await call_next(request)
        except BaseException as e:
            self._failed(request, endpoint, ctx, t_start, p0, e)
            raise
        try:
            self._answered(request, endpoint, ctx, t_start, p0, resp, True)
        except Exception as e:  # noqa: BLE001
            _warn(e)
        return resp
