"""A turn's detail tabs as Rich Text and strings: Context (what the request sent and what entered
it, find's highlights), Tools, Usage, Response (its parts, as turn_view.py shows them), and what
`y` (copy) and raw give. Pure functions of the store's models, with no widget or app (testable on
their own), as render.py's turn list and comparison are."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import partial
from typing import Any

from rich.text import Text

from ..fmt import (
    approx_tokens,
    attempt_status,
    error_head,
    error_status,
    local_time,
    money,
    ms,
    plural,
)
from ..imports import rebuilt_from
from ..models import ContextChange, TurnDetail
from ..wire import TOOL_USE_TYPES
from .blocks import (
    CUT,
    TOOL_LINE,
    added_tokens,
    content_text,
    cut,
    entered,
    left,
    system_blocks,
    tool_text,
    value_text,
)
from .render import signed
from .widgets import SEGMENT_COLOURS


def as_json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)


PROMPT_KINDS = ("input", "cache_write_5m", "cache_write_1h", "cache_read")
"""The usage lines that make up the prompt (input + cache writes + cache reads), in that order."""
USAGE_LABELS = {
    "input": "uncached",
    "cache_write_5m": "cache write 5m",
    "cache_write_1h": "cache write 1h",
    "cache_read": "cache read",
}
"""The one vocabulary: "prompt" is everything the model read, "uncached" the API's input_tokens."""
USAGE_WIDTHS = (15, 10, 11, 8, 10)
"""The Usage tab's columns: kind, tokens, Δ prev, $/MTok, cost. With the 2-column swatch a row is
56 wide: at 160 columns the side-by-side right pane holds about 60 (a scrollbar takes 2 of them);
the 16/12/12/10/12 before made 64, and each row's cost wrapped onto a line of its own. Each still
holds its widest figure: 9,999,999 tokens, +1,000,000, 15.000, $123.4567."""


