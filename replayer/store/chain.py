"""Walking a stored message list: contexts are chains of `nodes` (one per message, each pointing
at its parent), so a context is read by following parents from its last node; and two contexts
are compared by the messages they share at the start.

Messages are stored exactly as sent, so a message an agent re-sends with its cache breakpoint
moved (Claude Code puts `cache_control` on the newest block each turn) is another blob, and the
node chains part there. Where a comparison means "the same message to the model", `alike` looks
past `cache_control`."""

from __future__ import annotations

from typing import Any

CHAIN_SQL = """WITH RECURSIVE chain(id, parent, blob) AS (
                   SELECT id, parent, blob FROM nodes WHERE id = ?
                   UNION ALL
                   SELECT n.id, n.parent, n.blob FROM nodes n JOIN chain c ON n.id = c.parent
               ) SELECT id, parent, blob FROM chain"""
"""The nodes from `?` up to the first message, last first: (id, parent, blob)."""


def chain_nodes(db: Any, node: int | None) -> list[tuple[int, int | None, int]]:
    """(id, parent, blob) of each node of the context ending at `node`, last message first."""
    return [(nid, parent, blob) for nid, parent, blob in db.execute(CHAIN_SQL, [node or 0]).fetchall()]


def chain_blobs(db: Any, node: int | None) -> list[int]:
    """The message blob ids of the context ending at `node`, first to last."""
    return [blob for _, _, blob in reversed(chain_nodes(db, node))]


def shared_prefix(a: list[Any], b: list[Any]) -> int:
    """How many leading messages two contexts share."""
    n = 0
    for x, y in zip(a, b):  # noqa: B905 - stops at the shorter
        if x != y:
            break
        n += 1
    return n


def chain_ids(db: Any, node: int | None) -> list[int]:
    """The node ids of the context ending at `node`, first to last."""
    return [nid for nid, _, _ in reversed(chain_nodes(db, node))]


def uncached(value: Any) -> Any:
    """`value` without its `cache_control` fields (a cache breakpoint changes no content)."""
    if isinstance(value, dict):
        return {k: uncached(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [uncached(v) for v in value]
    return value


def alike(a: Any, b: Any) -> bool:
    """Two messages the model reads the same: equal, or equal but for `cache_control`."""
    return a == b or uncached(a) == uncached(b)
