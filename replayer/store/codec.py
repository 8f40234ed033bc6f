"""How a blob's JSON is kept on disk: as text, or deflated when that saves enough.

`blobs.json` holds the JSON of a message, system prompt, tool list or skeleton, compact, with its
keys in the order they first came in (`in_order`; databases written before that hold the
canonical form, sorted keys, and read the same). Short ones stay TEXT (readable with any SQLite
tool, and not worth compressing); longer ones, tool results mostly, are stored as a BLOB of raw
deflate (level 1) when that makes them at least an eighth smaller. The hash is always taken over
the canonical text (sorted keys), so JSON-equal documents in any key order, compressed or not,
are one blob, and databases written before compression read as before.

Also here: JSON text SQLite and UTF-8 files take, with a lone surrogate written as its escape;
the canonical JSON a blob's hash is taken over (and its fast form for documents without floats);
what a blob stores;
splicing stored JSON text into a document being dumped; the hash itself; and the ids and
timestamps rows are written with.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, cast

import orjson

from .faults import missing_row

MIN_CHARS = 400
"""Texts shorter than this are stored as they are."""
LEVEL = 1
"""zlib's fastest level: nearly the ratio of level 6 on JSON (0.30 against 0.29 on tool
results) for two-thirds of the time, on the writer thread, which releases the GIL meanwhile."""
_WBITS = -15  # raw deflate: no zlib header or checksum (SQLite pages have their own integrity)

try:
    # ISA-L's deflate (the isal package): the same raw deflate, which zlib inflates, in a third to a
    # half of zlib's time at its level 1 with the same ratio (tool results of 0.6-20 KB, measured
    # here); compression was ~9% of the writer's CPU a record. zlib where it has no wheel.
    from isal.isal_zlib import compress as _compress
except ImportError:  # pragma: no cover - (declared for the platforms its wheels cover)
    _compress = zlib.compress


def deflate(raw: bytes) -> bytes:
    """`raw` as raw deflate, what `inflate` (and any zlib) inflates."""
    return _compress(raw, LEVEL, _WBITS)


def inflate(packed: bytes) -> bytes:
    """What `deflate` was given."""
    return zlib.decompress(packed, _WBITS)


def pack(text: str, raw: bytes | None = None) -> str | bytes:
    """What to store for `text`: itself, or its deflated UTF-8 (`raw`, when the caller has it)."""
    if len(text) < MIN_CHARS:
        return text
    if raw is None:
        raw = text.encode("utf-8", "surrogatepass")
    packed = deflate(raw)
    return packed if len(packed) <= len(raw) - (len(raw) >> 3) else text


def unpack(value: str | bytes) -> str:
    """The JSON text of a stored blob."""
    if isinstance(value, str):
        return value
    return inflate(value).decode("utf-8", "surrogatepass")


def stored_json(conn: Any, blob: int) -> str:
    """The JSON text of blob `blob`, read through `conn` (sqlite3 or sqlite-utils). A blob that a
    row points at and that isn't there is a damaged file: DBError (Fault.CORRUPT), not a
    TypeError deep in a listing."""
    row = conn.execute("SELECT json FROM blobs WHERE id = ?", [blob]).fetchone()
    if row is None:
        raise missing_row(conn, f"blob {blob}")
    return unpack(row[0])


_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_lone_surrogate(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def storable(json_text: str) -> str:
    """JSON text that SQLite and UTF-8 files take. A string can hold a lone surrogate (json.loads
    makes one of an escape like \\ud800; a caller's str can have one), which json.dumps with
    ensure_ascii=False writes as it is and no UTF-8 encoder accepts: it is written back as its
    \\u escape, the same JSON."""
    if not _has_lone_surrogate(json_text):
        return json_text
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", json_text)


def dumps(obj: Any) -> str:
    """json.dumps(obj, ensure_ascii=False), storable."""
    return storable(json.dumps(obj, ensure_ascii=False))


def readable(text: str) -> str:
    """Plain text (not JSON) that SQLite takes: a lone surrogate becomes U+FFFD."""
    return _SURROGATE.sub("\ufffd", text) if _has_lone_surrogate(text) else text


WS = re.compile(r"[ \t\n\r]*")
"""JSON whitespace, in text."""
ws_at = cast("Callable[[str, int], re.Match[str]]", WS.match)
"""`WS.match`: `ws_at(text, i).end()` is where the whitespace at `i` ends (it matches the empty
string, so never None; the scanner calls it on every token, so no wrapper function)."""


def canon(obj: Any) -> str:
    """Canonical JSON: what a blob's hash is taken over (JSON-equal documents share a blob)."""
    return storable(json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False))


