"""Walking a stored message list: contexts are chains of `nodes` (one per message, each pointing
at its parent), so a context is read by following parents from its last node; two contexts
are compared by the messages they share at the start; and every conversation's first message is
read in one walk (the list sorts by it).

Messages are stored exactly as sent, so a message an agent re-sends with its cache breakpoint
moved (Claude Code puts `cache_control` on the newest block each turn) is another blob, and the
node chains part there. Where a comparison means "the same message to the model", `alike` looks
past `cache_control`; `lacking` compares system prompts and tool lists so, part by part (what
the Context tab shows as entered, and what find looks in)."""

from __future__ import annotations

import json
from typing import Any

from .codec import unpack

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


def system_blocks(system: Any) -> list[Any]:
    """A system prompt's blocks (a string is one)."""
    if system is None:
        return []
    return system if isinstance(system, list) else [system]


def lacking(kind: str, value: Any, other: Any) -> list[Any]:
    """The parts of a system prompt or tool list `value` that `other` lacks: its blocks not in
    `other`, or its tools that `other` has no tool of that name for, or defines otherwise. A part
    only its cache breakpoint moved in is not lacking: it reads the same to the model."""
    if kind == "system":
        theirs = system_blocks(other)
        return [b for b in system_blocks(value) if not any(alike(b, t) for t in theirs)]
    named = {str(t.get("name")): t for t in other if isinstance(t, dict)} if isinstance(other, list) else {}
    tools = value if isinstance(value, list) else []
    return [t for t in tools if not alike(t, named.get(str(t.get("name")) if isinstance(t, dict) else ""))]


def first_texts(db: Any) -> dict[int, str | None]:
    """Conversation rowid -> the text of the first message its first turn sent (its earliest turn
    held: turn 0, unless an import brought later turns only): every first turn's chain walked up to
    its first node in one query."""
    out: dict[int, str | None] = {}
    for conv, text in db.execute(
        """WITH RECURSIVE firsts(conv, node) AS (
               SELECT c.rowid, (SELECT context_node FROM turns WHERE conversation_id = c.id ORDER BY idx LIMIT 1)
               FROM conversations c
           ), up(conv, parent, blob, depth) AS (
               SELECT f.conv, n.parent, n.blob, n.depth FROM firsts f JOIN nodes n ON n.id = f.node
               UNION ALL SELECT up.conv, n.parent, n.blob, n.depth FROM nodes n JOIN up ON n.id = up.parent)
           SELECT up.conv, CASE WHEN typeof(b.json) != 'text' THEN b.json
                                WHEN json_type(b.json, '$.content') = 'text' THEN json_extract(b.json, '$.content')
                                ELSE json_extract(b.json, '$.content[0].text') END
           FROM up JOIN blobs b ON b.id = up.blob WHERE up.depth = 1"""
    ):
        if isinstance(text, bytes):  # a long first message, stored compressed: read it here
            content = json.loads(unpack(text)).get("content")
            if isinstance(content, list) and content and isinstance(content[0], dict):
                content = content[0].get("text")
            text = content
        out[conv] = text if isinstance(text, str) else None
    return out
