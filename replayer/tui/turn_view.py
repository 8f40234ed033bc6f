"""A turn's response as widgets (Markdown for its text, a folded thinking block, JSON for the
rest): what the Response tab of the conversation screen mounts."""

from __future__ import annotations

from typing import Any

from markdown_it import MarkdownIt
from rich.syntax import Syntax
from rich.text import Text
from textual.widget import Widget
from textual.widgets import Collapsible, Markdown, Static

from ..fmt import error_head, error_status
from ..models import TurnDetail
from ..wire import TOOL_USE_TYPES
from .blocks import CUT, cut, value_text
from .render import as_json, said_lines


def _html_as_text() -> MarkdownIt:
    """Textual's parser ("gfm-like") with HTML off: Claude's replies often hold tags (`<answer>`,
    `<div>`), which the Markdown widget would drop whole, text and all; here they show as
    written."""
    return MarkdownIt("gfm-like", {"html": False})


def response_widgets(d: TurnDetail, show_all: bool, tz: str | None = None) -> list[Widget]:
    """The Response tab: the text as Markdown, thinking folded, tool calls and other blocks as
    JSON, each long value cut unless `show_all`; a failed turn's rate limits (times in `tz`). A
    reply cut mid-stream shows what came of it, then the error and `(cut here)`; one cut before
    any of it came says so in words."""
    widgets: list[Widget] = []
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
        widgets.append(Static(Text(f"{what} cut before any content arrived: {said}", style="bold red")))
        widgets += _limits(d, tz)
    elif d.response is None or error_body:
        widgets.append(Static(Text(f"No response: {said or 'nothing came back'}", style="bold red")))
        widgets += _limits(d, tz)
        if error_body:
            widgets.append(Static(Text("\nthe error's body, as received:", style="dim")))
            widgets.append(Static(Syntax(cut(as_json(d.response), CUT, show_all), "json", word_wrap=True)))
    else:
        if not isinstance(content, list):
            widgets.append(Static(Syntax(as_json(d.response), "json", word_wrap=True)))
        for block in content or []:
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text":
                widgets.append(Markdown(cut(block.get("text") or "", CUT * 5, show_all), parser_factory=_html_as_text))
            elif kind == "thinking":
                widgets.append(
                    Collapsible(
                        Static(cut(block.get("thinking") or "", CUT, show_all)),
                        title="thinking",
                        collapsed=True,
                    )
                )
            elif kind == "redacted_thinking":
                widgets.append(Static(Text("[redacted thinking]", style="dim italic")))
            elif kind in TOOL_USE_TYPES:
                widgets.append(Static(Text(f"{kind}: {block.get('name')}  {block.get('id')}", style="bold cyan")))
                widgets.append(Static(value_text(block.get("input"), show_all)))
            else:
                widgets.append(Static(Text(f"{kind}", style="bold magenta")))
                widgets.append(Static(Syntax(cut(as_json(block), CUT, show_all), "json", word_wrap=True)))
        if said:  # the message above is the part that came before the error
            widgets.append(Static(Text.assemble((said, "bold red"), ("  (cut here)", "dim"))))
            widgets += _limits(d, tz)
        stop = d.response.get("stop_reason") if isinstance(d.response, dict) else None
        widgets.append(Static(Text(f"stop_reason: {stop or '—'}", style="dim")))
    return widgets


def _arrived(content: Any) -> bool:
    """Some of a reply's content came: a block other than a text block still empty (its
    content_block_start, with no delta after it)."""
    return isinstance(content, list) and any(
        not (isinstance(b, dict) and b.get("type") == "text" and not b.get("text")) for b in content
    )


def _limits(d: TurnDetail, tz: str | None) -> list[Widget]:
    """Under a failed turn's error: what the API said with it of its limits and when to retry
    (the last attempt's; the Usage tab has each attempt's)."""
    said = said_lines(d.response_headers[-1], tz) if d.response_headers else []
    return [Static(Text("\n".join(said), style="dim"))] if said else []
