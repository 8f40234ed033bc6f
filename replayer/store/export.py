"""The JSONL export (DESIGN.md's export format): one line per recorded attempt, its request and
response rebuilt as on the wire (Store.request_text / response_text) and spliced into the line as
text, so nothing large is parsed again. And cassettes: those lines plus each stream's events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .attempt import Redact
from .codec import canon, splice, storable
from .events import events_of, json_value, long_number

if TYPE_CHECKING:
    from ..pricing import PriceTable
    from .queries import Store


def export_lines(store: Store, conversation_id: str | None = None, *, run_id: str | None = None) -> Iterator[str]:
    """One JSON line per recorded attempt (DESIGN.md's export format): conversations oldest
    first, each in turn order, each turn's attempts in order. All of them, or one conversation's,
    or those of every conversation one `replayer record` run recorded (`run_id`)."""
    where, args = _where(conversation_id, run_id)
    for _row, line in _lines(store, where, args):
        yield line


def _where(conversation_id: str | None, run_id: str | None) -> tuple[str, list[Any]]:
    from .queries import RUN_MATCH

    if conversation_id:
        return "WHERE t.conversation_id = ?", [conversation_id]
    if run_id:  # (only conversations have a tags_json column)
        return f"WHERE {RUN_MATCH}", [run_id]
    return "", []


def cassette_lines(
    store: Store, *, conversation_id: str | None = None, run_id: str | None = None, redact: Redact | None = None
) -> Iterator[dict[str, Any]]:
    """A recording as cassette lines: each export line (as a dict, its keys unchanged) plus
    "events": for a stream, the SSE events its client was delivered, in order, each
    {"event": name, "data": the parsed JSON (the text when it isn't JSON), "ms": milliseconds
    after the attempt started when the chunk that completed it arrived, or None}; None for a
    non-stream and for a stream recorded before events were kept (then only its message is known).

    Of one conversation, or of every conversation one `replayer record` run recorded (`run_id`,
    their "run" tag), in export order. `redact`: a hook as `Recorder(redact=...)` takes, given
    each line (the record's keys, and the rest); it returns the line to keep or None to drop it.
    When it changes the response or error and leaves the events alone, the events (which would
    show what it took out) become None."""
    if bool(conversation_id) == bool(run_id):
        raise ValueError("cassette_lines: give conversation_id or run_id (one of them)")
    where, args = _where(conversation_id, run_id)
    plain: dict[int, bool] = {}
    for row, text in _lines(store, where, args, events=True):
        line = json_value(text, plain=_plain(store, row, plain))
        body = row["stream_body"]
        line["events"] = events_of(store.stream_body(body), row["event_ms"]) if body is not None else None
        if redact is not None:
            line = _redacted(line, redact)
            if line is None:
                continue
        yield line


def _plain(store: Store, row: dict[str, Any], known: dict[int, bool]) -> bool:
    """Whether no part of the attempt's line holds a long number (events.long_number): asked of
    each part once (`known`, by blob id), not of the line, which repeats a conversation's
    messages every turn (the test on 28 MB of lines took half a second)."""
    for blob in (*row[_CHAIN], *(row[k] for k in _BLOB_COLUMNS)):
        if blob is None:
            continue
        got = known.get(blob)
        if got is None:
            got = known[blob] = not long_number(store.blob_text(blob))
        if not got:
            return False
    return not any(row[k] and long_number(row[k]) for k in _ROW_TEXTS)


_ROW_TEXTS = ("response_json", "usage_json", "error_json", "unknown_events_json")
"""The attempt's columns of JSON text that go into its line (the rest are ids, names, times)."""


def _redacted(line: dict[str, Any], redact: Redact) -> dict[str, Any] | None:
    shown = canon([line.get("response"), line.get("error")])
    events = canon(line.get("events"))
    kept = redact(line)
    if kept is None:
        return None
    if canon([kept.get("response"), kept.get("error")]) != shown and canon(kept.get("events")) == events:
        kept["events"] = None
    return kept


def _lines(store: Store, where: str, args: list[Any], *, events: bool = False) -> Iterator[tuple[dict[str, Any], str]]:
    """(the attempt's row, its export line) for each attempt `where` selects, in export order:
    conversations by start, those that started at the same moment in the order they were stored
    (not by their ids, which are random), then turns and attempts in order."""
    extra, join = "", ""
    if events:
        extra = ", s.body AS stream_body, s.event_ms"
        join = "LEFT JOIN stream_events s ON s.attempt_id = a.id"
    cur = store.db.execute(
        f"""SELECT a.*, t.conversation_id, t.idx, t.user_id, t.trace_id, t.endpoint, t.stream,
                   i.source AS imported_from, l.parent_id AS parent_conversation_id,
                   COALESCE(g.tags_json, c.tags_json) AS call_tags{extra}
            FROM attempts a JOIN turns t ON t.id = a.turn_id JOIN conversations c ON c.id = t.conversation_id
            LEFT JOIN imported_turns i ON i.turn_id = t.id LEFT JOIN conversation_links l ON l.conversation_id = c.id
            LEFT JOIN turn_tags g ON g.turn_id = t.id
            {join}
            {where}
            ORDER BY c.started_at, c.rowid, t.idx, a.attempt, a.id""",
        args,
    )
    names = [d[0] for d in cur.description]
    while batch := cur.fetchmany(256):
        rows = [dict(zip(names, values, strict=True)) for values in batch]
        _prefetch(store, rows)
        for row in rows:
            yield row, _line(store, row)


def _prefetch(store: Store, rows: list[dict[str, Any]]) -> None:
    """Read the parts of a batch of attempts in a few queries, not a few per attempt."""
    store.prefetch_chains([row["request_node"] for row in rows])
    blobs = [row[k] for row in rows for k in _BLOB_COLUMNS if row[k] is not None]
    for row in rows:
        row[_CHAIN] = store.blob_chain(row["request_node"])
        blobs += row[_CHAIN]
    store.blob_texts(blobs)


_CHAIN = "\u0000chain"
"""Where `_prefetch` leaves the message blob ids of the row's request (no column has that name)."""
_BLOB_COLUMNS = ("request_skel", "request_system", "request_tools", "request_headers", "response_content",
                 "response_headers")


def attempt_cost(prices: PriceTable, row: dict[str, Any], usage: Any) -> float | None:
    """An attempt's cost, as its export line and its OTLP span say it; 0.0 for an API error
    answered without usage (a 429, a 529: nothing is billed, as the stats count them), None only
    when the price is unknown (no price for its model, or no usage and no answer to say nothing
    was billed, as for a timeout). `row`: its model, status and error_json."""
    if usage:
        return prices.cost(usage, row["model"])
    status = row["status"]
    return 0.0 if row["error_json"] and status is not None and status >= 400 else None


def _line(store: Store, row: dict[str, Any]) -> str:
    """The export line of one attempt's row."""
    usage = json.loads(row["usage_json"]) if row["usage_json"] else None
    head = {
        "turn_id": row["turn_id"],
        "conversation_id": row["conversation_id"],
        "index": row["idx"],
        "user_id": row["user_id"],
        "trace_id": row["trace_id"],
        "started_at": row["started_at"],
        "latency_ms": row["latency_ms"],
        "ttft_ms": row["ttft_ms"],
        "attempt": row["attempt"],
        "stream": bool(row["stream"]),
        "endpoint": row["endpoint"],
        "model": row["model"],
        "request": None,  # spliced in below
        "request_headers": json.loads(store.blob_text(row["request_headers"])) if row["request_headers"] else {},
        "status": row["status"],
        "response": None,
        "error": json.loads(row["error_json"]) if row["error_json"] else None,
        "request_id": row["request_id"],
        "usage": usage,
        "cost_usd": attempt_cost(store.prices, row, usage),
        "abandoned": bool(row["abandoned"]),
        "unknown_events": json.loads(row["unknown_events_json"]) if row["unknown_events_json"] else [],
        # what the API said of its limits and retrying (wire.RESPONSE_HEADERS); last, so the keys
        # before it keep their places
        "response_headers": json.loads(store.blob_text(row["response_headers"])) if row["response_headers"] else {},
        # the call's tags: its conversation's, or its own where they differ (turn_tags: a second
        # `record` run continuing the conversation): a run's id, a Claude Code session, a fork's
        # edits, the user's own
        "tags": json.loads(row["call_tags"]) if row["call_tags"] else {},
    }
    # only on imported turns and linked conversations: a recorded turn's line stays as it was
    if row["imported_from"]:
        head["reconstructed"] = True  # the request is rebuilt from a transcript: no system, no tools
        head["imported_from"] = row["imported_from"]
    if row["parent_conversation_id"]:
        head["parent_conversation_id"] = row["parent_conversation_id"]
    if row["copied_from"]:
        head["copied_from"] = row["copied_from"]  # a fork's turn before its fork point
    line = splice(head, {"request": store.request_text(row), "response": store.response_text(row) or "null"})
    return storable(line)  # a lone surrogate in a string, escaped: a UTF-8 file takes the line
