"""Reading OTLP JSON (what an OpenTelemetry Collector's file exporter writes) into the records
`replayer import otlp` stores: lines, spans, and which spans are GenAI chat calls with content.

The input: one `ExportTraceServiceRequest` per line (resourceSpans / scopeSpans / spans), gzip or
not (sniffed from the magic bytes, not the name), a file or stdin. The OTLP JSON spec writes
trace and span ids as hex; protobuf's own json_format writes them base64: both are read (the
length tells them apart). Integers come as strings (proto3 JSON's int64) or numbers.

A span is a chat call when `gen_ai.operation.name` is "chat", or, in the older form OpenLLMetry
writes, when it has no operation name but `llm.request.type` "chat" or a `gen_ai.system`. What
becomes of it:
- replayer's own span (it carries `replayer.request`): an exact record, every id and value as
  the exporting database held it, so its export line comes out the same (`exact`); one whose
  content an attribute length limit cut short keeps its ids, its request and response rebuilt
  (otlp/rebuild.py), its turn marked reconstructed (`Record.cut`).
- another instrumentation's span with content (the convention's `gen_ai.input.messages`, or
  OpenLLMetry's `gen_ai.prompt.N.*`): a request and response rebuilt as far as the attributes go
  (otlp/rebuild.py), marked reconstructed.
- a chat span without content (exported without --otlp-content, or the instrumentation's
  content capture off), or another provider's: counted and skipped, the closing line says why.

About 620 lines: the whole reading side of one format (lines, ids in both encodings, attribute
values, which span is a chat, and replayer's own spans as exact records), which the import's
reader process runs as one piece.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from datetime import datetime
from operator import attrgetter
from typing import IO, Any, cast

import orjson

from ..captured import Captured, Context
from . import names as n
from .spans import OWN

GZIP_MAGIC = b"\x1f\x8b"
NOT_OTLP_AFTER = 100
"""Lines read without one OTLP document among them: the input is not OTLP JSON (bad input)."""
SOURCE = "otlp"
"""`imported_from` of a reconstructed span's turn."""

# why a chat span was skipped: the key `--json` counts it under, and the closing line's words
NO_CONTENT = "no_content"
OTHER_PROVIDER = "other_provider"
WHY = {
    NO_CONTENT: "no content (exported without --otlp-content, or content capture off)",
    OTHER_PROVIDER: "another provider's",
}


class NotOtlp(Exception):
    """The input is not OTLP JSON at all (bad input: one line, exit 2). The message says what it
    is instead, to follow "X is not OTLP JSON: "."""


class ReplayerExport(NotOtlp):
    """The input is replayer's own export (`replayer export`: one attempt a line), not OTLP."""


EXPORT_KEYS = ("turn_id", "conversation_id", "attempt", "request")
"""Fields every line of `replayer export` has (store/export.py) and an OTLP export has not."""


@dataclass(slots=True)
class Malformed:
    """A line (or a span on it) that could not be read: where, and what is wrong with it."""

    line: int
    what: str
    span: bool = False
    """One span on the line (the line's other spans may have been read), not the whole line."""

    def __str__(self) -> str:
        return f"line {self.line}: {self.what}"


@dataclass(slots=True)
class Span:
    """A span as read: ids in hex, times in ns since the epoch, attributes as Python values."""

    line: int
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    status_code: int
    """0 unset, 1 ok, 2 error."""
    status_message: str


