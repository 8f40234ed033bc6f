"""A recorded request and the one sent, compared: where they first differ, said in words.

What `replayer replay` and the pytest plugin print when no recorded request matches (the closest
one's first difference: `system.0.text: "You are..." -> "You are..."`), and the field a fork's
end line names for `--ignore`. Tools are compared by name when every tool has one of its own, so
the same tools in another order read as that, not as one tool's description changed into
another's. Headless; matching.py asks."""

from __future__ import annotations

import json
from typing import Any

_GONE = object()
"""A side the other side has and this one doesn't."""

_WIDTH = 60


def _first(a: Any, b: Any, path: tuple[Any, ...]) -> tuple[tuple[Any, ...], Any, Any] | None:
    """The first place two JSON documents differ: (path, old, new); _GONE for a missing side."""
    if isinstance(a, dict) and isinstance(b, dict):
        order = ["model", "system", "tools", "messages"]
        keys = [k for k in order if k in a or k in b] + [k for k in a if k not in order] + [
            k for k in b if k not in order and k not in a]
        for key in keys:
            if key not in a or key not in b:
                return (*path, key), a.get(key, _GONE), b.get(key, _GONE)
            got = _first(a[key], b[key], (*path, key))
            if got is not None:
                return got
        return None
    if isinstance(a, list) and isinstance(b, list):
        for i in range(max(len(a), len(b))):
            if i >= len(a) or i >= len(b):
                return (*path, i), a[i] if i < len(a) else _GONE, b[i] if i < len(b) else _GONE
            got = _first(a[i], b[i], (*path, i))
            if got is not None:
                return got
        return None
    if a == b and type(a) is type(b):
        return None
    return path, a, b


def _place(path: tuple[Any, ...], recorded: Any, sent: Any) -> str:
    """`message 3, block 1 (tool_result), content` from messages.3.content.1.content."""
    words: list[str] = []
    i = 0
    doc = sent if isinstance(sent, dict) else {}
    if len(path) >= 2 and path[0] == "messages" and isinstance(path[1], int):
        words.append(f"message {path[1]}")
        i = 2
        message = _at(sent, path[:2]) or _at(recorded, path[:2])
        if len(path) >= 4 and path[2] == "content" and isinstance(path[3], int):
            block = _at(sent, path[:4]) or _at(recorded, path[:4])
            kind = block.get("type") if isinstance(block, dict) else None
            words.append(f"block {path[3]}" + (f" ({kind})" if kind else ""))
            i = 4
        elif len(path) == 2 and isinstance(message, dict):
            words[-1] += f" ({message.get('role')})"
    elif len(path) >= 2 and path[0] in ("system", "tools") and isinstance(path[1], int):
        item = _at(doc, path[:2]) or _at(recorded, path[:2])
        name = item.get("name") if isinstance(item, dict) else None
        words.append(f"{'system block' if path[0] == 'system' else 'tool'} {path[1]}" + (f" ({name})" if name else ""))
        i = 2
    rest = ".".join(str(p) for p in path[i:])
    if rest:
        words.append(rest)
    return ", ".join(words) or "the body"


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        try:
            doc = doc[p]
        except (KeyError, IndexError, TypeError):
            return None
    return doc


def _shown(value: Any, start: int = 0) -> str:
    if value is _GONE:
        return "(absent)"
    if isinstance(value, str):
        cut = value[start:start + _WIDTH]
        more = "…" if start + _WIDTH < len(value) else ""
        return ("…" if start else "") + json.dumps(cut, ensure_ascii=False) + more
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _WIDTH else text[:_WIDTH - 1] + "…"


def difference_path(recorded: Any, sent: Any) -> str | None:
    """Where `sent` first differs from `recorded`, as an ignore path (`system.0.text`); None
    when they are equal."""
    got = _first(recorded, sent, ())
    return ".".join(str(p) for p in got[0]) if got is not None and got[0] else None


def first_difference(recorded: Any, sent: Any) -> str:
    """Where `sent` first differs from `recorded`, in a line: `message 3, block 0 (tool_result),
    content: "…old…" -> "…new…"` (strings shown from a little before where they part)."""
    got = _first(recorded, sent, ())
    if got is None:
        return "none (the bodies are equal)"
    path, old, new = got
    if path[0] == "tools" and len(path) > 1:
        said = _tools_difference(_at(recorded, ("tools",)), _at(sent, ("tools",)))
        if said is not None:
            return said
    return f"{_place(path, recorded, sent)}: {_change(old, new)}"


def _change(old: Any, new: Any) -> str:
    """`"…old…" -> "…new…"`: two strings shown from a little before where they part."""
    start = 0
    if isinstance(old, str) and isinstance(new, str):
        same = 0
        for x, y in zip(old, new, strict=False):
            if x != y:
                break
            same += 1
        start = max(0, same - 20)
    return f"{_shown(old, start)} -> {_shown(new, start)}"


def _tools_difference(recorded: Any, sent: Any) -> str | None:
    """The first difference between two tool lists, each tool known by its name wherever it is
    (a framework may keep its tools in a set: the same tools come in another order): a tool
    gone, a tool added, a tool whose content changed, or the same tools in another order. None
    when the tools are not each named once (then they are compared by place)."""
    named: list[dict[str, int]] = []
    for tools in (recorded, sent):
        if not isinstance(tools, list):
            return None
        names = [t.get("name") if isinstance(t, dict) else None for t in tools]
        places = {name: i for i, name in enumerate(names) if isinstance(name, str)}
        if len(places) < len(names):  # a tool without a name, or two of one name
            return None
        named.append(places)
    was, now = named
    for name, i in was.items():
        if name not in now:
            return f"tool {i} ({name}): {_change(recorded[i], _GONE)}"
    for name, j in now.items():
        if name not in was:
            return f"tool {j} ({name}): {_change(_GONE, sent[j])}"
    for name, i in was.items():
        j = now[name]
        got = _first(recorded[i], sent[j], ())
        if got is not None:
            path, old, new = got
            where = f"tool {i} ({name})" if i == j else f"tool {name} (tool {i} when recorded, {j} now)"
            inside = ".".join(str(p) for p in path)
            return f"{where}{', ' + inside if inside else ''}: {_change(old, new)}"
    if list(was) != list(now):
        return f"tools: the same tools in another order: {_names(list(was))} -> {_names(list(now))}"
    return None


def _names(names: list[str]) -> str:
    text = ", ".join(names)
    return text if len(text) <= 2 * _WIDTH else text[:2 * _WIDTH - 1] + "…"
