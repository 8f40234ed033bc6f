"""What `replayer record` ran (the `runs` table) and the links that make a conversation a fork of
another (conversation_links of kind 'fork'): written and read here, for `record`, `fork` and the
fork's live policy."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database


@dataclass(frozen=True, slots=True)
class Run:
    """One `replayer record` run: the command, where it ran, when, and how it ended."""

    run_id: str
    argv: list[str]
    cwd: str
    started_at: str
    exit_code: int | None


@dataclass(frozen=True, slots=True)
class ForkLink:
    """A conversation forked from `parent_id` at turn `turn_index` with `edits` (Edits.to_json)."""

    conversation_id: str
    parent_id: str
    turn_index: int
    edits: dict[str, Any]


def add_run(db: Database, run: Run) -> None:
    with db.conn:
        db.execute(
            """INSERT INTO runs(id, argv_json, cwd, started_at, exit_code) VALUES (?, ?, ?, ?, ?)
               ON CONFLICT(id) DO UPDATE SET exit_code = excluded.exit_code""",
            [run.run_id, json.dumps(run.argv, ensure_ascii=False), run.cwd, run.started_at, run.exit_code],
        )


def get_run(db: Database, run_id: str) -> Run | None:
    row = db.execute(
        "SELECT id, argv_json, cwd, started_at, exit_code FROM runs WHERE id = ?", [run_id]
    ).fetchone()
    return None if row is None else Run(row[0], json.loads(row[1]), row[2], row[3], row[4])


def add_fork_link(db: Database, link: ForkLink) -> None:
    with db.conn:
        db.execute(
            """INSERT OR REPLACE INTO conversation_links(conversation_id, parent_id, kind, turn_index, edits_json)
               VALUES (?, ?, 'fork', ?, ?)""",
            [link.conversation_id, link.parent_id, link.turn_index, json.dumps(link.edits, ensure_ascii=False)],
        )


def fork_links(db: Database, conversation_ids: list[str]) -> dict[str, ForkLink]:
    """The fork links of these conversations (those that are forks), by conversation id."""
    if not conversation_ids:
        return {}
    marks = ", ".join("?" for _ in conversation_ids)
    rows = db.execute(
        f"""SELECT conversation_id, parent_id, turn_index, edits_json FROM conversation_links
            WHERE kind = 'fork' AND conversation_id IN ({marks})""",
        conversation_ids,
    ).fetchall()
    return {r[0]: ForkLink(r[0], r[1], int(r[2] or 0), json.loads(r[3]) if r[3] else {}) for r in rows}


def forks_of(db: Database, parent_id: str) -> list[ForkLink]:
    """The forks made of a conversation, oldest first."""
    rows = db.execute(
        """SELECT l.conversation_id, l.parent_id, l.turn_index, l.edits_json FROM conversation_links l
           LEFT JOIN conversations c ON c.id = l.conversation_id
           WHERE l.kind = 'fork' AND l.parent_id = ? ORDER BY c.started_at, l.conversation_id""",
        [parent_id],
    ).fetchall()
    return [ForkLink(r[0], r[1], int(r[2] or 0), json.loads(r[3]) if r[3] else {}) for r in rows]


def fork_lines(db: Database, conversation_id: str) -> tuple[list[str], dict[str, Any]]:
    """What `show` says of a conversation's forks: lines, and the keys its --json adds."""
    lines: list[str] = []
    doc: dict[str, Any] = {}
    link = fork_links(db, [conversation_id]).get(conversation_id)
    if link is not None:
        edits = ", ".join(link.edits) or "no edits"
        lines.append(f"fork of conversation {link.parent_id} at turn {link.turn_index} (edits: {edits}); "
                     f"turns before {link.turn_index} replayed from it")
        doc["fork_of"] = {"conversation_id": link.parent_id, "turn_index": link.turn_index, "edits": link.edits}
    forks = forks_of(db, conversation_id)
    if forks:
        lines.append("forks: " + ", ".join(f"{f.conversation_id} (at turn {f.turn_index})" for f in forks))
        doc["forks"] = [{"conversation_id": f.conversation_id, "turn_index": f.turn_index, "edits": f.edits}
                        for f in forks]
    return lines, doc
