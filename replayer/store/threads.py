"""Threading requests into conversations: a message list's thread key, and the open
conversations this connection knows (whose latest reply ends a given list), with the
`thread_tips` rows that keep them for other connections. Runs on the background writer only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .codec import blake2b, canon, digest

if TYPE_CHECKING:  # (an import's reader process scans without a database: otlp/prescan.py)
    from sqlite_utils import Database

MAX_OPEN_KEYS = 20_000
"""Thread keys whose open conversations the writer remembers (see `OpenConversations.open_at`)."""


SENT_BACK: dict[Any, frozenset[str]] = {
    "text": frozenset({"type", "text"}),
    "tool_use": frozenset({"type", "id", "name", "input"}),
    "server_tool_use": frozenset({"type", "id", "name", "input"}),
}
"""Of these blocks of a reply, the fields every client sends back: frameworks rebuild the blocks
from them and drop the rest (a tool_use's `caller`, a text's `citations`)."""


def normalise(obj: Any) -> Any:
    """A message as threading compares it: nulls and cache_control dropped (agents move their
    cache breakpoint to the newest message), thinking blocks dropped (agents often strip them from
    history), string content as a text block, and text and tool-use blocks only by the fields
    clients send back (SENT_BACK)."""
    if isinstance(obj, dict):
        out = {k: normalise(v) for k, v in obj.items() if v is not None and k != "cache_control"}
        content = out.get("content")
        if "role" in out:
            if isinstance(content, str):
                out["content"] = [{"type": "text", "text": content}]
            elif isinstance(content, list):
                out["content"] = [
                    _sent_back(b)
                    for b in content
                    if not (isinstance(b, dict) and b.get("type") in ("thinking", "redacted_thinking"))
                ]
        return out
    if isinstance(obj, list):
        return [normalise(v) for v in obj]
    return obj


def _sent_back(block: Any) -> Any:
    kept = SENT_BACK.get(block.get("type")) if isinstance(block, dict) else None
    return block if kept is None else {k: v for k, v in block.items() if k in kept}


def _as_sent_back(message: Any) -> bool:
    """Whether normalising leaves this message's blocks' fields as they are (SENT_BACK)."""
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        return True
    for b in content:
        kept = SENT_BACK.get(b.get("type")) if isinstance(b, dict) else None
        if kept is not None and not kept.issuperset(b):
            return False
    return True


def thread_key(prev: str, message: Any, text: str | None = None, text_digest: str | None = None) -> str:
    """Chain `message` onto the key of the list before it. `text`/`text_digest` are the message's
    canonical JSON and its digest when the caller has them: when normalising would change nothing
    (the usual case), they stand for the normalised form without a second serialisation."""
    if (
        text is not None
        and text_digest is not None
        and text.startswith('{"content":[')
        and "null" not in text
        and '"cache_control"' not in text
        and '"thinking"' not in text
        and '"redacted_thinking"' not in text
        and _as_sent_back(message)
    ):
        return blake2b((prev + text_digest).encode(), digest_size=16).hexdigest()  # digest(): both are hex
    return digest(prev + digest(canon(normalise(message))))


class OpenConversations:
    """Which conversations a request continues, found by its messages' thread keys."""

    def __init__(self, db: Database):
        self.db = db
        self.open_at: dict[str, list[str]] = {}
        """Thread key -> conversations whose latest reply ends that context (a request extending
        it may continue them), first come first. Everyone listed is open there; a list may lack
        conversations another connection opened before this one last looked (`open_known`: the
        keys whose lists are whole). Filled by this connection's own replies and its lookups,
        so an agent's next turn finds its conversation without a query."""
        self.open_known: set[str] = set()
        self.tip_of: dict[str, str] = {}
        """Conversation -> its key in `open_at` (to take it off that list when it moves on)."""
        self.tip_from: dict[str, tuple[int | None, float]] = {}
        """Conversation -> (the caller that made its latest reply, when that reply ended): to tell
        apart conversations open at the same key (`find`). Only for replies this connection wrote."""
        self.tip_rows: dict[str, tuple[str | None, int]] = {}
        """thread_tips rows waiting for `write`: conversation -> (key or None, attempt id)."""

    def forget(self) -> None:
        """Drop what other connections may have changed (the rows waiting to be written stay)."""
        self.open_at.clear()
        self.open_known.clear()
        self.tip_of.clear()
        self.tip_from.clear()

    def drop(self) -> None:
        """`forget`, and drop the rows waiting to be written too (after a rollback)."""
        self.tip_rows = {}
        self.forget()

    def make_room(self) -> None:
        """When remembering more keys would take too much memory: write the waiting rows, then
        `forget` (a list forgotten is asked for again, from the table)."""
        if len(self.open_at) > MAX_OPEN_KEYS:
            self.write()
            self.forget()

    def find(self, thread_keys: list[str], caller: int | None = None, started: float | None = None) -> str | None:
        """The conversation that a request whose messages have these thread keys continues: of
        those whose latest reply ends the longest prefix of its messages, the first to get
        there. None when there is none (a new conversation).

        Identical conversations run at once (a temperature-0 eval) share every prefix: each
        continuation takes another (`_pick`), and the order records reach the writer in is not
        the order the calls were made in (a thread can be held up between its reply and handing
        its record over).

        Asks the table only for keys longer than the longest this connection knows an open
        conversation at (usually none: an agent's next request extends the reply just written)."""
        keys = thread_keys[-2::-1][:16]  # the proper prefixes, longest first
        hit = next((j for j, k in enumerate(keys) if self.open_at.get(k)), len(keys))
        ask = [k for k in keys[:hit] if k not in self.open_known]
        if ask:
            for k in ask:
                self.open_at[k] = []
                self.open_known.add(k)
            sql = f"SELECT key, conversation_id FROM thread_tips WHERE key IN ({','.join('?' * len(ask))}) ORDER BY seq"
            for k, conv in self.db.conn.execute(sql, ask):
                # a row this connection has moved on (not written yet) is stale; a move not written
                # yet never lands on a key asked for (it is in `open_at`)
                if conv not in self.tip_rows:
                    self.open_at[k].append(conv)
                    self.tip_of[conv] = k
        open_at = next((self.open_at[k] for k in keys if self.open_at.get(k)), None)
        if not open_at:
            return None
        return open_at[0] if len(open_at) == 1 else self._pick(open_at, caller, started)

    def _pick(self, open_at: list[str], caller: int | None, started: float | None) -> str:
        """Of several conversations open at one key, the one a request sent at `started` by
        `caller` continues: one whose reply had ended by then (a reply the agent had not had
        could not be in its request), the caller's own before others', first come first."""
        tip_from = self.tip_from
        if started is not None:
            had = [c for c in open_at if c not in tip_from or tip_from[c][1] <= started]
            open_at = had or open_at
        if caller is not None:
            own = next((c for c in open_at if c in tip_from and tip_from[c][0] == caller), None)
            if own is not None:
                return own
        return open_at[0]

    def move(
        self, conversation_id: str, key: str | None, seq: int, caller: int | None = None, ended: float = 0.0
    ) -> None:
        """`conversation_id`'s latest context is now `key` (None: one keys can't follow, such as
        a tool-runner thread request's); `seq` orders conversations that reach the same key;
        `caller` made the reply, which ended at `ended` (wall-clock seconds)."""
        self.tip_from[conversation_id] = (caller, ended)
        old = self.tip_of.pop(conversation_id, None)
        if old is not None:
            self.open_at[old].remove(conversation_id)
        if key is not None:
            self.open_at.setdefault(key, []).append(conversation_id)
            self.tip_of[conversation_id] = key
        self.tip_rows[conversation_id] = (key, seq)

    def write(self) -> None:
        """Write the waiting thread_tips rows."""
        if not self.tip_rows:
            return
        conn = self.db.conn
        rows = self.tip_rows.items()
        conn.executemany(
            "INSERT OR REPLACE INTO thread_tips(conversation_id, key, seq) VALUES (?, ?, ?)",
            [(conv, key, seq) for conv, (key, seq) in rows if key is not None],
        )
        conn.executemany(
            "DELETE FROM thread_tips WHERE conversation_id = ?", [(conv,) for conv, (key, _) in rows if key is None]
        )
        self.tip_rows = {}
