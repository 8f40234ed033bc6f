"""Which recorded attempt answers a request (`Matcher`), and what to say when none does.

A request matches a recorded attempt when the two bodies are JSON-equal once the `--ignore`
paths are removed from both. Of the attempts that match, the earliest not yet served answers,
so identical requests replay in the order they were recorded, and an agent's concurrent
conversations each get their own answers (a conversation's later requests hold the answers it
got before, so they match only that conversation's turns).

Retries: a recorded call that ended in a success is answered by that success at once (its
failed attempts, 429/529/5xx or a dropped connection, are skipped); `with_errors` serves every
attempt in order, so the agent's retry handling runs again. A call that never succeeded replays
as it went, errors and all: how the agent coped is part of the run.

No match: strict (the default) refuses with an API-shaped 400 and a difference message naming
the closest recorded request and its first difference; `loose` serves the next unserved answer
of the recorded conversation closest to the request and keeps the difference as drift.

An answer takes the kind the request asks for (its `stream`), whatever the recorded attempt's:
a recorded stream answers a plain request with the message it built, and a recorded message
answers a streamed request as the events that stream it (only loose mode, or an ignored `stream`,
pairs them: the drift says so). A stream whose connection was cut (a 2xx, then the connection
broke or the read timed out: CUT_ERRORS) is served cut: its events, then the connection breaks.

Ignore paths (`PATH`): keys separated by dots; `*` is every key of an object or every item of a
list; a number is one item of a list. `metadata.user_id`, `system.0.text`,
`messages.*.content.*.cache_control`. The field named last is removed (a list item is blanked,
so later items keep their positions).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from ..sse import assemble
from ..wire import RESPONSE_HEADERS
from .answer import compact_json, event_bytes, synthesize
from .difference import difference_path as difference_path
from .difference import first_difference as first_difference

RETRIED_STATUSES = frozenset({408, 409, 429})
"""Statuses the SDKs retry (with every 5xx, 529 included, and a connection that failed)."""

Path = tuple[str, ...]


def parse_path(text: str) -> Path:
    """An ignore path, `a.b.*.c`; ValueError (saying what is wrong) when it is not one."""
    parts = tuple(text.strip().split("."))
    if not text.strip() or any(not p for p in parts):
        raise ValueError(f"{text!r} is not a field path: give keys separated by dots, e.g. metadata.user_id "
                         "or messages.*.content.*.text (* is every key or item)")
    return parts


_GONE = object()


def without(doc: Any, path: Path) -> Any:
    """`doc` with the field at `path` removed (every field, through `*`). Copies only the
    containers on the way; the original is left as it was."""
    if not path:
        return _GONE
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        keys = list(doc) if head == "*" else ([head] if head in doc else [])
        if not keys:
            return doc
        out = dict(doc)
        for key in keys:
            value = without(doc[key], rest)
            if value is _GONE:
                del out[key]
            else:
                out[key] = value
        return out
    if isinstance(doc, list):
        if head == "*":
            indexes: Any = range(len(doc))
        elif head.lstrip("-").isdigit() and -len(doc) <= int(head) < len(doc):
            indexes = [int(head)]
        else:
            return doc
        items = list(doc)
        for i in indexes:
            value = without(doc[i], rest)
            items[i] = None if value is _GONE else value
        return items
    return doc


def stripped(doc: Any, ignore: tuple[Path, ...]) -> Any:
    for path in ignore:
        doc = without(doc, path)
    return doc


# -- what the matcher decides --------------------------------------------------------------------


@dataclass(slots=True)
class Answer:
    """A recorded attempt that answers the request: `status` None means the recorded attempt got
    no answer (a dropped connection: the server drops this one too). A stream's answer has
    `events` (recorded, or synthesized from the message when `synthesized`); any other has `body`."""

    status: int | None
    headers: dict[str, str]
    body: bytes | None
    events: list[dict[str, Any]] | None
    line: dict[str, Any]
    synthesized: bool = False
    """A recorded stream's events made from its message (none were kept); not set for a
    recorded message streamed to a streamed request (loose)."""
    cut: bool = False
    """The recorded stream's connection broke after `events`: the server breaks this one too."""

    @property
    def timed_out(self) -> bool:
        """The recorded attempt failed because the client's read timed out (the agent got the SDK's
        APITimeoutError), before any answer (`status` None) or mid-stream (`cut`): the agent must
        see that class again, not a connection error, as agents branch on it."""
        return timed_out(self.line)


