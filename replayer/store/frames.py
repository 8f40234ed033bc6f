"""The frames on the pipes between the recording process and the writer process (store/process.py,
store/child.py): a 4-byte big-endian length and a pickle; a message's records go as lists of
their fields, and their big bodies (requests, responses, streams) go over as they are, after a
frame that gives their sizes.

Why not pickle the bodies: pickling copies each into the frame while the feeder thread holds the
agent's GIL (about 24 us for a 32 KB request on a loaded 2-core machine, 150 us for a 200-turn
history), and unpickling copies it out again in the child. Written as they are, the kernel copies
them into the pipe with the GIL released, and the child reads each straight into its own object.

  ("blobs", [size, ...])  raw bytes of those sizes  (the message whose pickle names them)

A request body that repeats most of its caller's last goes over as what differs (`Bodies`): an
agent's next turn resends its whole history, so the 200-turn loop of bench/record_overhead.py
wrote 49 MB through the pipe for its 0.6 MB of new messages. As deltas, the feeder thread's CPU
in that loop went from about 39 ms to 24 ms (the kernel's copies and wake-ups gone; finding
what differs, a C comparison of about the shared bytes, costs 36 us for a 240 KB body).
"""

from __future__ import annotations

import pickle
import struct
from collections import OrderedDict
from dataclasses import fields
from operator import attrgetter
from typing import IO, Any

from ..captured import Captured

HEADER = struct.Struct(">I")
BLOB_BYTES = 4096
"""`bytes` at least this long go over as they are; shorter ones cost less in the pickle."""


_FIELDS = tuple(f.name for f in fields(Captured))
_ROW = attrgetter(*_FIELDS)
_BODIES = tuple(_FIELDS.index(name) for name in ("request_bytes", "response_bytes", "sse"))


_REQUEST = _FIELDS.index("request_bytes")
_CALLER = _FIELDS.index("caller")


class Bodies:
    """The request bodies the last frames carried, kept alike at both ends of one pipe: each end
    adds every big request body in the order the frames carry them and lets go of the oldest
    alike, so a number names the same body at both. The sending end also remembers each caller's
    last (a thread's, or an asyncio task's: one agent's loop), the body its next request most
    likely repeats."""

    KEEP = 8
    KEEP_BYTES = 8 << 20
    """At most this many bodies, of at most this many bytes in all, are kept (at each end; in the
    agent's process they are bodies the SDK has let go of: memory of its own)."""
    CALLERS = 64
    """The sending end remembers the last body of this many callers (the latest)."""

    def __init__(self) -> None:
        self.kept: OrderedDict[int, bytes] = OrderedDict()
        self.size = 0
        self.count = 0
        """Bodies added so far: the next one's number."""
        self.last_of: OrderedDict[Any, int] = OrderedDict()
        """Caller -> the number of its last body (the sending end only)."""

    def add(self, body: bytes) -> int:
        number = self.count
        self.count += 1
        self.kept[number] = body
        self.size += len(body)
        while len(self.kept) > self.KEEP or self.size > self.KEEP_BYTES:
            _, gone = self.kept.popitem(last=False)
            self.size -= len(gone)
        return number

    def sent_by(self, caller: Any, body: bytes) -> tuple[int, bytes] | None:
        """Add `body`, the latest of `caller`'s; its last one before, if still kept, with its number."""
        number = self.last_of.pop(caller, None)
        base = self.kept.get(number) if number is not None else None
        self.last_of[caller] = self.add(body)
        if len(self.last_of) > self.CALLERS:
            self.last_of.popitem(last=False)
        return (number, base) if number is not None and base is not None else None

    def state(self) -> tuple[Any, ...]:
        return OrderedDict(self.kept), self.size, self.count, OrderedDict(self.last_of)

    def restore(self, state: tuple[Any, ...]) -> None:
        """Back to `state` (a message that was never sent added nothing)."""
        self.kept, self.size, self.count, self.last_of = state


def shared_head(a: bytes, b: bytes) -> int:
    """How many leading bytes `a` and `b` share: halving the window where they first differ, each
    step a C comparison of that window only (a byte-by-byte loop here would cost milliseconds)."""
    view = memoryview(a)
    # a[:lo] == b[:lo]; a[:hi] != b[:hi] (hi past the shorter end stands for "not known equal"):
    # the windows that match add up to the shared head, so about that many bytes are compared
    lo, hi = 0, min(len(a), len(b)) + 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if b.startswith(view[lo:mid], lo):
            lo = mid
        else:
            hi = mid
    return lo