def canon_plain(obj: Any) -> str:
    """`canon` of a document known to hold no float, NaN or infinity, about ten times faster.

    orjson writes such documents exactly as json does (strings, integers to 64 bits, sorted
    keys; a test checks it on random documents), but floats differently (0.00001 for 1e-05) and
    NaN as null: the caller must know there are none. What orjson refuses goes to json."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:  # an integer beyond 64 bits, a lone surrogate, a non-string key
        return canon(obj)


def compact(obj: Any) -> str:
    """json.dumps(obj, ensure_ascii=False) in compact form, keys in their order, storable."""
    return storable(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))


def dumps_plain(obj: Any) -> str:
    """`compact` for a document known to hold no float (see `canon_plain`)."""
    try:
        return orjson.dumps(obj).decode()
    except TypeError:
        return compact(obj)


Written = tuple[str, int, int]
"""(text, start, end): a document's JSON as it came, `text[start:end]` (not sliced until needed)."""


def in_order(obj: Any, canonical: str, plain: bool, written: Written | None = None) -> str:
    """What a blob stores for `obj`, whose canonical JSON is `canonical`: its compact JSON with
    keys in the order they came (an agent that sends back what the model wrote gets it back from
    a replay or an export as written; the hash stays the canonical form's).

    `written`, when the caller has the text it parsed `obj` from: that text itself, when it is
    already that compact JSON. For a document without floats (`plain`) that is so exactly when it
    is as long as `canonical` and holds no lone surrogate: no character, integer or literal has a
    shorter spelling than the one json writes, and whitespace or a key given twice only add to
    it, so equal lengths leave only the order of keys to differ (a float's text can be shorter:
    1e5 for 100000.0). An agent's requests are mostly that already (compact UTF-8: the SDKs'),
    so most new messages are stored without being written out again."""
    if written is not None and plain:
        text, start, end = written
        if end - start == len(canonical):
            got = text[start:end]
            if not _has_lone_surrogate(got):
                return got
    return dumps_plain(obj) if plain else compact(obj)


class Decoder:
    """json's decoder, noting whether what it parsed held a float, NaN or infinity (only then
    does a document need `canon` rather than `canon_plain`). Reset `floats` before each use."""

    def __init__(self) -> None:
        self.floats = False
        self.raw_decode = json.JSONDecoder(parse_float=self._float, parse_constant=self._float).raw_decode

    def _float(self, text: str) -> float:
        self.floats = True
        return float(text)

    def loads(self, text: str) -> Any:
        """json.loads, noting floats."""
        self.floats = False
        obj, end = self.raw_decode(text, ws_at(text, 0).end())
        if ws_at(text, end).end() != len(text):
            raise ValueError("extra data after the document")
        return obj


SLOT = "\u0000replayer:{}\u0000"
"""Where a part's text goes in a document being dumped (`splice`): no JSON value holds this."""


def slotted(doc: dict[str, Any], keys: Iterable[str]) -> list[str]:
    """`doc` as JSON text with a slot for each of `keys`, cut at the slots: text, key, text, key,
    ..., text (keys in the order they fall). A key already in `doc` keeps its place; a new one
    goes last (`doc` is changed: each such key holds its SLOT). A document many rows share is
    cut once and `fill`ed for each (store/queries.py keeps the pieces)."""
    keys = list(keys)
    for key in keys:
        doc[key] = SLOT.format(key)
    text = json.dumps(doc, ensure_ascii=False)
    marks = {key: json.dumps(SLOT.format(key)) for key in keys}
    pieces: list[str] = []
    start = 0
    for at, key in sorted((text.find(mark), key) for key, mark in marks.items()):
        pieces += (text[start:at], key)
        start = at + len(marks[key])
    pieces.append(text[start:])
    return pieces