def context_text(
    d: TurnDetail,
    show_all: bool,
    previous_prompt: int | None,
    pattern: re.Pattern[str] | None = None,
    width: int = TOOL_LINE,
) -> Text:
    """The Context tab: what entered the context at this turn (or, with show_all, the whole
    context), each match of `pattern` (a find) marked and the blocks holding one shown whole.
    A system prompt and tools that entered are listed after the messages, the tools a row each
    (`width`: the tab's), their schemas under `a`: before them, 40 tools or Claude Code's 15 KB
    system prompt put the first message below the tab (8 rows high on a 100 x 32 terminal, 4 on a
    100 x 24 one)."""
    out = Text()
    if d.reconstructed is not None:
        out.append("reconstructed", style="reverse")
        whence, lost = rebuilt_from(d.reconstructed)
        out.append(
            f" from {whence}: the request is rebuilt from it ({lost}), so the turn can't be rerun\n\n", style="italic"
        )
    marks = {"added": ("+ ", "green"), "removed": ("- ", "bold red")}
    last = [n for n, ch in enumerate(d.changes) if ch.kind in ("system", "tools")]  # the system prompt, the tools
    if d.turn.index == 0:
        messages = any(ch.kind in ("added", "removed") for ch in d.changes)
        kinds = " and ".join(sorted({d.changes[n].kind for n in last})).replace("system", "system prompt")
        after = f" (its {kinds} after the messages)" if last and messages and not show_all else ""
        out.append(f"First turn: the whole context entered here{after}.\n\n", style="dim")
    if show_all:
        out.append(f"Whole context: {plural(len(d.context), 'message')}\n\n", style="bold")
        if d.system is not None:
            out.append("system\n", style="bold yellow")
            out.append_text(content_text(d.system, True))
            out.append("\n\n")
        if isinstance(d.tools, list) and d.tools:
            out.append(f"tools: {plural(len(d.tools), 'tool')}\n", style="bold cyan")
            for tool in d.tools:
                out.append_text(tool_text(tool, True))
                out.append("\n\n")
        for i, m in enumerate(d.context):
            if is_system_entry(m):
                out.append(f"[{i}] {SYSTEM_ENTRY}\n", style="bold yellow")
            else:
                out.append(f"[{i}] {m.get('role')}\n", style="bold")
            out.append_text(content_text(m.get("content") if isinstance(m, dict) else m, True))
            out.append("\n\n")
        return mark_matches(out, pattern)
    sizes = added_tokens(d, previous_prompt)
    shown = (lambda part: holds_match(part, pattern)) if pattern is not None else None
    order = [n for n in range(len(d.changes)) if n not in last] + last
    for n in order:
        ch = d.changes[n]
        est = sizes.get(n)
        size = f"  {approx_tokens(sum(est))}" if est else ""
        if ch.kind == "system":
            out.append_text(_system_change(ch, est, shown))
        elif ch.kind == "tools":
            out.append_text(_tools_change(ch, est, pattern, width))
        else:
            sign, style = marks.get(ch.kind, ("? ", ""))
            label = "removed (compaction, truncation or an edit)" if ch.kind == "removed" else "added"
            if ch.role == "system" and ch.kind == "added":  # instructions among the messages, not a turn
                out.append(f"{sign}[{ch.position}] {SYSTEM_ENTRY} — {label}", style="bold yellow")
            else:
                out.append(f"{sign}[{ch.position}] {ch.role} — {label}", style=style)
            out.append(size + "\n", style="dim")
            content = (ch.message or {}).get("content") if isinstance(ch.message, dict) else ch.message
            several = est is not None and len(est) > 1
            body = content_text(content, note=partial(_share, est) if est is not None and several else None,
                                expand=shown)  # fmt: skip
            if ch.kind == "removed":
                body.stylize("strike dim")
            out.append_text(body)
        out.append("\n\n")
    out.append(f"\n{plural(len(d.context), 'message')} in context · press a for the whole context", style="dim")
    if sizes:
        out.append(
            "\n~ tok: estimated from the usage: the prompt's growth since the previous turn (the whole "
            "prompt on a first turn or after something left it), shared by size",
            style="dim",
        )
    return mark_matches(out, pattern)


def _system_change(ch: ContextChange, est: list[float] | None, shown: Callable[[Any], bool] | None) -> Text:
    """The system prompt as it entered on the first turn (each block with its share), or what of
    it entered and left since the previous turn."""
    new, gone = entered(ch), left(ch)
    out = Text()
    size = f"  {approx_tokens(sum(est))}" if est else ""
    if ch.before is None:
        blocks = len(system_blocks(ch.message))
        out.append("+ system prompt" + (f" — {plural(blocks, 'block')}" if blocks > 1 else ""), style="bold yellow")
    else:
        what = [f"{plural(len(new), 'block')} added"] if new else []
        what += [f"{len(gone)} removed" if new else f"{plural(len(gone), 'block')} removed"] if gone else []
        out.append("~ system prompt changed: " + (", ".join(what) or "only its cache breakpoints moved"),
                   style="bold yellow")  # fmt: skip
    out.append(size, style="dim")
    if new:
        out.append("\n")
        out.append_text(content_text(new, note=partial(_share, est) if est and len(est) > 1 else None, expand=shown))
    if gone:
        out.append("\nno longer in it:\n", style="bold red")
        body = content_text(gone, expand=shown)
        body.stylize("strike dim")
        out.append_text(body)
    return out


