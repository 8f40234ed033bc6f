"""A turn's response as widgets (Markdown for its text, a folded thinking block, JSON for the
rest): what the Response tab of the conversation screen mounts. What goes in them is
tabs.response_parts (the same parts `y` copies)."""

from __future__ import annotations

from markdown_it import MarkdownIt
from rich.syntax import Syntax
from textual.widget import Widget
from textual.widgets import Collapsible, Markdown, Static

from ..models import TurnDetail
from .tabs import response_parts


def _html_as_text() -> MarkdownIt:
    """Textual's parser ("gfm-like") with HTML off: Claude's replies often hold tags (`<answer>`,
    `<div>`), which the Markdown widget would drop whole, text and all; here they show as
    written."""
    return MarkdownIt("gfm-like", {"html": False})


def response_widgets(d: TurnDetail, show_all: bool, tz: str | None = None) -> list[Widget]:
    """The Response tab (tabs.response_parts), as widgets: the text as Markdown, thinking
    folded, JSON highlighted."""
    widgets: list[Widget] = []
    for kind, value in response_parts(d, show_all, tz):
        if kind == "markdown":
            widgets.append(Markdown(value, parser_factory=_html_as_text))
        elif kind == "thinking":
            widgets.append(Collapsible(Static(value), title="thinking", collapsed=True))
        elif kind == "json":
            widgets.append(Static(Syntax(value, "json", word_wrap=True)))
        else:
            widgets.append(Static(value))
    return widgets
