"""What goes on the wire when a recorded attempt answers: a stream's SSE bytes, from its recorded
events or from events synthesized out of the assembled message (streams recorded before events
were kept), cut into the chunks they arrived in and paced by their recorded times for `--speed`.

An event is a cassette event: `{"event": NAME, "data": parsed JSON (or the raw string), "ms":
milliseconds after the attempt started when its chunk arrived, or None}`. Synthesized events have
no times: they are sent as fast as the client reads, whatever the speed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import orjson

_EMPTY_FIELDS = {"text": "", "thinking": "", "signature": ""}
"""What a streamed block's start holds of the fields its deltas then fill."""


def compact_json(data: Any) -> bytes:
    """Compact JSON, as the API writes it (orjson: this runs for every event served)."""
    try:
        return orjson.dumps(data)
    except TypeError:  # a lone surrogate or an integer past 64 bits: the standard library writes them
        return json.dumps(data, separators=(",", ":")).encode()


def event_bytes(event: dict[str, Any]) -> bytes:
    """One SSE event as the API writes it: `event:` then `data:` lines, then a blank line. A raw
    (non-JSON) data string is written as it was, one `data:` line per line of it."""
    data = event.get("data")
    name = event.get("event")
    head = b"event: %s\n" % name.encode() if name is not None else b""
    if not isinstance(data, str):
        return head + b"data: " + compact_json(data) + b"\n\n"
    return head + "".join(f"data: {line}\n" for line in data.split("\n")).encode() + b"\n"


def retry_wait(headers: dict[str, str], speed: float | None) -> dict[str, str]:
    """`headers` with the recorded wait before a retry (`retry-after-ms`, else `retry-after` in
    seconds) divided by `speed`, as every recorded time is: in `retry-after-ms`, which the SDK reads
    first, and in `retry-after`, which other clients read (Claude Code waits what it says, whole
    seconds). As fast as possible (None): a thousandth of a millisecond in `retry-after-ms` (the
    SDK honours a wait above 0; at 0 it would take its own backoff, half a second and more, that
    the recording never waited) and 0 in `retry-after`; at a speed, `retry-after` is the scaled
    wait rounded to a whole second (a half up: 1 s at --speed 2 is 1, 3 s is 2). A `retry-after`
    that is an HTTP date, or a wait the SDK would not honour (over a minute), stays as recorded."""
    given = headers.get("retry-after-ms")
    if given is None:
        given = headers.get("retry-after")
        scale = 1000.0
    else:
        scale = 1.0
    try:
        ms = float(given) * scale if given is not None else None
    except ValueError:  # an HTTP date: left as recorded
        return headers
    if ms is None or not 0 < ms <= 60_000:  # the SDK takes its own backoff for these: so did the recording
        return headers
    paced = {**headers, "retry-after-ms": f"{ms / speed:g}" if speed else "0.001"}
    if "retry-after" in headers:
        try:
            float(headers["retry-after"])
        except ValueError:  # an HTTP date beside a retry-after-ms: a time, not a wait to scale
            return paced
        paced["retry-after"] = str(math.floor(ms / speed / 1000 + 0.5)) if speed else "0"
    return paced


def chunks(events: list[dict[str, Any]], speed: float | None = None) -> Iterator[tuple[float, bytes]]:
    """(seconds to wait first, bytes) per chunk: consecutive events recorded at the same time
    arrived in one chunk and go out in one write. Waits are the recorded gaps divided by `speed`
    (the first: from the attempt's start, the recorded time to the first chunk); none when
    `speed` is None (as fast as possible) or an event has no time."""
    previous: float | None = 0.0
    pending: list[bytes] = []
    pending_ms: Any = None
    wait = 0.0
    for event in events:
        ms = event.get("ms")
        if pending and (ms is None or ms != pending_ms):
            yield wait, b"".join(pending)
            pending = []
        if not pending:
            wait = 0.0
            if speed and ms is not None and previous is not None and ms > previous:
                wait = (ms - previous) / 1000.0 / speed
            if ms is not None:
                previous = ms
            pending_ms = ms
        pending.append(event_bytes(event))
    if pending:
        yield wait, b"".join(pending)


def synthesize(message: dict[str, Any] | None, error: dict[str, Any] | None = None, *,
               cut: bool = False) -> list[dict[str, Any]]:
    """The events that stream `message` (the message a recorded stream built, or a recorded
    non-streamed answer): message_start, per block a start, one delta carrying the block's whole
    text (or tool input, thinking and signature, citations), a stop, then message_delta and
    message_stop. Building them back (the SDK's accumulator, or sse.assemble) gives the message
    again, unknown blocks and fields kept. A stream that failed mid-way (`error`, status 200)
    ends with its error event instead of message_stop; one whose connection was `cut`, with
    neither (what came of the message, and no more)."""
    events: list[dict[str, Any]] = []

    def add(name: str, data: dict[str, Any]) -> None:
        events.append({"event": name, "data": {"type": name, **data}, "ms": None})

    if message is not None:
        start = {k: v for k, v in message.items() if k != "content"}
        start["content"] = []
        if "stop_reason" in start:
            start["stop_reason"] = None
        if "stop_sequence" in start:
            start["stop_sequence"] = None
        add("message_start", {"message": start})
        for index, block in enumerate(message.get("content") or []):
            _block_events(add, index, block)
        delta_fields = {k: message[k] for k in ("stop_reason", "stop_sequence") if k in message}
        if not cut and (delta_fields or message.get("usage") is not None):
            data: dict[str, Any] = {"delta": delta_fields}
            if isinstance(message.get("usage"), dict):
                data["usage"] = message["usage"]
            add("message_delta", data)
    if error is not None:
        add("error", {"error": {"type": error.get("type"), "message": error.get("message")}})
    elif message is not None and not cut:
        add("message_stop", {})
    return events


def _block_events(add: Any, index: int, block: Any) -> None:
    if not isinstance(block, dict):
        add("content_block_start", {"index": index, "content_block": block})
        add("content_block_stop", {"index": index})
        return
    kind = block.get("type")
    deltas: list[dict[str, Any]] = []
    first = dict(block)
    if kind in ("tool_use", "server_tool_use", "mcp_tool_use") and "input" in block:
        first["input"] = {}
        raw = compact_json(block["input"]).decode()
        if raw != "{}":
            deltas.append({"type": "input_json_delta", "partial_json": raw})
    else:
        # a string field the API streams as deltas starts empty and arrives whole in one delta
        for name, empty in _EMPTY_FIELDS.items():
            value = block.get(name)
            if isinstance(value, str):
                first[name] = empty
                if value:
                    deltas.append({"type": f"{name}_delta", name: value})
        if isinstance(block.get("citations"), list) and block["citations"]:
            first["citations"] = []
            deltas[:0] = [{"type": "citations_delta", "citation": c} for c in block["citations"]]
    add("content_block_start", {"index": index, "content_block": first})
    for delta in deltas:
        add("content_block_delta", {"index": index, "delta": delta})
    add("content_block_stop", {"index": index})
