"""An attempt as an OTLP span: its attributes (names.py), from an export line (store/export.py's
keys), and the span itself, made with the SDK's tracer at the attempt's own start and end times.

Only `span()` touches OpenTelemetry (its `trace` API, imported there): `attributes()` is plain
data, so the import side and the tests can read it without the SDK."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import orjson

from ..store.codec import storable
from ..wire import TOOL_USE_TYPES
from . import names as n

_SCALARS = (str, bool, int, float)
_PARAMS = ((n.REQUEST_MAX_TOKENS, "max_tokens"), (n.REQUEST_TEMPERATURE, "temperature"),
           (n.REQUEST_TOP_P, "top_p"), (n.REQUEST_TOP_K, "top_k"))
"""The convention's request parameters and the request's keys that hold them."""
OWN = (
    (n.TURN_ID, "turn_id"), (n.TURN_INDEX, "index"), (n.ATTEMPT, "attempt"), (n.STARTED_AT, "started_at"),
    (n.LATENCY_MS, "latency_ms"), (n.COST_USD, "cost_usd"), (n.STREAM, "stream"), (n.TTFT_MS, "ttft_ms"),
    (n.STATUS, "status"), (n.REQUEST_ID, "request_id"), (n.ABANDONED, "abandoned"), (n.ENDPOINT, "endpoint"),
    (n.TRACE_ID, "trace_id"), (n.MODEL, "model"), (n.IMPORTED_FROM, "imported_from"),
    (n.PARENT_CONVERSATION_ID, "parent_conversation_id"), (n.COPIED_FROM, "copied_from"),
)
"""replayer's own scalar attributes and the export line's keys they hold (left out when null).
With CONVERSATION_ID (conversation_id), USER_ID (user_id) and the content attributes they give
back every key of the line."""
_PORTS = {"https": 443, "http": 80}


def text(value: Any) -> str:
    """JSON text of a value, as the attributes hold it: compact, non-ASCII kept. By orjson (a
    long history's messages are rebuilt every turn), json for what orjson refuses (an integer
    beyond 64 bits, a lone surrogate)."""
    try:
        return orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):
        return storable(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def attributes(
    line: dict[str, Any],
    *,
    content: bool,
    texts: dict[str, str] | None = None,
    tags: dict[str, Any] | None = None,
    server: tuple[str, int] | None = None,
    messages: str | None = None,
) -> dict[str, Any]:
    """The span attributes of one attempt's export line. `content`: also the messages, system,
    tools, and the line's request, response and the rest as JSON text (names.py). `texts`: the
    exact JSON text of some of the line's values (request, response, ...), as `replayer export`
    wrote them, used for replayer's own content attributes instead of dumping the values again
    (a float keeps its digits). `tags`: the conversation's tags; `server`: (host, port) the
    attempt went to; `messages`: the convention's input messages as JSON text already made
    (otlp/lines.py joins them from each message's converted text), else they are made from the
    request's. Absent values are left out (OpenTelemetry refuses None)."""
    request = line.get("request")
    request = request if isinstance(request, dict) else {}
    response = line.get("response")
    response = response if isinstance(response, dict) else {}
    usage = line.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    error = line.get("error")
    model = request.get("model") if isinstance(request.get("model"), str) else line.get("model")
    out: dict[str, Any] = {n.OPERATION_NAME: n.OPERATION, n.PROVIDER_NAME: n.PROVIDER}
    put = _putter(out)
    put(n.REQUEST_MODEL, model)
    for name, key in _PARAMS:
        put(name, request.get(key))
    stops = request.get("stop_sequences")
    if isinstance(stops, list) and all(isinstance(s, str) for s in stops):
        out[n.REQUEST_STOP_SEQUENCES] = list(stops)
    put(n.RESPONSE_MODEL, response.get("model"))
    put(n.RESPONSE_ID, response.get("id"))
    if isinstance(response.get("stop_reason"), str):
        out[n.RESPONSE_FINISH_REASONS] = [response["stop_reason"]]
    _tokens(out, usage)
    put(n.CONVERSATION_ID, line.get("conversation_id"))
    put(n.USER_ID, line.get("user_id"))
    if server is not None:
        put(n.SERVER_ADDRESS, server[0])
        put(n.SERVER_PORT, server[1])
    if error is not None or (isinstance(line.get("status"), int) and line["status"] >= 400):
        out[n.ERROR_TYPE] = error_type(error, line.get("status"))
    ttft = line.get("ttft_ms")
    if isinstance(ttft, (int, float)) and not isinstance(ttft, bool):
        out[n.RESPONSE_TIME_TO_FIRST_CHUNK] = ttft / 1000
    for name, key in OWN:
        put(name, line.get(key))
    if tags:
        out[n.TAGS] = text(tags)
    if content:
        _content(out, line, request, response, texts or {}, messages)
    return out


def _putter(out: dict[str, Any]) -> Any:
    def put(name: str, value: Any) -> None:
        if isinstance(value, str) and not value.isascii():
            value = _utf8(value)
        if isinstance(value, _SCALARS):
            out[name] = value

    return put


def _utf8(value: str) -> str:
    """A string OTLP can carry: a lone surrogate (valid in JSON, not in UTF-8) as its escape."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _tokens(out: dict[str, Any], usage: dict[str, Any]) -> None:
    """Token counts by the convention: input = all input tokens, cache reads and writes
    included (Anthropic's input_tokens leaves them out; see names.py)."""
    counts = {k: v for k, v in usage.items() if isinstance(v, int) and not isinstance(v, bool)}
    read, wrote = counts.get("cache_read_input_tokens"), counts.get("cache_creation_input_tokens")
    if "input_tokens" in counts:
        out[n.USAGE_INPUT_TOKENS] = counts["input_tokens"] + (read or 0) + (wrote or 0)
    if "output_tokens" in counts:
        out[n.USAGE_OUTPUT_TOKENS] = counts["output_tokens"]
    if read is not None:
        out[n.USAGE_CACHE_READ_INPUT_TOKENS] = read
    if wrote is not None:
        out[n.USAGE_CACHE_CREATION_INPUT_TOKENS] = wrote


def error_type(error: Any, status: Any) -> str:
    """The convention's error.type: the API error's type, else the HTTP status, else "_OTHER"
    (a connection failure's type is the exception's kind, as the recorder stored it)."""
    if isinstance(error, dict):
        kind = error.get("type")
        if isinstance(kind, str) and kind:
            return kind
        if isinstance(error.get("status"), int):
            return str(error["status"])
    if isinstance(status, int) and not isinstance(status, bool):
        return str(status)
    return "_OTHER"


# -- content -----------------------------------------------------------------------------------
_EXACT = (
    (n.REQUEST, "request"),
    (n.RESPONSE, "response"),
    (n.REQUEST_HEADERS, "request_headers"),
    (n.ERROR, "error"),
    (n.UNKNOWN_EVENTS, "unknown_events"),
    (n.USAGE, "usage"),
    (n.RESPONSE_HEADERS, "response_headers"),
)
"""replayer's exact content attributes and the export line's keys they hold. REQUEST and
REQUEST_HEADERS are always written; the others only when the line's value is not null (and
UNKNOWN_EVENTS and RESPONSE_HEADERS not empty): an absent one means null (unknown_events: [],
response_headers: {})."""


def _content(
    out: dict[str, Any], line: dict[str, Any], request: dict[str, Any], response: dict[str, Any],
    texts: dict[str, str], input_messages: str | None,
) -> None:
    system = request.get("system")
    if isinstance(system, str):
        out[n.SYSTEM_INSTRUCTIONS] = text([{"type": "text", "content": system}])
    elif isinstance(system, list):
        out[n.SYSTEM_INSTRUCTIONS] = text([part(b) for b in system])
    messages = request.get("messages")
    if input_messages is not None:
        out[n.INPUT_MESSAGES] = input_messages
    elif isinstance(messages, list):  # each message's text joined, as otlp/lines.py makes them
        out[n.INPUT_MESSAGES] = "[" + ",".join(text(message(m)) for m in messages) + "]"
    if isinstance(response.get("content"), list):
        reply = message({"role": response.get("role") or "assistant", "content": response["content"]})
        reply["finish_reason"] = response.get("stop_reason") or ""
        out[n.OUTPUT_MESSAGES] = text([reply])
    tools = request.get("tools")
    if isinstance(tools, list):
        out[n.TOOL_DEFINITIONS] = text([tool(t) for t in tools])
    for name, key in _EXACT:
        value = line.get(key)
        if key in ("request", "request_headers") or (value is not None and value != [] and value != {}):
            out[name] = texts[key] if key in texts else text(value)


def message(msg: Any) -> dict[str, Any]:
    """An API message in the convention's schema: {role, parts}."""
    if not isinstance(msg, dict):
        return {"role": "user", "parts": [{"type": "text", "content": msg if isinstance(msg, str) else text(msg)}]}
    body = msg.get("content")
    parts = [{"type": "text", "content": body}] if isinstance(body, str) else [part(b) for b in body or ()]
    return {"role": msg.get("role") or "user", "parts": parts}


def part(block: Any) -> dict[str, Any]:
    """A content block as the convention's part: text, tool_call, tool_call_response, reasoning,
    blob/uri for an image; any other block a generic part keeping its type and fields."""
    if not isinstance(block, dict):
        return {"type": "text", "content": block if isinstance(block, str) else text(block)}
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "content": block.get("text")}
    if kind == "thinking":
        return {"type": "reasoning", "content": block.get("thinking")}
    if kind in TOOL_USE_TYPES:
        return {"type": "tool_call", "id": block.get("id"), "name": block.get("name"), "arguments": block.get("input")}
    if isinstance(kind, str) and kind.endswith("tool_result"):
        return {"type": "tool_call_response", "id": block.get("tool_use_id"), "response": block.get("content")}
    if kind == "image" and isinstance(block.get("source"), dict):
        source = block["source"]
        if source.get("type") == "base64":
            return {"type": "blob", "modality": "image", "mime_type": source.get("media_type"),
                    "content": source.get("data")}
        if source.get("type") == "url":
            return {"type": "uri", "modality": "image", "uri": source.get("url")}
    return dict(block)


def tool(definition: Any) -> dict[str, Any]:
    """A tool definition in the convention's schema: a custom tool as {type: function, name,
    description, parameters}; a server tool (a versioned type) as it was given."""
    if not isinstance(definition, dict):
        return {"type": "function", "name": str(definition)}
    if definition.get("type") in (None, "custom"):
        out = {"type": "function", "name": definition.get("name")}
        if "description" in definition:
            out["description"] = definition["description"]
        if "input_schema" in definition:
            out["parameters"] = definition["input_schema"]
        return out
    return dict(definition)


# -- the span ----------------------------------------------------------------------------------
def times_ns(line: dict[str, Any]) -> tuple[int, int] | None:
    """The attempt's start and end (epoch nanoseconds): started_at, started_at + latency."""
    started = line.get("started_at")
    if not isinstance(started, str):
        return None
    try:
        start = datetime.fromisoformat(started.replace("Z", "+00:00"))
    except ValueError:
        return None
    ns = round(start.timestamp() * 1000) * 1_000_000  # the stored time has milliseconds: rounded, no float error
    latency = line.get("latency_ms")
    end = ns + round(latency * 1_000_000) if isinstance(latency, (int, float)) and latency > 0 else ns
    return ns, end


def span(tracer: Any, line: dict[str, Any], attrs: dict[str, Any], parent: tuple[int, int, int] | None) -> Any:
    """Make and end the attempt's span on `tracer` (the SDK's), as a child of `parent` (the
    caller's span at call time: trace id, span id, flags) when there was one; returns it."""
    from opentelemetry import trace

    ctx = None
    if parent is not None:
        trace_id, span_id, flags = parent
        remote = trace.SpanContext(trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(flags))
        ctx = trace.set_span_in_context(trace.NonRecordingSpan(remote))
    start, end = times_ns(line) or (None, None)
    model = attrs.get(n.REQUEST_MODEL)
    name = f"{n.SPAN_NAME_PREFIX} {model}" if model else n.SPAN_NAME_PREFIX
    s = tracer.start_span(name, context=ctx, kind=trace.SpanKind.CLIENT, attributes=attrs, start_time=start)
    if n.ERROR_TYPE in attrs:
        error = line.get("error")
        message = error.get("message") if isinstance(error, dict) else None
        s.set_status(trace.Status(trace.StatusCode.ERROR, message if isinstance(message, str) else None))
    s.end(end_time=end)
    return s
