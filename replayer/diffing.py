"""Comparing an original response with its reruns: text diffs (unified, and word by word for
side-by-side display), tool calls by name and input (a JSON diff), and, over N samples, how many
distinct outputs there were and how often each tool call occurred. Headless."""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter
from typing import Any

from .models import JsonChange, SectionDiff, Spread, ToolDiff
from .wire import TOOL_USE_TYPES, text_of, tool_calls

_WORDS = re.compile(r"\s+|\w+|[^\w\s]")


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


def json_diff(a: Any, b: Any, path: str = "") -> list[JsonChange]:
    """Differences between two JSON values, path by path (added | removed | changed)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[JsonChange] = []
        for k in sorted(set(a) | set(b), key=str):
            p = f"{path}.{k}" if path else str(k)
            if k not in a:
                out.append(JsonChange(path=p, op="added", old=None, new=b[k]))
            elif k not in b:
                out.append(JsonChange(path=p, op="removed", old=a[k], new=None))
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
    return [JsonChange(path=path or "(value)", op="changed", old=a, new=b)]


def change_parts(c: JsonChange, arrow: str = "->") -> list[tuple[str, str]]:
    """One change of `json_diff` as (text, role) parts, role "old", "new" or "": a key only one
    side has is `added X` or `removed (was X)`, never a JSON null standing for the missing side
    (null is a value a side can hold). The CLI joins the texts; the browser colours the roles."""
    if c.op == "added":
        return [(f"{c.path}: added ", ""), (json.dumps(c.new, ensure_ascii=False), "new")]
    if c.op == "removed":
        return [(f"{c.path}: removed ", ""), (f"(was {json.dumps(c.old, ensure_ascii=False)})", "old")]
    return [(f"{c.path}: ", ""), (json.dumps(c.old, ensure_ascii=False), "old"), (f" {arrow} ", ""),
            (json.dumps(c.new, ensure_ascii=False), "new")]  # fmt: skip


def compare_tools(a: list[tuple[str, Any]], b: list[tuple[str, Any]]) -> list[ToolDiff]:
    """Tool calls side by side, matched in order by name: same | changed (with the JSON diff of
    their inputs) | removed (only in the original) | added (only in the variant)."""
    out: list[ToolDiff] = []
    names_a, names_b = [n for n, _ in a], [n for n, _ in b]
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, names_a, names_b, autojunk=False).get_opcodes():
        if op == "equal":
            for (name, x), (_, y) in zip(a[i1:i2], b[j1:j2], strict=True):
                d = json_diff(x, y)
                out.append(ToolDiff(name=name, status="changed" if d else "same", input=y, diff=d))
        else:
            for name, x in a[i1:i2]:
                out.append(ToolDiff(name=name, status="removed", input=x, diff=[]))
            for name, y in b[j1:j2]:
                out.append(ToolDiff(name=name, status="added", input=y, diff=[]))
    return out


def output_key(response: Any) -> str:
    """What makes two outputs the same: their text and tool calls."""
    return json.dumps([text_of(response), tool_calls(response)], sort_keys=True, ensure_ascii=False)


def spread(responses: list[Any]) -> Spread:
    """Over N samples: how many distinct outputs, and how often each tool call occurred."""
    answered = [r for r in responses if isinstance(r, dict) and r.get("type", "message") == "message"]
    calls: Counter[str] = Counter()
    for r in answered:
        for name in {n for n, _ in tool_calls(r)}:
            calls[name] += 1
    return Spread(
        samples=len(responses),
        answered=len(answered),
        distinct_outputs=len({output_key(r) for r in answered}),
        tool_calls=dict(sorted(calls.items(), key=lambda kv: (-kv[1], kv[0]))),
        stop_reasons=dict(Counter(str(r.get("stop_reason")) for r in answered)),
    )


# -- what was sent: the request of a rerun against the original's ------------------------------

REQUEST_SECTIONS = ("system", "tools", "messages", "parameters")
"""The parts of a request diffed one by one; `parameters` is every other top-level field."""


def _text_lines(text: str) -> list[str]:
    """A text's lines as sent: split at each newline only, so a trailing newline is a line of its
    own, and a carriage return shown (␍): texts that differ in those never read as the same."""
    return text.replace("\r", "␍").split("\n")


def _block_lines(block: Any) -> list[str]:
    """One content block as lines a person reads: text as text, a tool call as its name and
    pretty JSON input, a tool result as its content, anything else as pretty JSON. Fields
    beside the text that change what is sent (cache_control, is_error...) get a line of their own."""
    if isinstance(block, str):
        return _text_lines(block)
    if not isinstance(block, dict):
        return json.dumps(block, indent=2, ensure_ascii=False).splitlines()
    kind = block.get("type")
    if kind == "text":
        lines, shown = _text_lines(str(block.get("text", ""))), {"type", "text"}
    elif kind in TOOL_USE_TYPES:
        lines = [f"{kind} {block.get('name')} {block.get('id')}"]
        lines += json.dumps(block.get("input"), indent=2, ensure_ascii=False).splitlines()
        shown = {"type", "name", "id", "input"}
    elif kind == "tool_result":
        lines = [f"tool_result {block.get('tool_use_id')}"]
        content = block.get("content")
        for inner in content if isinstance(content, list) else [content] if content is not None else []:
            lines += _block_lines(inner)
        shown = {"type", "tool_use_id", "content"}
    else:
        return json.dumps(block, indent=2, ensure_ascii=False).splitlines()
    rest = {k: v for k, v in block.items() if k not in shown}
    if rest:
        lines.append("  " + json.dumps(rest, ensure_ascii=False, sort_keys=True))
    return lines


def request_lines(request: Any) -> dict[str, list[str]]:
    """A request as lines per section (REQUEST_SECTIONS), the way the diff shows them."""
    req = request if isinstance(request, dict) else {}
    system = req.get("system")
    out: dict[str, list[str]] = {section: [] for section in REQUEST_SECTIONS}
    for block in system if isinstance(system, list) else [system] if system is not None else []:
        out["system"] += _block_lines(block)
    if "tools" in req:
        out["tools"] = json.dumps(req["tools"], indent=2, ensure_ascii=False).splitlines()
    messages = req.get("messages")
    for i, m in enumerate(messages if isinstance(messages, list) else []):
        if not isinstance(m, dict):
            out["messages"] += [f"[{i}]", *_block_lines(m)]
            continue
        out["messages"].append(f"[{i}] {m.get('role')}")
        content = m.get("content")
        for block in content if isinstance(content, list) else [content]:
            out["messages"] += ["  " + line for line in _block_lines(block)]
    for key in sorted(k for k in req if k not in ("system", "tools", "messages")):
        out["parameters"].append(f"{key}: {json.dumps(req[key], ensure_ascii=False, sort_keys=True)}")
    return out


def request_diff(a: Any, b: Any, context: int = 3) -> list[SectionDiff]:
    """The original request `a` against the variant's `b`, section by section (REQUEST_SECTIONS),
    each with its lines as [op, text]: op one of " " (context), "-", "+" and "@" (where a hunk
    starts: in messages, the message it is in)."""
    left, right = request_lines(a), request_lines(b)
    out = []
    for section in REQUEST_SECTIONS:
        lines: list[list[str]] = []
        removed = added = 0
        diff = difflib.unified_diff(left[section], right[section], n=context, lineterm="")
        for line in diff:
            if line.startswith(("---", "+++")) and not lines:
                continue  # the file headers
            op, text = line[:1], line[1:]
            if op == "@":  # line numbers of this rendering mean nothing: say which message instead
                text = _where(right[section], line) if section == "messages" else "⋯"
            elif op == "-":
                removed += 1
            elif op == "+":
                added += 1
            lines.append([op, text])
        out.append(SectionDiff(section=section, changed=bool(lines), removed=removed, added=added, lines=lines))
    return out


_HUNK = re.compile(r"@@ -\d+(?:,\d+)? \+(\d+)")


def _where(lines: list[str], hunk: str) -> str:
    """The message (`[3] user`) a messages hunk starts in."""
    m = _HUNK.match(hunk)
    start = max(0, int(m.group(1)) - 1) if m else 0
    for line in reversed(lines[: start + 1]):
        if line.startswith("["):
            return "in " + line
    return "⋯"
