"""Reading one `Captured` before it is stored: its protocol headers and request id (the rest of
the headers, which hold credentials, dropped), the caller's ids as text SQLite takes, the
response as received (a stream assembled, an error read from an error body), the user's
redaction, and the log event written for it. Runs on the background writer only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from .. import sse
from ..captured import Captured, Context
from ..wire import PROTOCOL_HEADERS, RESPONSE_HEADERS, TOOL_USE_TYPES
from . import codec
from .agent_ids import SESSION_HEADER, metadata_user, with_session
from .codec import Decoder, loads_or_text

Redact = Callable[[dict[str, Any]], dict[str, Any] | None]
"""The user's redaction hook (`Recorder(redact=...)`): a record in, the record to keep (or None
to keep nothing) out."""

_PROTOCOL = {name.encode(): name for name in PROTOCOL_HEADERS}
_SESSION = SESSION_HEADER.encode()
_RESPONSE = {name.encode(): name for name in RESPONSE_HEADERS}


@dataclass(slots=True)
class Attempt:
    """An attempt as read, ready to be stored."""

    request_obj: Any
    """The request as a document; None when `request_raw` holds it."""
    request_raw: bytes | None
    """The request body as sent (scanned without a full parse)."""
    response: Any
    plain: bool
    """The response was parsed here and holds no float: its parts may be written by orjson."""
    error: dict[str, Any] | None
    unknown_events: list[Any] | None
    """A stream's events of types this version doesn't know, kept as they came."""
    sse: bytes | None = None
    """The stream as received, to keep its events (store/events.py); None for no stream, or when
    the redaction changed the response or error the events would show unredacted."""


def read_headers(captured: Captured) -> None:
    """Keep the protocol headers, the request id and the response's limit and retry headers
    (wire.RESPONSE_HEADERS); drop the raw lists (they hold credentials).
    Claude Code's session header is not kept as a header: it becomes the conversation's session
    tag (see agent_ids)."""
    if captured.raw_request_headers is not None:
        kept: dict[str, str] = {}
        session = None
        for key, value in getattr(captured.raw_request_headers, "raw", captured.raw_request_headers):
            if isinstance(key, bytes):
                low, text = key.lower(), None
            else:  # `Recorder.record(headers=...)` hands text
                low, text = key.lower().encode("latin-1", "replace"), value
            name = _PROTOCOL.get(low)
            if name is not None:
                text = text if text is not None else value.decode("latin-1")
                # a client may send a header as several lines (Go's Header.Add, one per beta): as
                # HTTP says, the same as one line of their values joined by commas
                kept[name] = f"{kept[name]}, {text}" if name in kept else text
            elif low == _SESSION:
                session = codec.readable(text if text is not None else value.decode("latin-1"))
        captured.headers = kept
        captured.raw_request_headers = None
        if session:
            ctx = captured.ctx
            tags = with_session(ctx.tags if ctx else None, session)
            if ctx is None:
                captured.ctx = Context(tags=tags)
            elif tags is not ctx.tags:
                captured.ctx = replace(ctx, tags=tags)
    if captured.raw_response_headers is not None:
        said: dict[str, str] = {}
        for key, value in getattr(captured.raw_response_headers, "raw", captured.raw_response_headers):
            low = key.lower()
            if low == b"request-id":
                captured.request_id = value.decode("latin-1")
            else:
                name = _RESPONSE.get(low)
                if name is not None:
                    text = value.decode("latin-1")
                    said[name] = f"{said[name]}, {text}" if name in said else text
        captured.response_headers = said or None
        captured.raw_response_headers = None


INVALID_RESPONSE = "invalid_response"
"""The error type of a successful status whose body is no JSON."""


def error_from_body(status: int, body: Any, text: str | None) -> dict[str, Any]:
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return {"type": err.get("type"), "message": err.get("message"), "status": status}
    default = {429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
    return {"type": default, "message": (text or "")[:2000], "status": status}


def label(value: Any) -> str | None:
    """A response's model, id or stop reason for its column: a string (a lone surrogate as
    U+FFFD) or a number's text; anything else (a list, a dict) None. The stored response keeps
    the value as it came."""
    if isinstance(value, str):
        return codec.readable(value)
    if isinstance(value, int | float):
        return str(value)
    return None


def _id_text(value: Any) -> str | None:
    """An id a caller gave (conversation, user, trace) as text SQLite takes."""
    if value is None:
        return None
    return codec.readable(value if isinstance(value, str) else str(value))


def bindable(ctx: Context | None) -> Context | None:
    """The caller's ids as text: an id that is a number, a list or has a lone surrogate would
    otherwise cost its record (SQLite can't bind it)."""
    if ctx is None:
        return None
    ids = (ctx.conversation_id, ctx.user_id, ctx.trace_id)
    if all(v is None or (isinstance(v, str) and v.isascii()) for v in ids):
        return ctx
    conv, user, trace = (_id_text(v) for v in ids)
    return replace(ctx, conversation_id=conv, user_id=user, trace_id=trace)


def read(captured: Captured, decoder: Decoder, redact: Redact | None) -> Attempt | None:
    """Read `captured` (its headers and ids in place) and the response it holds, then redact.
    None when the redaction kept nothing."""
    read_headers(captured)
    captured.ctx = bindable(captured.ctx)

    # the response, as received
    response: Any = None
    plain = False
    error = captured.error
    unknown_events = None
    if captured.sse is not None:
        assembled = sse.assemble(captured.sse)
        response = assembled.message
        unknown_events = assembled.unknown_events or None
        if assembled.error and not error:
            error = assembled.error
        if assembled.complete or assembled.error:
            # closed after its message_stop, or its error event: nothing was cut off by the
            # reader (the SDK stops reading at an error event and closes the response)
            captured.abandoned = False
    elif captured.response_obj is not None:
        response = captured.response_obj
    elif captured.response_bytes is not None:
        text = captured.response_bytes.decode("utf-8", "replace")
        try:
            response = decoder.loads(text)
            plain = not decoder.floats
        except ValueError:
            response = None
        if captured.status is not None and captured.status >= 400 and not error:
            error = error_from_body(captured.status, response, text)
        elif response is None and not error and not captured.abandoned:
            # a success whose body is no JSON (a gateway's HTML page, a cut body): the agent got
            # no message, so this is no clean turn; its text is kept in the error (a body the
            # reader left unread or cut short itself is an abandoned attempt, not this)
            error = {"type": INVALID_RESPONSE, "message": f"the response is not JSON: {text[:2000]}",
                     "status": captured.status}  # fmt: skip

    request_obj = captured.request_obj
    request_raw = captured.request_bytes if request_obj is None else None
    if redact is not None:
        ctx = captured.ctx
        request_text = request_raw.decode("utf-8", "surrogateescape") if request_raw is not None else "null"
        record: dict[str, Any] = {
            "request": request_obj if request_obj is not None else loads_or_text(request_text),
            "request_headers": dict(captured.headers),
            "response_headers": dict(captured.response_headers or {}),
            "response": response,
            "error": error,
            "status": captured.status,
            "conversation_id": ctx.conversation_id if ctx else None,
            "user_id": ctx.user_id if ctx else None,
        }
        shown = _shown(response, error) if captured.sse else None
        kept = redact(record)
        if kept is None:
            return None
        if shown is not None and _shown(kept.get("response"), kept.get("error")) != shown:
            captured.sse = None  # the events hold what the hook took out: keep none (replay builds them)
        plain = False
        request_obj, request_raw = kept.get("request"), None
        response, error = kept.get("response"), kept.get("error")
        captured.headers = kept.get("request_headers") or {}
        captured.response_headers = kept.get("response_headers") or None
    return Attempt(request_obj, request_raw, response, plain, error, unknown_events, captured.sse or None)


def _shown(response: Any, error: Any) -> str:
    """What a stream's events show, to tell whether a redaction changed it."""
    return codec.canon([response, error])


def event(
    captured: Captured,
    turn_id: str,
    conversation_id: str,
    body: dict[str, Any],
    model: str | None,
    usage: Any,
    stop_reason: str | None,
    response: Any,
    error: dict[str, Any] | None,
) -> dict[str, Any]:
    """The attempt's log line (`Recorder(log_events=True)`): ids, tokens, cost, the tools called."""
    from ..pricing import default_table

    usage = usage if isinstance(usage, dict) else {}
    tool_calls = []
    if isinstance(response, dict):
        for block in response.get("content") or ():
            if isinstance(block, dict) and block.get("type") in TOOL_USE_TYPES:
                inp = block.get("input")
                tool_calls.append(
                    {"name": block.get("name"), "input_keys": sorted(inp) if isinstance(inp, dict) else []}
                )
    ctx = captured.ctx
    return {
        "event_type": "replayer.call",
        "trace_id": ctx.trace_id if ctx else None,
        "conversation_id": conversation_id,
        "turn_id": turn_id,
        "attempt": captured.attempt,
        "user_id": (ctx.user_id if ctx else None) or metadata_user(body.get("metadata")).user,
        "model": model,
        "input_tokens": usage.get("input_tokens"),
        "output_tokens": usage.get("output_tokens"),
        "cache_read_tokens": usage.get("cache_read_input_tokens"),
        "cache_write_tokens": usage.get("cache_creation_input_tokens"),
        "latency_ms": captured.latency_ms,
        "stop_reason": stop_reason,
        "tool_calls": tool_calls,
        "cost_usd": default_table().cost(usage, model) if usage else None,
        "error": error,
    }
