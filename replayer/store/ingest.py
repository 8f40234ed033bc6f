"""Turning captured attempts into deduplicated rows. Runs on the background writer only.

The expensive part of storing an agent's calls is that every request re-sends the whole
history. Parsing and hashing every message of every request would make the writer's work grow
with the square of the conversation length (and the writer shares the GIL with the agent). So
a request's messages array is first compared, as bytes, with a recent request's (found by the
array's first bytes): the elements at its start that are byte-for-byte the same reuse that
request's blob and node ids, and are cut out before the body is even decoded. Only the rest
(the new tail of the history, and the other keys) is decoded, scanned as text, parsed,
canonicalised and hashed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlite_utils import Database

from . import facts
from .codec import pack, storable

_WS = re.compile(r"[ \t\n\r]*")
_WSB = re.compile(rb"[ \t\n\r]*")
PREFIX_KEY_BYTES = 256
MAX_CANDIDATE_BYTES = 64_000_000
MAX_CACHE = 50_000
"""Entries in each id cache (blob and node ids, short texts, tool counts): they live in the
agent's process. A miss costs a lookup in the database; the usual hits are recent."""
MAX_OPEN_KEYS = 20_000
"""Thread keys whose open conversations the writer remembers (see `Ingestor.open_at`)."""
SPLIT_KEYS = ("system", "tools", "messages")


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


def dumps_plain(obj: Any) -> str:
    """json.dumps(obj, ensure_ascii=False) in compact form, keys in their order, for a document
    known to hold no float (see `canon_plain`)."""
    try:
        return orjson.dumps(obj).decode()
    except TypeError:
        return storable(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))


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
        obj, end = self.raw_decode(text, _WS.match(text, 0).end())
        if _WS.match(text, end).end() != len(text):
            raise ValueError("extra data after the document")
        return obj


def loads_or_text(text: str) -> Any:
    """The document in `text`; the text itself when it isn't JSON (a body handed to `record()`
    can be anything: it is kept, as a string, rather than lost)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def new_id(prefix: str = "", t: float | None = None) -> str:
    """A sortable id: 48-bit milliseconds then 64 random bits, in hex (sorts by time as text)."""
    ms = int((time.time() if t is None else t) * 1000)
    return f"{prefix}{ms:012x}{os.urandom(8).hex()}"


def iso(t: float) -> str:
    """ISO-8601 UTC with milliseconds and a Z: sorts as text."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _normalise(obj: Any) -> Any:
    """A message as threading compares it: nulls and cache_control dropped (agents move their
    cache breakpoint to the newest message), thinking blocks dropped (agents often strip them from
    history), string content as a text block."""
    if isinstance(obj, dict):
        out = {k: _normalise(v) for k, v in obj.items() if v is not None and k != "cache_control"}
        content = out.get("content")
        if "role" in out:
            if isinstance(content, str):
                out["content"] = [{"type": "text", "text": content}]
            elif isinstance(content, list):
                out["content"] = [
                    b
                    for b in content
                    if not (isinstance(b, dict) and b.get("type") in ("thinking", "redacted_thinking"))
                ]
        return out
    if isinstance(obj, list):
        return [_normalise(v) for v in obj]
    return obj


def thread_key(prev: str, message: Any, text: str | None = None, text_digest: str | None = None) -> str:
    """Chain `message` onto the key of the list before it. `text`/`text_digest` are the message's
    canonical JSON and its digest when the caller has them: when normalising would change nothing
    (the usual case), they stand for the normalised form without a second serialisation."""
    if (
        text is not None
        and text_digest is not None
        and text.startswith('{"content":[')
        and "null" not in text
        and '"cache_control"' not in text
        and '"thinking"' not in text
        and '"redacted_thinking"' not in text
    ):
        return digest(prev + text_digest)
    return digest(prev + digest(canon(_normalise(message))))


