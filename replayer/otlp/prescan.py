"""The database-free half of storing an imported span's request, done where the input is read
(the import's reader process, readahead.py): the request scanned as the writer scans it
(store/scan.py), but against blobs and nodes numbered here ("local ids"), each new one hashed
and packed here; the writer maps local ids to its database's (store/imported_spans.py), inserting
only what is new.

This balances the two processes of a big import: scanning (decoding the new messages, canonical
JSON, hashes, compression, thread keys) was about half of the writer's time per span, and none
of it needs the database. The writer's share left is the database's own: rows and indexes.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any

from ..captured import Captured
from ..store.blobs import Blobs
from ..store.codec import Decoder
from ..store.scan import ParsedRequest, RequestScanner

START_OVER = 200_000
"""Local ids numbered before the reader forgets what it numbered (at a batch's end) and the
writer forgets their mapping: what bounds the memory of both in a long import."""


@dataclass(slots=True)
class Defined:
    """The blobs and nodes a batch's requests numbered first, in order (a node's parent and blob
    are numbered before it): what the writer inserts, or finds, before the batch's records."""

    blobs: list[tuple[int, str, str | bytes | bytearray]]
    """(local id, hash, what to store: store/codec.pack's)."""
    nodes: list[tuple[int, int, int, int]]
    """(local id, parent's local id (0: the empty list), blob's local id, depth)."""
    fresh: bool = False
    """No later batch names a local id numbered before this batch: the writer forgets them."""


class LocalBlobs(Blobs):
    """Blobs and nodes numbered in this process (from 1; 0 is the empty list, as in the database),
    remembered with Blobs' own caches; what is new is kept for the batch's `Defined`."""

    def __init__(self) -> None:
        super().__init__(None)  # type: ignore[arg-type]  # (no database: what would use it is overridden)
        self.next_id = 1
        self.defined = Defined([], [])

    def insert_stored(self, h: str, stored: str | bytes | bytearray) -> int:
        n = self.next_id
        self.next_id += 1
        self.defined.blobs.append((n, h, stored))
        return n

    def insert_node(self, parent: int, blob: int, depth: int) -> int:
        n = self.next_id
        self.next_id += 1
        self.defined.nodes.append((n, parent, blob, depth))
        return n


class Share:
    """Which requests the reader scans: those of `k` conversations in every PARTS (by a hash of
    the conversation id, so that each side keeps scanning the same conversations and finds their
    last request to compare the next with), the writer the rest.

    Moved by what the writer's pace tells after each batch (`adjust`): while the reader waits for
    the writer to take its batches, it takes more of the scanning (the more, the longer it
    waited); while it does not wait, a part less. So the two processes' CPU stays about balanced
    on any machine; read in the importing process (stdin, a small file), the writer scans
    everything (no hand-over)."""

    PARTS = 16
    WAITS = 0.06
    """The reader waited this much of the time it took to make the batch: it takes more."""
    BUSY = 0.015
    """It waited less than this much: it takes less."""

    def __init__(self, k: int = PARTS // 2) -> None:
        self.k = k

    def takes(self, conversation: str) -> bool:
        if self.k <= 0 or self.k >= self.PARTS:
            return self.k > 0
        return zlib.crc32(conversation.encode("utf-8", "surrogatepass")) % self.PARTS < self.k

    def adjust(self, waited: float | None, busy: float) -> None:
        """After a batch that took `busy` seconds to make and `waited` to be taken (None: read in
        the importing process)."""
        if waited is None:
            self.k = 0
        elif waited > self.WAITS * busy:
            self.k = min(self.k + max(1, round(self.PARTS * waited / busy / 2)), self.PARTS)
        elif waited < self.BUSY * busy:
            self.k = max(self.k - 1, 0)


class PreScanner:
    """Scans the requests of one import, in order, into wire tuples of ParsedRequest (local ids)."""

    def __init__(self) -> None:
        self.blobs = LocalBlobs()
        self.scanner = RequestScanner(self.blobs, Decoder())
        self.started_at = 1
        """The first local id since the last start over."""
        self.fresh = False

    def scan(self, captured: Captured) -> tuple[Any, ...] | None:
        """The request of `captured` scanned (a wire tuple: `parsed_from_wire` reads it), its bytes
        then dropped from it (the writer does not read them); None when it holds no bytes."""
        body = captured.request_bytes
        if body is None or captured.request_obj is not None:
            return None
        captured.request_bytes = None
        return _PARSED_VALUES(self.scanner.parse_request(body))

    def take(self) -> Defined:
        """What was numbered since the last call (at a batch's end), starting over when enough was."""
        defined = self.blobs.defined
        defined.fresh, self.fresh = self.fresh, False
        self.blobs.defined = Defined([], [])
        if self.blobs.next_id - self.started_at > START_OVER:
            self.scanner.forget()
            self.blobs.forget()
            self.started_at = self.blobs.next_id
            self.fresh = True  # (the next batch's: this one's records still name the old ids)
        return defined


_PARSED_VALUES = attrgetter(*(f.name for f in fields(ParsedRequest)))


def parsed_from_wire(t: tuple[Any, ...], ids: dict[int, int]) -> ParsedRequest:
    """A `PreScanner.scan` tuple as a ParsedRequest with the database's ids (`ids`: local -> the
    database's, 0 -> 0)."""
    p = ParsedRequest(*t)
    if p.system is not None:
        p.system = ids[p.system]
    if p.tools is not None:
        p.tools = ids[p.tools]
    if p.node is not None:
        p.node = ids[p.node]
    p.blobs = [ids[b] for b in p.blobs]
    p.nodes = [ids[n] for n in p.nodes]
    return p
