"""Turning captured attempts into deduplicated rows. Runs on the background writer only.

The expensive part of storing an agent's calls is that every request re-sends the whole
history. Parsing and hashing every message of every request would make the writer's work grow
with the square of the conversation length (and the writer shares the GIL with the agent). So
the request body is scanned as text: the messages array element by element, and the elements
at its start that are character-for-character the same as those of a recent request (found by
the first characters of the array) reuse that request's blob and node ids without being parsed
again. Only the new tail of each request is parsed, canonicalised and hashed.
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
from .codec import pack

_WS = re.compile(r"[ \t\n\r]*")
PREFIX_KEY_CHARS = 256
MAX_CANDIDATE_CHARS = 64_000_000
MAX_CACHE = 50_000
"""Entries in each id cache (blob and node ids, short texts, tool counts): they live in the
agent's process. A miss costs a lookup in the database; the usual hits are recent."""
SPLIT_KEYS = ("system", "tools", "messages")


def canon(obj: Any) -> str:
    """Canonical JSON: what a blob's hash is taken over (JSON-equal documents share a blob)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


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
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


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

    head: str
    """The array's text from its first element to the end of its next-to-last ("" for one)."""
    tail: str
    """The rest, to the end of its last element. Kept apart so the usual checks (the whole list
    again, or all but its last element) compare in place instead of copying a long history."""
    ends: list[int]
    """Where each element ends in head + tail."""
    blobs: list[int]
    nodes: list[int]
    tkeys: list[str]

    @property
    def chars(self) -> int:
        return len(self.head) + len(self.tail)


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
        self.candidates: OrderedDict[str, Candidate] = OrderedDict()
        self.candidate_chars = 0
        self.turn_by_call: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self.thread_conv: dict[str, str] = {}
        """thread_keys rows this connection wrote (key -> conversation), to thread the next turn
        without a query."""
        self.thread_missing: set[str] = set()
        """Keys the table didn't have when this connection last looked (until another writes)."""
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
        self.thread_rows: list[tuple[str, str]] = []
        self.touched: dict[int, list[Any]] = {}
        """usage rows (the rollup is summed from them), thread keys and conversations' new turns
        (rowid -> [last start, turns, user, tags]) waiting for `write_pending`."""
        self.conv_rowids: dict[str, int] = {}
        """Conversations this connection wrote a turn of: id -> rowid."""

    def others_wrote(self) -> None:
        """At the start of a transaction: when another connection has committed since our last one,
        drop what it may have changed (its turns and thread keys); blobs and nodes never change."""
        version = self.db.conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self.data_version:
            self.data_version = version
            self.thread_conv.clear()
            self.thread_missing.clear()
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
        two queries that read such rows mid-batch (cache reads of the turn before, thread keys),
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
        if self.thread_rows:
            conn.executemany("INSERT OR REPLACE INTO thread_keys(key, conversation_id) VALUES (?, ?)", self.thread_rows)
            self.thread_rows = []
        if self.texts and index:
            self.texts.sort()
            conn.executemany("INSERT INTO turn_text(rowid, text) VALUES (?, ?)", self.texts)
            self.texts = []

    def forget(self) -> None:
        """Drop every cache (after a rollback the ids they hold may not exist)."""
        self.texts, self.usage, self.thread_rows, self.touched = [], [], [], {}
        self.conv_rowids.clear()
        self.thread_conv.clear()
        self.thread_missing.clear()
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
        self.candidate_chars = 0
        self.turn_by_call.clear()

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
    def parse_request(self, text: str) -> ParsedRequest:
        try:
            return self._scan(text)
        except (ValueError, IndexError, TypeError):
            return self.parse_request_obj(json.loads(text))

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

    def _scan(self, s: str) -> ParsedRequest:
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
            if s[i] == "}":
                break
            key, i = raw_decode(s, i)
            i = _WS.match(s, i).end()
            if s[i] != ":":
                raise ValueError("expected :")
            i = _WS.match(s, i + 1).end()
            if key == "messages" and s[i] == "[":
                i = self._scan_messages(s, i + 1, pr)
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
                    raw_parts.append(json.dumps(key) + ":" + s[start:i])
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

    def _scan_messages(self, s: str, i: int, pr: ParsedRequest) -> int:
        dec = self.decoder
        i0 = i = _WS.match(s, i).end()
        pkey = s[i : i + PREFIX_KEY_CHARS]
        cand = self.candidates.get(pkey)
        n = 0
        if cand is not None and cand.ends:
            # An agent's next request starts with its last one's messages: compare them all at
            # once (one memcmp), element by element only when that fails (an edited history).
            head = len(cand.head)
            if (
                s.startswith(cand.head, i0)
                and s.startswith(cand.tail, i0 + head)
                and s[_WS.match(s, i0 + head + len(cand.tail)).end()] in ",]"
            ):
                n = len(cand.ends)
            else:
                n = self._common_elements(s, i0, cand)
            if n:
                pr.blobs = cand.blobs[:n]
                pr.nodes = cand.nodes[:n]
                pr.tkeys = cand.tkeys[:n]
                i = _WS.match(s, i0 + cand.ends[n - 1]).end()
                if s[i] == ",":
                    i = _WS.match(s, i + 1).end()
        ends = cand.ends[:n] if n and cand is not None else []
        parent = pr.nodes[-1] if n else 0
        tk = pr.tkeys[-1] if n else ""
        msgs: list[Any] = [None] * n
        pr.reused = n
        while s[i] != "]":
            dec.floats = False
            obj, i = dec.raw_decode(s, i)
            ends.append(i - i0)
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
            elif s[i] != "]":
                raise ValueError("expected , or ]")
        pr.node = parent
        pr.msgs = msgs
        if ends:
            cut = i0 + (ends[-2] if len(ends) > 1 else 0)
            cand = Candidate(s[i0:cut], s[cut : i0 + ends[-1]], ends, pr.blobs[:], pr.nodes[:], pr.tkeys[:])
            self._remember(pkey, cand)
        return i + 1

    @staticmethod
    def _common_elements(s: str, i0: int, cand: Candidate) -> int:
        """How many leading elements of `cand` start the array at `i0` in `s`: binary search over
        element ends (a prefix that matches up to an element's end matches up to every earlier
        one), trying all-but-the-last first, the usual case of an edited or branched last turn."""

        def matches(k: int) -> bool:  # k < len(cand.ends): the first k elements are within head
            end = cand.ends[k - 1]
            prefix = cand.head if end == len(cand.head) else cand.head[:end]
            return s.startswith(prefix, i0) and s[_WS.match(s, i0 + end).end()] in ",]"

        hi = len(cand.ends) - 1
        if hi >= 1 and matches(hi):
            return hi
        lo = 0  # matches(lo) holds (trivially for 0); matches(hi) does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if matches(mid):
                lo = mid
            else:
                hi = mid
        return lo

    def _remember(self, key: str, cand: Candidate) -> None:
        old = self.candidates.pop(key, None)
        if old is not None:
            self.candidate_chars -= old.chars
        self.candidates[key] = cand
        self.candidate_chars += cand.chars
        while self.candidate_chars > MAX_CANDIDATE_CHARS and len(self.candidates) > 1:
            _, dropped = self.candidates.popitem(last=False)
            self.candidate_chars -= dropped.chars

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