@dataclass(slots=True)
class Record:
    """A chat span made ready to store."""

    line: int
    captured: Captured
    started_at: str
    """ISO-8601 UTC with milliseconds, as the store keeps it (for --since)."""
    exact: bool
    """replayer's own span: every id given; else reconstructed from the convention's attributes."""
    key: str
    """What makes importing twice add nothing: the turn id (exact), else trace id:span id."""
    session: str
    """imported_turns.session_id of a reconstructed turn (its trace id)."""
    imported_from: str | None
    """Exact: the line's imported_from; reconstructed: SOURCE."""
    parent_conversation_id: str | None = None
    unknown_events: list[Any] | None = None
    response_id: str | None = None
    scanned: tuple[Any, ...] | None = None
    """Its request scanned by the reader (otlp/prescan.py), whose bytes it then no longer holds."""
    cut: bool = False
    """replayer's own span whose content was cut short (an attribute length limit where it was
    exported): its ids kept, its request and response rebuilt from what is whole (`exact`)."""

    def wire(self) -> tuple[Any, ...]:
        """The record as plain tuples, for a pipe between processes (readahead.py): pickling the
        dataclasses themselves goes field by field in Python, three times as slow."""
        c = self.captured
        values = list(_CAPTURED_VALUES(c))
        if c.ctx is not None:
            values[_CTX_AT] = _CONTEXT_VALUES(c.ctx)
        out = list(_RECORD_VALUES(self))
        out[_CAPTURED_AT] = values
        return tuple(out)

    @staticmethod
    def from_wire(t: tuple[Any, ...]) -> Record:
        values = t[_CAPTURED_AT]
        if values[_CTX_AT] is not None:
            values[_CTX_AT] = Context(*values[_CTX_AT])
        out = list(t)
        out[_CAPTURED_AT] = Captured(*values)
        return Record(*out)


_CAPTURED_VALUES = attrgetter(*(f.name for f in fields(Captured)))
_CONTEXT_VALUES = attrgetter(*(f.name for f in fields(Context)))
_RECORD_VALUES = attrgetter(*(f.name for f in fields(Record)))
_CTX_AT = [f.name for f in fields(Captured)].index("ctx")
_CAPTURED_AT = [f.name for f in fields(Record)].index("captured")


# -- the input ---------------------------------------------------------------------------------


def open_input(path: str, stdin: IO[bytes] | None = None) -> tuple[IO[bytes], Callable[[], int]]:
    """(the lines to read, how many bytes of the input were read so far: of the compressed file
    for gzip). `path` "-" is stdin. A UTF-8 byte order mark at the start (as some Windows tools
    write) is passed over: JSON parsers refuse it, and the first line would be lost. Raises
    OSError for a file that can't be opened."""
    if path == "-":
        import sys

        raw: Any = stdin if stdin is not None else sys.stdin.buffer
        buffered: Any = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)
        if buffered.peek(2)[:2] == GZIP_MAGIC:
            return _past_bom(cast(IO[bytes], gzip.GzipFile(fileobj=buffered))), lambda: 0
        return _past_bom(buffered), lambda: 0
    with open(path, "rb") as sniff:
        head = sniff.read(2)
    if head == GZIP_MAGIC:
        gz = gzip.open(path, "rb")  # noqa: SIM115 (the caller closes it, and so the file it opened)
        raw = gz.fileobj
        return _past_bom(cast(IO[bytes], gz)), (raw.tell if raw is not None else lambda: 0)
    file = open(path, "rb")  # noqa: SIM115 (the caller closes it)
    return _past_bom(file), file.tell


UTF8_BOM = b"\xef\xbb\xbf"


def _past_bom(stream: Any) -> IO[bytes]:
    """`stream`'s lines, the first one past a UTF-8 byte order mark if it starts with one. Done
    as the first line is read, not by peeking when the input is opened: a gzip stream cut short
    would raise there, and once it has raised it reads as empty (its fault then goes unsaid)."""
    return cast(IO[bytes], _PastBom(stream))