@dataclass(slots=True)
class Refusal:
    """No recorded attempt answers: the agent gets `status` and `body` (an API-shaped error);
    `message` (one or two lines) names the closest recorded request and its first difference."""

    status: int
    body: bytes
    message: str
    field: str | None = None
    """Where the request first differs from the closest recorded one, as an --ignore path
    (`system`, `messages.3.content.0.content`); None when that is not known."""


@dataclass(slots=True)
class Drift:
    """A request loose mode answered though it matched nothing: what it was answered with."""

    conversation_id: str | None
    index: int | None
    difference: str
    kind: str | None = None
    """When the answer is of another kind than the recorded one: "answered a stream from a
    non-streamed recording" (or the reverse); None when it is of the same kind."""


def error_body(message: str, kind: str = "invalid_request_error") -> bytes:
    return compact_json({"type": "error", "error": {"type": kind, "message": message}})


# -- the recording, as slots to serve ------------------------------------------------------------


@dataclass(slots=True)
class _Slot:
    n: int
    line: dict[str, Any]
    body: Any
    """The recorded request with the ignore paths removed."""
    conversation: str | None
    served: bool = False


def parse_json(body: bytes) -> Any:
    """A request body as `json` reads it, so a number beyond 64 bits compares equal to the
    recorded one, which was read the same way (orjson makes it a float). The standard library
    itself, not `store.events.json_value`: that one first scans the text for long numbers, and a
    Python regex over an agent's 30 KB body costs about a millisecond per call, where json's own
    parse costs a tenth of one."""
    return json.loads(body)


def _turn_key(line: dict[str, Any]) -> Any:
    return line.get("turn_id") or (line.get("conversation_id"), line.get("index"))


def _answered(line: dict[str, Any]) -> bool:
    """An attempt that got an answer, or failed (no answer) in a way a server can repeat."""
    return line.get("status") is not None or line.get("error") is not None


def _succeeded(line: dict[str, Any]) -> bool:
    status = line.get("status")
    return status is not None and 200 <= status < 300 and not line.get("error")


CUT_ERRORS = frozenset({"connection_error", "timeout_error"})
"""How the recorder names a body that stopped coming after its status: the connection broke, or
the client's read timed out mid-stream (the middleware and the proxy both record that as a
timeout_error, replayed as a read timeout: Answer.timed_out). Theirs carry no status of their own;
the API's own `timeout_error` (an `event: error` after a 200, or a 504) carries its status and is
served as the error it was."""


def timed_out(line: dict[str, Any]) -> bool:
    """A recorded attempt that failed by the client's read timing out (the middleware records the
    SDK's APITimeoutError, or a read timeout mid-stream, as timeout_error; the proxy a client that
    hung up as its read timed out). Not an answer of that type (the API's 504 timeout_error, or the
    proxy's own when the upstream said nothing): that is an error status, served as recorded."""
    error = line.get("error")
    return isinstance(error, dict) and error.get("type") == "timeout_error" and error.get("status") is None


def _cut(line: dict[str, Any]) -> bool:
    """An answer whose body was cut off: its 2xx status came, then the connection failed or the
    read timed out (CUT_ERRORS, with no status of the error's own)."""
    error, status = line.get("error"), line.get("status")
    return (isinstance(error, dict) and error.get("type") in CUT_ERRORS and error.get("status") is None
            and isinstance(status, int) and 200 <= status < 300)  # fmt: skip


ERROR_STATUSES = {"invalid_request_error": 400, "authentication_error": 401, "billing_error": 402,
                  "permission_error": 403, "not_found_error": 404, "request_too_large": 413,
                  "rate_limit_error": 429, "api_error": 500, "timeout_error": 504, "overloaded_error": 529}
