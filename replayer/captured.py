"""What the agent's thread hands to the writer: bytes and numbers it already has, nothing parsed.

The contract between capture and the writer: the agent's thread puts either a `Captured` or a
`Capturable` (an object that makes its `Captured` later, off the agent's thread: on the writer
process's feeder thread, store/process.py, or the thread writer's own; so reading headers and
joining a stream's chunks cost the agent nothing); the writer reads nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, Protocol, TypeAlias


@dataclass(slots=True)
class Context:
    """The ids `Recorder.conversation(...)` puts in force (a contextvar holds one)."""

    conversation_id: str | None = None
    user_id: str | None = None
    tags: dict[str, Any] | None = None
    trace_id: str | None = None
    parent: tuple[int, int, int] | None = None
    """The caller's OpenTelemetry span when the call was made (trace id, span id, flags): the
    parent of the attempt's OTLP span (otlp/__init__.current_parent; the proxy: `traceparent`)."""


@dataclass(slots=True)
class Captured:
    call_key: str
    attempt: int
    t_start: float
    """Wall-clock seconds when the attempt was sent."""
    endpoint: str = "/v1/messages"
    stream: bool = False
    request_bytes: bytes | None = None
    request_obj: Any = None
    """A request given as a document (`Recorder.record`), instead of bytes."""
    headers: dict[str, str] = field(default_factory=dict)
    """Protocol headers (anthropic-version, anthropic-beta) only; filled by the writer from
    `raw_request_headers` when that is set. Nothing else from the request headers is kept."""
    raw_request_headers: Any = None
    raw_response_headers: Any = None
    """The HTTP library's header objects (their `.raw` is a list of (name, value) bytes), or such
    lists; the writer reads and drops them (they hold credentials)."""
    response_headers: dict[str, str] | None = None
    """The response headers of `wire.RESPONSE_HEADERS` it had (names lowercased, values as
    received); filled by the writer from `raw_response_headers`. None: none were kept."""
    status: int | None = None
    response_bytes: bytes | None = None
    response_obj: Any = None
    """A response given as a document, instead of bytes (`replayer import otlp` of a message a
    stream built): stored as a stream's message is."""
    sse: bytes | None = None
    sse_chunks: list[tuple[int, float]] | None = None
    """For a stream, each chunk of `sse` as it arrived: (the offset in `sse` where it ends, ms
    after the attempt started when it came). The writer turns them into each event's time."""
    chunk_clock: tuple[list[int], list[float], float] | None = None
    """`sse_chunks` as the recording process hands them over: each chunk's size, when it came
    (perf_counter) and when the attempt started; the writer process makes `sse_chunks` of them
    (`event_clock()`). A long answer has hundreds of chunks: the arithmetic is not done under the
    agent's (or the proxy's) GIL."""
    latency_ms: float | None = None
    ttft_ms: float | None = None
    """For a stream: when the chunk with the first content_block_delta arrived."""
    error: dict[str, Any] | None = None
    request_id: str | None = None
    ctx: Context | None = None
    abandoned: bool = False
    turn_id: str | None = None
    """A turn id already given (`replayer import otlp` of replayer's own spans keeps the ids the
    exporting database had): the attempt joins that turn when it exists, else starts it with this
    id. None (every recorded call): the writer makes one."""
    turn_index: int | None = None
    """With `turn_id`: the turn's index in its conversation, as given (None: the next one)."""
    server: tuple[str, int] | None = None
    """(host, port) the attempt was sent to, for the OTLP span; None when not known (`record()`)."""
    caller: int | None = None
    """Which thread (or asyncio task) of the recording process made the call. The writer uses it
    only to tell identical conversations run at once apart (store/threads.py); not stored."""
    copied_from: str | None = None
    """The recorded turn this attempt copies (a fork's turns before its fork point): shown as it
    was recorded, but no money was spent on it now, so it adds to no spend figure."""

    def event_clock(self) -> list[tuple[int, float]] | None:
        """`sse_chunks`, made of `chunk_clock` when the recording process handed that over."""
        clock = self.chunk_clock
        return self.sse_chunks if clock is None else times_of_sizes(*clock)


def connection_closed(body: str, detail: str) -> dict[str, Any]:
    """The error of an answer whose connection broke after its status came (a stream cut by the
    upstream or the network): said in words a user reads, `the connection closed before the
    stream ended` (`body`: "stream", else "answer"), the HTTP library's own kept as its detail
    (httpx's `RemoteProtocolError: peer closed connection without sending complete message body
    (incomplete chunked read)`, aiohttp's `<TransferEncodingError: 400, ...>`, whose 400 nobody
    sent). No status of its own: the attempt's (200) is beside it. The middleware (capture.py)
    and the proxy record it alike, so show, export and the browser say the same for both."""
    return {"type": "connection_error", "message": f"the connection closed before the {body} ended",
            "status": None, "detail": detail}  # fmt: skip


def chunk_times(chunks: list[bytes], times: list[float], p0: float) -> list[tuple[int, float]]:
    """`Captured.sse_chunks` of a stream's chunks and their arrival clock readings, `p0` the
    attempt's start. (`times` may run longer: chunks read after the end aren't the body's.)"""
    return times_of_sizes(list(map(len, chunks)), times, p0)


def times_of_sizes(sizes: list[int], times: list[float], p0: float) -> list[tuple[int, float]]:
    """As `chunk_times`, of the chunks' sizes."""
    return [(end, round((t - p0) * 1000, 3)) for end, t in zip(accumulate(sizes), times, strict=False)]


class Capturable(Protocol):
    """An attempt handed over before its record is made (`capture._Attempt`)."""

    def captured(self) -> Captured:
        """The attempt's record; called once, off the agent's thread (the feeder thread of
        store/process.py, or the thread writer). May raise: the writer
        counts the attempt as failed and logs it."""
        ...


Handoff: TypeAlias = Captured | Capturable
"""What the agent's thread puts on the writer's queue."""
Put: TypeAlias = Callable[[Handoff], None]
"""The writer's `put`: all the middleware needs of it."""