def fill(pieces: list[str], parts: Mapping[str, str]) -> str:
    """`slotted` pieces with each key's part put in as it is (JSON text, never parsed and dumped
    again)."""
    if len(pieces) == 1:
        return pieces[0]
    out = [pieces[0]]
    for i in range(1, len(pieces), 2):
        out += (parts[pieces[i]], pieces[i + 1])
    return "".join(out)


class RowTexts:
    """An attempt's request and response JSON texts as `replayer export` writes them, put
    together from its row's stored parts: the skeleton with its system, tools and messages (or
    content and usage) filled in. For a reader that has `_templates` (a bounded dict) and the two
    methods below (store/queries.Store; otlp/lines.Reader, which must not import Store)."""

    _templates: Any

    def blob_text(self, blob_id: int) -> str:
        raise NotImplementedError

    def messages_text(self, node: int) -> str:
        raise NotImplementedError

    def _fill(self, skeleton_text: str, parts: dict[str, str], *, keep: bool = False) -> str:
        """The skeleton with `parts` put in. `keep`: remember its cut form (a skeleton many
        requests share is then parsed and dumped once)."""
        key = (skeleton_text, *parts)
        pieces = self._templates.get(key)
        if pieces is None:
            doc = json.loads(skeleton_text)
            pieces = slotted(doc, parts) if isinstance(doc, dict) else [skeleton_text]
            if keep:
                self._templates[key] = pieces
        return fill(pieces, parts)

    def request_text(self, row: Mapping[str, Any]) -> str:
        parts = {}
        if row["request_system"] is not None:
            parts["system"] = self.blob_text(row["request_system"])
        if row["request_tools"] is not None:
            parts["tools"] = self.blob_text(row["request_tools"])
        if row["request_node"] is not None:
            parts["messages"] = self.messages_text(row["request_node"])
        text = self._fill(self.blob_text(row["request_skel"]), parts, keep=True)
        if text.startswith('{"__body__":'):  # a body that isn't an object, kept as it came
            text = json.dumps(json.loads(text)["__body__"], ensure_ascii=False)
        return text

    def response_text(self, row: Mapping[str, Any]) -> str | None:
        """Its skeleton with its content and usage put back."""
        if row["response_json"] is None:
            return None
        parts = {}
        if row["response_content"] is not None:
            parts["content"] = json.dumps(
                json.loads(self.blob_text(row["response_content"]))["content"], ensure_ascii=False
            )
        if row["usage_json"] is not None:
            parts["usage"] = row["usage_json"]
        return self._fill(row["response_json"], parts) if parts else row["response_json"]


def splice(doc: dict[str, Any], parts: dict[str, str]) -> str:
    """`doc` as JSON text with each key of `parts` holding that part's JSON text as it is: the
    stored parts (messages, a request, a response) are spliced in as text, never parsed and
    dumped again (see `slotted`)."""
    return fill(slotted(doc, parts), parts)


def split(line: str) -> tuple[dict[str, Any], dict[str, str]]:
    """An export line's values, and the exact JSON text of each (one parse): what `splice`
    made, taken apart again (the OTLP exporter's spans, `replayer import export`)."""
    decode = _decoder.raw_decode
    values: dict[str, Any] = {}
    texts: dict[str, str] = {}
    i, end = line.index("{") + 1, len(line)
    while i < end:
        c = line[i]
        if c in " \t\r\n,":
            i += 1
            continue
        if c == "}":
            break
        key, i = decode(line, i)
        while line[i] in " \t\r\n:":
            i += 1
        start = i
        value, i = decode(line, i)
        values[key] = value
        texts[key] = line[start:i]
    else:
        raise ValueError("the line ends before its object does")
    return values, texts


