"""Message content, tool inputs and tool results, and tool definitions, as a person reads them
(pure Rich rendering, no widgets): text as text; a string value that holds a file, a patch or
shell output as its own lines, not JSON with literal `\\n`; JSON pretty-printed and highlighted;
every long value cut, with the way to see it whole said where it is cut. And what of a turn's
context change entered or left it, part by part (a message's blocks, the system prompt's blocks,
the tools), with each entered part's estimated share of the tokens."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from rich.highlighter import JSONHighlighter
from rich.text import Text

from ..fmt import plural
from ..models import ContextChange, TurnDetail
from ..store.chain import lacking, system_blocks
from ..wire import TOOL_USE_TYPES, prompt_tokens

CUT = 4_000
"""Characters of one value shown before "show all" (a 1 MB tool result must not freeze the UI)."""
LONG_STRING = 80
"""A string field longer than this (or with a line break) is shown as lines of its own."""
GUTTER = "  │ "

_highlight = JSONHighlighter()


def cut(text: str, limit: int, full: bool = False) -> str:
    if full or len(text) <= limit:
        return text
    return text[:limit] + f"\n… {plural(len(text) - limit, 'more character')} (press a to show all)"


def json_text(value: Any, full: bool = False) -> Text:
    """Pretty-printed, highlighted JSON."""
    return _highlight(Text(cut(json.dumps(value, indent=2, ensure_ascii=False), CUT, full)))


def _parsed(text: str) -> Any:
    """A JSON object or array held in a string (many tools answer JSON), else None."""
    head = text.lstrip()[:1]
    if head not in ("{", "["):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict | list) else None


def _lines(text: str, full: bool) -> Text:
    """A long string as lines under a gutter, so where it starts and ends shows."""
    out = Text()
    for line in cut(text, CUT, full).split("\n"):
        out.append(GUTTER, style="dim")
        out.append(line + "\n")
    return out


def value_text(value: Any, full: bool = False) -> Text:
    """A tool's input or result: a string as its own lines (or as JSON when it holds JSON),
    content blocks as content, an object's short fields as JSON and its long string fields
    (file contents, patches, commands' output) each as lines under its name."""
    if isinstance(value, str):
        parsed = _parsed(value)
        if parsed is not None:
            return value_text(parsed, full)
        return Text(cut(value, CUT, full))
    if isinstance(value, list) and value and all(isinstance(b, dict) and "type" in b for b in value):
        return content_text(value, full)
    if isinstance(value, dict):
        long = {k: v for k, v in value.items() if isinstance(v, str) and ("\n" in v or len(v) > LONG_STRING)}
        out = Text()
        if len(long) < len(value):
            out.append_text(json_text({k: v for k, v in value.items() if k not in long}, full))
            out.append("\n")
        for key, text in long.items():
            out.append(f"{key}:\n", style="bold")
            out.append_text(_lines(text, full))
        out.rstrip()
        return out
    return json_text(value, full)


def block_header(block: Any) -> tuple[str, str]:
    """(label, style) of a content block that gets a line of its own ("" for plain text)."""
    if not isinstance(block, dict):
        return "", ""
    kind = str(block.get("type"))
    if kind == "text":
        return "", ""
    if kind in TOOL_USE_TYPES:
        return f"{kind} {block.get('name')}  {block.get('id')}", "bold cyan"
    if kind == "tool_result" or kind.endswith("_tool_result"):
        if block.get("is_error"):
            return f"{kind} for {block.get('tool_use_id')} (error)", "bold red"
        return f"{kind} for {block.get('tool_use_id')}", "bold green"
    return kind, "bold magenta"


def block_body(block: Any, full: bool = False) -> Text:
    """What a content block holds, readable."""
    if not isinstance(block, dict):
        return value_text(block, full)
    kind = str(block.get("type"))
    if kind == "text":
        return Text(cut(str(block.get("text") or ""), CUT, full))
    if kind == "thinking":
        return Text(cut(str(block.get("thinking") or ""), CUT, full), style="italic")
    if kind == "redacted_thinking":  # encrypted by the API: nothing a person can read
        return Text(f"(encrypted: {plural(len(str(block.get('data') or '')), 'character')})", style="dim italic")
    if kind in TOOL_USE_TYPES:
        return value_text(block.get("input"), full)
    if kind == "tool_result" or kind.endswith("_tool_result"):
        body = value_text(block.get("content"), full) if block.get("content") is not None else Text("(empty)")
        if block.get("is_error"):
            body.stylize("red")
        return body
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "base64" and isinstance(source.get("data"), str):
        # an image's or a document's bytes: no one reads base64, and a few of them made the
        # whole context megabytes of it (a UI that froze for seconds on each key)
        data = f"({plural(len(source['data']), 'character')} of base64, not shown)"
        block = {**block, "source": {**source, "data": data}}
    return json_text({k: v for k, v in block.items() if k != "type"}, full)


def content_text(
    content: Any,
    full: bool = False,
    note: Callable[[int], str] | None = None,
    expand: Callable[[Any], bool] | None = None,
) -> Text:
    """Message content (a string or a list of blocks), block after block. `note(i)` adds a dim
    word after block i's header (a size estimate, say); a block for which `expand(block)` is
    true is shown uncut."""
    if isinstance(content, str):
        return Text(cut(content, CUT, full or (expand is not None and expand(content))))
    if not isinstance(content, list):
        return value_text(content, full)
    out = Text()
    for i, block in enumerate(content):
        if i:
            out.append("\n")
        label, style = block_header(block)
        extra = note(i) if note is not None else ""
        if label or extra:
            out.append(label or "text", style=style or "dim")
            if extra:
                out.append(f"  {extra}", style="dim")
            out.append("\n")
        out.append_text(block_body(block, full or (expand is not None and expand(block))))
        out.append("\n")
    out.rstrip()
    return out


TOOL_LINE = 96
"""Characters of a tool's row (its name, size and description) on the Context tab before `a`
where the tab's width isn't known: a 100-column terminal's tab (96 beside its scrollbar). The
screen gives the tab's own width (59 at 160 columns, beside the turn list), so a row stays one
row: an agent sends 40 tools on its first turn, and at two rows each (name and description, then
the schema) they put 80 rows before the messages."""


def tool_text(tool: Any, full: bool = False, note: str = "", width: int = TOOL_LINE) -> Text:
    """A tool definition: its name (and `note`, a size estimate say), its description and its
    input schema. Unless `full`, one row of `width` characters: the name, the note and the
    description cut to what is left (a server tool with no description: its other fields as
    compact JSON); `full` gives the whole description and the schema pretty-printed, as the Tools
    tab and Raw show JSON."""
    out = Text()
    if not isinstance(tool, dict):
        out.append_text(value_text(tool, full))
        return out
    name = str(tool.get("name") or tool.get("type") or "tool")
    out.append(name, style="bold cyan")
    if note:
        out.append(f"  {note}", style="dim")
    description = str(tool.get("description") or "").strip()
    # a server tool (web search) or one with more than a schema: every other field, as sent
    rest = {k: v for k, v in tool.items() if k not in ("name", "description", "cache_control")}
    schema = rest.get("input_schema") if set(rest) <= {"input_schema"} else rest
    if full:
        if description:
            out.append("\n" + cut(description, CUT, True))
        if schema:
            out.append("\n")
            out.append_text(json_text(schema, True))
        return out
    said = description or (json.dumps(schema, ensure_ascii=False) if schema and schema is rest else "")
    if said:
        out.append("  " + _one_line(said, width - len(out.plain) - 2), style="" if description else "dim")
    return out


def _one_line(text: str, width: int) -> str:
    """The text's first line in `width` characters (at least 10), `…` where it goes on."""
    line, width = text.split("\n", 1)[0], max(10, width)
    return line if len(line) <= width and line == text else line[: width - 1].rstrip() + "…"


def entered(ch: ContextChange) -> list[Any]:
    """What of a change entered the context, part by part: an added message's blocks (its content
    whole, a string), the system prompt's blocks not in the previous turn's, the tools new or
    redefined since it (each whole)."""
    if ch.kind == "added":
        return _content_parts(ch.message)
    if ch.kind in ("system", "tools"):
        return lacking(ch.kind, ch.message, ch.before)
    return []


def left(ch: ContextChange) -> list[Any]:
    """What of a change left the context: a removed message; the previous system prompt's blocks
    no longer in it; the previous tools gone or redefined (their old definitions)."""
    if ch.kind == "removed":
        return [ch.message]
    if ch.kind in ("system", "tools"):
        return lacking(ch.kind, ch.before, ch.message)
    return []


def _size(value: Any) -> int:
    """Characters of a value as sent (a stand-in for its share of the tokens)."""
    return len(value) if isinstance(value, str) else len(json.dumps(value, ensure_ascii=False))


def _content_parts(message: Any) -> list[Any]:
    """What a message's size is counted over: its content blocks, or its content whole (a string)."""
    content = message.get("content") if isinstance(message, dict) else message
    return content if isinstance(content, list) and content else [content]


def added_tokens(d: TurnDetail, previous_prompt: int | None) -> dict[int, list[float]]:
    """An estimate of the tokens each part that entered a turn's context took: {index in
    d.changes: [tokens of each of its parts]}, the parts as `entered` gives them (a message's
    blocks, the system prompt's blocks, the tools one by one). The prompt's growth since the
    previous turn, from the two usages, is split across them by their size; where that can't be
    measured (the first turn, something that left: a message removed, a system block or tool
    gone or redefined; no previous usage) each part gets its size's share of this whole prompt,
    counted over the same parts (so on a first turn the shares add up to the whole prompt).
    Empty when the turn has no usage."""
    usage = d.turn.usage
    if not usage:
        return {}
    prompt = prompt_tokens(usage)
    parts = {n: [_size(p) for p in entered(ch)] for n, ch in enumerate(d.changes)}
    parts = {n: sizes for n, sizes in parts.items() if sizes}
    added = sum(sum(p) for p in parts.values())
    if not added:
        return {}
    nothing_left = not any(left(ch) for ch in d.changes)
    growth = prompt - previous_prompt if previous_prompt is not None else None
    if d.turn.index > 0 and nothing_left and growth is not None and growth > 0:
        per_char = growth / added
    else:  # the whole prompt shared by size: system, tools and every message
        whole = sum(_size(b) for m in d.context for b in _content_parts(m))
        whole += sum(_size(b) for b in system_blocks(d.system))
        whole += sum(_size(t) for t in d.tools) if isinstance(d.tools, list) else 0
        per_char = prompt / whole if whole else 0.0
    return {n: [s * per_char for s in sizes] for n, sizes in parts.items()}
