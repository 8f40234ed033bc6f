"""Reading Claude Code's own transcripts into turns: which files, which lines, and the request and
response each API call most likely had. Nothing here touches the database (store/imported.py
writes what this reads).

The format (internal to Claude Code, and it changes; seen with 2.1.x): one JSON object per line
in `~/.claude/projects/<cwd slug>/<session id>.jsonl`, subagents in `<session id>/subagents/
agent-<id>.jsonl` (with an `agent-<id>.meta.json` naming the parent's tool call) or, in older
versions, inline as `isSidechain` lines. `user` and `assistant` lines carry `uuid`, `parentUuid`,
`sessionId`, `timestamp` and an API `message`.

What a transcript doesn't hold, and how it is rebuilt:
- One API response is written as several assistant lines sharing `message.id` and `requestId`
  (one per content block, sometimes a block twice as it grew): they are merged into one message
  with every block once, and the usage of the last line (the final one, not the first partial).
- A turn's request is the chain of lines before its first line (by `parentUuid`), turned into
  API messages: consecutive same-role lines joined, an assistant message once however many lines
  it took. Claude Code hangs parallel tool results on different branches of the chain, so a
  tool call's result missing from the path is put back from where it was written.
- A chain stops at a compaction (a `compact_boundary` line, or a user line flagged
  `isCompactSummary`): the turn after it starts from the summary, a context reset.
- The system prompt, the tools and the sampling settings are not in a transcript: the request
  holds only `model` and `messages`, and every turn made here is marked reconstructed.
- Attachments (file contents, reminders) are links of the chain but make no message; Claude
  Code's own bookkeeping lines (queue operations, titles, file snapshots) are skipped;
  `<synthetic>` assistant lines (Claude Code's, never the API's) make no turn.
- A session still being written (its file changed in the last `LIVE_SECONDS`) may end in a
  response Claude Code has written only part of: no stop reason yet (older versions write each
  block as it streams), or a `tool_use` stop whose tool calls (a line each) may not all be there
  (the results that follow show they are), or a last line cut off as it is appended (not JSON
  yet). That response is left for the next import, which takes it whole: a turn, once
  imported, is never written again. A line that is not JSON anywhere else is malformed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from ..pricing import check_usage
from .rebuild import Requests, blocks, is_reset

SOURCE = "claude-code"
SYNTHETIC_MODEL = "<synthetic>"
TRANSCRIPT_KEYS = ("sessionId", "uuid", "leafUuid", "messageId")
"""A line with a `type` and one of these is Claude Code's: what tells a transcript from other JSONL."""
ACCOUNT_KEYS = ("accountUuid", "userId", "userID")
"""Where a line would name the account (2.1.x names none)."""
KEPT = (
    "type", "subtype", "uuid", "parentUuid", "sessionId", "isSidechain", "agentId", "timestamp", "requestId",
    "message", "isCompactSummary", *ACCOUNT_KEYS,
)  # fmt: skip
"""The keys of a line the import reads."""
LINE = "\u0000line"
"""...and, under a key no line has, its number in the file."""
_GROWING = {"text": "text", "thinking": "thinking"}
"""Block types a partial line can hold a shorter version of: the field that grows."""
LIVE_SECONDS = 600.0
"""A transcript changed this recently may be a session in progress (see the docstring)."""


def default_root() -> Path:
    """Where Claude Code keeps transcripts: $CLAUDE_CONFIG_DIR/projects, else ~/.claude/projects."""
    base = os.environ.get("CLAUDE_CONFIG_DIR")
    return (Path(base).expanduser() if base else Path.home() / ".claude") / "projects"


@dataclass(slots=True)
class Malformed:
    """A line that could not be read: where, and what is wrong with it."""

    path: Path
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


@dataclass(slots=True)
class Turn:
    """One API call as a transcript remembers it."""

    session_id: str
    chain: str
    key: str
    """The response's identity: message id and request id (the line's uuid when it has neither)."""
    message_id: str | None
    request_id: str | None
    uuid: str
    """Its first line's."""
    at: float
    """When its first line was written (epoch seconds)."""
    make_body: Callable[[], bytes]
    """Builds the reconstructed request body (`model` and `messages` only) when it is written: a
    long session's requests, all held at once, would take memory in the square of its length."""
    response: dict[str, Any]
    context_reset: bool
    """The first turn after a compaction: its context starts from the summary."""
    user_id: str | None = None
    line: int = 0
    """Its first line's number in the file (for a report of a turn that could not be written)."""


@dataclass(slots=True)
class Chain:
    """A session's main thread (chain "") or one subagent's: one conversation."""

    session_id: str
    chain: str
    """"" for the main thread; a subagent's agent id (in older transcripts, its first line's uuid)."""
    turns: list[Turn] = field(default_factory=list)
    tool_use_id: str | None = None
    """The parent's tool call that started this subagent, when the transcript says."""


