"""One proxied Messages call as the proxy saw it, handed to the writer as it was received
(`ProxiedCall`), and the map that ties a client's retries to the call they repeat (`Retries`).

As in the SDK middleware (capture.py), the event loop only keeps bytes it already has and
reads the clock: the response's chunks are kept as they came off the wire (still compressed, if
the upstream compressed them), and `captured()`, called on the writer's side, joins and decodes
them and builds the `Captured`. That is also where a call is tied to the call its retry repeats
(a digest of its body, which grows with the history: not on the way to the upstream, where it
would add to the time to first token), in the order calls end: a retry's try before it has
ended, and been handed over, before the retry is sent. So the loop's cost per chunk is two list
appends (the chunk, and a clock reading: when it came, for the stream's event times), plus,
until the first content_block_delta, a search for it (to time the first token).
"""

from __future__ import annotations

import hashlib
import time
import uuid
import zlib
from typing import Any

import orjson

from ..bounded import BoundedDict
from ..captured import Captured, Context

_DELTA = b"content_block_delta"

RETRY_WINDOW = 900.0
"""Seconds a call stays joinable by its retries: the SDKs' backoff is seconds, and a retry of a
request that timed out comes after the timeout (ten minutes by default)."""


def decoder_for(encoding: str) -> Any:
    """A decompressor object (`.decompress(bytes)`) for a content-encoding, or None when this
    Python can't decode it (the proxy then asks the upstream only for encodings it can)."""
    encoding = encoding.strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return _Deflate()
    if encoding == "br":
        try:
            import brotli  # type: ignore[import-not-found,import-untyped,unused-ignore]
        except ImportError:
            return None
        d = brotli.Decompressor()
        # google's Brotli names it process(); brotlicffi (and its `brotli` alias) decompress()
        return d if hasattr(d, "decompress") else _Process(d)
    if encoding == "zstd":
        try:
            from compression import zstd  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            return None
        return zstd.ZstdDecompressor()
    if encoding in ("identity", ""):
        return _Identity()
    return None


class _Process:
    """A decompressor whose method is `process` (google's Brotli) as one with `decompress`."""

    def __init__(self, d: Any) -> None:
        self.decompress = d.process


class _Identity:
    def decompress(self, data: bytes) -> bytes:
        return data


class _Deflate:
    """HTTP's "deflate" is a zlib stream, but some servers send raw deflate: try both."""

    def __init__(self) -> None:
        self.d: Any = None

    def decompress(self, data: bytes) -> bytes:
        if self.d is None:
            self.d = zlib.decompressobj(zlib.MAX_WBITS)
            try:
                return bytes(self.d.decompress(data))
            except zlib.error:
                self.d = zlib.decompressobj(-zlib.MAX_WBITS)
        return bytes(self.d.decompress(data))


_decodable: dict[str, bool] = {}


def decodable(accept_encoding: str) -> str:
    """The client's Accept-Encoding cut to the encodings the record can be decoded from."""
    kept = []
    for part in accept_encoding.split(","):
        name = part.split(";", 1)[0].strip().lower()
        ok = _decodable.get(name)
        if ok is None and len(_decodable) < 64:
            ok = _decodable[name] = decoder_for(name) is not None
        if name and ok:
            kept.append(part.strip())
    return ", ".join(kept) or "identity"


def decode(encoding: str, body: bytes) -> bytes:
    """The body as it was before the upstream compressed it (a chain like "gzip, br" undone in
    reverse order). ValueError when it can't be."""
    decoded, problem = decode_chunks(encoding, [body])
    if problem:
        raise ValueError(problem)
    return b"".join(decoded)


def decode_chunks(encoding: str, chunks: list[bytes]) -> tuple[list[bytes], str | None]:
    """What each compressed chunk decoded to (in order, the body; a stream's events are timed by
    where each chunk ends in it), as far as they decode, and what stopped the decoding (None when
    nothing did). Chunks no decoder here can read are kept as they came."""
    names = [e.strip() for e in reversed(encoding.split(",")) if e.strip()]
    decoders = [decoder_for(name) for name in names]
    if None in decoders:
        name = names[decoders.index(None)]
        return list(chunks), f"content-encoding {name!r} can't be decoded here: the body is kept as it came"
    out: list[bytes] = []
    try:
        for chunk in chunks:
            for d in decoders:
                chunk = bytes(d.decompress(chunk))
            out.append(chunk)
    except Exception as e:  # a corrupt body: each library raises its own error
        problem = f"the {encoding} body could not be decoded ({type(e).__name__}: {e})"
        return out, problem + ": kept as far as it decoded"
    return out, None


