"""Rebuilding each turn's request body from the transcript lines before it (imports/
claude_code.py reads the lines). A session re-sends its whole history every turn, so a long one
would cost time in the square of its length: here each turn goes on from the previous turn's
work, and each message's JSON text is made once."""

from __future__ import annotations

import json
from typing import Any


def blocks(content: Any) -> list[Any]:
    """A message's content as a list of blocks (a string is one text block)."""
    if isinstance(content, list):
        return list(content)
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return []


def is_reset(e: dict[str, Any]) -> bool:
    """A compaction: the context starts again from here."""
    return (e.get("type") == "system" and e.get("subtype") == "compact_boundary") or bool(e.get("isCompactSummary"))


class Requests:
    """Builds each turn's request body from the lines before it. A session re-sends its whole
    history every turn, so the work is shared: the chain walk stops where the previous turn's
    chain is met, and each message's JSON text is made once and joined into every body that
    holds it (the writer's scanner then finds that prefix as it would on the wire)."""

    def __init__(
        self,
        by_uuid: dict[str, dict[str, Any]],
        merged: dict[str, dict[str, Any]],
        group_of: dict[str, str],
        results: dict[str, tuple[int, Any]],
    ):
        self.by_uuid, self.merged, self.group_of, self.results = by_uuid, merged, group_of, results
        self.last: list[dict[str, Any]] = []
        self.last_at: dict[str, int] = {}
        """The previous chain walked, and where each of its lines is."""
        self.texts: dict[tuple[str, tuple[Any, ...]], bytes] = {}
        """(role, the lines a message is made of) -> its JSON text."""
        self.texts_made: list[bytes] = []
        """The last body's messages' texts."""
        self.calls: dict[str, list[str]] = {}
        """Group -> the tool_use ids of its response, in order."""
        self.answered: dict[str, list[str]] = {}
        """User line -> the tool_use ids its results answer."""
        self.put_back: dict[tuple[Any, ...], tuple[str, tuple[Any, ...]]] = {}
        """(an assistant message's groups, the next user message's lines) -> that user message."""
        self.made_for: list[dict[str, Any]] = []
        self.made: list[tuple[str, tuple[Any, ...]]] = []
        self.made_used: set[str] = set()
        """The last chain turned into messages (before results are put back), to go on from."""
        self.final: list[tuple[str, tuple[Any, ...]]] = []
        self.settled = 0
        """The last list of messages (results put back), and how many of them no later turn changes."""

    def path(self, first: dict[str, Any]) -> list[dict[str, Any]]:
        """The lines before `first` on its chain, oldest first: up `parentUuid` to the chain's
        start, a compaction, or a parent this file doesn't hold."""
        new: list[dict[str, Any]] = []
        seen = {first["uuid"]}
        keep = 0
        parent = first.get("parentUuid")
        while isinstance(parent, str) and parent in self.by_uuid and parent not in seen:
            at = self.last_at.get(parent)
            if at is not None:
                keep = at + 1
                break
            e = self.by_uuid[parent]
            seen.add(parent)
            new.append(e)
            if is_reset(e):
                break
            parent = e.get("parentUuid")
        new.reverse()
        if keep == len(self.last):  # the usual case: the chain goes on from the previous turn
            path = self.last + new
            for i, e in enumerate(new, start=keep):
                self.last_at[e["uuid"]] = i
        else:
            path = self.last[:keep] + new
            self.last_at = {e["uuid"]: i for i, e in enumerate(path)}
        self.last = path
        return path

    def body(self, path: list[dict[str, Any]], before: int, model: Any) -> bytes:
        """The request: `model` and the messages `path` makes (see the module's docstring)."""
        items, same = self._items(path, before)
        texts = self.texts_made[:same]  # the previous body's first messages, the same objects
        for item in items[same:]:
            text = self.texts.get(item)
            if text is None:
                text = json.dumps(self._message(*item)).encode()  # ASCII: a lone surrogate survives
                self.texts[item] = text
            texts.append(text)
        self.texts_made = texts
        head = b'{"model":' + json.dumps(model).encode() + b"," if isinstance(model, str) else b"{"
        if not texts:
            return head + b'"messages":[]}'
        parts = list(texts)  # joined once: a long session's body is megabytes
        parts[0] = head + b'"messages":[' + parts[0]
        parts[-1] = parts[-1] + b"]}"
        return b",".join(parts)

    def _items(self, path: list[dict[str, Any]], before: int) -> tuple[list[tuple[str, tuple[Any, ...]]], int]:
        """Each message as (role, the lines it is made of): consecutive same-role lines joined, an
        assistant response once, and after a tool call, results put back (("results", ids...));
        and how many of them begin the previous turn's list too (the same objects)."""
        prev = self.made_for
        n = len(prev)
        if n and len(path) >= n and path[n - 1] is prev[n - 1] and path[:n] == prev:
            raw, used = list(self.made), set(self.made_used)  # go on from the previous turn's
            same = min(len(raw) - 1, self.settled)  # its last message may grow
        else:
            raw, used, n, same = [], set(), 0, 0
        for e in path[n:] if n else path:
            kind = e["type"]
            if kind == "assistant":
                part = self.group_of.get(e["uuid"])
                if part is None or part in used:
                    continue
                used.add(part)
            elif kind == "user":
                part = e["uuid"]
            else:
                continue
            if raw and raw[-1][0] == kind:
                raw[-1] = (kind, (*raw[-1][1], part))
            else:
                raw.append((kind, (part,)))
        self.made_for, self.made, self.made_used = path, raw, used
        items = self.final[:same] + raw[same:]
        settled = len(items)
        for i in range(max(same - 1, 0), len(items) - 1):
            if raw[i][0] == "assistant" and raw[i + 1][0] == "user":
                items[i + 1], late = self._put_back(raw[i][1], raw[i + 1], before)
                if late:
                    settled = min(settled, i + 1)
        self.final, self.settled = items, settled
        return items, same

    def _put_back(
        self, calls_from: tuple[Any, ...], answer: tuple[str, tuple[Any, ...]], before: int
    ) -> tuple[tuple[str, tuple[Any, ...]], bool]:
        """The user message after an assistant one, marked to carry every call's result when
        some were written on another branch (before the turn); and whether a result written
        after the turn was left out (a later turn may take it)."""
        key = (calls_from, answer[1])
        got = self.put_back.get(key)
        if got is not None:
            return got, False
        ids = [x for g in calls_from for x in self._calls(g)]
        have = {x for u in answer[1] for x in self._answered(u)} if ids else set()
        missing = [x for x in ids if x not in have and x in self.results]
        late = any(self.results[x][0] >= before for x in missing)
        missing = [x for x in missing if self.results[x][0] < before]
        got = ("user", (*answer[1], ("results", *ids))) if missing else answer
        if not late:  # the same for every later turn: remember it
            self.put_back[key] = got
        return got, late

    def _calls(self, group: str) -> list[str]:
        got = self.calls.get(group)
        if got is None:
            got = self.calls[group] = [
                b["id"]
                for b in self.merged[group]["content"]
                if isinstance(b, dict) and b.get("type") == "tool_use" and isinstance(b.get("id"), str)
            ]
        return got

    def _answered(self, uuid: str) -> list[str]:
        got = self.answered.get(uuid)
        if got is None:
            got = self.answered[uuid] = [
                b["tool_use_id"]
                for b in blocks(self.by_uuid[uuid]["message"].get("content"))
                if isinstance(b, dict) and b.get("type") == "tool_result" and isinstance(b.get("tool_use_id"), str)
            ]
        return got

    def _message(self, role: str, parts: tuple[Any, ...]) -> dict[str, Any]:
        if role == "assistant":
            if len(parts) == 1:
                return {"role": "assistant", "content": self.merged[parts[0]]["content"]}
            return {"role": "assistant", "content": [b for g in parts for b in self.merged[g]["content"]]}
        lines = [p for p in parts if isinstance(p, str)]
        put_back = next((p[1:] for p in parts if isinstance(p, tuple)), None)
        if len(lines) == 1 and put_back is None:
            return {"role": "user", "content": self.by_uuid[lines[0]]["message"].get("content")}
        content = [b for u in lines for b in blocks(self.by_uuid[u]["message"].get("content"))]
        if put_back is not None:  # every call's result, in call order, then the rest as written
            found = {b.get("tool_use_id"): b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"}
            for x in put_back:
                if x not in found and x in self.results:
                    found[x] = self.results[x][1]
            ordered = [found[x] for x in put_back if x in found]
            rest = [
                b
                for b in content
                if not (isinstance(b, dict) and b.get("type") == "tool_result" and b.get("tool_use_id") in put_back)
            ]
            content = ordered + rest
        return {"role": "user", "content": content}
