"""The byte-level request scanner: a request body in, its skeleton, system and tool blobs and
message nodes out, without parsing what a recent request already had.

The expensive part of storing an agent's calls is that every request re-sends the whole
history. Parsing and hashing every message of every request would make the writer's work grow
with the square of the conversation length (and the writer shares the GIL with the agent). So
a request's messages array is first compared, as bytes, with a recent request's (found by the
array's first bytes): the elements at its start that are byte-for-byte the same reuse that
request's blob and node ids, and are cut out before the body is even decoded. Only the rest
(the new tail of the history, and the other keys) is decoded, scanned as text, parsed,
canonicalised and hashed. The hash is the canonical form's (JSON-equal messages in any key order
are one blob); a new blob stores the text as it was written when that is compact already, its
keys in the order they came (codec.in_order). Runs on the background writer only.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from ..bounded import BoundedDict
from .blobs import Blobs
from .codec import WS, Decoder, loads_or_text
from .codec import ws_at as _ws

_WSB = re.compile(rb"[ \t\n\r]*")
_CLOSE = ord("]")
_wsb = cast("Callable[[bytes, int], re.Match[bytes]]", _WSB.match)
"""`_WSB.match`, typed as never None (it matches the empty string)."""
PREFIX_KEY_BYTES = 256
MAX_CANDIDATE_BYTES = 64_000_000
MAX_RAW = 4096
"""System prompts, tool lists and skeletons remembered by their text as written."""
MAX_SHAPES = 8
"""Recent shapes remembered apart from the candidates that hold them (see `RequestScanner.shapes`)."""


@dataclass(slots=True)
class Shape:
    """What a request holds around its messages array, as `_scan` read it: an agent's next
    request usually has the same bytes there (the same system prompt, tools, model, metadata),
    and then gets all of this without a byte of it decoded again."""

    skeleton: dict[str, Any]
    skeleton_raw: str
    system: int | None
    tools: int | None


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
    """Each element's blob, node and thread key (as in `ParsedRequest`)."""
    nodes: list[int]
    thread_keys: list[str]
    close: int = 0
    """Where the array ends in `raw`, just after its "]"."""
    shape: Shape | None = None
    """The rest of the request (before `start` and from `close`), once the whole body was read."""

    def matches(self, body: bytes, at: int, k: int) -> bool:
        """Whether `body` holds this candidate's first `k` elements at `at`, and then , or ]."""
        end = self.ends[k - 1]
        if not body.startswith(memoryview(self.raw)[self.start : self.start + end], at):
            return False
        j = _wsb(body, at + end).end()
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
class Reuse:
    """Leading messages found in a candidate, already cut out of the text being scanned."""

    at: int
    """Where the array's first element starts in the body (bytes) and in the text (characters)."""
    at_chars: int
    n: int
    candidate: Candidate
    used: bool = False


@dataclass
class ParsedRequest:
    """A request body as the writer stores it: a skeleton, and blobs and nodes for the rest."""

    skeleton: dict[str, Any]
    """The body with system/tools/messages set to null where they were taken out."""
    skeleton_raw: str | None = None
    """The skeleton's keys and values as they were written, to find its blob without re-encoding."""
    system: int | None = None
    tools: int | None = None
    node: int | None = None
    """Node of the last message sent; 0 for an empty list; None when messages stayed in skeleton."""
    messages: list[Any] | None = None
    """The parsed new messages (tail) and None for reused ones; only for this request's use."""
    reused: int = 0
    """How many leading messages were reused from a recent request (the Nones in `messages`)."""
    blobs: list[int] = field(default_factory=list)
    """Each message's blob."""
    nodes: list[int] = field(default_factory=list)
    """The node of the list ending with each message."""
    thread_keys: list[str] = field(default_factory=list)
    """The thread key of the list ending with each message (see `threads.thread_key`)."""
    known: int = 0
    """How many leading messages an earlier request had sent already (their nodes were in the
    database before this one was scanned, and no request still had to send them: see
    `Blobs.unsent`); set where the request is stored (an import's reader scans without knowing)."""