def shared_tail(a: bytes, b: bytes, most: int) -> int:
    """How many trailing bytes `a` and `b` share, at most `most`."""
    la, lb = len(a), len(b)
    view = memoryview(a)
    lo, hi = 0, max(most, 0) + 1  # the last lo bytes match, the last hi don't (or are too many)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if b.startswith(view[la - mid : la - lo], lb - mid):
            lo = mid
        else:
            hi = mid
    return lo


def _delta(base: bytes, body: bytes) -> tuple[int, int] | None:
    """(head, tail): `body` is base[:head] + its own middle + base[len(base) - tail:]; None when
    that saves less than half of it."""
    head = shared_head(base, body)
    tail = shared_tail(base, body, min(len(base), len(body)) - head)
    return (head, tail) if 2 * (head + tail) >= len(body) else None


def _rows(batch: list[Captured], blobs: list[bytes], bodies: Bodies | None) -> list[list[Any]]:
    """A batch's records as lists of their fields, each big body replaced by its number in
    `blobs`, and a request body that repeats most of its caller's last by a delta: (the number
    of that body in `bodies`, the shared head's length, the middle (bytes, or its number in
    `blobs`), the shared tail's length). Why lists: a slots dataclass pickles through
    Python-level `__getstate__`, and a pickler's `persistent_id` is called back for every object
    in the message (a stream's chunk times are dozens); lists of plain values pickle in C, at a
    third of the time."""
    rows = []
    for captured in batch:
        row = list(_ROW(captured))
        for i in _BODIES:
            body = row[i]
            if type(body) is not bytes or len(body) < BLOB_BYTES:
                continue
            if i == _REQUEST and bodies is not None:
                last = bodies.sent_by(row[_CALLER], body)
                cut = _delta(last[1], body) if last is not None else None
                if last is not None and cut is not None:
                    head, tail = cut
                    middle = body[head : len(body) - tail]
                    part: bytes | int = middle
                    if len(middle) >= BLOB_BYTES:
                        blobs.append(middle)
                        part = len(blobs) - 1
                    row[i] = (last[0], head, part, tail)
                    continue
            blobs.append(body)
            row[i] = len(blobs) - 1
        rows.append(row)
    return rows


def _records(rows: list[list[Any]], blobs: list[bytes], bodies: Bodies | None) -> list[Captured]:
    """`_rows` undone: at the receiving end, `bodies` sees the same big request bodies in the same
    order as the sending end's did."""
    for row in rows:
        for i in _BODIES:
            value = row[i]
            if type(value) is int:
                row[i] = blobs[value]
            elif type(value) is tuple:
                if bodies is None:
                    raise ValueError("a request body came as a delta to a reader that keeps no bodies")
                number, head, middle, tail = value
                base = memoryview(bodies.kept[number])
                # one copy of each part into the new body (slicing and `+` copied the history three times)
                part = blobs[middle] if type(middle) is int else middle
                row[i] = b"".join((base[:head], part, base[len(base) - tail :]))
            else:
                continue
            if i == _REQUEST and bodies is not None:
                bodies.add(row[i])
    return [Captured(*row) for row in rows]


def encode(msg: Any, bodies: Bodies | None = None) -> list[bytes]:
    """`msg` as the parts to write, in order (raises what pickling raises, `bodies` as before).
    With `bodies`, the sending end's of the pipe these parts go to, a request body that repeats
    most of its caller's last goes as a delta: write every part, or start both ends over with new
    `Bodies`."""
    blobs: list[bytes] = []
    if type(msg) is tuple and msg and msg[0] == "put":
        before = bodies.state() if bodies is not None else None
        try:
            msg = ("put", _rows(msg[1], blobs, bodies))
            body = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            if bodies is not None and before is not None:
                bodies.restore(before)
            raise
    else:
        body = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
    frame = HEADER.pack(len(body)) + body
    if not blobs:
        return [frame]
    sizes = pickle.dumps(("blobs", [len(b) for b in blobs]), protocol=pickle.HIGHEST_PROTOCOL)
    return [HEADER.pack(len(sizes)) + sizes, *blobs, frame]


def read_frame(pipe: IO[bytes], bodies: Bodies | None = None) -> Any:
    """The next message, its bodies in place; None at the end of the pipe (or a frame cut off).
    `bodies`: the receiving end's, of this pipe (see `encode`)."""
    blobs: list[bytes] = []
    while True:
        head = pipe.read(HEADER.size)
        if len(head) < HEADER.size:
            return None
        (size,) = HEADER.unpack(head)
        body = pipe.read(size)
        if len(body) < size:
            return None
        msg = pickle.loads(body)
        if not (type(msg) is tuple and msg and msg[0] == "blobs"):
            return ("put", _records(msg[1], blobs, bodies)) if type(msg) is tuple and msg and msg[0] == "put" else msg
        for n in msg[1]:
            blob = pipe.read(n)
            if len(blob) < n:
                return None
            blobs.append(blob)