def _tools_change(ch: ContextChange, est: list[float] | None, pattern: re.Pattern[str] | None, width: int) -> Text:
    """The tools as they entered on the first turn, or those added, redefined and removed since
    the previous turn: a row each of `width` (blocks.tool_text: its name, share and description),
    but for one holding a match of `pattern` (a find) past its row, shown whole (the schema too)."""
    new, gone = entered(ch), left(ch)
    out = Text()
    names = {str(t.get("name")) for t in new if isinstance(t, dict)}
    redefined = [t for t in gone if isinstance(t, dict) and str(t.get("name")) in names]
    gone = [t for t in gone if t not in redefined]
    now = ch.message if isinstance(ch.message, list) else []
    if ch.before is None:
        out.append(f"+ tools — {plural(len(now), 'tool')}", style="bold cyan")
    else:
        what = [f"{len(new) - len(redefined)} added", f"{len(redefined)} redefined", f"{len(gone)} removed"]
        what = [w for w in what if not w.startswith("0 ")]
        same = len(now) - len(new)
        out.append("~ tool list changed: " + (", ".join(what) or "only its order or cache breakpoints")
                   + (f" ({same} the same)" if what and same else ""), style="bold cyan")  # fmt: skip
    if est:
        out.append(f"  {approx_tokens(sum(est))}", style="dim")
    if new or gone:
        out.append("  · a shows their schemas", style="dim")
    was = {str(t.get("name")) for t in redefined}
    for i, tool in enumerate(new):
        out.append("\n")
        if ch.before is not None:
            out.append("~ " if isinstance(tool, dict) and str(tool.get("name")) in was else "+ ", style="bold cyan")
        note = approx_tokens(est[i]) if est else ""
        text = tool_text(tool, note=note, width=width)
        if pattern is not None and holds_match(tool, pattern) and not pattern.search(text.plain):
            text = tool_text(tool, True, note)  # the match is past the cut: shown whole, so it is on screen
        out.append_text(text)
    for tool in gone:
        out.append("\n- ", style="bold red")
        out.append(str(tool.get("name") if isinstance(tool, dict) else tool), style="strike dim")
        out.append("  removed", style="dim")
    return out


SYSTEM_ENTRY = "system entry (instructions among the messages)"
"""How a `role: "system"` message is named: agents (Claude Code) put such entries mid-conversation;
they are neither the system prompt nor a user's or the model's turn."""


def is_system_entry(message: Any) -> bool:
    return isinstance(message, dict) and message.get("role") == "system"


def _share(estimates: list[float], i: int) -> str:
    return approx_tokens(estimates[i])


def holds_match(block: Any, pattern: re.Pattern[str]) -> bool:
    """A block holding the text is shown whole, so the match is on screen."""
    plain = block if isinstance(block, str) else json.dumps(block, ensure_ascii=False)
    return bool(pattern.search(plain))


def mark_matches(text: Text, pattern: re.Pattern[str] | None) -> Text:
    if pattern is not None:
        text.highlight_regex(pattern, style="bold black on yellow")
    return text


def tools_text(d: TurnDetail, show_all: bool) -> Text:
    """The Tools tab: each tool call beside its result."""
    out = Text()
    if not d.tool_calls:
        out.append("No tool calls in this turn.", style="dim")
    for c in d.tool_calls:
        head = f"{'server tool' if c.server else 'tool'} {c.name}  {c.id}"
        out.append(head + "\n", style="bold cyan")
        out.append("input\n", style="bold")
        out.append_text(value_text(c.input, show_all))
        out.append("\n")
        if c.pending:
            out.append("result pending: no result came back in the next request\n\n", style="bold yellow")
        else:
            out.append(*(("ERROR result\n", "bold red") if c.is_error else ("result\n", "bold green")))
            result = value_text(c.result, show_all) if c.result is not None else Text("(empty)", style="dim")
            if c.is_error:
                result.stylize("red")
            out.append_text(result)
            out.append("\n\n")
    return out


