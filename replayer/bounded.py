"""A bounded cache: a dict that empties itself when it grows past its limit.

The writer's id caches (blobs, nodes, thread tips, conversations...) live as long as the
process that writes (the writer process, or the agent's own): they must not grow without end,
and the usual hit is recent, so starting over when full costs a few lookups in the database and
needs no bookkeeping per hit (an LRU would). A cache filled in batches whose entries must all be
there together (store/queries.py's reading caches) adds each batch with `fill`, cleared before
the batch, never in the middle of it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedDict(dict[K, V]):
    """A dict cleared before an insert once it holds more than `limit` entries."""

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def __setitem__(self, key: K, value: V) -> None:
        if len(self) > self.limit:
            self.clear()
        super().__setitem__(key, value)

    def fill(self, items: Iterable[tuple[K, V]]) -> None:
        """Add a batch whose entries must all be there together: the cache is cleared first when
        it holds more than `limit`, never in the middle of the batch."""
        if len(self) > self.limit:
            self.clear()
        super().update(items)