_decoder = json.JSONDecoder()


def loads_or_text(text: str) -> Any:
    """The document in `text`; the text itself when it isn't JSON (a body handed to `record()`
    can be anything: it is kept, as a string, rather than lost)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def digest(text: str) -> str:
    return blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


blake2b = hashlib.blake2b
"""The hash of `digest` (the writer takes it over bytes it already has: `blake2b(raw, digest_size=16)`)."""

_RANDOM_IDS = 256
_random: Iterator[str] = iter(())
"""64-bit random parts of ids not handed out yet, read from os.urandom a few hundred at a time
(one system call each, where the writer makes an id or two per record)."""


def _random_part() -> str:
    global _random
    got = next(_random, None)  # one step of a list's iterator: no two threads get the same part
    if got is None:
        text = os.urandom(8 * _RANDOM_IDS).hex()
        parts = iter([text[i : i + 16] for i in range(0, len(text), 16)])
        got = next(parts)
        _random = parts
    return got


def _forget_random() -> None:
    # a forked child must not make the ids its parent makes from the same parts
    global _random
    _random = iter(())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_random)


def new_id(prefix: str = "", t: float | None = None) -> str:
    """A sortable id: 48-bit milliseconds then 64 random bits, in hex (sorts by time as text)."""
    ms = int((time.time() if t is None else t) * 1000)
    return f"{prefix}{ms:012x}{_random_part()}"


_FIRST_SECOND, _LAST_SECOND = -62135596800, 253402300799
"""0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z."""
_SECONDS_KEPT = 64
_seconds: dict[int, str] = {}
"""The whole seconds `iso` wrote lately, and their text (emptied when it holds _SECONDS_KEPT). A
burst of records mostly shares a few: each attempt's start, and its end (`iso_after`) a latency
later. Keeping only the last one, the two took turns evicting each other and every stamp wrote
its date again (about 4% of the writer's instructions a record in bench/record_throughput.py)."""


def ms_of(t: float) -> int:
    """The time `iso(t)` writes, in whole milliseconds since the epoch."""
    fraction, whole = math.modf(t)
    return int(whole) * 1000 + round(fraction * 1e6) // 1000


LONGEST_MS = 1e10
"""A latency beyond this (115 days; no call takes that long: the SDK gives up after 10 minutes) is
a wrong figure, which `iso_after` counts as none (an import can bring any number)."""


def iso_after(t: float, ms: float | None) -> str:
    """`iso(t)` moved on by `ms` milliseconds cut to a whole one (none, a negative or one beyond
    LONGEST_MS: 0). Counted from the millisecond iso(t) writes, so the same text whether `t` is a
    clock reading or was read back from that text (an import of an export line), and the same
    as schema.ENDED_SQL makes of the stored start and latency."""
    return iso((ms_of(t) + (int(ms) if ms is not None and 0 < ms < LONGEST_MS else 0)) / 1000)


def iso(t: float) -> str:
    """ISO-8601 UTC with milliseconds and a Z: sorts as text. The same text as
    `datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"` (the fraction
    rounded to microseconds half to even, then cut to milliseconds), about four times faster:
    the writer stamps every record."""
    fraction, whole = math.modf(t)
    us = round(fraction * 1e6)
    if us >= 1_000_000:
        us -= 1_000_000
        whole += 1.0
    elif us < 0:
        us += 1_000_000
        whole -= 1.0
    second = int(whole)
    text = _seconds.get(second)
    if text is None:
        if not _FIRST_SECOND <= second <= _LAST_SECOND:  # datetime's range: let it say what is wrong
            return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
        g = time.gmtime(second)
        text = f"{g.tm_year:04d}-{g.tm_mon:02d}-{g.tm_mday:02d}T{g.tm_hour:02d}:{g.tm_min:02d}:{g.tm_sec:02d}"
        if len(_seconds) >= _SECONDS_KEPT:
            _seconds.clear()
        _seconds[second] = text
    return f"{text}.{us // 1000:03d}Z"
