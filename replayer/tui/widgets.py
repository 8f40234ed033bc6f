"""Widgets of our own: the context-growth chart."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import DataTable

from ..models import TurnSummary

SEGMENTS = (
    ("input_tokens", "uncached", "dodger_blue1"),
    ("cache_creation_input_tokens", "cache write", "yellow"),
    ("cache_read_input_tokens", "cache read", "green"),
    ("output_tokens", "output", "magenta"),
)


class ContextChart(Widget):
    """One column per turn (bucketed when there are more turns than columns): each turn's prompt
    split into uncached input, cache writes and cache reads, with its output on top, so the
    context visibly grows and a broken cache shows. A ⚠ marks where cache writes start rising while
    reads stay flat; ▲ marks the selected turn."""

    DEFAULT_CSS = """
    ContextChart { height: 10; }
    """
    selected: reactive[int] = reactive(0)

    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.values: list[tuple[int, int, int, int]] = []
        self.breaks: set[int] = set()
        self._bars: tuple | None = None

    def set_turns(self, turns: list[TurnSummary], breaks: set[int]) -> None:
        self.values = [tuple(int((t.usage or {}).get(k) or 0) for k, _, _ in SEGMENTS) for t in turns]  # type: ignore[misc]
        self.breaks = breaks
        self._bars = None
        self.refresh()

    def select(self, index: int) -> None:
        self.selected = index

    def render(self) -> Text:
        width = max(10, self.size.width)
        height = max(3, self.size.height - 2)
        if not self.values:
            return Text("no turns yet", style="dim")
        key = (width, height, len(self.values))
        if self._bars is None or self._bars[0] != key:
            self._bars = (key, *self._draw_bars(width, height))
        _, bars, columns, per, cw, legend = self._bars
        out = bars.copy()
        for start in columns:
            span = range(start, start + per)
            if self.selected in span:
                out.append("▲".ljust(cw), style="bold")
            elif any(i in self.breaks for i in span):
                out.append("⚠".ljust(cw), style="bold yellow")
            else:
                out.append(" " * cw)
        out.append("\n")
        out.append_text(legend)
        return out

    def _draw_bars(self, width: int, height: int) -> tuple[Text, list[int], int, int, Text]:
        """The bars (drawn once per data and size; moving the selection only redraws the marker
        row). Runs of cells in one colour are appended as one span: a wide chart stays cheap."""
        n = len(self.values)
        per = max(1, -(-n // width))  # turns per column
        groups = []
        for start in range(0, n, per):
            chunk = self.values[start : start + per]
            groups.append((start, tuple(max(v[i] for v in chunk) for i in range(4))))
        top = max(sum(v) for _, v in groups) or 1
        cw = max(1, min(4, width // len(groups)))  # a few columns wide per turn when there is room
        # each column's segment tops in eighths of a cell, so small turns still show (▁ … █)
        tops = []
        for _, v in groups:
            acc, edges = 0, []
            for amount in v:
                acc += amount
                edges.append(round(acc / top * height * 8))
            if acc and edges[-1] == 0:
                edges[-1] = 1
            tops.append(edges)
        out = Text()
        for row in range(height - 1, -1, -1):
            lo = row * 8
            run_text, run_style = "", ""
            for edges in tops:
                total = edges[-1] if edges else 0
                if total >= lo + 8:
                    probe, ch = lo + 4, "█"
                elif total > lo:
                    probe, ch = total - 1, "▁▂▃▄▅▆▇"[total - lo - 1]
                else:
                    probe, ch = -1, " "
                style = SEGMENTS[next(i for i, e in enumerate(edges) if probe < e)][2] if probe >= 0 else ""
                if style != run_style and run_text:
                    out.append(run_text, style=run_style)
                    run_text = ""
                run_style = style
                run_text += ch * cw
            out.append(run_text + "\n", style=run_style)
        legend = Text()
        for _, label, color in SEGMENTS:
            legend.append("█ ", style=color)
            legend.append(label + "  ", style="dim")
        legend.append(f"peak {top:,} tokens" + (f" · {per} turns per column" if per > 1 else ""), style="dim")
        return out, [start for start, _ in groups], per, cw, legend

    def watch_selected(self) -> None:
        self.refresh()


class KeyTable(DataTable):  # type: ignore[type-arg]
    """A DataTable that also moves with j/k and g/G while it has focus (screens whose j/k mean
    something else, like next turn, bind them themselves)."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", id="table-down", tooltip="Next row", show=False),
        Binding("k", "cursor_up", "Up", id="table-up", tooltip="Previous row", show=False),
        Binding("g", "scroll_top", "Top", id="table-top", tooltip="First row", show=False),
        Binding("G", "scroll_bottom", "Bottom", id="table-bottom", tooltip="Last row", show=False),
    ]
