"""Server-sent events: parse raw bytes and assemble the message a stream builds.

Runs on the background writer, never on the agent's thread. The assembly works on plain dicts
parsed from the wire, so unknown block types, unknown delta fields and unknown top-level fields
survive untouched; unknown event types are returned beside the message instead of dropped.

Assembly follows the rules the SDK's own accumulator uses (text/thinking deltas append,
`signature_delta` replaces, `citations_delta` appends to `citations`, tool input is the
concatenation of `input_json_delta` fragments parsed at the end, `message_delta` usage counts
are cumulative and replace), generalised so a delta type we don't know appends its string
fields to the block and sets the rest.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

KNOWN_EVENTS = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
        "error",
    }
)


@dataclass(slots=True)
class Event:
    event: str | None
    data: str


def parse_events(raw: bytes) -> list[Event]:
    """Split an SSE byte stream into events (`event:`/`data:` fields, blank-line separated).

    Decoded once, then split on line ends (CRLF, LF or CR, as SSE allows): a byte-level line
    break never falls inside a UTF-8 sequence, so this equals decoding line by line."""
    events: list[Event] = []
    name: str | None = None
    data: list[str] = []
    text = raw.decode("utf-8", errors="replace")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    for line in text.split("\n"):
        if not line:
            if name is not None or data:
                events.append(Event(name, "\n".join(data)))
                name, data = None, []
            continue
        if line[0] == ":":
            continue
        key, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if key == "event":
            name = value
        elif key == "data":
            data.append(value)
    if name is not None or data:
        events.append(Event(name, "\n".join(data)))
    return events


@dataclass
class Assembled:
    message: dict[str, Any] | None
    error: dict[str, Any] | None = None
    unknown_events: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = False
    """A message_stop was seen."""


def _partial_json(buf: str) -> Any:
    try:
        return json.loads(buf)
    except ValueError:
        pass
    try:  # a stream cut off mid-JSON: keep what parses, as the SDK does (jiter comes with it)
        from jiter import from_json

        return from_json(buf.encode(), partial_mode=True)
    except Exception:
        return {}


def _apply_delta(block: dict[str, Any], delta: dict[str, Any], json_buf: dict[int, str], index: int) -> None:
    for key, value in delta.items():
        if key == "type":
            continue
        if key == "partial_json":
            json_buf[index] = json_buf.get(index, "") + (value or "")
        elif key == "citation":
            cites = block.get("citations")
            if isinstance(cites, list):
                cites.append(value)
            else:
                block["citations"] = [value]
        elif key == "signature":
            block[key] = value
        elif isinstance(value, str) and isinstance(block.get(key), str):
            block[key] += value
        else:
            block[key] = value


def assemble(raw: bytes) -> Assembled:
    """Build the message a recorded stream describes, keeping whatever we don't know."""
    out = Assembled(message=None)
    message: dict[str, Any] | None = None
    json_buf: dict[int, str] = {}
    for ev in parse_events(raw):
        if not ev.data:
            continue
        try:
            data = json.loads(ev.data)
        except ValueError:
            out.unknown_events.append({"event": ev.event, "data": ev.data})
            continue
        kind = ev.event
        if kind is None:  # no `event:` line: the SDKs skip it, so it made none of the message they built
            out.unknown_events.append({"event": None, "data": data})
            continue
        if kind == "ping":
            continue
        if kind == "error":
            err = data.get("error", data) if isinstance(data, dict) else {"message": str(data)}
            out.error = {"type": err.get("type"), "message": err.get("message"), "status": 200}
            continue
        if kind not in KNOWN_EVENTS or not isinstance(data, dict):
            out.unknown_events.append({"event": ev.event, "data": data})
            continue
        if kind == "message_start":
            message = data.get("message") or {}
            message.setdefault("content", [])
            continue
        if message is None:
            out.unknown_events.append({"event": ev.event, "data": data})
            continue
        content: list[Any] = message["content"]
        if kind == "content_block_start":
            index = data.get("index", len(content))
            while len(content) <= index:
                content.append(None)
            block = content[index] = data.get("content_block") or {}
            if isinstance(block, dict) and block.get("type") == "fallback":
                # the model that served the rest: the message is relabelled, as the API's own
                # non-streamed message and the SDK's accumulator are (the cost is that model's)
                to = block.get("to")
                if isinstance(to, dict) and isinstance(to.get("model"), str):
                    message["model"] = to["model"]
        elif kind == "content_block_delta":
            index = data.get("index", 0)
            if 0 <= index < len(content) and isinstance(content[index], dict):
                _apply_delta(content[index], data.get("delta") or {}, json_buf, index)
            else:
                out.unknown_events.append({"event": ev.event, "data": data})
        elif kind == "content_block_stop":
            index = data.get("index", 0)
            if index in json_buf and 0 <= index < len(content):
                content[index]["input"] = _partial_json(json_buf.pop(index))
        elif kind == "message_delta":
            for key, value in (data.get("delta") or {}).items():
                if value is None and key not in ("stop_reason", "stop_sequence"):
                    continue
                message[key] = value
            usage = message.setdefault("usage", {})
            for key, value in (data.get("usage") or {}).items():
                if value is not None:
                    usage[key] = value
            # any other field the event carries beside delta/usage goes on the message, replacing
            # message_start's (as the SDK's accumulator does with context_management and
            # input_transformations); one it leaves out (null) keeps message_start's
            for key, value in data.items():
                if key not in ("type", "delta", "usage") and (value is not None or key not in message):
                    message[key] = value
        elif kind == "message_stop":
            out.complete = True
    if message is not None:
        for index, buf in list(json_buf.items()):  # blocks still open when the stream ended
            if 0 <= index < len(message["content"]) and isinstance(message["content"][index], dict):
                message["content"][index]["input"] = _partial_json(buf)
        message["content"] = [b for b in message["content"] if b is not None]
    out.message = message
    return out


