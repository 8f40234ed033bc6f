"""Content-addressed rows: blobs (a JSON document, stored once per hash of its canonical JSON, as
it first came: codec.in_order) and nodes (a message list, as its last message's blob under the
node of the list before it), with the id caches that spare most lookups. Runs on the background
writer only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..bounded import BoundedDict
from .codec import Written, blake2b, canon, canon_plain, in_order, pack
from .threads import thread_key

if TYPE_CHECKING:  # (an import's reader process scans without a database: otlp/prescan.py)
    from sqlite_utils import Database

MAX_CACHE = 50_000
"""Entries in each id cache (blob and node ids, short texts, tool counts): they live in the
agent's process. A miss costs a lookup in the database; the usual hits are recent."""
SMALL_CHARS = 512
"""Texts up to this long are looked up by their text first (skeletons, headers, short messages):
no hash to take."""


class Blobs:
    """Inserts blobs and nodes into one Database, remembering their ids."""

    def __init__(self, db: Database):
        self.db = db
        self.ids: BoundedDict[str, int] = BoundedDict(MAX_CACHE)
        """Hash -> blob id."""
        self.small_ids: dict[str, tuple[int, str]] = {}
        """Short text -> (blob id, hash); emptied with `ids`."""
        self.last_digest = ""
        """The hash of the last text given to `blob_text` (a thread key is chained from it)."""
        self.node_ids: BoundedDict[tuple[int, int], int] = BoundedDict(MAX_CACHE)
        """(parent node, blob) -> node id."""
        self.nodes_made = 0
        """Nodes inserted so far: a request whose scan made k of them sent its last k messages
        first (a node's parent is older than it), the ones before were sent by an earlier one."""
        self.unsent: set[int] = set()
        """Nodes inserted ahead of the request that sends them (an import's batch inserts the
        nodes its requests name before storing them: store/imported_spans.py). The first request
        to name one makes it (`nodes_made`, `send`), as where it was recorded; which requests
        were scanned ahead, and which batch inserted what, then changes nothing."""

    def forget(self) -> None:
        """Drop the caches (after a rollback the ids they hold may not exist)."""
        self.ids.clear()
        self.small_ids.clear()
        self.node_ids.clear()

    def blob(self, obj: Any, plain: bool = False, written: Written | None = None) -> int:
        """The blob of `obj`. `plain`: it is known to hold no float (see `canon_plain`);
        `written`: the text it was parsed from (see `in_order`)."""
        return self.blob_text(canon_plain(obj) if plain else canon(obj), obj, plain, written)

    def message_blob(
        self, obj: Any, prev_key: str, plain: bool = False, written: Written | None = None
    ) -> tuple[int, str]:
        """(blob id, thread key) of a message following a list whose thread key is `prev_key`
        (`plain`, `written`: as for `blob`)."""
        text = canon_plain(obj) if plain else canon(obj)
        blob = self.blob_text(text, obj, plain, written)
        return blob, thread_key(prev_key, obj, text, self.last_digest)

    def blob_text(self, text: str, obj: Any, plain: bool = False, written: Written | None = None) -> int:
        """The blob of `obj`, whose canonical JSON is `text`: found by the hash of `text`, or
        inserted holding `obj` in the order its keys came (`in_order`, made only then: most
        messages an agent sends were stored before, by an earlier request or as a reply)."""
        small = len(text) <= SMALL_CHARS
        if small:
            hit = self.small_ids.get(text)  # skeletons, headers, short messages: skip the hash
            if hit is not None:
                self.last_digest = hit[1]
                return hit[0]
        raw = text.encode("utf-8", "surrogatepass")  # hashed, and deflated when long and stored as it is
        h = blake2b(raw, digest_size=16).hexdigest()  # codec.digest, over the bytes made once
        self.last_digest = h
        got = self.ids.get(h)
        if got is not None:
            if small:
                self.small_ids[text] = (got, h)
            return got
        kept = in_order(obj, text, plain, written)
        # keys out of order: `pack` encodes its own bytes, and only when it is long enough to deflate
        stored: str | bytes | bytearray = pack(kept, raw if kept == text else None)
        if type(stored) is bytes:  # bound as a bytearray, the same BLOB: bytes cost an adapter lookup
            stored = bytearray(stored)
        got = self.insert_stored(h, stored)
        if len(self.ids) > self.ids.limit:
            self.small_ids.clear()  # emptied with `ids` (which empties itself on the insert below)
        self.ids[h] = got
        if small:
            self.small_ids[text] = (got, h)
        return got

    def blob_stored(self, h: str, stored: str | bytes | bytearray) -> int:
        """The id of a blob given its hash and what to store (`pack`ed already: an import's reader
        process hashes and packs, store/imported_spans.py)."""
        got = self.ids.get(h)
        if got is None:
            got = self.insert_stored(h, stored)
            if len(self.ids) > self.ids.limit:
                self.small_ids.clear()  # (as in blob_text)
            self.ids[h] = got
        return got

    def insert_stored(self, h: str, stored: str | bytes | bytearray) -> int:
        """The id of the blob whose hash is `h`, inserted when new (`stored`: its `pack`ed text)."""
        conn = self.db.conn
        cur = conn.execute("INSERT OR IGNORE INTO blobs(hash, json) VALUES (?, ?)", (h, stored))
        if cur.rowcount:
            return int(cur.lastrowid or 0)
        return int(conn.execute("SELECT id FROM blobs WHERE hash = ?", (h,)).fetchone()[0])

    def node(self, parent: int, blob: int, depth: int) -> int:
        key = (parent, blob)
        got = self.node_ids.get(key)
        if got is None:
            made = self.nodes_made
            got = self.node_ids[key] = self.insert_node(parent, blob, depth)
            if self.nodes_made != made:
                self.unsent.discard(got)  # (an id a rollback took back and SQLite gave again)
                return got
        if got in self.unsent:
            self.unsent.discard(got)
            self.nodes_made += 1
        return got

    def send(self, nodes: list[int]) -> int:
        """How many of a request's leading nodes (scanned elsewhere: an import's reader process)
        an earlier request had sent: those before the first still unsent. Its nodes are sent now."""
        unsent = self.unsent
        known = next((i for i, node in enumerate(nodes) if node in unsent), len(nodes))
        if known < len(nodes):
            unsent.difference_update(nodes)
        return known

    def insert_node(self, parent: int, blob: int, depth: int) -> int:
        """The id of the node of `blob` under `parent`, inserted when new."""
        key = (parent, blob)
        conn = self.db.conn
        cur = conn.execute("INSERT OR IGNORE INTO nodes(parent, blob, depth) VALUES (?, ?, ?)", (parent, blob, depth))
        if cur.rowcount:
            self.nodes_made += 1
            return int(cur.lastrowid or 0)
        return int(conn.execute("SELECT id FROM nodes WHERE parent = ? AND blob = ?", key).fetchone()[0])