def usage_text(d: TurnDetail, tz: str | None = None) -> Text:
    """The Usage & cost tab: tokens by kind with their rates and costs, and the attempts (each
    with what its response said of the rate limits; times in `tz`)."""
    out = Text()
    out.append(f"model {d.turn.model or '—'}\n", style="bold")
    if d.band_above_tokens is not None:  # said before the rates it explains
        out.append(f"long-context band: the prompt is above {d.band_above_tokens:,} input tokens, so every token "
                   "is at the band's rates\n", style="yellow")
    out.append("\n")
    lines = {line.kind: line for line in d.usage} if d.turn.usage else {}
    label_w, tokens_w, delta_w, rate_w, cost_w = USAGE_WIDTHS
    if lines:
        out.append(f"  {'kind':{label_w}}{'tokens':>{tokens_w}}{'Δ prev':>{delta_w}}{'$/MTok':>{rate_w}}"
                   f"{'cost':>{cost_w}}\n", style="bold")  # fmt: skip
    else:  # zeros with deltas against the turn before would read as a context that shrank
        out.append("no usage: no answer came back for this turn (its attempts are below)\n", style="yellow")

    def row(swatch: Text, label: str, tokens: int, delta: int | None, rate: str, cost: float | None) -> None:
        out.append_text(swatch)
        out.append(f"{label:{label_w}}{tokens:>{tokens_w},}{signed(delta):>{delta_w}}{rate:>{rate_w}}"
                   f"{money(cost):>{cost_w}}\n")  # fmt: skip

    def billed(label: str, cost: float | None) -> None:
        """A cost with no tokens of the turn's: said across the token columns, its cost in line."""
        out.append(f"+ {label:{label_w + tokens_w + delta_w + rate_w}}{money(cost):>{cost_w}}\n")

    for kind in (*PROMPT_KINDS, "output", *(k for k in lines if k not in (*PROMPT_KINDS, "output"))):
        line = lines.get(kind)
        if line is None:
            continue
        label = USAGE_LABELS.get(kind, kind.replace("_", " "))
        colour = SEGMENT_COLOURS.get(label.removesuffix(" 5m").removesuffix(" 1h"))
        rate = "" if line.rate_per_mtok is None else f"{line.rate_per_mtok:.3f}"
        row(Text("█ " if colour else "  ", style=colour or ""), label, line.tokens, line.delta_tokens, rate,
            line.cost_usd)  # fmt: skip
        if kind == PROMPT_KINDS[-1]:  # the prompt: everything the model read
            parts = [lines[k] for k in PROMPT_KINDS if k in lines]
            deltas = [p.delta_tokens for p in parts]
            costs = [p.cost_usd for p in parts]
            prompt = sum(p.tokens for p in parts)
            row(
                Text("= ", style="bold"),
                "prompt",
                prompt,
                None if None in deltas else sum(deltas),  # type: ignore[arg-type]
                "",
                None if None in costs else sum(costs),  # type: ignore[arg-type]
            )
            if prompt:
                out.append(f"  {'cache hit':{label_w}}{line.tokens / prompt:>{tokens_w}.0%}\n", style="dim")
    # billed too, with no line above: the itemised attempt's compaction iterations, and the
    # attempts before it that got usage back (each priced whole), so the lines add up to the cost
    if lines and d.compaction_cost_usd != 0.0:
        billed("compaction", d.compaction_cost_usd)
    if d.earlier_attempts:
        billed(f"{plural(d.earlier_attempts, 'earlier attempt')}, billed too", d.earlier_cost_usd)
    if d.turn.copied:
        out.append(f"\nturn cost {money(d.cost_usd)} when recorded: a fork's copy, it costs nothing now"
                   f"   conversation so far {money(d.running_cost_usd)}\n")
    else:
        out.append(f"\nturn cost {money(d.cost_usd)}   conversation so far {money(d.running_cost_usd)}\n")
    if d.cost_usd is None and d.turn.usage:
        out.append(f"no price for {d.turn.model}: add it to a price file (--pricing)\n", style="yellow")
    if d.cache_break:
        out.append(
            "\n⚠ cache writes keep rising while reads stay flat from this turn: a moving cache breakpoint?\n",
            style="bold yellow",
        )
    out.append("\nattempts\n", style="bold")
    for i, a in enumerate(d.turn.attempts):
        err = f"  {a.error.get('type')}: {a.error.get('message')}" if a.error else ""
        ttft = f"  ttft {ms(a.ttft_ms)}" if a.ttft_ms else ""
        out.append(
            f"  #{a.attempt}  {attempt_status(a.status, a.error) or '—'}  {ms(a.latency_ms) or '—'}{ttft}{err}"
            f"{'  (abandoned)' if a.abandoned else ''}\n",
            style="red" if a.error else "",
        )
        said = d.response_headers[i] if i < len(d.response_headers) else {}
        for text in said_lines(said, tz):  # what the API said of its limits, this attempt's own
            out.append(f"      {text}\n", style="dim")
    return out