class Retries:
    """Which call a retry repeats: an SDK's retry carries `x-stainless-retry-count: n` (n > 0)
    and the same body as the try before it. Asked on the writer's side only (one thread, in the
    order calls end: see the module's docstring). First tries are remembered by a digest of their
    body (bounded: at most `limit` bodies, each for RETRY_WINDOW seconds). Several calls may
    send the same body (agents running the same eval at temperature 0): each is kept, and a
    retry goes to the oldest of them not yet retried that many times."""

    PER_BODY = 64
    """Calls kept per body: the oldest are forgotten first."""

    def __init__(self, limit: int = 10_000) -> None:
        self.calls: BoundedDict[bytes, list[list[Any]]] = BoundedDict(limit)
        """Body digest -> its calls, oldest first: [call key, attempts seen, when last seen]."""

    def call_key(self, body: bytes, retry_count: str | None) -> tuple[str, int]:
        """The call this request belongs to and its attempt number."""
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
            for call in calls:
                if call[1] < attempt:
                    call[1], call[2] = attempt, now
                    return call[0], attempt
        key = uuid.uuid4().hex
        calls.append([key, attempt, now])
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
                 "response_headers", "status", "chunks", "times", "p0", "p1", "p_first", "error", "abandoned",
                 "encoding", "sse", "cut", "server", "caller")

    def __init__(self, retries: Retries, retry_count: str | None, endpoint: str, tags: dict[str, Any] | None,
                 body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.retries, self.retry_count = retries, retry_count
        """The proxy's map of calls, and the request's x-stainless-retry-count: read by `captured()`."""
        self.endpoint, self.tags = endpoint, tags
        self.request_bytes, self.request_headers = body, headers
        self.t_start = time.time()
        self.p0 = time.perf_counter()
        self.p1 = 0.0
        self.p_first: float | None = None
        self.response_headers: list[tuple[bytes, bytes]] | None = None
        self.status: int | None = None
        self.chunks: list[bytes] = []
        self.times: list[float] = []
        """When each chunk came (perf_counter), for a stream's event times."""
        self.error: dict[str, Any] | None = None
        self.abandoned = False
        self.encoding = ""
        """The response's content-encoding: the chunks are decoded on the writer's side."""
        self.sse: Any = None
        """For an event stream: False once its first token is timed; else a decoder of the
        compressed chunks for the search (None when the body is plain)."""
        self.cut: bytes | None = None
        """The end of a chunk that ended mid-line: the marker may be cut in two."""
        self.server: tuple[str, int] | None = None
        """The upstream's (host, port), for the OTLP span (set by the proxy)."""
        self.caller: int | None = None
        """The client connection it came over (`Captured.caller`; set by the proxy)."""

    def answered(self, status: int, headers: list[tuple[bytes, bytes]], content_type: str, encoding: str) -> None:
        self.status, self.response_headers = status, headers
        self.encoding = encoding
        if "event-stream" in content_type:
            self.sse = decoder_for(encoding) if encoding else None
        else:
            self.sse = False

    def chunk(self, data: bytes) -> None:
        """A chunk of the response, as it came, and when. Until the first content_block_delta, look
        for it."""
        self.chunks.append(data)
        self.times.append(time.perf_counter())
        if self.sse is False:
            return
        try:
            text = data if self.sse is None else bytes(self.sse.decompress(data))
        except Exception:  # a corrupt chunk: the client still gets it; the record says so (captured())
            self.sse = False
            return
        if not text:  # a compressed chunk that decoded to nothing yet
            return
        cut = self.cut
        if text.find(_DELTA) >= 0 or (cut is not None and (cut + text[:32]).find(_DELTA) >= 0):
            self.p_first = self.times[-1]
            self.sse = False
            return
        self.cut = None if text[-1:] == b"\n" else text[-32:]

    def failed(self, kind: str, message: str) -> None:
        self.error = {"type": kind, "message": message, "status": None}

    def end(self) -> None:
        self.p1 = time.perf_counter()

    # -- on the writer's side -----------------------------------------------------------------
    def captured(self) -> Captured:
        call_key, attempt = self.retries.call_key(self.request_bytes, self.retry_count)
        headers = self.response_headers or []
        content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"").decode("latin-1")
        is_sse = "event-stream" in content_type
        chunks, times, self.chunks, self.times = self.chunks, self.times, [], []
        problem = None
        if self.encoding and chunks:
            chunks, problem = decode_chunks(self.encoding, chunks)
            times = times[: len(chunks)]  # a corrupt body: the chunks that decoded
        body = b"".join(chunks)
        if problem and self.error is None:
            self.error = {"type": "decode_error", "message": f"replayer proxy: {problem}", "status": self.status}
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
        setattr(record, "sse" if is_sse else "response_bytes", body)
        if is_sse:
            record.chunk_clock = (list(map(len, chunks)), times[: len(chunks)], self.p0)
        if is_sse and self.p_first is not None:
            record.ttft_ms = round((self.p_first - self.p0) * 1000, 3)
        return record


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
