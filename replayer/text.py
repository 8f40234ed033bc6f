"""The searchable text of a message, a system prompt and a tool list: what a person would look for
in them, as the Context tab shows them (a tool_use's id and a tool_result's tool_use_id included:
`toolu_...` is what one pastes from a log)."""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

import orjson

from .store.codec import readable
from .wire import TOOL_USE_TYPES

MAX_CHARS = 200_000
"""Text indexed per message at most (a huge tool result is still found by its beginning)."""


def searchable(message: Any) -> str:
    """Text blocks, thinking, tool inputs and tool results (text or JSON) of one message."""
    if not isinstance(message, dict):
        return ""
    parts: list[str] = []
    _collect(message.get("content"), parts)
    return readable("\n".join(parts)[:MAX_CHARS])


def _collect(content: Any, parts: list[str]) -> None:
    if isinstance(content, str):
        parts.append(content)
        return
    if not isinstance(content, list):
        return
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            parts.append(str(block.get("text") or ""))
        elif kind == "thinking":
            parts.append(str(block.get("thinking") or ""))
        elif kind in TOOL_USE_TYPES:
            parts.append(f"{block.get('name')} {block.get('id') or ''} {_json(block.get('input'))}")
        elif kind == "tool_result" or str(kind).endswith("_tool_result"):
            parts.append(str(block.get("tool_use_id") or ""))
            inner = block.get("content")
            if isinstance(inner, list | str):
                _collect(inner, parts)
            elif inner is not None:
                parts.append(_json(inner))


def context_searchable(kind: str, value: Any) -> str:
    """The text of a system prompt (`kind` "system": a string or its blocks) or of tools ("tools":
    each tool's name, description, and its schema and other fields as JSON), as the Context tab
    shows them."""
    parts: list[str] = []
    if kind == "system":  # a string, or its blocks (or some of them: a string among them)
        for block in value if isinstance(value, list) else [value]:
            _collect(block if isinstance(block, str) else [block], parts)
    elif isinstance(value, list):
        for tool in value:
            if not isinstance(tool, dict):
                continue
            rest = {k: v for k, v in tool.items() if k not in ("name", "description", "cache_control")}
            parts.append(f"{tool.get('name') or ''} {tool.get('description') or ''} {_json(rest)}")
    return readable("\n".join(parts)[:MAX_CHARS])


def _json(value: Any) -> str:
    """JSON of a tool's input or result, for search only (how a float is written doesn't matter)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # what orjson refuses: huge integers, lone surrogates, non-string keys
        return json.dumps(value, ensure_ascii=False)


TOKEN = re.compile(r"[^\W_]+")
"""What the index's tokenizer (unicode61) keeps as a token: runs of letters and digits."""


def fts_query(text: str) -> str:
    """A user's words as an FTS5 query: every token of every word must appear (as a prefix).

    The index splits `INV-2041`, `user_789` or `claude-haiku-4-5` into several tokens; quoted
    whole, such a word would be a phrase query, which an index without positions can't answer.
    Each token is matched on its own instead."""
    tokens = TOKEN.findall(text)
    if not tokens:  # nothing searchable (only punctuation): match nothing rather than fail
        return '""'
    return " ".join('"' + t + '"*' for t in tokens)


def _folded(text: str) -> str:
    """Text as the index compares it: any case, diacritics removed (`remove_diacritics 2`)."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).casefold()


def holds_words(text: str, query: str) -> bool:
    """Whether `text` holds every token of `query` as a token's start, as `fts_query` matches in
    the index (here in Python, for the few texts a search has to look at part by part)."""
    have = TOKEN.findall(_folded(text))
    wanted = TOKEN.findall(_folded(query))
    return bool(wanted) and all(any(h.startswith(w) for h in have) for w in wanted)