@dataclass
class Candidate:
    """A recent request's messages, to be matched against the start of the next one."""

    raw: bytes
    """The request body they came in (kept whole: slicing it would copy the history)."""
    start: int
    """Where the array's first element starts in `raw`."""
    ends: list[int]
    """Where each element ends, in bytes from `start`."""
    blobs: list[int]
    nodes: list[int]
    tkeys: list[str]

    def matches(self, body: bytes, at: int, k: int) -> bool:
        """Whether `body` holds this candidate's first `k` elements at `at`, and then , or ]."""
        end = self.ends[k - 1]
        if not body.startswith(memoryview(self.raw)[self.start : self.start + end], at):
            return False
        j = _WSB.match(body, at + end).end()
        return body[j : j + 1] in (b",", b"]")

    def common(self, body: bytes, at: int) -> int:
        """How many of its leading elements start the array at `at` in `body`: all of them (an
        agent's next request), else all but the last (an edited or branched last turn), else a
        binary search over element ends (a prefix that matches up to an element's end matches
        up to every earlier one)."""
        hi = len(self.ends)
        if self.matches(body, at, hi):
            return hi
        hi -= 1
        if hi >= 1 and self.matches(body, at, hi):
            return hi
        lo = 0  # matches(lo) holds (trivially for 0); matches(hi) does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.matches(body, at, mid):
                lo = mid
            else:
                hi = mid
        return lo


@dataclass
class _Reuse:
    """Leading messages found in a candidate, already cut out of the text being scanned."""

    at: int
    """Where the array's first element starts in the body (bytes) and in the text (characters)."""
    at_chars: int
    n: int
    cand: Candidate
    used: bool = False


@dataclass
class ParsedRequest:
    skeleton: dict[str, Any]
    """The body with system/tools/messages set to null where they were taken out."""
    skeleton_raw: str | None = None
    """The skeleton's keys and values as they were written, to find its blob without re-encoding."""
    system: int | None = None
    tools: int | None = None
    node: int | None = None
    """Node of the last message sent; 0 for an empty list; None when messages stayed in skeleton."""
    msgs: list[Any] | None = None
    """The parsed new messages (tail) and None for reused ones; only for this request's use."""
    reused: int = 0
    """How many leading messages were reused from a recent request (the Nones in `msgs`)."""
    blobs: list[int] = field(default_factory=list)
    nodes: list[int] = field(default_factory=list)
    tkeys: list[str] = field(default_factory=list)