@dataclass(slots=True)
class Transcript:
    path: Path
    chains: list[Chain] = field(default_factory=list)
    malformed: list[Malformed] = field(default_factory=list)
    lines: int = 0
    """Non-empty lines."""
    entries: int = 0
    """Lines that look like Claude Code's."""
    unfinished: int = 0
    """A live session's last response, only partly written yet: left for the next import."""

    @property
    def is_transcript(self) -> bool:
        """Some line looks like Claude Code's (an empty file is a session that never started)."""
        return self.entries > 0 or self.lines == 0


def transcript_files(paths: Iterable[Path]) -> list[Path]:
    """Every transcript under the given folders, and the given files with their subagents' files;
    sessions' files before subagents', each file once."""
    found: dict[Path, None] = {}
    for p in paths:
        if p.is_dir():
            for f in sorted(p.rglob("*.jsonl")):
                found.setdefault(f, None)
        else:
            found.setdefault(p, None)
            for f in sorted((p.parent / p.stem / "subagents").glob("*.jsonl")):
                found.setdefault(f, None)
    # every session's main file before any subagent's, so a subagent finds its parent
    return sorted(found, key=lambda f: f.parent.name == "subagents")


def looks_like_transcript(path: Path, probe: int = 50) -> bool:
    """A cheap look at the first lines: True when one of them is Claude Code's (or the file is
    empty), so a file named by mistake is refused before anything is written."""
    seen = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            seen += 1
            try:
                d = json.loads(line)
            except ValueError:
                d = None
            if _is_entry(d):
                return True
            if seen >= probe:
                return False
    return seen == 0


def _is_entry(d: Any) -> bool:
    return isinstance(d, dict) and isinstance(d.get("type"), str) and any(k in d for k in TRANSCRIPT_KEYS)


def read(path: Path) -> Transcript:
    """The chains (main thread, subagents) and malformed lines of one transcript file."""
    t = Transcript(path)
    entries: list[dict[str, Any]] = []
    cut: Malformed | None = None
    """The last line, when it is not JSON: maybe a line still being written."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            t.lines += 1
            cut = None
            try:
                d = json.loads(line)
            except ValueError:
                cut = Malformed(path, n, "not JSON")
                t.malformed.append(cut)
                continue
            if not isinstance(d, dict):
                t.malformed.append(Malformed(path, n, "not a JSON object"))
                continue
            if _is_entry(d):
                t.entries += 1
            kind = d.get("type")
            if kind in ("user", "assistant"):
                if not isinstance(d.get("uuid"), str) or not isinstance(d.get("message"), dict):
                    t.malformed.append(Malformed(path, n, f"a {kind} line without uuid or message"))
                    continue
                try:
                    check_usage(d["message"].get("usage"))
                except (ValueError, TypeError) as e:
                    t.malformed.append(Malformed(path, n, f"a usage that isn't token counts ({type(e).__name__}: {e})"))
                    continue
            elif not isinstance(d.get("uuid"), str):
                continue  # Claude Code's bookkeeping (queue, titles, snapshots): not on a chain
            # only what is read later: a line's tool output copy and attachments can be most of a file
            entries.append({**{k: d[k] for k in KEPT if k in d}, LINE: n})
    meta = _meta(path)
    try:
        live = time.time() - path.stat().st_mtime < LIVE_SECONDS
    except OSError:
        live = False
    t.chains, t.unfinished = _chains(entries, path.stem, meta, live)
    if live and cut is not None:
        # a live session's file whose last line isn't JSON (yet) ends in the line Claude Code is
        # appending: part of the response it is writing, which the next import reads whole
        # (counted once, when that response's earlier lines are held back too)
        t.malformed.remove(cut)
        t.unfinished = max(t.unfinished, 1)
    return t


def unfinished(response: dict[str, Any]) -> bool:
    """Whether a response a live session's file ends with may not be whole yet: no stop reason,
    or a tool-use stop (its tool calls are written one line each, and how many there are shows
    only once their results follow)."""
    return response.get("stop_reason") in (None, "tool_use")


def _meta(path: Path) -> dict[str, Any]:
    """A subagent's `agent-<id>.meta.json` (it names the parent's tool call), if any."""
    try:
        doc = json.loads((path.parent / f"{path.stem}.meta.json").read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _timestamp(value: Any, default: float) -> float:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return default


def _key(e: dict[str, Any]) -> str:
    """The turn's key in the database (its lines' message id and request id)."""
    m = e["message"]
    mid, rid = m.get("id"), e.get("requestId")
    if isinstance(mid, str) and isinstance(rid, str):
        return f"{mid}:{rid}"
    return mid if isinstance(mid, str) else f"uuid:{e['uuid']}"


def _response(e: dict[str, Any]) -> str:
    """The API response a line is part of: its message id (whether or not the line also names
    the request), else the line alone."""
    mid = e["message"].get("id")
    return mid if isinstance(mid, str) else f"uuid:{e['uuid']}"


def merge(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """The complete message of one API response written over several lines: every block once (a
    block seen again, or grown, replaces its earlier copy), the last line's usage and stop."""
    out: list[Any] = []
    for e in lines:
        for b in blocks(e["message"].get("content")):
            if b in out:
                continue
            if isinstance(b, dict):
                bid = b.get("id")
                same = (
                    next(
                        (
                            j
                            for j, x in enumerate(out)
                            if isinstance(x, dict) and x.get("id") == bid and x.get("type") == b.get("type")
                        ),
                        None,
                    )
                    if bid is not None
                    else None
                )
                if same is not None:
                    out[same] = b
                    continue
                grows = _GROWING.get(b.get("type"))  # type: ignore[arg-type]
                last = out[-1] if out else None
                if (
                    grows
                    and isinstance(last, dict)
                    and last.get("type") == b.get("type")
                    and isinstance(b.get(grows), str)
                    and isinstance(last.get(grows), str)
                    and b[grows].startswith(last[grows])
                ):
                    out[-1] = b
                    continue
            out.append(b)
    msg = dict(lines[0]["message"])
    msg["content"] = out
    for e in reversed(lines):
        if isinstance(e["message"].get("usage"), dict):
            msg["usage"] = e["message"]["usage"]
            break
    for e in reversed(lines):
        if e["message"].get("stop_reason") is not None:
            msg["stop_reason"] = e["message"]["stop_reason"]
            msg["stop_sequence"] = e["message"].get("stop_sequence")
            break
    msg.setdefault("type", "message")
    msg.setdefault("role", "assistant")
    return msg


