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
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import anthropic

from . import context
from .autorecord import RUN_ENV
from .captured import Captured, Context, Put
from .otlp import current_parent
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
    """(host, port) the attempt went to (its HTTP request's URL), for its OTLP span."""
    try:
        url = req.url
        return url.host, url.port or _PORTS[url.scheme]
    except Exception:  # noqa: BLE001 - a URL without a host (a mocked transport): no server attributes
        return None


_PORTS = {"https": 443, "http": 80}


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


_DELTA = b"content_block_delta"
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

    def _base(self) -> Captured:
        http = self.http
        req = http.request
        record = Captured(
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
            raw_response_headers=http.headers,
            status=http.status_code,
            latency_ms=round((self.p1 - self.p0) * 1000, 3),
            server=_server(req),
            caller=self.caller,
        )
        self.http = None  # let go of the HTTP library's objects as soon as they are read
        return record

    def captured(self) -> Captured:
        body = self.http._content
        record = self._base()
        record.response_bytes = body
        return record


class _StreamCapture(_Attempt):
    """A streamed body, teed: the HTTP response's byte iterator and close are replaced by this
    object's (bound methods, so installing the tee builds no closures). Finishes exactly once:
    at the stream's end, its failure, or its early close. Per chunk the agent's thread only
    appends the chunk to a list and a clock reading to another (when it came: the writer makes
    each event's time of them); until the first content_block_delta arrives it also looks for
    it, to time the first token: inline (a function call per chunk cost more than the search), with
    `find` (cheaper than `in`), and across two chunks only when the first ended mid-line."""

    __slots__ = ("put", "chunks", "times", "n", "done", "gens", "p_first", "err", "abandoned", "orig_iter",
                 "orig_close", "names", "before")

    def __init__(self, request: Any, http: Any, ctx: Context | None, t_start: float, p0: float, endpoint: str,
                 caller: int, put: Put, is_async: bool):
        # _Attempt.__init__'s fields, set here: every call the agent's thread makes costs it
        # microseconds in a streamed call, whose code is cold by then
        self.key, self.attempt, self.stream = request.options.idempotency_key, request.retries_taken, request.stream
        self.http, self.ctx, self.t_start, self.p0, self.endpoint = http, ctx, t_start, p0, endpoint
        self.caller, self.p1, self.put = caller, 0.0, put
        self.chunks: list[bytes] = []
        self.times: list[float] = []
        """When each chunk arrived (perf_counter), for the stream's event times."""
        self.n = 0
        """How many chunks the body had when it ended: a tee generator still iterated after the
        end (the tee itself is taken off at the end) appends chunks that aren't this body's."""
        self.done = self.abandoned = False
        self.p_first: float | None = None
        self.err: str | None = None
        self.gens: list[Any] = []
        """Our generators over the body: a close() made while one of them runs is the HTTP
        library cleaning up a failed read (whose error follows), not the caller giving up."""
        own = http.__dict__
        if is_async:
            self.names = ("aiter_bytes", "aclose")
            self.before = (own.get("aiter_bytes"), own.get("aclose"))
            self.orig_iter, self.orig_close = http.aiter_bytes, http.aclose
            http.aiter_bytes, http.aclose = self._aiter_bytes, self._aclose
        else:
            self.names = ("iter_bytes", "close")
            self.before = (own.get("iter_bytes"), own.get("close"))
            self.orig_iter, self.orig_close = http.iter_bytes, http.close
            http.iter_bytes, http.close = self._iter_bytes, self._close

    def closed(self) -> None:
        if self.done:  # the usual case: the stream ended (or failed) before the response was closed
            return
        if not any(getattr(g, "gi_running", False) or getattr(g, "ag_running", False) for g in self.gens):
            self.finish(abandoned=True)

    def finish(self, err: BaseException | None = None, *, abandoned: bool = False) -> None:
        """The agent's thread's part of the end: a clock reading and a hand-off."""
        if self.done:
            return
        self.p1 = time.perf_counter()
        self.done = True
        self.n = len(self.chunks)
        if err is not None and not isinstance(err, _GAVE_UP):
            # its text, not the exception: the traceback would keep the agent's frames (and all
            # they hold) alive until the writer runs
            self.err = f"{type(err).__name__}: {err}"
        self.abandoned = abandoned or isinstance(err, _GAVE_UP)
        self.gens = []
        # Take the tee off the response before the hand-off (the writer then lets go of it). A
        # later read goes straight to the HTTP library, and the response no longer refers to
        # this capture: the two would form a cycle that only the garbage collector frees, keeping
        # the request as sent (the whole history) alive until then.
        own = self.http.__dict__
        (iter_name, close_name), (iter_before, close_before) = self.names, self.before
        if iter_before is None:
            own.pop(iter_name, None)
        else:
            own[iter_name] = iter_before
        if close_before is None:
            own.pop(close_name, None)
        else:
            own[close_name] = close_before
        self.put(self)

    # -- the tee, installed on the HTTP response ------------------------------------------------
    def _iter_bytes(self, *args: Any, **kwargs: Any) -> Any:
        gen = self._tee(args, kwargs)
        self.gens.append(gen)
        return gen

    def _tee(self, args: Any, kwargs: Any) -> Any:
        err: BaseException | None = None
        append, clock, stamp = self.chunks.append, time.perf_counter, self.times.append
        try:
            chunks = self.orig_iter(*args, **kwargs)
            if self.stream:  # only a stream's events have a first token
                cut = None  # the end of a chunk that ended mid-line: a marker may be cut in two
                for chunk in chunks:
                    append(chunk)
                    stamp(clock())
                    if chunk.find(_DELTA) >= 0 or (cut is not None and (cut + chunk[:32]).find(_DELTA) >= 0):
                        if not self.done:
                            self.p_first = self.times[-1]
                        yield chunk
                        break
                    cut = None if chunk[-1:] == b"\n" else chunk[-32:]
                    yield chunk
            for chunk in chunks:
                append(chunk)
                stamp(clock())
                yield chunk
        except BaseException as e:
            err = e
            raise
        finally:
            self.finish(err)

    def _unread_error(self) -> bool:
        """An error status whose body nobody read: the SDK closes it unread before a retry."""
        return not self.done and not self.gens and self.http.status_code >= 400  # http: kept until done

    def _close(self) -> None:
        try:
            if self._unread_error():
                # read the error body through the tee first, to record it; a failure to read it
                # is recorded, and not the agent's concern (it would not have read it)
                try:
                    for _chunk in self._iter_bytes():
                        pass
                except Exception:  # noqa: BLE001, S110
                    pass
            self.orig_close()
        finally:
            self.closed()

    def _aiter_bytes(self, *args: Any, **kwargs: Any) -> Any:
        gen = self._atee(args, kwargs)
        self.gens.append(gen)
        return gen

    async def _atee(self, args: Any, kwargs: Any) -> Any:
        err: BaseException | None = None
        append, clock, stamp = self.chunks.append, time.perf_counter, self.times.append
        try:
            chunks = self.orig_iter(*args, **kwargs)
            if self.stream:
                cut = None
                async for chunk in chunks:
                    append(chunk)
                    stamp(clock())
                    if chunk.find(_DELTA) >= 0 or (cut is not None and (cut + chunk[:32]).find(_DELTA) >= 0):
                        if not self.done:
                            self.p_first = self.times[-1]
                        yield chunk
                        break
                    cut = None if chunk[-1:] == b"\n" else chunk[-32:]
                    yield chunk
            async for chunk in chunks:
                append(chunk)
                stamp(clock())
                yield chunk
        except BaseException as e:
            err = e
            raise
        finally:
            self.finish(err)

    async def _aclose(self) -> None:
        try:
            if self._unread_error():  # as in _close
                try:
                    async for _chunk in self._aiter_bytes():
                        pass
                except Exception:  # noqa: BLE001, S110
                    pass
            await self.orig_close()
        finally:
            self.closed()

    # -- off the agent's thread (the writer's feeder thread, or the thread writer) ------------
    def captured(self) -> Captured:
        http = self.http
        is_sse = (bool(self.stream) and http.status_code < 400) or "event-stream" in http.headers.get(
            "content-type", ""
        )
        record = self._base()
        chunks = self.chunks[: self.n]
        body = b"".join(chunks)
        times, self.chunks, self.times = self.times, [], []
        if is_sse:
            record.sse = body
            record.chunk_clock = (list(map(len, chunks)), times[: len(chunks)], self.p0)
            if self.p_first is not None:
                record.ttft_ms = round((self.p_first - self.p0) * 1000, 3)
        else:
            record.response_bytes = body
        if self.err is not None:
            record.error = {"type": "connection_error", "message": self.err, "status": None}
        elif self.abandoned:
            record.abandoned = True
        return record