class Ingestor:
    """Writes attempts into one Database. Owned by a single writer thread."""

    def __init__(self, db: Database):
        self.db = db
        self.blob_ids: dict[str, int] = {}
        self.small_ids: dict[str, tuple[int, str]] = {}
        self.last_digest = ""
        self.node_ids: dict[tuple[int, int], int] = {}
        self.raw_blob: dict[str, int] = {}
        self.last_raw: dict[str, tuple[str, int]] = {}
        self.candidates: OrderedDict[bytes, Candidate] = OrderedDict()
        self.candidate_bytes = 0
        self.turn_by_call: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self.open_at: dict[str, list[str]] = {}
        """Thread key -> conversations whose latest reply ends that context (a request extending
        it may continue them), first come first. Everyone listed is open there; a list may lack
        conversations another connection opened before this one last looked (`open_known`: the
        keys whose lists are whole). Filled by this connection's own replies and its lookups,
        so an agent's next turn finds its conversation without a query."""
        self.open_known: set[str] = set()
        self.tip_of: dict[str, str] = {}
        """Conversation -> its key in `open_at` (to take it off that list when it moves on)."""
        self.tip_rows: dict[str, tuple[str | None, int]] = {}
        """thread_tips rows waiting for `write_pending`: conversation -> (key or None, attempt id)."""
        self.next_idx: dict[str, tuple[int, int | None, int]] = {}
        """Conversations this connection added turns to: the next turn index, and the last
        turn's context node and length."""
        self.tool_results: dict[int, tuple[int, int]] = {}
        """Message blob -> its tool_result blocks and errors (blobs never change)."""
        self.tool_totals: dict[int, tuple[int, int]] = {}
        """Node -> the tool_result blocks and errors of its whole list (nodes never change)."""
        self.last_reads: dict[int, tuple[int, int]] = {}
        """Conversation rowid -> (turn index, cache reads) of the last usage this connection wrote."""
        self.data_version: int | None = None
        self.decoder = Decoder()
        self.texts: list[tuple[int, str]] = []
        """Search text waiting for `write_pending` (turn_text rowid, text)."""
        self.usage: list[tuple[Any, ...]] = []
        self.touched: dict[int, list[Any]] = {}
        """usage rows (the rollup is summed from them), thread tips and conversations' new turns
        (rowid -> [last start, turns, user, tags]) waiting for `write_pending`."""
        self.conv_rowids: dict[str, int] = {}
        """Conversations this connection wrote a turn of: id -> rowid."""

    def others_wrote(self) -> None:
        """At the start of a transaction: when another connection has committed since our last one,
        drop what it may have changed (its turns and thread tips); blobs and nodes never change."""
        version = self.db.conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self.data_version:
            self.data_version = version
            self.forget_tips()
            self.next_idx.clear()
            self.last_reads.clear()
            self.conv_rowids.clear()

    def touch_conversation(self, rowid: int, started: str, user_id: str | None, tags: str | None) -> None:
        got = self.touched.get(rowid)
        if got is None:
            self.touched[rowid] = [started, 1, user_id, tags]
            return
        got[0] = max(got[0], started)
        got[1] += 1
        got[2] = got[2] or user_id
        got[3] = got[3] or tags

    def write_pending(self, *, index: bool = True) -> None:
        """Write the rows that nothing reads back while a batch is written: at its end, a few
        statements for the whole batch instead of several per attempt. `index=False`, for the
        two queries that read such rows mid-batch (cache reads of the turn before, open conversations),
        leaves the search text for the end.

        The search text goes last, in rowid order. FTS5 keeps what it is given in memory until
        the transaction ends, but writes it out as a new index segment whenever another
        statement opens a savepoint (an upsert does), and merges those segments as they pile
        up: indexing turn by turn between the other writes made one tiny segment per turn, and
        most of the writer's time went to merging them."""
        conn = self.db.conn
        if self.touched:
            conn.executemany(
                """UPDATE conversations SET last_at = MAX(last_at, ?), turn_count = turn_count + ?,
                       user_id = COALESCE(user_id, ?), tags_json = COALESCE(tags_json, ?) WHERE rowid = ?""",
                [(*v, k) for k, v in self.touched.items()],
            )
            self.touched = {}
        if self.usage:
            facts.write(conn, self.usage)
            self.usage = []
        if self.tip_rows:
            rows = self.tip_rows.items()
            conn.executemany(
                "INSERT OR REPLACE INTO thread_tips(conversation_id, key, seq) VALUES (?, ?, ?)",
                [(conv, key, seq) for conv, (key, seq) in rows if key is not None],
            )
            conn.executemany(
                "DELETE FROM thread_tips WHERE conversation_id = ?", [(conv,) for conv, (key, _) in rows if key is None]
            )
            self.tip_rows = {}
        if self.texts and index:
            self.texts.sort()
            conn.executemany("INSERT INTO turn_text(rowid, text) VALUES (?, ?)", self.texts)
            self.texts = []

    def forget(self) -> None:
        """Drop every cache (after a rollback the ids they hold may not exist)."""
        self.texts, self.usage, self.tip_rows, self.touched = [], [], {}, {}
        self.conv_rowids.clear()
        self.forget_tips()
        self.next_idx.clear()
        self.last_reads.clear()
        self.tool_results.clear()
        self.tool_totals.clear()
        self.blob_ids.clear()
        self.small_ids.clear()
        self.node_ids.clear()
        self.raw_blob.clear()
        self.last_raw.clear()
        self.candidates.clear()
        self.candidate_bytes = 0
        self.turn_by_call.clear()

    # -- threading -------------------------------------------------------------------------
    def forget_tips(self) -> None:
        self.open_at.clear()
        self.open_known.clear()
        self.tip_of.clear()

    def open_conversation(self, tkeys: list[str]) -> str | None:
        """The conversation that a request whose messages have these thread keys continues: of
        those whose latest reply ends the longest prefix of its messages, the first to get
        there. None when there is none (a new conversation). Identical conversations run at
        once (a temperature-0 eval) share every prefix: each continuation takes another.

        Asks the table only for keys longer than the longest this connection knows an open
        conversation at (usually none: an agent's next request extends the reply just written)."""
        keys = tkeys[-2::-1][:16]  # the proper prefixes, longest first
        hit = next((j for j, k in enumerate(keys) if self.open_at.get(k)), len(keys))
        ask = [k for k in keys[:hit] if k not in self.open_known]
        if ask:
            for k in ask:
                self.open_at[k] = []
                self.open_known.add(k)
            sql = f"SELECT key, conversation_id FROM thread_tips WHERE key IN ({','.join('?' * len(ask))}) ORDER BY seq"
            for k, conv in self.db.conn.execute(sql, ask):
                # a row this connection has moved on (not written yet) is stale; a move not written
                # yet never lands on a key asked for (it is in `open_at`)
                if conv not in self.tip_rows:
                    self.open_at[k].append(conv)
                    self.tip_of[conv] = k
        return next((self.open_at[k][0] for k in keys if self.open_at.get(k)), None)

    def move_tip(self, conversation_id: str, key: str | None, seq: int) -> None:
        """`conversation_id`'s latest context is now `key` (None: one keys can't follow, such as
        a tool-runner thread request's); `seq` orders conversations that reach the same key."""
        if len(self.open_at) > MAX_OPEN_KEYS:  # a list forgotten is asked for again, from the table
            self.write_pending(index=False)
            self.forget_tips()
        old = self.tip_of.pop(conversation_id, None)
        if old is not None:
            self.open_at[old].remove(conversation_id)
        if key is not None:
            self.open_at.setdefault(key, []).append(conversation_id)
            self.tip_of[conversation_id] = key
        self.tip_rows[conversation_id] = (key, seq)

    # -- blobs and nodes -------------------------------------------------------------------
    def blob(self, obj: Any) -> int:
        text = canon(obj)
        return self.blob_text(text)

    def message_blob(self, obj: Any, prev_key: str, plain: bool = False) -> tuple[int, str]:
        """(blob id, thread key) of a message following a list whose thread key is `prev_key`.
        `plain`: the message is known to hold no float (see `canon_plain`)."""
        text = canon_plain(obj) if plain else canon(obj)
        b = self.blob_text(text)
        return b, thread_key(prev_key, obj, text, self.last_digest)

    def blob_text(self, text: str) -> int:
        small = len(text) <= 512
        if small:
            hit = self.small_ids.get(text)  # skeletons, headers, short messages: skip the hash
            if hit is not None:
                self.last_digest = hit[1]
                return hit[0]
        h = digest(text)
        self.last_digest = h
        got = self.blob_ids.get(h)
        if got is not None:
            if small:
                self.small_ids[text] = (got, h)
            return got
        conn = self.db.conn
        cur = conn.execute("INSERT OR IGNORE INTO blobs(hash, json) VALUES (?, ?)", (h, pack(text)))
        if cur.rowcount:
            got = cur.lastrowid
        else:
            got = conn.execute("SELECT id FROM blobs WHERE hash = ?", (h,)).fetchone()[0]
        if len(self.blob_ids) > MAX_CACHE:
            self.blob_ids.clear()
            self.small_ids.clear()
        self.blob_ids[h] = got
        if small:
            self.small_ids[text] = (int(got), h)
        return int(got)

    def node(self, parent: int, blob: int, depth: int) -> int:
        key = (parent, blob)
        got = self.node_ids.get(key)
        if got is not None:
            return got
        conn = self.db.conn
        cur = conn.execute("INSERT OR IGNORE INTO nodes(parent, blob, depth) VALUES (?, ?, ?)", (parent, blob, depth))
        if cur.rowcount:
            got = cur.lastrowid
        else:
            got = conn.execute("SELECT id FROM nodes WHERE parent = ? AND blob = ?", key).fetchone()[0]
        if len(self.node_ids) > MAX_CACHE:
            self.node_ids.clear()
        self.node_ids[key] = got
        return int(got)

    def _raw_blob(self, key: str, raw: str, obj: Any) -> int:
        got = self.raw_blob.get(raw)
        if got is None:
            got = self.blob(obj)
            if len(self.raw_blob) > 4096:
                self.raw_blob.clear()
            self.raw_blob[raw] = got
        self.last_raw[key] = (raw, got)
        return got

    def _known_raw(self, key: str, s: str, i: int) -> tuple[int, int] | None:
        """(blob, end) when the text at `i` is the last value seen for `key`, character for character."""
        last = self.last_raw.get(key)
        if last is None or not s.startswith(last[0], i):
            return None
        end = i + len(last[0])
        j = _WS.match(s, end).end()
        if j >= len(s) or s[j] not in ",}":
            return None
        return last[1], end

    # -- requests --------------------------------------------------------------------------
    def parse_request(self, body: bytes | str) -> ParsedRequest:
        """A request body as sent (UTF-8; str is encoded first)."""
        if isinstance(body, str):
            try:
                body = body.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate json.loads accepts: no fast path
                return self.parse_request_obj(json.loads(body))
        try:
            return self._scan_body(body)
        except (ValueError, IndexError, TypeError):  # UnicodeDecodeError is a ValueError
            return self.parse_request_obj(loads_or_text(body.decode("utf-8", "surrogateescape")))

    def _scan_body(self, body: bytes) -> ParsedRequest:
        """Cut the messages a recent request already had out of `body`, then scan the rest.

        The array is found by its key's first occurrences (a tool's schema can have a
        "messages" property); the text scan then checks that it was the top-level "messages" (a
        key or string before it can spell the same bytes) and, if not, scans the whole body."""
        p = -1
        for _ in range(8):
            p = body.find(b'"messages"', p + 1)
            if p < 0:
                break
            q = _WSB.match(body, p + 10).end()
            if body[q : q + 1] != b":":
                continue
            q = _WSB.match(body, q + 1).end()
            if body[q : q + 1] != b"[":
                continue
            at = _WSB.match(body, q + 1).end()
            cand = self.candidates.get(body[at : at + PREFIX_KEY_BYTES])
            n = cand.common(body, at) if cand is not None and cand.ends else 0
            if not n:
                continue
            head = body[:at].decode("utf-8", "surrogateescape")
            text = head + body[at + cand.ends[n - 1] :].decode("utf-8", "surrogateescape")
            reuse = _Reuse(at, len(head), n, cand)
            try:
                pr = self._scan(text, body, reuse)
            except (ValueError, IndexError, TypeError):
                break
            if reuse.used:
                return pr
            break
        return self._scan(body.decode("utf-8", "surrogateescape"), body, None)

    def parse_request_obj(self, body: Any) -> ParsedRequest:
        """The slow path: a parsed document (from `record()`, a redactor, or odd JSON)."""
        if not isinstance(body, dict):
            return ParsedRequest(skeleton={"__body__": body})
        skeleton = dict(body)
        pr = ParsedRequest(skeleton=skeleton)
        if "system" in body and body["system"] is not None:
            pr.system = self.blob(body["system"])
            skeleton["system"] = None
        if "tools" in body and body["tools"] is not None:
            pr.tools = self.blob(body["tools"])
            skeleton["tools"] = None
        msgs = body.get("messages")
        if isinstance(msgs, list):
            skeleton["messages"] = None
            pr.msgs = list(msgs)
            parent, tk = 0, ""
            for i, m in enumerate(msgs):
                b, tk = self.message_blob(m, tk)
                parent = self.node(parent, b, i + 1)
                pr.blobs.append(b)
                pr.nodes.append(parent)
                pr.tkeys.append(tk)
            pr.node = parent
        return pr

    def _scan(self, s: str, body: bytes, reuse: _Reuse | None) -> ParsedRequest:
        """Scan the text `s` of `body` (with `reuse`'s elements cut out of its messages)."""
        raw_decode = self.decoder.raw_decode
        i = _WS.match(s, 0).end()
        if s[i] != "{":
            raise ValueError("not an object")
        i += 1
        skeleton: dict[str, Any] = {}
        pr = ParsedRequest(skeleton=skeleton)
        raw_parts: list[str] = []
        while True:
            i = _WS.match(s, i).end()
            if s[i] == "}" and not raw_parts:
                break
            key_start = i
            key, i = raw_decode(s, i)
            if not isinstance(key, str):  # what raw_decode reads here need not be a string
                raise ValueError("expected a key")
            if key in skeleton:  # json.loads keeps the last value: let it decide
                raise ValueError("a key given twice")
            key_raw = s[key_start:i]
            i = _WS.match(s, i).end()
            if s[i] != ":":
                raise ValueError("expected :")
            i = _WS.match(s, i + 1).end()
            if key == "messages" and s[i] == "[":
                i = self._scan_messages(s, i + 1, pr, body, reuse)
                skeleton[key] = None
                raw_parts.append('"messages":-')
            elif key in ("system", "tools") and (known := self._known_raw(key, s, i)) is not None:
                # the same system prompt / tool list as last time: no need to parse it again
                blob, i = known
                if key == "system":
                    pr.system = blob
                else:
                    pr.tools = blob
                skeleton[key] = None
                raw_parts.append(f'"{key}":-')
            else:
                start = i
                value, i = raw_decode(s, i)
                if key in ("system", "tools") and value is not None:
                    blob = self._raw_blob(key, s[start:i], value)
                    if key == "system":
                        pr.system = blob
                    else:
                        pr.tools = blob
                    value = None
                    raw_parts.append(f'"{key}":-')
                else:
                    raw_parts.append(key_raw + ":" + s[start:i])  # as written: equal text, equal skeleton
                skeleton[key] = value
            i = _WS.match(s, i).end()
            if s[i] == ",":
                i += 1
            elif s[i] == "}":
                break
            else:
                raise ValueError("expected , or }")
        if _WS.match(s, i + 1).end() != len(s):
            raise ValueError("trailing data")
        pr.skeleton_raw = ",".join(raw_parts)
        return pr

    def _scan_messages(self, s: str, i: int, pr: ParsedRequest, body: bytes, reuse: _Reuse | None) -> int:
        dec = self.decoder
        n = 0
        if reuse is None:
            i0 = i = _WS.match(s, i).end()
        else:
            # only whitespace between this "[" and where the cut was made (whitespace after the
            # cut, before its "," or "]", is the tail's)
            gap = _WS.match(s, i, reuse.at_chars)
            if gap is None or gap.end() != reuse.at_chars:
                raise ValueError("not the messages the byte search found")
            i0 = reuse.at_chars
            i = _WS.match(s, i0).end()
            reuse.used = True
            n, cand = reuse.n, reuse.cand
            pr.blobs = cand.blobs[:n]
            pr.nodes = cand.nodes[:n]
            pr.tkeys = cand.tkeys[:n]
            if s[i] == ",":
                i = _WS.match(s, i + 1).end()
                if s[i] == "]":
                    raise ValueError("a comma before ]")
        parent = pr.nodes[-1] if n else 0
        tk = pr.tkeys[-1] if n else ""
        msgs: list[Any] = [None] * n
        pr.reused = n
        new_ends = []  # in characters from i0
        while s[i] != "]":
            dec.floats = False
            obj, i = dec.raw_decode(s, i)
            new_ends.append(i - i0)
            b, tk = self.message_blob(obj, tk, plain=not dec.floats)
            n += 1
            parent = self.node(parent, b, n)
            msgs.append(obj)
            pr.blobs.append(b)
            pr.nodes.append(parent)
            pr.tkeys.append(tk)
            i = _WS.match(s, i).end()
            if s[i] == ",":
                i = _WS.match(s, i + 1).end()
                if s[i] == "]":
                    raise ValueError("a comma before ]")
            elif s[i] != "]":
                raise ValueError("expected , or ]")
        pr.node = parent
        pr.msgs = msgs
        if n:
            self._remember(s, i0, body, reuse, new_ends, pr)
        return i + 1

    def _remember(
        self, s: str, i0: int, body: bytes, reuse: _Reuse | None, new_ends: list[int], pr: ParsedRequest
    ) -> None:
        """Keep this request's messages as a candidate for the next one, element ends in bytes."""
        if reuse is not None:
            if not new_ends and reuse.n == len(reuse.cand.ends):  # the same messages again
                self.candidates.move_to_end(body[reuse.at : reuse.at + PREFIX_KEY_BYTES])
                return
            at, ends, base = reuse.at, reuse.cand.ends[: reuse.n], reuse.cand.ends[reuse.n - 1]
        else:
            at = i0 if s.isascii() else len(s[:i0].encode("utf-8", "surrogateescape"))
            ends, base = [], 0
        if s.isascii():
            ends += [base + e for e in new_ends]
        else:
            prev = 0
            for e in new_ends:
                base += len(s[i0 + prev : i0 + e].encode("utf-8", "surrogateescape"))
                ends.append(base)
                prev = e
        key = body[at : at + PREFIX_KEY_BYTES]
        old = self.candidates.pop(key, None)
        if old is not None:
            self.candidate_bytes -= len(old.raw)
        self.candidates[key] = Candidate(body, at, ends, pr.blobs[:], pr.nodes[:], pr.tkeys[:])
        self.candidate_bytes += len(body)
        while self.candidate_bytes > MAX_CANDIDATE_BYTES and len(self.candidates) > 1:
            _, dropped = self.candidates.popitem(last=False)
            self.candidate_bytes -= len(dropped.raw)

    def skeleton_blob(self, pr: ParsedRequest) -> int:
        """The blob of a request's skeleton; usually the same as the last one's, found by its text."""
        if pr.skeleton_raw is None:
            return self.blob(pr.skeleton)
        got = self.raw_blob.get(pr.skeleton_raw)
        if got is None:
            got = self.blob(pr.skeleton)
            if len(self.raw_blob) > 4096:
                self.raw_blob.clear()
            self.raw_blob[pr.skeleton_raw] = got
        return got


def response_parts(resp: Any) -> tuple[Any, dict[str, Any] | None]:
    """(skeleton with content and usage nulled, the assistant message its content makes).

    Usage is kept in its own column (for aggregates) and content as a blob (the next request
    usually sends it back), so neither is stored twice."""
    if not isinstance(resp, dict):
        return resp, None
    skeleton = dict(resp)
    if isinstance(resp.get("usage"), dict):
        skeleton["usage"] = None
    if not isinstance(resp.get("content"), list):
        return skeleton, None
    skeleton["content"] = None
    return skeleton, {"role": resp.get("role", "assistant"), "content": resp["content"]}