class RequestScanner:
    """Parses request bodies into `ParsedRequest`s, remembering recent requests' messages
    (`candidates`) and system prompts, tool lists and skeletons as written (`raw_blob`)."""

    def __init__(self, blobs: Blobs, decoder: Decoder):
        self.blobs = blobs
        self.decoder = decoder
        self.candidates: OrderedDict[bytes, Candidate] = OrderedDict()
        self.candidate_bytes = 0
        self.raw_blob: BoundedDict[str, int] = BoundedDict(MAX_RAW)
        """A system prompt, tool list or skeleton as written -> its blob."""
        self.last_raw: dict[str, tuple[str, int]] = {}
        """"system" / "tools" -> (the last value's text as written, its blob)."""
        self.shapes: list[tuple[bytes, bytes, Shape]] = []
        """Recent requests' bytes before and after their messages array, and the shape they read
        as, most recently used first. A candidate holds the shape of the request it came from;
        these serve a request whose candidate came in another shape: calls that alternate between
        streamed and not (`"stream": true` before the messages), or between two models."""

    def forget(self) -> None:
        """Drop what may name rows a rollback took back."""
        self.raw_blob.clear()
        self.last_raw.clear()
        self.candidates.clear()
        self.candidate_bytes = 0
        self.shapes.clear()

    def _raw_blob(self, key: str, raw: str, obj: Any, plain: bool) -> int:
        got = self.raw_blob.get(raw)
        if got is None:
            got = self.blobs.blob(obj, plain, (raw, 0, len(raw)))
            self.raw_blob[raw] = got
        self.last_raw[key] = (raw, got)
        return got

    def _known_raw(self, key: str, s: str, i: int) -> tuple[int, int] | None:
        """(blob, end) when the text at `i` is the last value seen for `key`, character for character."""
        last = self.last_raw.get(key)
        if last is None or not s.startswith(last[0], i):
            return None
        end = i + len(last[0])
        j = _ws(s, end).end()
        if j >= len(s) or s[j] not in ",}":
            return None
        return last[1], end

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
            q = _wsb(body, p + 10).end()
            if body[q : q + 1] != b":":
                continue
            q = _wsb(body, q + 1).end()
            if body[q : q + 1] != b"[":
                continue
            at = _wsb(body, q + 1).end()
            candidate = self.candidates.get(body[at : at + PREFIX_KEY_BYTES])
            if candidate is None or not candidate.ends:
                continue
            n = candidate.common(body, at)
            if not n:
                continue
            if candidate.shape is not None and at == candidate.start:
                raw = memoryview(candidate.raw)
                parsed = self._scan_around(body, at, n, candidate, raw[:at], raw[candidate.close :], candidate.shape)
                if parsed is not None:
                    return parsed
            for k, (before, after, shape) in enumerate(self.shapes):
                if len(before) == at and shape is not candidate.shape:
                    parsed = self._scan_around(body, at, n, candidate, before, after, shape)
                    if parsed is not None:
                        if k:
                            self.shapes.insert(0, self.shapes.pop(k))
                        return parsed
            head = body[:at].decode("utf-8", "surrogateescape")
            text = head + body[at + candidate.ends[n - 1] :].decode("utf-8", "surrogateescape")
            reuse = Reuse(at, len(head), n, candidate)
            try:
                parsed = self._scan(text, body, reuse)
            except (ValueError, IndexError, TypeError):
                break
            if reuse.used:
                return parsed
            break
        return self._scan(body.decode("utf-8", "surrogateescape"), body, None)

    def _scan_around(
        self, body: bytes, at: int, n: int, candidate: Candidate, head: Any, tail: Any, shape: Shape
    ) -> ParsedRequest | None:
        """The request when all of it but its new messages is byte for byte a request read before
        in `shape`: `head` before the array (then it is the top-level "messages", as it was
        there) and `tail` after it (bytes or memoryviews); its first `n` messages the candidate's.
        Only the new messages are decoded; None when the bytes differ (or the new part doesn't
        read as the rest of an array), for the ordinary scan to read them."""
        close = len(body) - len(tail)
        start = at + candidate.ends[n - 1]
        if close <= start or body[close - 1] != _CLOSE or not body.endswith(tail) or not body.startswith(head):
            return None
        # the rest of the array: "," and the new elements, then "]" (the reused ones cut out)
        s = body[start:close].decode("utf-8", "surrogateescape")
        parsed = ParsedRequest(dict(shape.skeleton), shape.skeleton_raw, shape.system, shape.tools)
        try:
            end, made = self._scan_messages(s, 0, parsed, body, Reuse(at, 0, n, candidate))
        except (ValueError, IndexError, TypeError):
            return None
        if end != len(s):
            return None
        if made is not None:
            made.shape = shape
        return parsed

    def parse_request_obj(self, body: Any) -> ParsedRequest:
        """The slow path: a parsed document (from `record()`, a redactor, or odd JSON)."""
        if not isinstance(body, dict):
            return ParsedRequest(skeleton={"__body__": body})
        skeleton = dict(body)
        parsed = ParsedRequest(skeleton=skeleton)
        if "system" in body and body["system"] is not None:
            parsed.system = self.blobs.blob(body["system"])
            skeleton["system"] = None
        if "tools" in body and body["tools"] is not None:
            parsed.tools = self.blobs.blob(body["tools"])
            skeleton["tools"] = None
        messages = body.get("messages")
        if isinstance(messages, list):
            skeleton["messages"] = None
            parsed.messages = list(messages)
            parent, last_key = 0, ""
            for i, m in enumerate(messages):
                blob, last_key = self.blobs.message_blob(m, last_key)
                parent = self.blobs.node(parent, blob, i + 1)
                parsed.blobs.append(blob)
                parsed.nodes.append(parent)
                parsed.thread_keys.append(last_key)
            parsed.node = parent
        return parsed

    def _scan(self, s: str, body: bytes, reuse: Reuse | None) -> ParsedRequest:
        """Scan the text `s` of `body` (with `reuse`'s elements cut out of its messages)."""
        raw_decode = self.decoder.raw_decode
        i = _ws(s, 0).end()
        if s[i] != "{":
            raise ValueError("not an object")
        i += 1
        skeleton: dict[str, Any] = {}
        parsed = ParsedRequest(skeleton=skeleton)
        raw_parts: list[str] = []
        made = None
        while True:
            i = _ws(s, i).end()
            if s[i] == "}" and not raw_parts:
                break
            key_start = i
            key, i = raw_decode(s, i)
            if not isinstance(key, str):  # what raw_decode reads here need not be a string
                raise ValueError("expected a key")
            if key in skeleton:  # json.loads keeps the last value: let it decide
                raise ValueError("a key given twice")
            key_raw = s[key_start:i]
            i = _ws(s, i).end()
            if s[i] != ":":
                raise ValueError("expected :")
            i = _ws(s, i + 1).end()
            if key == "messages" and s[i] == "[":
                i, made = self._scan_messages(s, i + 1, parsed, body, reuse)
                skeleton[key] = None
                raw_parts.append('"messages":-')
            elif key in ("system", "tools") and (known := self._known_raw(key, s, i)) is not None:
                # the same system prompt / tool list as last time: no need to parse it again
                blob, i = known
                if key == "system":
                    parsed.system = blob
                else:
                    parsed.tools = blob
                skeleton[key] = None
                raw_parts.append(f'"{key}":-')
            else:
                start = i
                self.decoder.floats = False
                value, i = raw_decode(s, i)
                if key in ("system", "tools") and value is not None:
                    blob = self._raw_blob(key, s[start:i], value, not self.decoder.floats)
                    if key == "system":
                        parsed.system = blob
                    else:
                        parsed.tools = blob
                    value = None
                    raw_parts.append(f'"{key}":-')
                else:
                    raw_parts.append(key_raw + ":" + s[start:i])  # as written: equal text, equal skeleton
                skeleton[key] = value
            i = _ws(s, i).end()
            if s[i] == ",":
                i += 1
            elif s[i] == "}":
                break
            else:
                raise ValueError("expected , or }")
        if _ws(s, i + 1).end() != len(s):
            raise ValueError("trailing data")
        parsed.skeleton_raw = ",".join(raw_parts)
        if made is not None:
            made.shape = Shape(dict(skeleton), parsed.skeleton_raw, parsed.system, parsed.tools)
            self._keep_shape(body, made, made.shape)
        return parsed

    def _keep_shape(self, body: bytes, made: Candidate, shape: Shape) -> None:
        """Remember the bytes around `made`'s array in `body` and their shape, first in
        `shapes` (in place of the same bytes' older entry)."""
        head, tail = body[: made.start], body[made.close :]
        for k, (h, t, _old) in enumerate(self.shapes):
            if h == head and t == tail:
                del self.shapes[k]
                break
        self.shapes.insert(0, (head, tail, shape))
        del self.shapes[MAX_SHAPES:]

    def _scan_messages(
        self, s: str, i: int, parsed: ParsedRequest, body: bytes, reuse: Reuse | None
    ) -> tuple[int, Candidate | None]:
        """Read the messages array from after its "[" in `s`: (where the array ends, just after
        its "]"; the candidate made of it for the next request, if one was)."""
        decoder = self.decoder
        n = 0
        if reuse is None:
            i0 = i = _ws(s, i).end()
        else:
            # only whitespace between this "[" and where the cut was made (whitespace after the
            # cut, before its "," or "]", is the tail's)
            gap = WS.match(s, i, reuse.at_chars)
            if gap is None or gap.end() != reuse.at_chars:
                raise ValueError("not the messages the byte search found")
            i0 = reuse.at_chars
            i = _ws(s, i0).end()
            reuse.used = True
            n, candidate = reuse.n, reuse.candidate
            parsed.blobs = candidate.blobs[:n]
            parsed.nodes = candidate.nodes[:n]
            parsed.thread_keys = candidate.thread_keys[:n]
            if s[i] == ",":
                i = _ws(s, i + 1).end()
                if s[i] == "]":
                    raise ValueError("a comma before ]")
        parent = parsed.nodes[-1] if n else 0
        last_key = parsed.thread_keys[-1] if n else ""
        messages: list[Any] = [None] * n
        parsed.reused = n
        new_ends = []  # in characters from i0
        while s[i] != "]":
            decoder.floats = False
            start = i
            obj, i = decoder.raw_decode(s, i)
            new_ends.append(i - i0)
            # (the text as written: what the blob stores when it is already compact, codec.in_order)
            blob, last_key = self.blobs.message_blob(obj, last_key, not decoder.floats, (s, start, i))
            n += 1
            parent = self.blobs.node(parent, blob, n)
            messages.append(obj)
            parsed.blobs.append(blob)
            parsed.nodes.append(parent)
            parsed.thread_keys.append(last_key)
            i = _ws(s, i).end()
            if s[i] == ",":
                i = _ws(s, i + 1).end()
                if s[i] == "]":
                    raise ValueError("a comma before ]")
            elif s[i] != "]":
                raise ValueError("expected , or ]")
        parsed.node = parent
        parsed.messages = messages
        made = self._remember(s, i0, body, reuse, new_ends, parsed) if n else None
        return i + 1, made

    def _remember(
        self, s: str, i0: int, body: bytes, reuse: Reuse | None, new_ends: list[int], parsed: ParsedRequest
    ) -> Candidate | None:
        """Keep this request's messages as a candidate for the next one, element ends in bytes.
        Returns the new candidate (None when the candidate was these very messages)."""
        if reuse is not None:
            if not new_ends and reuse.n == len(reuse.candidate.ends):  # the same messages again
                self.candidates.move_to_end(body[reuse.at : reuse.at + PREFIX_KEY_BYTES])
                return None
            at, ends, base = reuse.at, reuse.candidate.ends[: reuse.n], reuse.candidate.ends[reuse.n - 1]
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
        close = _wsb(body, at + ends[-1]).end() + 1  # after the "]" the scan found there
        made = Candidate(body, at, ends, parsed.blobs[:], parsed.nodes[:], parsed.thread_keys[:], close)
        self.candidates[key] = made
        self.candidate_bytes += len(body)
        while self.candidate_bytes > MAX_CANDIDATE_BYTES and len(self.candidates) > 1:
            _, dropped = self.candidates.popitem(last=False)
            self.candidate_bytes -= len(dropped.raw)
        return made

    def skeleton_blob(self, parsed: ParsedRequest) -> int:
        """The blob of a request's skeleton; usually the same as the last one's, found by its text."""
        if parsed.skeleton_raw is None:
            return self.blobs.blob(parsed.skeleton)
        got = self.raw_blob.get(parsed.skeleton_raw)
        if got is None:
            got = self.blobs.blob(parsed.skeleton)
            self.raw_blob[parsed.skeleton_raw] = got
        return got
