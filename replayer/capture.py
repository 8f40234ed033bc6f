"""The SDK middleware: what runs on the agent's thread.

It runs once per HTTP attempt inside the SDK's retry loop, so retries, `.stream()`, `.parse()`,
`beta.*` and the tool runner are all seen. On the agent's thread it only gathers bytes the HTTP
layer already holds (the request body as sent, the response body or the stream's chunks as they
pass) and puts them on the writer's queue. A stream is teed: the caller's iteration is untouched,
and the capture is finished when the stream ends, fails, or is closed early (then it is recorded
as far as it got, marked abandoned). Nothing here may raise into the agent: the agent sees
exactly the exceptions it would see without replayer.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

import anthropic

from .captured import Captured, Context

if TYPE_CHECKING:
    from .recorder import Recorder

log = logging.getLogger("replayer")
PROTOCOL_HEADERS = ("anthropic-version", "anthropic-beta")
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


def _trace_id() -> str | None:
    otel = sys.modules.get("opentelemetry.trace")
    if otel is None:
        return None
    try:
        sc = otel.get_current_span().get_span_context()
        return format(sc.trace_id, "032x") if sc.is_valid else None
    except Exception:  # noqa: BLE001
        return None


def _warn(e: BaseException) -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning("replayer: a call could not be captured (%s: %s); the agent is unaffected", type(e).__name__, e)


_DELTA = b"content_block_delta"


class _StreamCapture:
    """Finishes a capture exactly once: at the stream's end, its failure, or its early close.

    Per chunk the agent's thread only appends the chunk to a list; until the first
    content_block_delta arrives it also looks for it (inline in the tee: a method call per chunk
    cost more than the search), to time the first token."""

    __slots__ = ("cap", "put", "p0", "chunks", "done", "is_sse", "gens")

    def __init__(self, cap: Captured, put: Any, p0: float, is_sse: bool):
        self.cap, self.put, self.p0, self.is_sse = cap, put, p0, is_sse
        self.chunks: list[bytes] = []
        self.done = False
        self.gens: list[Any] = []
        """Our generators over the body: a close() made while one of them runs is the HTTP
        library cleaning up a failed read (whose error follows), not the caller giving up."""

    def first_token(self) -> None:
        self.cap.ttft_ms = round((time.perf_counter() - self.p0) * 1000, 3)

    def closed(self) -> None:
        if self.done:  # the usual case: the stream ended (or failed) before the response was closed
            return
        if not any(getattr(g, "gi_running", False) or getattr(g, "ag_running", False) for g in self.gens):
            self.finish(abandoned=True)

    def finish(self, err: BaseException | None = None, *, abandoned: bool = False) -> None:
        if self.done:
            return
        self.done = True
        cap = self.cap
        cap.latency_ms = round((time.perf_counter() - self.p0) * 1000, 3)
        body = b"".join(self.chunks)
        if self.is_sse:
            cap.sse = body
        else:
            cap.response_bytes = body
        if err is not None and not isinstance(err, GeneratorExit):
            cap.error = {"type": "connection_error", "message": f"{type(err).__name__}: {err}", "status": None}
        elif abandoned or isinstance(err, GeneratorExit):
            cap.abandoned = True
        self.put(cap)


def _seek(sc: _StreamCapture, chunk: bytes, tail: bytes) -> bytes | None:
    """Until the first content_block_delta: stamp the first token when `chunk` completes its
    marker and return None, else return the end of the chunk (a marker may be cut in two)."""
    if _DELTA in chunk or (tail and _DELTA in tail + chunk[:32]):
        sc.first_token()
        return None
    return chunk[-32:]


def _tee_sync(http: Any, sc: _StreamCapture) -> None:
    orig_iter, orig_close = http.iter_bytes, http.close

    def tee(*args: Any, **kwargs: Any) -> Any:
        err: BaseException | None = None
        append = sc.chunks.append
        try:
            chunks = orig_iter(*args, **kwargs)
            tail: bytes | None = b"" if sc.is_sse else None
            if tail is not None:
                for chunk in chunks:
                    append(chunk)
                    tail = _seek(sc, chunk, tail)
                    yield chunk
                    if tail is None:
                        break
            for chunk in chunks:
                append(chunk)
                yield chunk
        except BaseException as e:
            err = e
            raise
        finally:
            sc.finish(err)

    def iter_bytes(*args: Any, **kwargs: Any) -> Any:
        gen = tee(*args, **kwargs)
        sc.gens.append(gen)
        return gen

    def close() -> None:
        try:
            orig_close()
        finally:
            sc.closed()

    http.iter_bytes = iter_bytes
    http.close = close


def _tee_async(http: Any, sc: _StreamCapture) -> None:
    orig_iter, orig_close = http.aiter_bytes, http.aclose

    async def tee(*args: Any, **kwargs: Any) -> Any:
        err: BaseException | None = None
        append = sc.chunks.append
        try:
            chunks = orig_iter(*args, **kwargs)
            tail: bytes | None = b"" if sc.is_sse else None
            if tail is not None:
                async for chunk in chunks:
                    append(chunk)
                    tail = _seek(sc, chunk, tail)
                    yield chunk
                    if tail is None:
                        break
            async for chunk in chunks:
                append(chunk)
                yield chunk
        except BaseException as e:
            err = e
            raise
        finally:
            sc.finish(err)

    def aiter_bytes(*args: Any, **kwargs: Any) -> Any:
        gen = tee(*args, **kwargs)
        sc.gens.append(gen)
        return gen

    async def aclose() -> None:
        try:
            await orig_close()
        finally:
            sc.closed()

    http.aiter_bytes = aiter_bytes
    http.aclose = aclose


class RecorderMiddleware(anthropic.Middleware):
    """Installed with `Recorder.wrap(client)` or `Anthropic(middleware=[rec.middleware])`."""

    def __init__(self, recorder: Recorder):
        self.recorder = recorder

    def _start(self, request: Any, endpoint: str) -> Captured:
        ctx = self.recorder._current()
        if (ctx is None or ctx.trace_id is None) and "opentelemetry.trace" in sys.modules:
            trace_id = _trace_id()
            if trace_id:
                ctx = Context(*(ctx.conversation_id, ctx.user_id, ctx.tags) if ctx else (None, None, None), trace_id)
        key = request.options.idempotency_key or uuid.uuid4().hex
        return Captured(
            call_key=key,
            attempt=request.retries_taken,
            t_start=self.recorder._clock(),
            endpoint=endpoint,
            stream=bool(request.stream),
            ctx=ctx,
        )

    def _failed(self, cap: Captured, e: BaseException, p0: float, request: Any) -> None:
        try:
            cap.latency_ms = round((time.perf_counter() - p0) * 1000, 3)
            req = getattr(e, "request", None)
            content = getattr(req, "content", None) if req is not None else None
            if isinstance(content, bytes):
                cap.request_bytes = content
                cap.raw_request_headers = req.headers
            if cap.request_bytes is None:
                cap.request_obj = request.json
            kind = "timeout_error" if isinstance(e, anthropic.APITimeoutError) else "connection_error"
            if not isinstance(e, anthropic.APIConnectionError):
                kind = type(e).__name__
            cap.error = {"type": kind, "message": str(e), "status": None}
            self.recorder._writer.put(cap)
        except Exception as inner:  # noqa: BLE001
            _warn(inner)

    def _answered(self, cap: Captured, resp: Any, p0: float, is_async: bool) -> bool:
        """Fill the capture from a response. True when the body is still to come (a tee is set)."""
        http = resp.http_response
        req = http.request
        cap.request_bytes = req.content
        # the headers as they are (not copied here); the writer picks out the protocol headers
        # and the request id
        cap.raw_request_headers = req.headers
        cap.raw_response_headers = http.headers
        cap.status = http.status_code
        if hasattr(http, "_content"):  # already read: a plain call
            cap.response_bytes = http._content
            cap.latency_ms = round((time.perf_counter() - p0) * 1000, 3)
            self.recorder._writer.put(cap)
            return False
        is_sse = (cap.stream and cap.status < 400) or "event-stream" in http.headers.get("content-type", "")
        sc = _StreamCapture(cap, self.recorder._writer.put, p0, is_sse)
        (_tee_async if is_async else _tee_sync)(http, sc)
        return True

    def handle(self, request: Any, call_next: Any) -> Any:
        endpoint = _turn_endpoint(request)
        if endpoint is None:
            return call_next(request)
        try:
            cap = self._start(request, endpoint)
        except Exception as e:  # noqa: BLE001
            _warn(e)
            return call_next(request)
        p0 = time.perf_counter()
        try:
            resp = call_next(request)
        except BaseException as e:
            self._failed(cap, e, p0, request)
            raise
        try:
            if self._answered(cap, resp, p0, False) and cap.status is not None and cap.status >= 400:
                resp.http_response.read()  # an error body is small and the SDK reads it anyway
        except Exception as e:  # noqa: BLE001
            _warn(e)
        return resp

    async def handle_async(self, request: Any, call_next: Any) -> Any:
        endpoint = _turn_endpoint(request)
        if endpoint is None:
            return await call_next(request)
        try:
            cap = self._start(request, endpoint)
        except Exception as e:  # noqa: BLE001
            _warn(e)
            return await call_next(request)
        p0 = time.perf_counter()
        try:
            resp = await call_next(request)
        except BaseException as e:
            self._failed(cap, e, p0, request)
            raise
        try:
            if self._answered(cap, resp, p0, True) and cap.status is not None and cap.status >= 400:
                await resp.http_response.aread()
        except Exception as e:  # noqa: BLE001
            _warn(e)
        return resp
