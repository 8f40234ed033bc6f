"""One proxied Messages call as the proxy saw it, handed to the writer as it was received
(`ProxiedCall`), and the map that ties a client's retries to the call they repeat (`Retries`).

As in the SDK middleware (capture.py), the event loop only keeps bytes it already has and
reads the clock: the response's chunks are kept as they came off the wire (still compressed, if
the upstream compressed them), and `captured()`, called on the writer's side, joins and decodes
them and builds the `Captured`. That is also where a call is tied to the call its retry repeats
(a digest of its body, which grows with the history: not on the way to the upstream, where it
would add to the time to first token), in the order calls end: a retry's try before it has
ended, and been handed over, before the retry is sent. So the loop's cost per chunk is two list
appends: the chunk, and a clock reading (when it came, for the stream's event times and its
first token, found on the writer's side: bodies.py).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

import orjson

from ..bodies import received
from ..bounded import BoundedDict
from ..captured import Captured, Context

RETRY_WINDOW = 900.0
"""Seconds a call stays joinable by its retries: the SDKs' backoff is seconds, and a retry of a
request that timed out comes after the timeout (ten minutes by default)."""


class Retries:
    """Which call a retry repeats: an SDK's retry carries `x-stainless-retry-count: n` (n > 0)
    and the same body as the try before it. Asked on the writer's side only (one thread, in the
    order calls end: see the module's docstring). First tries are remembered by a digest of their
    body (bounded: at most `limit` bodies, each for RETRY_WINDOW seconds). Several calls may
    send the same body (agents running the same eval at temperature 0): each is kept, and a
    retry goes to one whose last try failed (an answered call is never retried) and that was not
    yet retried that many times: the one that came over the same client connection if there is
    one (an SDK retries on its own connection, or a new one when that one broke), else the oldest."""

    PER_BODY = 64
    """Calls kept per body: the oldest are forgotten first."""

    def __init__(self, limit: int = 10_000) -> None:
        self.calls: BoundedDict[bytes, list[list[Any]]] = BoundedDict(limit)
        """Body digest -> its calls, oldest first: [call key, attempts seen, when last seen,
        client connection, answered]."""

    def call_key(
        self, body: bytes, retry_count: str | None, caller: int | None = None, answered: bool = False
    ) -> tuple[str, int]:
        """The call this request belongs to and its attempt number (`answered`: this attempt
        succeeded, so no retry follows it)."""
        try:
            attempt = max(0, int(retry_count)) if retry_count else 0
        except ValueError:
            attempt = 0
        digest = hashlib.blake2b(body, digest_size=16).digest()
        now = time.monotonic()
        calls = self.calls.get(digest)
        if calls is None:
            calls = self.calls[digest] = []
        if attempt > 0:
            calls[:] = self._live(calls, now)
            open_ = [c for c in calls if c[1] < attempt and not c[4]]
            call = next((c for c in open_ if caller is not None and c[3] == caller), open_[0] if open_ else None)
            if call is not None:
                call[1], call[2], call[4] = attempt, now, answered
                return call[0], attempt
        key = uuid.uuid4().hex
        calls.append([key, attempt, now, caller, answered])
        # the calls past their window go only when a retry looks or the list is full: a first try
        # (most requests) doesn't walk the list (up to PER_BODY long for a body many agents send)
        if len(calls) > self.PER_BODY:
            calls[:] = self._live(calls, now)
            if len(calls) > self.PER_BODY:
                del calls[0]
        return key, attempt

    @staticmethod
    def _live(calls: list[list[Any]], now: float) -> list[list[Any]]:
        return [c for c in calls if now - c[2] < RETRY_WINDOW]


def _trace_parent(headers: list[tuple[bytes, bytes]]) -> tuple[int, int, int] | None:
    """The client's span of a W3C `traceparent` header, when it sent one: (trace id, span id,
    flags), the parent of the attempt's OTLP span (its trace id is the record's trace id)."""
    for name, value in headers:
        if name.lower() == b"traceparent":
            parts = value.decode("latin-1").strip().split("-")
            if len(parts) >= 4 and len(parts[1]) == 32 and parts[1] != "0" * 32:
                try:
                    trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3][:2], 16)
                except ValueError:
                    return None
                return (trace_id, span_id, flags) if span_id else None
    return None


class ProxiedCall:
    """A Messages call through the proxy, put on the writer when it ends (`captured()` runs
    there). Filled in by the proxy's handler as the exchange goes."""

    __slots__ = ("retries", "retry_count", "t_start", "endpoint", "tags", "request_bytes", "request_headers",
                 "response_headers", "status", "chunks", "times", "p0", "p1", "error", "abandoned", "encoding",
                 "server", "caller")

    def __init__(self, retries: Retries, retry_count: str | None, endpoint: str, tags: dict[str, Any] | None,
                 body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.retries, self.retry_count = retries, retry_count
        """The proxy's map of calls, and the request's x-stainless-retry-count: read by `captured()`."""
        self.endpoint, self.tags = endpoint, tags
        self.request_bytes, self.request_headers = body, headers
        self.t_start = time.time()
        self.p0 = time.perf_counter()
        self.p1 = 0.0
        self.response_headers: list[tuple[bytes, bytes]] | None = None
        self.status: int | None = None
        self.chunks: list[bytes] = []
        self.times: list[float] = []
        """When each chunk came (perf_counter), for a stream's event times."""
        self.error: dict[str, Any] | None = None
        self.abandoned = False
        self.encoding = ""
        """The response's content-encoding: the chunks are decoded on the writer's side."""
        self.server: tuple[str, int] | None = None
        """The upstream's (host, port), for the OTLP span (set by the proxy)."""
        self.caller: int | None = None
        """The client connection it came over (`Captured.caller`; set by the proxy)."""

    def answered(self, status: int, headers: list[tuple[bytes, bytes]], encoding: str) -> None:
        self.status, self.response_headers, self.encoding = status, headers, encoding

    def chunk(self, data: bytes) -> None:
        """A chunk of the response, as it came, and when (the writer finds the first token in them)."""
        self.chunks.append(data)
        self.times.append(time.perf_counter())

    def failed(self, kind: str, message: str) -> None:
        self.error = {"type": kind, "message": message, "status": None}

    def end(self) -> None:
        self.p1 = time.perf_counter()

    def client_left(self) -> None:
        """The client hung up before the answer was whole. When its SDK said its read timeout
        (x-stainless-read-timeout, else x-stainless-timeout) and nothing came for that long (since
        the request came, or the latest chunk), its read timed out: a timeout_error, as the
        middleware records the same SDK's APITimeoutError (the upstream was too slow for the
        client). Otherwise the client gave up for its own reasons (a cancelled task, a closed
        stream, Ctrl-C): abandoned, as the middleware records that too."""
        timeout = _read_timeout(self.request_headers)
        now = time.perf_counter()
        since = self.times[-1] if self.times else self.p0
        # the client's timer starts as it finishes sending, a little before the proxy has read the
        # request: a hang-up a tenth short of the timeout after it is that timeout
        if timeout is not None and now - since >= timeout * 0.9:
            where = "mid-stream" if self.status is not None else "before any answer"
            self.failed("timeout_error", f"replayer proxy: the client's read timed out ({timeout:g} s) {where}")
        else:
            self.abandoned = True

    # -- on the writer's side -----------------------------------------------------------------
    def captured(self) -> Captured:
        answered = self.status is not None and 200 <= self.status < 300 and self.error is None and not self.abandoned
        call_key, attempt = self.retries.call_key(self.request_bytes, self.retry_count, self.caller, answered)
        headers = self.response_headers or []
        content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"").decode("latin-1")
        is_sse = "event-stream" in content_type
        got = received(self.encoding, self.chunks, self.times)
        self.chunks, self.times = [], []
        if got.problem and self.error is None:
            self.error = {"type": "decode_error", "message": f"replayer proxy: {got.problem}", "status": self.status}
        tags = self.tags
        parent = _trace_parent(self.request_headers)
        trace_id = format(parent[0], "032x") if parent else None
        record = Captured(
            call_key=call_key,
            attempt=attempt,
            t_start=self.t_start,
            endpoint=self.endpoint,
            stream=is_sse or _asks_stream(self.request_bytes),
            ctx=Context(tags=dict(tags) if tags else None, trace_id=trace_id, parent=parent)
            if tags or parent
            else None,
            request_bytes=self.request_bytes,
            raw_request_headers=self.request_headers,
            raw_response_headers=headers,
            status=self.status,
            latency_ms=round((self.p1 - self.p0) * 1000, 3),
            error=self.error,
            abandoned=self.abandoned and self.error is None,
            server=self.server,
            caller=self.caller,
        )
        if self.status is None:  # no answer came: nothing to keep but the error
            return record
        # a stream's bytes are assembled by the writer (sse.py); an error answer to a stream
        # request is a plain JSON body, as in the middleware
        setattr(record, "sse" if is_sse else "response_bytes", got.body)
        if is_sse:
            record.chunk_clock = got.clock(self.p0)
            record.ttft_ms = got.ttft_ms(self.p0)
        return record


def _read_timeout(headers: list[tuple[bytes, bytes]]) -> float | None:
    """The read timeout the client's SDK said it waits (seconds), if it said one."""
    said = dict((k.lower(), v) for k, v in headers)
    for name in (b"x-stainless-read-timeout", b"x-stainless-timeout"):
        try:
            timeout = float(said[name])
        except (KeyError, ValueError):
            continue
        if timeout > 0 and timeout == timeout:  # (not NaN)
            return timeout
    return None


def _asks_stream(body: bytes) -> bool:
    """Whether the request asked for a stream (read only when the answer was no stream: an
    error, or none at all)."""
    if b'"stream"' not in body:
        return False
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(doc, dict) and doc.get("stream") is True