class RecorderMiddleware(anthropic.Middleware):
    """Installed with `Recorder.wrap(client)` or `Anthropic(middleware=[rec.middleware])`.

    On the agent's thread it reads the clocks, the context and three of the SDK's scalars, and
    hands the writer the HTTP response (teed, for a body still to come); the writer reads it
    (`_Attempt.captured`).

    Built from what it needs: `put`, which hands a record to the writer, and `clock`, the wall
    clock for when an attempt started (`Recorder._clock`: the demo shifts it)."""

    def __init__(self, put: Put, clock: Callable[[], float]):
        self.put = put
        self.clock = clock

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
                latency_ms=round((time.perf_counter() - p0) * 1000, 3),
            )
            req: Any = getattr(e, "request", None)
            content = getattr(req, "content", None) if req is not None else None
            if isinstance(content, bytes):
                record.request_bytes = content
                record.raw_request_headers = req.headers
                record.server = _server(req)
            if record.request_bytes is None:
                record.request_obj = request.json
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
            attempt.p1 = time.perf_counter()
            put(attempt)
            return
        _StreamCapture(request, http, ctx, t_start, p0, endpoint, caller, put, is_async)

    def handle(self, request: Any, call_next: Any) -> Any:
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
        p0 = time.perf_counter()
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
        p0 = time.perf_counter()
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