_LIMIT_KINDS = ("requests", "tokens", "input-tokens", "output-tokens")


def said_lines(headers: dict[str, str], tz: str | None = None) -> list[str]:
    """What an attempt's response said of retrying and of its rate limits (its kept headers,
    wire.RESPONSE_HEADERS), a line each, values as received but for a reset's time, shown in `tz`
    as the turn list's times are: `retry-after 5 s, x-should-retry true` and
    `tokens         7,200/80,000 left  resets 21:00:12`. [] when it said none. Short enough for
    the tabs' side of a 160-column terminal."""
    out = []
    retry = [f"retry-after {headers['retry-after']} s" if "retry-after" in headers else "",
             f"retry-after-ms {headers['retry-after-ms']}" if "retry-after-ms" in headers else "",
             f"x-should-retry {headers['x-should-retry']}" if "x-should-retry" in headers else ""]
    if any(retry):
        out.append(", ".join(r for r in retry if r))
    for kind in _LIMIT_KINDS:
        limit, left, reset = (headers.get(f"anthropic-ratelimit-{kind}-{what}")
                              for what in ("limit", "remaining", "reset"))
        if limit is None and left is None and reset is None:
            continue
        figures = f"{_figure(left or '?')}/{_figure(limit or '?')} left"
        resets = f"  resets {local_time(str(reset), with_date=False, tz=tz)}" if reset is not None else ""
        out.append(f"{kind:15}{figures}{resets}")
    return out


def _figure(value: Any) -> str:
    """A count as received, with thousands marked when it is a plain number."""
    text = str(value)
    return f"{int(text):,}" if text.isascii() and text.isdigit() else text


ResponsePart = tuple[str, Any]
"""A part of the Response tab: ("markdown", its text), ("thinking", its text), ("json", JSON
text) or ("text", a Rich Text)."""


