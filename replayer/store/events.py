"""A stream's events, kept beside its attempt: the raw SSE as received (content-addressed, raw
deflate, stored once however many attempts received the same bytes) and each event's arrival
time in a compact column. Writing runs on the background writer; reading serves cassettes.

Why the raw bytes and not parsed events: nothing is lost (unknown event types and fields, an
error event mid-stream, the part of an abandoned stream that came), and the parse is redone,
the same way, when a cassette is read (`sse.delivered`).

The times: for each event the client was delivered, the milliseconds after the attempt started
when the chunk that completed it arrived; stored as the differences between successive events'
times in whole microseconds, each as a variable-length unsigned integer (LEB128: 1 byte for the
many events that came in one chunk, 2-3 for the rest), so 1,000 events take about 2 KB.
"""

from __future__ import annotations

import hashlib
import json
import re
from bisect import bisect_left
from typing import Any

import orjson
from sqlite_utils import Database

from .. import sse as sse_format
from ..bounded import BoundedDict
from .codec import deflate, inflate
from .faults import missing_row

SCHEMA = (
    """CREATE TABLE stream_bodies (
        id INTEGER PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,        -- blake2b-128 of the bytes as received
        sse BLOB NOT NULL                 -- those bytes, raw deflate (zlib.decompress(sse, -15))
    )""",
    """CREATE TABLE stream_events (
        attempt_id INTEGER PRIMARY KEY REFERENCES attempts(id),
        body INTEGER NOT NULL REFERENCES stream_bodies(id),
        event_ms BLOB                     -- per delivered event, see store/events.py; NULL: unknown
    )""",
)


def event_ms(raw: bytes, chunks: list[tuple[int, float]] | None) -> list[float] | None:
    """Each delivered event's time: that of the chunk holding its end (see `Captured.sse_chunks`).
    None when the chunks' times are unknown."""
    if not chunks:
        return None
    ends = [end for end, _ in chunks]
    times = [ms for _, ms in chunks]
    last = len(chunks) - 1
    return [times[min(bisect_left(ends, end), last)] for end in sse_format.event_ends(raw)]


def pack_ms(values: list[float]) -> bytes:
    """`values` (non-decreasing milliseconds, as chunk times are) as LEB128 microsecond steps."""
    steps = []
    prev = 0
    for v in values:
        us = round(v * 1000)
        step = us - prev if us > prev else 0  # (a clock is never read backwards; a step never goes below 0)
        prev += step
        steps.append(step)
    if not steps or max(steps) < 0x80:
        return bytes(steps)  # one byte each
    out = bytearray()
    for step in steps:
        while step >= 0x80:
            out.append((step & 0x7F) | 0x80)
            step >>= 7
        out.append(step)
    return bytes(out)


def unpack_ms(packed: bytes) -> list[float]:
    out: list[float] = []
    total = shift = step = 0
    for byte in packed:
        step |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
            continue
        total += step
        out.append(total / 1000)
        step = shift = 0
    return out


class Streams:
    """Writes streams' events into one Database (the writer's connection), remembering bodies."""

    def __init__(self, db: Database):
        self.db = db
        self.ids: BoundedDict[bytes, int] = BoundedDict(10_000)
        """Hash -> stream body id."""

    def forget(self) -> None:
        """Drop the cache (after a rollback the ids it holds may not exist)."""
        self.ids.clear()

    def store(self, attempt_id: int, raw: bytes, chunks: list[tuple[int, float]] | None) -> None:
        """Keep the stream `raw` that attempt `attempt_id` received, with its events' times."""
        h = hashlib.blake2b(raw, digest_size=16).digest()
        body = self.ids.get(h)
        conn = self.db.conn
        if body is None:
            key = h.hex()
            cur = conn.execute(
                "INSERT OR IGNORE INTO stream_bodies(hash, sse) VALUES (?, ?)",
                (key, deflate(raw)),
            )
            if cur.rowcount:
                body = int(cur.lastrowid or 0)
            else:
                body = int(conn.execute("SELECT id FROM stream_bodies WHERE hash = ?", (key,)).fetchone()[0])
            self.ids[h] = body
        times = event_ms(raw, chunks)
        conn.execute(
            "INSERT INTO stream_events(attempt_id, body, event_ms) VALUES (?, ?, ?)",
            (attempt_id, body, pack_ms(times) if times is not None else None),
        )


def events_of(raw: bytes, packed: bytes | None) -> list[dict[str, Any]]:
    """A stored stream as a cassette's events: {"event", "data" (parsed JSON, else the text),
    "ms" (None when unknown)} for each event the client was delivered, in order."""
    times = unpack_ms(packed) if packed is not None else []
    out = []
    for i, ev in enumerate(sse_format.delivered(raw)):
        try:
            data: Any = json_value(ev.data)
        except ValueError:
            data = ev.data
        out.append({"event": ev.event, "data": data, "ms": times[i] if i < len(times) else None})
    return out


_DIGITS = re.compile("[0-9]{19}")
_LONG_NUMBER = re.compile(r"(?:[:,\[]|^)[ \t\n\r]*-?[0-9]{19}")


def long_number(text: str) -> bool:
    """Whether `text` may hold a number orjson reads otherwise than json (beyond 64 bits it makes
    an integer a float): 19 digits or more where a number goes, after `:`, `,`, `[` or nothing.
    (Digits in a string can match too: then json reads it, only slower.)"""
    return _DIGITS.search(text) is not None and _LONG_NUMBER.search(text) is not None


def json_value(text: str, *, plain: bool | None = None) -> Any:
    """json.loads(text), by orjson where that gives the same: not for a long number (see
    `long_number`; `plain`: whether the caller knows there is none), and orjson refuses what else
    it differs on (a lone surrogate escape, NaN, Infinity, a float beyond range)."""
    if plain if plain is not None else not long_number(text):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def read_body(db: Database, body: int) -> bytes:
    """The bytes of a stored stream body."""
    row = db.execute("SELECT sse FROM stream_bodies WHERE id = ?", [body]).fetchone()
    if row is None:
        raise missing_row(db, f"stream body {body}")
    return inflate(row[0])
