"""The reading side of `replayer import otlp`: the input's chat spans as records, in batches of one
transaction each, with the filters applied and a tally of what was left out and why.

A generator of picklable batches, so the import can run it in a reader process (readahead.py)
while it writes the batch before; or in its own process for a small input or stdin. And, read
before that when `--user` is given in part, the spans' users it may name (users_starting).
"""

from __future__ import annotations

import re
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from . import names as n
from . import reading
from .prescan import Defined, PreScanner, Share
from .reading import Malformed, Record

BATCH = 2000
"""Spans written per transaction."""
FIRST_BATCH = 200
"""...but the first batch goes as soon as it has this many (the writer waits for it: read by a
reader process, the two work side by side only from the second batch on)."""


class CannotRead(Exception):
    """The input can't be opened (bad input: one line, exit 2)."""


@dataclass(slots=True)
class Tally:
    """What the reading left out, and how much it read."""

    malformed: list[Malformed] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    """Chat spans skipped, by why (reading.NO_CONTENT...)."""
    filtered: int = 0
    """Chat spans the filters left out."""
    others: int = 0
    """Spans that are no chat call."""
    cut: int = 0
    """replayer's own spans whose content was cut short (reading.Record.cut), imported rebuilt."""
    lines: int = 0
    """Lines that held spans."""


@dataclass(slots=True)
class Batch:
    """Records to write in one transaction; `position`: bytes of the input read so far (of the
    compressed file for gzip; 0 for stdin); `tally`: on the last batch only."""

    records: list[Any]
    """reading.Record.wire() tuples (cheaper to send between processes than the objects)."""
    position: int
    tally: Tally | None = None
    defined: Defined | None = None
    """The blobs and nodes its records' scanned requests numbered first (otlp/prescan.py)."""


def read(
    path: str, since: str | None, user: str | None, conversation: str | None
) -> Generator[Batch, float | None, None]:
    """The batches of `path` ("-": stdin) under the filters (`since`: an ISO time bound); sent
    after each, how long it waited to be taken (readahead.py), to share the request scan
    (otlp/prescan.Share). Raises CannotRead, or reading.NotOtlp for an input that is no OTLP JSON."""
    try:
        lines, position = reading.open_input(path)
    except OSError as e:
        raise CannotRead(e.strerror or str(e)) from None
    tally = Tally()
    seen: set[int] = set()
    batch: list[Any] = []
    prescan, share = PreScanner(), Share()
    started = time.perf_counter()
    sent = False
    with lines:
        for number, doc in reading.documents(lines, tally.malformed):
            for span in reading.spans(number, doc, tally.malformed):
                seen.add(span.line)
                got = _take(span, tally, since, user, conversation)
                if got is not None:
                    ctx = got.captured.ctx
                    if share.takes((ctx.conversation_id if ctx else None) or got.key):
                        got.scanned = prescan.scan(got.captured)
                    batch.append(got.wire())
            if len(batch) >= (BATCH if sent else min(BATCH, FIRST_BATCH)):
                busy = time.perf_counter() - started
                waited = yield Batch(batch, position(), defined=prescan.take())
                started = time.perf_counter()
                if sent or waited is None:  # (the first batch waited for the writer to start: no pace in that)
                    share.adjust(waited, busy)
                sent = True
                batch = []
        tally.lines = len(seen)
        yield Batch(batch, position(), tally, prescan.take())


def _take(
    span: reading.Span, tally: Tally, since: str | None, user: str | None, conversation: str | None
) -> Record | None:
    """The span's record when it is a chat span to import; else counted in `tally`."""
    if not reading.is_chat(span.attributes):
        tally.others += 1
        return None
    try:
        got = reading.record(span)
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        tally.malformed.append(Malformed(span.line, f"a chat span that can't be read ({e})", True))
        return None
    if isinstance(got, str):
        # a span skipped is still one of the filters' to leave out first: what the span says of
        # itself (its start, user, conversation), as its record would have said it
        a = span.attributes
        who = reading.user_of(a)
        conv = a.get(n.CONVERSATION_ID)
        started = reading.iso_of(span.start_ns / 1e9)
        if _left_out(started, str(who) if who else None, str(conv) if conv else None, since, user, conversation):
            tally.filtered += 1
        else:
            tally.skipped[got] = tally.skipped.get(got, 0) + 1
        return None
    ctx = got.captured.ctx
    if _left_out(got.started_at, ctx.user_id if ctx else None, ctx.conversation_id if ctx else None,
                 since, user, conversation):  # fmt: skip
        tally.filtered += 1
        return None
    tally.cut += got.cut
    return got


def users_starting(path: str, prefix: str) -> set[str]:
    """The users of `path`'s chat spans whose id begins with `prefix`; only `{prefix}` once a span
    of that user is found (an exact id names that user alone). Read before the import when
    `--user` is given in part, so that one naming several users is refused before anything is
    written. A line where `prefix` is nowhere in the text holds no such user and is not parsed:
    a user cut as `list` shows it (13 characters of a 64-hex id) has its own lines parsed, the
    rest only read; once two users are found, only a line holding `"prefix"` whole (a user who
    is exactly that, as a string) is. (A 2.1 GB file of 100,000 spans, on a loaded machine: 9 s
    when no line holds the prefix, 10 s for one that begins all its 50 users' ids, where parsing
    every line took 35 s.) Raises CannotRead as read() does; an input that is no OTLP JSON gives
    what was found (the import then says what it is)."""
    safe = _VERBATIM.fullmatch(prefix) is not None
    needle = prefix.encode() if safe else None

    def holding(lines: Any) -> Any:
        for line in lines:
            if needle is None or needle in line:
                yield line

    try:
        lines, _ = reading.open_input(path)
    except OSError as e:
        raise CannotRead(e.strerror or str(e)) from None
    found: set[str] = set()
    with lines:
        try:
            for number, doc in reading.documents(holding(lines), []):
                for span in reading.spans(number, doc, []):
                    who = reading.user_of(span.attributes)
                    if who is None or not reading.is_chat(span.attributes):
                        continue
                    if (who := str(who)) == prefix:
                        return {who}
                    if who.startswith(prefix):
                        found.add(who)
                        if len(found) == 2 and safe:  # several: only an exact one changes that
                            needle = b'"' + prefix.encode() + b'"'
        except reading.NotOtlp:
            pass
    return found


_VERBATIM = re.compile(r"[A-Za-z0-9_.:@+=~ -]*")
"""Text every JSON writer writes as it is: Go's (the Collector's) escapes <, > and &, some
writers escape /, and non-ASCII may come as \\u escapes."""


def _left_out(
    started_at: str, its_user: str | None, its_conversation: str | None,
    since: str | None, user: str | None, conversation: str | None,
) -> bool:  # fmt: skip
    """Whether the filters (--since, --user, --conversation) leave a span out."""
    return bool(
        (since and started_at < since)
        or (user and its_user != user)
        or (conversation and its_conversation != conversation)
    )