def _chains(
    entries: list[dict[str, Any]], stem: str, meta: dict[str, Any], live: bool = False
) -> tuple[list[Chain], int]:
    """The file's chains, and how many responses were left out as unfinished (`live`: only the
    response the file ends with can be)."""
    by_uuid = {e["uuid"]: e for e in entries}
    pos = {e["uuid"]: i for i, e in enumerate(entries)}
    groups: dict[str, list[dict[str, Any]]] = {}
    group_of: dict[str, str] = {}
    results: dict[str, tuple[int, Any]] = {}
    """tool_use id -> (position, the tool_result block) as first written."""
    for i, e in enumerate(entries):
        m = e["message"] if "message" in e else None
        if e["type"] == "assistant" and isinstance(m, dict):
            if m.get("model") == SYNTHETIC_MODEL:
                continue
            key = _response(e)
            groups.setdefault(key, []).append(e)
            group_of[e["uuid"]] = key
        elif e["type"] == "user" and isinstance(m, dict):
            for b in blocks(m.get("content")):
                if isinstance(b, dict) and b.get("type") == "tool_result" and isinstance(b.get("tool_use_id"), str):
                    results.setdefault(b["tool_use_id"], (i, b))
    merged = {k: merge(lines) for k, lines in groups.items()}
    accounts: dict[Any, str] = {}
    """Session -> the account any of its lines names."""
    for e in entries:
        account = _account(e)
        if account is not None:
            accounts.setdefault(e.get("sessionId"), account)

    requests = Requests(by_uuid, merged, group_of, results)
    chains: dict[tuple[str, str], Chain] = {}
    roots_seen: set[tuple[str, str, str]] = set()
    at = 0.0
    held = 0
    for key, lines in groups.items():
        first = lines[0]
        if live and lines[-1] is entries[-1] and unfinished(merged[key]):
            held += 1
            continue
        path = requests.path(first)
        sid = first.get("sessionId")
        session = sid if isinstance(sid, str) else stem
        chain_id = ""
        if first.get("isSidechain"):
            agent = first.get("agentId")
            chain_id = agent if isinstance(agent, str) else (path[0]["uuid"] if path else first["uuid"])
        chain = chains.get((session, chain_id))
        if chain is None:
            chain = chains[(session, chain_id)] = Chain(session, chain_id)
            tool = meta.get("toolUseId")
            if chain_id and isinstance(tool, str):
                chain.tool_use_id = tool
        root = path[0] if path else None
        reset = False
        if root is not None and is_reset(root):
            reset = (session, chain_id, root["uuid"]) not in roots_seen
            roots_seen.add((session, chain_id, root["uuid"]))
        at = _timestamp(first.get("timestamp"), at)
        response = merged[key]

        mid = response.get("id")
        named = next((e for e in lines if isinstance(e.get("requestId"), str)), first)
        rid = named.get("requestId")
        chain.turns.append(
            Turn(
                session_id=session,
                chain=chain_id,
                key=_key(named),
                message_id=mid if isinstance(mid, str) else None,
                request_id=rid if isinstance(rid, str) else None,
                uuid=first["uuid"],
                at=at,
                make_body=partial(requests.body, path, pos[first["uuid"]], response.get("model")),
                response=response,
                context_reset=reset,
                user_id=accounts.get(first.get("sessionId")),
                line=first[LINE],
            )
        )
    return list(chains.values()), held


def _account(e: dict[str, Any]) -> str | None:
    """The account a line names, if this version writes one (2.1.x doesn't)."""
    for name in ACCOUNT_KEYS:
        v = e.get(name)
        if isinstance(v, str) and v:
            return v
    return None