def response_parts(d: TurnDetail, show_all: bool, tz: str | None = None) -> list[ResponsePart]:
    """The Response tab: the text (Markdown), thinking (folded there), tool calls and other blocks
    as JSON, each long value cut unless `show_all`; a failed turn's rate limits (times in `tz`). A
    reply cut mid-stream shows what came of it, then the error and `(cut here)`; one cut before
    any of it came says so in words."""
    parts: list[ResponsePart] = []
    err = d.turn.error
    # said as the turn list and the rerun say it (fmt.error_head): an error event in a stream, or
    # its connection lost or timed out after the 200 (the store gives that error the attempt's
    # status), came `mid-stream`, after whatever part of the message it cut
    said = ""
    if err:
        message = err.get("message")
        said = f"{error_head(err)}: {message}" if message else error_head(err)
    # an error answer whose body was kept (a 429's `{"type": "error", ...}`) is no response either:
    # shown as one, then `(cut here)`, it read as a reply cut off mid-stream
    error_body = bool(err) and isinstance(d.response, dict) and d.response.get("type") == "error"
    content = d.response.get("content") if isinstance(d.response, dict) else None
    if err and error_status(err) == "mid-stream" and not _arrived(content):
        # cut after its 200 with nothing of the reply come (the connection lost, or an error event,
        # right after it or its message_start): `(cut here)` alone under nothing read as a glitch
        what = "Stream" if d.turn.stream else "Answer"
        parts.append(("text", Text(f"{what} cut before any content arrived: {said}", style="bold red")))
        parts += _limits(d, tz)
    elif d.response is None or error_body:
        parts.append(("text", Text(f"No response: {said or 'nothing came back'}", style="bold red")))
        parts += _limits(d, tz)
        if error_body:
            parts.append(("text", Text("\nthe error's body, as received:", style="dim")))
            parts.append(("json", cut(as_json(d.response), CUT, show_all)))
    else:
        if not isinstance(content, list):
            parts.append(("json", as_json(d.response)))
        for block in content or []:
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text":
                parts.append(("markdown", cut(block.get("text") or "", CUT * 5, show_all)))
            elif kind == "thinking":
                parts.append(("thinking", cut(block.get("thinking") or "", CUT, show_all)))
            elif kind == "redacted_thinking":
                parts.append(("text", Text("[redacted thinking]", style="dim italic")))
            elif kind in TOOL_USE_TYPES:
                parts.append(("text", Text(f"{kind}: {block.get('name')}  {block.get('id')}", style="bold cyan")))
                parts.append(("text", value_text(block.get("input"), show_all)))
            else:
                parts.append(("text", Text(f"{kind}", style="bold magenta")))
                parts.append(("json", cut(as_json(block), CUT, show_all)))
        if said:  # the message above is the part that came before the error
            parts.append(("text", Text.assemble((said, "bold red"), ("  (cut here)", "dim"))))
            parts += _limits(d, tz)
        stop = d.response.get("stop_reason") if isinstance(d.response, dict) else None
        parts.append(("text", Text(f"stop_reason: {stop or '—'}", style="dim")))
    return parts


def _arrived(content: Any) -> bool:
    """Some of a reply's content came: a block other than a text block still empty (its
    content_block_start, with no delta after it)."""
    return isinstance(content, list) and any(
        not (isinstance(b, dict) and b.get("type") == "text" and not b.get("text")) for b in content
    )


def _limits(d: TurnDetail, tz: str | None) -> list[ResponsePart]:
    """Under a failed turn's error: what the API said with it of its limits and when to retry
    (the last attempt's; the Usage tab has each attempt's)."""
    said = said_lines(d.response_headers[-1], tz) if d.response_headers else []
    return [("text", Text("\n".join(said), style="dim"))] if said else []


def copy_text(
    d: TurnDetail,
    tab: str,
    *,
    show_all: bool = False,
    previous_prompt: int | None = None,
    tz: str | None = None,
    width: int = TOOL_LINE,
) -> str:
    """What `y` copies from a tab: the text it shows, as it shows it (`show_all`, `tz` and the
    Context tab's `width` as there; the thinking a Response folds, whole), or the Raw tab's
    request and response as JSON."""
    if tab == "response":
        return "\n\n".join(("thinking\n" + value) if kind == "thinking" else
                            value.plain if isinstance(value, Text) else str(value)
                            for kind, value in response_parts(d, show_all, tz))  # fmt: skip
    if tab == "tools":
        return tools_text(d, show_all).plain
    if tab == "usage":
        return usage_text(d, tz).plain
    if tab == "context":
        return context_text(d, show_all, previous_prompt, width=width).plain
    return as_json({"request": d.request, "response": d.response})


def raw_text(d: TurnDetail) -> str:
    """The Raw tab: the request and response JSON, every field and value as sent and received
    (JSON-equal: the store keeps each part of a request once, as it was first recorded, so a
    part sent again in another key order, or one a database of an earlier replayer holds, sorted,
    comes back in that order, which the label says rather than claim its bytes)."""
    return (
        "// request (as sent, each part's keys as first recorded)\n" + as_json(d.request)
        + "\n\n// response (as received)\n"
        + as_json(d.response)
    )