"""The status the API answers a plain request with for an error a stream reports as an event (the
API's error types; an unknown one is a 500)."""


def _kind(stream: bool, recorded: bool = False) -> str:
    if recorded:
        return "recorded stream" if stream else "non-streamed recording"
    return "stream" if stream else "non-streamed call"


def _canonical(doc: Any) -> bytes:
    """Sorted-key JSON, copied to its length: it keys a bucket for as long as the replay runs,
    and orjson hands back its whole write buffer (63 KiB for a 5-7 KB output; see recorder._dumps)."""
    try:
        return bytes(memoryview(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)))
    except TypeError:  # a lone surrogate (orjson refuses it), or an integer past 64 bits
        return json.dumps(doc, sort_keys=True).encode()


def _bucket(body: Any) -> Any:
    """A cheap key that every JSON-equal body shares: the model, how many messages, and the last
    message. Requests of one conversation differ in it; candidates in one bucket are compared whole."""
    if not isinstance(body, dict):
        return ("?", _canonical(body))
    messages = body.get("messages")
    if isinstance(messages, list):
        last = _canonical(messages[-1]) if messages else b""
        return (str(body.get("model")), len(messages), last)
    return (str(body.get("model")), -1, _canonical(messages))


class Matcher:
    """Answers requests from recorded cassette lines (a list of dicts: the export line plus
    `events`). Thread-safe: the replay server and an in-process player share one."""

    def __init__(self, lines: list[dict[str, Any]], *, ignore: tuple[str, ...] | list[str] = (), loose: bool = False,
                 with_errors: bool = False) -> None:
        self.ignore = tuple(parse_path(p) for p in ignore)
        self.loose = loose
        self.with_errors = with_errors
        self.lock = threading.Lock()
        self.slots: list[_Slot] = []
        self.buckets: dict[Any, deque[_Slot]] = {}
        self.conversations: dict[str | None, deque[_Slot]] = {}
        self.answered = 0
        """Attempts answered (with_errors serves a call's failed attempts too)."""
        self.calls: dict[Any, int] = {}
        """Recorded calls (turns) answered -> how many of their attempts."""
        self.streams = 0
        self.synthesized = 0
        self.refusals: list[Refusal] = []
        self.drifts: list[Drift] = []
        self._load(lines)

    def _load(self, lines: list[dict[str, Any]]) -> None:
        turns: dict[Any, list[dict[str, Any]]] = {}
        for line in lines:
            if line.get("request") is not None and _answered(line):
                turns.setdefault(_turn_key(line), []).append(line)
        chosen: list[dict[str, Any]] = []
        for attempts in turns.values():
            attempts.sort(key=lambda a: a.get("attempt") or 0)
            if not self.with_errors and _succeeded(attempts[-1]):
                attempts = attempts[-1:]
            chosen.extend(attempts)
        # earliest first: identical requests replay in the order they were first sent
        chosen.sort(key=lambda a: a.get("started_at") or "")
        for n, line in enumerate(chosen):
            body = stripped(line["request"], self.ignore)
            slot = _Slot(n, line, body, line.get("conversation_id"))
            self.slots.append(slot)
            self.buckets.setdefault(_bucket(body), deque()).append(slot)
            self.conversations.setdefault(slot.conversation, deque()).append(slot)

    # -- answering ------------------------------------------------------------------------------
    def answer(self, endpoint: str, body: bytes, stream: bool | None = None) -> Answer | Refusal:
        """The recorded answer to one request (`endpoint` is its path), or why there is none.
        `stream`: whether the client asked for a stream, when the caller knows (a Bedrock client
        asks in the URL, not the body); else the body's `stream` says."""
        try:
            doc = parse_json(body)
        except ValueError:
            return self._refuse("replayer replay: the request body is not JSON; a recording answers only JSON requests")
        if stream is None:
            stream = isinstance(doc, dict) and doc.get("stream") is True
        sent = stripped(doc, self.ignore)
        with self.lock:
            slot = self._exact(sent)
            if slot is not None:
                return self._serve(slot, stream)
            closest = self._closest(sent)
            if self.loose:
                nxt = self._next_of(closest.conversation) if closest is not None else None
                if nxt is None:
                    nxt = next((s for s in self.slots if not s.served), None)
                if nxt is not None:
                    recorded = bool(nxt.line.get("stream"))
                    kind = None if recorded == stream else f"answered a {_kind(stream)} from a {_kind(recorded, True)}"
                    self.drifts.append(Drift(nxt.conversation, nxt.line.get("index"),
                                             first_difference(nxt.body, sent), kind))
                    return self._serve(nxt, stream)
            field = difference_path(closest.body, sent) if closest is not None else None
            return self._refuse(self._explain(sent, closest, endpoint), field)

    def _exact(self, sent: Any) -> _Slot | None:
        bucket = self.buckets.get(_bucket(sent))
        if not bucket:
            return None
        while bucket and bucket[0].served:  # served from the front: skip them for good
            bucket.popleft()
        for slot in bucket:
            if not slot.served and slot.body == sent:
                return slot
        return None

    def _next_of(self, conversation: str | None) -> _Slot | None:
        queue = self.conversations.get(conversation)
        while queue and queue[0].served:
            queue.popleft()
        return queue[0] if queue else None

    def _serve(self, slot: _Slot, stream: bool) -> Answer:
        """`slot`'s answer, in the kind the request asks for (`stream`)."""
        slot.served = True
        self.answered += 1
        line = slot.line
        key = _turn_key(line)
        self.calls[key] = self.calls.get(key, 0) + 1
        status = line.get("status")
        headers = {"content-type": "application/json"}
        said = line.get("response_headers")
        if isinstance(said, dict):
            # what the API said of its limits and retrying, as recorded: the replayed SDK's retry
            # loop waits (retry-after) and retries (x-should-retry) as it did
            headers.update((k, str(v)) for k, v in said.items() if k in RESPONSE_HEADERS and v is not None)
        if line.get("request_id"):
            headers["request-id"] = str(line["request_id"])
        if status is None:
            return Answer(None, headers, None, None, line)
        recorded = bool(line.get("stream"))
        error = line.get("error")
        cut = _cut(line)
        if 200 <= status < 300 and stream:
            self.streams += 1
            headers["content-type"] = "text/event-stream; charset=utf-8"
            events = line.get("events") if recorded else None
            if events is not None:
                return Answer(status, headers, None, events, line, cut=cut)
            self.synthesized += recorded
            made = synthesize(line.get("response"), None if cut else error, cut=cut)
            return Answer(status, headers, None, made, line, recorded, cut)
        if cut:  # a body cut off: a plain request gets none of it
            return Answer(None, headers, None, None, line)
        response = line.get("response")
        if 200 <= status < 300 and recorded and error:  # a stream that ended with an error event
            status = ERROR_STATUSES.get(str(error.get("type")), 500)
            response = None
        elif response is None and recorded and status < 300 and line.get("events"):
            response = assemble(b"".join(event_bytes(e) for e in line["events"])).message
        if response is None:  # an error answer whose body was not kept: the API's shape, from the error
            error = error or {}
            body = error_body(str(error.get("message") or ""), str(error.get("type") or "api_error"))
        else:
            body = compact_json(response)
        return Answer(status, headers, body, None, line)

    def _refuse(self, message: str, field: str | None = None) -> Refusal:
        refusal = Refusal(400, error_body(message.replace("\n", " ")), message, field)
        self.refusals.append(refusal)
        return refusal

    # -- saying what changed --------------------------------------------------------------------
    def _closest(self, sent: Any) -> _Slot | None:
        """The recorded request `sent` is closest to: the most leading messages in common, then
        the same model, system and tools, then as many messages; unserved before served, earlier
        before later."""
        best, best_score = None, None
        for slot in self.slots:
            score = (*_likeness(slot.body, sent), not slot.served, -slot.n)
            if best_score is None or score > best_score:
                best, best_score = slot, score
        return best

    def _explain(self, sent: Any, closest: _Slot | None, endpoint: str) -> str:
        if closest is None:
            return f"replayer replay: the recording has no request to answer {endpoint} with"
        where = _where(closest.line)
        if closest.body == sent:
            return (f"replayer replay: this request was recorded ({where}) but its recorded answers are all used: "
                    "the agent sent it more times than in the recording")
        return (f"replayer replay: no recorded request matches this one; closest: {where}\n"
                f"  first difference: {first_difference(closest.body, sent)}")

    def continued(self, sent: Any, plain: Callable[[Any], Any]) -> dict[str, Any] | None:
        """The answered recorded call that `sent` goes on from: its messages (compared through
        `plain`) begin `sent`'s, and there are more; the one with the most messages. None when
        `sent` continues nothing that was answered here."""
        sent = stripped(sent, self.ignore)
        messages = sent.get("messages") if isinstance(sent, dict) else None
        if not isinstance(messages, list):
            return None
        best: _Slot | None = None
        with self.lock:
            for slot in self.slots:
                had = slot.body.get("messages") if slot.served and isinstance(slot.body, dict) else None
                if (isinstance(had, list) and len(had) < len(messages)
                        and (best is None or len(had) > len(best.body["messages"]))
                        and plain(messages[: len(had)]) == plain(had)):
                    best = slot
        return best.line if best is not None else None

    # -- the end report -------------------------------------------------------------------------
    def drift(self) -> list[Drift]:
        with self.lock:
            return list(self.drifts)

    def taken_back(self, answer: Answer) -> None:
        """An answer the caller did not give (a fork sends that call live): out of the counts the
        closing line gives (its slot stays served: it is not offered again)."""
        with self.lock:
            self.answered -= 1
            key = _turn_key(answer.line)
            if self.calls.get(key, 0) > 1:
                self.calls[key] -= 1
            else:
                self.calls.pop(key, None)
            if answer.events is not None:
                self.streams -= 1
                if answer.synthesized:
                    self.synthesized -= 1

    def withdraw(self, refusal: Refusal) -> None:
        """Forget a refusal the caller did not give (a fork sent that call live instead)."""
        with self.lock:
            self.refusals = [r for r in self.refusals if r is not refusal]

    def retire(self, replaced: Callable[[dict[str, Any]], bool]) -> None:
        """Recorded calls the live part takes the place of: never offered to another request (an
        identical conversation beside them has answers of its own)."""
        with self.lock:
            for s in self.slots:
                if not s.served and replaced(s.line):
                    s.served = True

    def lines(self) -> list[dict[str, Any]]:
        """The recorded calls this matcher answers from, earliest first."""
        return [s.line for s in self.slots]

    def not_asked(self, replaced: Callable[[dict[str, Any]], bool] | None = None) -> tuple[int, int, int]:
        """What the agent never asked for, less what `replaced` says the live part took over:
        (recorded calls none of whose attempts was served, their attempts, attempts left of
        calls that were answered: retries the agent did not make)."""
        with self.lock:
            turns: dict[Any, list[_Slot]] = {}
            for s in self.slots:
                turns.setdefault(_turn_key(s.line), []).append(s)
            calls = attempts = retries = 0
            for slots in turns.values():
                left = sum(1 for s in slots if not s.served and not (replaced and replaced(s.line)))
                if left == len(slots):
                    calls, attempts = calls + 1, attempts + left
                else:
                    retries += left
            return calls, attempts, retries


def _where(line: dict[str, Any]) -> str:
    attempt = line.get("attempt") or 0
    return (f"conversation {line.get('conversation_id')} turn {line.get('index')}"
            + (f" attempt {attempt}" if attempt else ""))


def _likeness(recorded: Any, sent: Any) -> tuple[int, int, int]:
    if not isinstance(recorded, dict) or not isinstance(sent, dict):
        return (0, 0, 0)
    a, b = recorded.get("messages"), sent.get("messages")
    common = 0
    if isinstance(a, list) and isinstance(b, list):
        for x, y in zip(a, b, strict=False):
            if x != y:
                break
            common += 1
        size = -abs(len(a) - len(b))
    else:
        size = 0
    same = sum(recorded.get(k) == sent.get(k) for k in ("model", "system", "tools"))
    return (common, same, size)
