"""Help (F1 or ?): the keys of the screen underneath, built from its bindings."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.keys import format_key
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from ..filters import FILTER_WORDS
from .conversation import ConversationScreen
from .conversations import ConversationsScreen
from .render import MID_STREAM_NOTE


def key_name(key: str) -> str:
    """A binding's key as the help shows it: the character where the key names one (`plus` is
    `+`, `equals_sign` `=`, `slash` `/`), else its name (`enter`, `escape`, `ctrl+r`)."""
    shown = format_key(key)
    return shown if len(shown) == 1 and shown.isascii() else key

class HelpScreen(ModalScreen[None]):
    """F1: the keys of the screen underneath, built from its bindings."""

    BINDINGS = [Binding("escape,f1,q,question_mark", "close", "Close", id="close", tooltip="Close help")]

    def __init__(self, under: Screen[Any]) -> None:
        super().__init__()
        self.under = under

    def compose(self) -> ComposeResult:
        text = Text()
        text.append(f"{type(self.under).__name__.replace('Screen', '')} keys\n\n", style="bold")
        seen = set()
        for source in (self.under.BINDINGS, self.app.BINDINGS):
            for b in source:
                if not isinstance(b, Binding) or b.key in seen:
                    continue
                seen.add(b.key)
                keys = ", ".join(map(key_name, b.key.split(",")))
                text.append(f"{keys:>14}  ", style="bold cyan")
                text.append(f"{b.description}")
                if b.tooltip:
                    text.append(f" — {escape(b.tooltip)}", style="dim")
                text.append("\n")
        text.append(f"{'ctrl+p':>14}  ", style="bold cyan")
        text.append("Command palette — go to a conversation or a turn\n")
        if isinstance(self.under, ConversationScreen):
            text.append("\nStatus column beside #: ", style="bold")
            colours = self.under.outcome_colours()
            for symbol, word, kind in self.under.LEGEND:
                text.append(f"{symbol} ", style=f"bold {colours[kind]}")
                text.append(f"{word}   ")
            text.append("\nNotes: ", style="bold")
            text.append(
                "a failed attempt's HTTP status and message, on its turn's row and on each retry's (↳) row "
                f"({MID_STREAM_NOTE}: its stream broke after its 200, by an error event or the connection lost or "
                "timed out); ↻N: N retries; …: more words than fit (the Response and Usage tabs have them)\n"
            )
        if isinstance(self.under, ConversationsScreen):
            text.append("\nFilter (/): these words keep what they say; others search messages, prompts, tools\n",
                        style="bold")
            for i, (word, meaning) in enumerate(FILTER_WORDS):  # two to a line
                text.append(f"{word:>14}  ", style="bold cyan")
                text.append(f"{meaning:<26}" if i % 2 == 0 else f"{meaning}\n")
            if len(FILTER_WORDS) % 2:
                text.append("\n")
            text.append(f"{'dates':>14}  ", style="bold cyan")
            text.append(f"in {self.under.app.settings.tz}, as listed; or give one: Z, +01:00\n")
        text.append("\nThe mouse works too: click rows, tabs and column headers.", style="dim")
        with VerticalScroll(id="help"):  # a short terminal scrolls it (up/down, the wheel)
            yield Static(text)

    def action_close(self) -> None:  # not `dismiss`: that is Screen's own (same keys, same label)
        self.app.pop_screen()