class _PastBom:
    """An input's lines (iterated, and closed), the first without its byte order mark."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.first = True

    def __iter__(self) -> _PastBom:
        return self

    def __next__(self) -> bytes:
        line: bytes = next(self.stream)
        if self.first:
            self.first = False
            if line.startswith(UTF8_BOM):
                return line[len(UTF8_BOM) :]
        return line

    def __enter__(self) -> _PastBom:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.stream.close()


def documents(lines: IO[bytes], malformed: list[Malformed]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, ExportTraceServiceRequest) for each line that holds one; a line that doesn't
    is added to `malformed`. Raises NotOtlp when the first NOT_OTLP_AFTER non-empty lines hold no
    document (or the input ends before one), and gzip's errors as NotOtlp too."""
    found = False
    seen = 0
    number = 0
    first: tuple[int, str] | None = None  # the first line that holds no document, and what it is
    export = False  # ...which is a line of `replayer export`
    try:
        for number, text in enumerate(lines, 1):  # noqa: B007 (read after the loop)
            if not text or text.isspace():  # (isspace stops at the first other byte: no copy of a long line)
                continue
            seen += 1
            try:
                doc = orjson.loads(text)
            except orjson.JSONDecodeError as e:
                what = _not_json(text, e)
                if not found and seen == 1 and b"\x00" in text[:64]:
                    raise NotOtlp(
                        "it is binary data, as a Collector's file exporter writes with format: proto"
                    ) from None
                malformed.append(Malformed(number, what))
                first = first or (number, "is not JSON")
            else:
                if isinstance(doc, dict) and isinstance(doc.get("resourceSpans"), list):
                    found = True
                    yield number, doc
                else:
                    malformed.append(Malformed(number, "not an OTLP trace export (no resourceSpans)"))
                    if first is None:
                        export = isinstance(doc, dict) and all(k in doc for k in EXPORT_KEYS)
                        first = (number, "is JSON with no resourceSpans")
            if not found and seen >= NOT_OTLP_AFTER:
                break
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as e:  # a cut or corrupt gzip stream
        if not found:
            raise NotOtlp(f"cannot read it: {e}") from None
        malformed.append(Malformed(number + 1, f"the input ends early: {e}"))
        return
    if not found and seen:
        if export:
            raise ReplayerExport("its lines are replayer's export (`replayer export`), not OTLP spans")
        line, why = first or (1, "holds no document")
        if seen == 1:
            raise NotOtlp(f"line {line} {why}")
        raise NotOtlp(f"none of its {'first ' if seen >= NOT_OTLP_AFTER else ''}{seen} lines is an OTLP trace export "
                      f"(line {line} {why})")  # fmt: skip


def _not_json(text: bytes, e: Exception) -> str:
    if not text.endswith(b"\n") and "unexpected end" in str(e):
        # the input's last line, cut off: a Collector's file exporter may be writing it now
        return "cut off at the end of the input (still being written? import again once it is whole)"
    return f"not JSON ({str(e).split(':')[0]})"


# -- spans -------------------------------------------------------------------------------------


def spans(number: int, doc: dict[str, Any], malformed: list[Malformed]) -> Iterator[Span]:
    """The spans of one ExportTraceServiceRequest (a span that can't be read is malformed)."""
    for rs in _list(doc.get("resourceSpans")):
        for ss in _list(rs.get("scopeSpans") if isinstance(rs, dict) else None):
            for raw in _list(ss.get("spans") if isinstance(ss, dict) else None):
                try:
                    yield _span(number, raw)
                except (TypeError, ValueError, KeyError, AttributeError) as e:
                    malformed.append(Malformed(number, f"a span that can't be read ({type(e).__name__}: {e})", True))


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _span(number: int, raw: dict[str, Any]) -> Span:
    status = raw.get("status") or {}
    code = status.get("code", 0)
    if isinstance(code, str):  # json_format writes the enum's name
        code = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}.get(code, 0)
    return Span(
        line=number,
        trace_id=hex_id(raw.get("traceId"), 16),
        span_id=hex_id(raw.get("spanId"), 8),
        parent_span_id=hex_id(raw.get("parentSpanId"), 8) if raw.get("parentSpanId") else "",
        name=str(raw.get("name") or ""),
        start_ns=int(raw.get("startTimeUnixNano") or 0),
        end_ns=int(raw.get("endTimeUnixNano") or 0),
        attributes=attributes(raw.get("attributes")),
        status_code=int(code),
        status_message=str(status.get("message") or ""),
    )