# -- the events as a client sees them, with where each ends ----------------------------------
_BLANK = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)")
"""A line's end followed by an empty line's: where an event is dispatched."""
_FIELD = re.compile(rb"(?:^|(?<=[\r\n]))(?:event|data)(?:[:\r\n]|$)")
"""An `event` or `data` line: a block without one dispatches nothing."""
_USUAL = (b"event:", b"data:")
_LINES = re.compile(rb"\r\n|\r|\n")


def event_ends(raw: bytes) -> list[int]:
    """Where each event a client dispatches from `raw` ends: the offset just past the empty line
    that ends it. As the SSE spec and the SDK's decoder read a stream, an event ends at an empty
    line, so one the stream stopped in the middle of (cut off, or a last event with no empty line
    after it) was never delivered and has no end here; a block of comments alone is no event."""
    ends = []
    search = _FIELD.search
    if b"\r" not in raw:  # the usual stream, lines ended by LF only: a plain split finds the blank lines
        end = 0
        blocks = raw.split(b"\n\n")
        blocks.pop()  # what follows the last blank line: no event, or one never finished
        for block in blocks:
            end += len(block) + 2
            # the usual block begins with its event or data line: the search only for the others
            if block.startswith(_USUAL) or search(block) is not None:
                ends.append(end)
        return ends
    start = 0
    starts = raw.startswith
    for m in _BLANK.finditer(raw):
        end = m.end()
        if starts(_USUAL, start) or search(raw, start, m.start()) is not None:
            ends.append(end)
        start = end
    return ends


def delivered(raw: bytes) -> list[Event]:
    """The events a client dispatches from `raw` (see `event_ends`), in order."""
    events = []
    start = 0
    for end in event_ends(raw):
        name: str | None = None
        data: list[str] = []
        for line in _LINES.split(raw[start:end]):
            if not line or line[:1] == b":":
                continue
            key, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if key == b"event":
                name = value.decode("utf-8", "replace")
            elif key == b"data":
                data.append(value.decode("utf-8", "replace"))
        events.append(Event(name, "\n".join(data)))
        start = end
    return events
