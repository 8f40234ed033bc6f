"""Comparing an original response with its reruns: text diffs (unified, and word by word for
side-by-side display), tool calls by name and input (a JSON diff), and, over N samples, how many
distinct outputs there were and how often each tool call occurred. Headless."""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter
from typing import Any

_WORDS = re.compile(r"\s+|\w+|[^\w\s]")


def text_of(response: Any) -> str:
    """The text blocks of a response, joined."""
    if not isinstance(response, dict):
        return ""
    parts = [
        str(b.get("text", "")) for b in response.get("content") or () if isinstance(b, dict) and b.get("type") == "text"
    ]
    return "\n\n".join(parts)


def tool_calls(response: Any) -> list[tuple[str, Any]]:
    """(name, input) of each tool_use / server_tool_use block, in order."""
    if not isinstance(response, dict):
        return []
    return [
        (str(b.get("name")), b.get("input"))
        for b in response.get("content") or ()
        if isinstance(b, dict) and b.get("type") in ("tool_use", "server_tool_use", "mcp_tool_use")
    ]


def unified(a: str, b: str, a_name: str = "original", b_name: str = "variant", context: int = 3) -> str:
    lines = difflib.unified_diff(
        a.splitlines(keepends=True), b.splitlines(keepends=True), a_name, b_name, n=context, lineterm=""
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def words(a: str, b: str) -> list[tuple[str, str]]:
    """Word-level edit script: (op, text) with op one of = - +."""
    wa, wb = _WORDS.findall(a), _WORDS.findall(b)
    out: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, wa, wb, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(("=", "".join(wa[i1:i2])))
        else:
            if i2 > i1:
                out.append(("-", "".join(wa[i1:i2])))
            if j2 > j1:
                out.append(("+", "".join(wb[j1:j2])))
    return out


def json_diff(a: Any, b: Any, path: str = "") -> list[dict[str, Any]]:
    """Differences between two JSON values: [{"path", "op": added|removed|changed, "old", "new"}]."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            p = f"{path}.{k}" if path else str(k)
            if k not in a:
                out.append({"path": p, "op": "added", "old": None, "new": b[k]})
            elif k not in b:
                out.append({"path": p, "op": "removed", "old": a[k], "new": None})
            else:
                out += json_diff(a[k], b[k], p)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            out += json_diff(x, y, f"{path}.{i}" if path else str(i))
        return out
    if a == b and type(a) is type(b):
        return []
    return [{"path": path or "(value)", "op": "changed", "old": a, "new": b}]


def compare_tools(a: list[tuple[str, Any]], b: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """Tool calls side by side, matched in order by name: same | changed (with the JSON diff of
    their inputs) | removed (only in the original) | added (only in the variant)."""
    out: list[dict[str, Any]] = []
    names_a, names_b = [n for n, _ in a], [n for n, _ in b]
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, names_a, names_b, autojunk=False).get_opcodes():
        if op == "equal":
            for (name, x), (_, y) in zip(a[i1:i2], b[j1:j2], strict=True):
                d = json_diff(x, y)
                out.append({"name": name, "status": "changed" if d else "same", "input": y, "diff": d})
        else:
            for name, x in a[i1:i2]:
                out.append({"name": name, "status": "removed", "input": x, "diff": []})
            for name, y in b[j1:j2]:
                out.append({"name": name, "status": "added", "input": y, "diff": []})
    return out


def output_key(response: Any) -> str:
    """What makes two outputs the same: their text and tool calls."""
    return json.dumps([text_of(response), tool_calls(response)], sort_keys=True, ensure_ascii=False)


def spread(responses: list[Any]) -> dict[str, Any]:
    """Over N samples: how many distinct outputs, and how often each tool call occurred."""
    answered = [r for r in responses if isinstance(r, dict) and r.get("type", "message") == "message"]
    calls: Counter[str] = Counter()
    for r in answered:
        for name in {n for n, _ in tool_calls(r)}:
            calls[name] += 1
    return {
        "samples": len(responses),
        "answered": len(answered),
        "distinct_outputs": len({output_key(r) for r in answered}),
        "tool_calls": dict(sorted(calls.items(), key=lambda kv: (-kv[1], kv[0]))),
        "stop_reasons": dict(Counter(str(r.get("stop_reason")) for r in answered)),
    }