def hex_id(value: Any, size: int) -> str:
    """A trace (16 bytes) or span (8 bytes) id as lowercase hex: the OTLP JSON spec writes hex,
    protobuf's json_format base64 (4/3 as long: the length tells which)."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"no {'trace' if size == 16 else 'span'} id")
    if len(value) == 2 * size:
        int(value, 16)  # raises ValueError for what isn't hex
        return value.lower()
    try:
        data = base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValueError(f"id {value!r} is neither hex nor base64") from None
    if len(data) != size:
        raise ValueError(f"id {value!r} is {len(data)} bytes, not {size}")
    return data.hex()


def attributes(items: Any) -> dict[str, Any]:
    """OTLP KeyValue list -> {key: value}."""
    out: dict[str, Any] = {}
    for kv in _list(items):
        try:
            key = kv["key"]
        except (TypeError, KeyError, IndexError):  # (not an object, or no key)
            continue
        if type(key) is not str:
            continue
        value = kv.get("value")
        # the common case first (a span has dozens of attributes, most of them strings)
        if type(value) is dict and len(value) == 1 and (text := value.get("stringValue")) is not None:
            out[key] = text
        else:
            out[key] = any_value(value)
    return out


def any_value(v: Any) -> Any:
    """An OTLP AnyValue as a Python value (intValue may be a string: proto3 JSON's int64)."""
    if not isinstance(v, dict) or not v:
        return None
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        d = v["doubleValue"]
        return float(d) if isinstance(d, str) else d  # "NaN", "Infinity" come as strings
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "arrayValue" in v:
        return [any_value(x) for x in _list((v["arrayValue"] or {}).get("values"))]
    if "kvlistValue" in v:
        return attributes((v["kvlistValue"] or {}).get("values"))
    if "bytesValue" in v:
        return base64.b64decode(v["bytesValue"])
    return None


# -- which spans, and what they become ---------------------------------------------------------


def is_chat(attrs: dict[str, Any]) -> bool:
    """A GenAI chat span (the convention's, or the older form OpenLLMetry writes)."""
    op = attrs.get(n.OPERATION_NAME)
    if op is not None:
        return op == n.OPERATION
    if attrs.get("llm.request.type") is not None:
        return attrs["llm.request.type"] == "chat"
    return n.SYSTEM in attrs


def user_of(attrs: dict[str, Any]) -> Any:
    """A span's user: the convention's user.id, else enduser.id (the older name)."""
    return attrs.get(n.USER_ID) or attrs.get("enduser.id")


def provider(attrs: dict[str, Any]) -> str | None:
    value = attrs.get(n.PROVIDER_NAME) or attrs.get(n.SYSTEM)
    return value.lower() if isinstance(value, str) else None


def record(span: Span) -> Record | str:
    """What a chat span becomes: a Record, or why it is skipped (NO_CONTENT, OTHER_PROVIDER).
    Raises ValueError (and the like) for a span whose values make no record (malformed)."""
    a = span.attributes
    if n.TURN_ID in a or n.REQUEST in a:
        return exact(span) if n.REQUEST in a else NO_CONTENT
    who = provider(a)
    if who is not None and who != n.PROVIDER:
        return OTHER_PROVIDER
    from .rebuild import rebuilt

    got = rebuilt(span)
    return got if got is not None else NO_CONTENT


def exact(span: Span) -> Record:
    """replayer's own span: the export line it was made from, as a Captured that stores it with
    its own ids (conversation, turn, index, attempt, times).

    A JSON attribute that isn't whole JSON was cut short where the span was made (the SDK cuts
    every text past OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT characters): the span keeps its ids, what
    is whole is taken, and a cut request or response is rebuilt from the span's other attributes
    as another instrumentation's span is (model, usage, stop reason; messages as far as the
    convention's content attributes are whole), and its turn marked reconstructed (`cut`)."""
    a = span.attributes
    values = {key: a.get(name) for name, key in OWN}
    values["conversation_id"] = a.get(n.CONVERSATION_ID)
    values["user_id"] = user_of(a)
    json_valued = (
        (n.REQUEST_HEADERS, "request_headers"), (n.RESPONSE_HEADERS, "response_headers"), (n.ERROR, "error"),
        (n.UNKNOWN_EVENTS, "unknown_events"), (n.TAGS, "tags"),
    )
    cut = False
    for name, key in json_valued:
        try:
            values[key] = _json(a.get(name))
        except ValueError:
            values[key], cut = None, True
    tags = values.pop("tags")
    texts = {"request": _text(a.get(n.REQUEST)), "response": _text(a.get(n.RESPONSE))}
    request, response = texts["request"], texts["response"]
    # replayer writes the request as a compact JSON object: a cut one can't end with its "}" (a
    # cut that falls just after an inner "}" is missed; parsing every request again to be sure
    # would cost the import a second parse of each history, the largest text of the span)
    if request is not None and not request.endswith("}"):
        from .rebuild import request_of

        texts["request"], cut = json.dumps(request_of(a), ensure_ascii=False), True
    if response is not None and response != "null":
        # parsed once: own_record checks its numbers and tells its form by the same document
        values["response"] = _loaded(response)
        if values["response"] is None:
            from .rebuild import response_of

            rebuilt = response_of(a, values.get("status"), values.get("error"))
            texts["response"], cut = (json.dumps(rebuilt, ensure_ascii=False) if rebuilt is not None else None), True
            del values["response"]  # (own_record parses the text it makes)
    record = own_record(
        span.line, values, texts, session=span.trace_id, start=span.start_ns / 1e9,
        tags=tags if isinstance(tags, dict) else None, response_id=_text(a.get(n.RESPONSE_ID)),
    )  # fmt: skip
    if cut:
        record.cut, record.imported_from = True, SOURCE
    return record


def own_record(
    line: int,
    values: dict[str, Any],
    texts: dict[str, str | None],
    *,
    session: str,
    start: float | None = None,
    tags: dict[str, Any] | None = None,
    response_id: str | None = None,
) -> Record:
    """An attempt of replayer's own as the Record that stores it with its own ids (conversation,
    turn, index, attempt, times): `values` are its export line's (store/export.py's keys), `texts`
    the exact JSON text of its request and response (None: null), as the line holds them. Shared
    by replayer's own spans (`exact`) and the lines of `replayer export` (imports/export.py).
    `start`: seconds since the epoch when the line has no started_at. `values["response"]`, when
    the caller has it, is the response's text parsed (an export line's, a span's): it is not
    parsed again. Raises ValueError (and the like) for values that make no record."""
    started_at = _text(values.get("started_at"))
    if started_at:
        t_start = parse_iso(started_at)
    elif start is not None:
        t_start = start
    else:
        raise ValueError("no started_at")
    latency = values.get("latency_ms")  # absent: the line's is null (a span's times can't tell)
    turn_id = _text(values.get("turn_id"))
    conversation_id = _text(values.get("conversation_id"))
    if not turn_id or not conversation_id:
        raise ValueError("no turn or conversation id")
    request = texts.get("request")
    response = texts.get("response")
    doc = values["response"] if "response" in values else _loaded(response)
    _check_numbers(values, doc)
    headers = values.get("request_headers") or {}
    said = values.get("response_headers")
    status = values.get("status")
    index = values.get("index")
    captured = Captured(
        call_key=f"{SOURCE}:{turn_id}",
        attempt=int(values.get("attempt") or 0),
        t_start=t_start,
        endpoint=_text(values.get("endpoint")) or "/v1/messages",
        stream=bool(values.get("stream")),
        request_bytes=(request or "null").encode("utf-8", "surrogatepass"),
        headers=headers if isinstance(headers, dict) else {},
        status=int(status) if status is not None else None,
        response_bytes=response.encode("utf-8", "surrogatepass") if response and response != "null" else None,
        latency_ms=latency,
        ttft_ms=values.get("ttft_ms"),
        error=values.get("error"),
        request_id=_text(values.get("request_id")),
        response_headers=said if isinstance(said, dict) and said else None,
        ctx=Context(
            conversation_id=conversation_id,
            user_id=_text(values.get("user_id")),
            tags=tags,
            trace_id=_text(values.get("trace_id")),
        ),
        abandoned=bool(values.get("abandoned")),
        turn_id=turn_id,
        turn_index=int(index) if index is not None else None,
        copied_from=_text(values.get("copied_from")),
    )
    if response and response != "null":
        parsed = parsed_when_recorded(response, doc)
        if parsed is not None:
            captured.response_bytes, captured.response_obj = None, parsed
    unknown = values.get("unknown_events")
    return Record(
        line=line,
        captured=captured,
        started_at=started_at or iso_of(t_start),
        exact=True,
        key=turn_id,
        session=session,
        imported_from=_text(values.get("imported_from")),
        parent_conversation_id=_text(values.get("parent_conversation_id")),
        unknown_events=unknown if isinstance(unknown, list) and unknown else None,
        response_id=response_id,
    )


def _check_numbers(values: dict[str, Any], response: Any) -> None:
    """Raise ValueError (or TypeError) for a value the store reads as a number that is none (a
    latency, a response's token counts): the line's fault, said as the line's, never one the
    database is blamed for later."""
    for key in ("latency_ms", "ttft_ms"):
        v = values.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
            raise ValueError(f"{key} is {v!r}, not a number")
    if isinstance(response, dict):
        from ..pricing import check_usage

        check_usage(response.get("usage"))


def _loaded(text: str | None) -> Any:
    """A response's text parsed as _json parses attributes; None when it is no JSON (it is
    stored as the text it is)."""
    try:
        return _json(text) if text else None
    except ValueError:
        return None


def parsed_when_recorded(text: str, doc: Any) -> Any:
    """The response of an export line, `doc` (its `text` parsed), when the store was handed it
    parsed when it was recorded (a stream's message, a redacted record), else None (it parsed
    the bytes itself).

    The two are stored in different forms (json.dumps's spaced text, the compact one of a
    document parsed from bytes), which the export line shows in the usage it splices in (or, for
    a response with neither usage nor content, in the whole text): imported, the response is
    handed over the same way, so the line comes out the same."""
    from ..store.codec import dumps_plain

    at = text.rfind('"usage": {')
    if at >= 0:
        m = _FIRST_KEY.match(text, at + 9)
        if m is not None and not m.group(1):
            # compact: the store parsed the bytes itself (what it spliced in after the content,
            # which the export writes spaced, so this is the response's own usage)
            return None
    if not isinstance(doc, dict):
        return None
    usage = doc.get("usage")
    if isinstance(usage, dict):
        spaced = json.dumps(usage)
        return doc if spaced != dumps_plain(usage) and f'"usage": {spaced}' in text else None
    if "content" in doc:
        return None  # the export dumps the rest again: either form reads the same
    return doc if text != dumps_plain(doc) else None


_FIRST_KEY = re.compile(r'\{"(?:[^"\\]|\\.)*":( ?)')
"""An object's first key and colon, and the space after it when it has one."""


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _json(value: Any) -> Any:
    """A JSON-text attribute's value (a value that isn't text is taken as it is)."""
    if not isinstance(value, str):
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:  # what orjson refuses (NaN, an integer beyond 64 bits) json reads
        return json.loads(value)


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def iso_of(t: float) -> str:
    from ..store.codec import iso

    return iso(t)
