"""Widgets of our own: the context-growth chart."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

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

    def set_turns(self, turns: list[TurnSummary], breaks: set[int]) -> None:
        self.values = [tuple(int((t.usage or {}).get(k) or 0) for k, _, _ in SEGMENTS) for t in turns]  # type: ignore[misc]
        self.breaks = breaks
        self.refresh()

    def select(self, index: int) -> None:
        self.selected = index

    def render(self) -> Text:
        width = max(10, self.size.width)
        height = max(3, self.size.height - 2)
        n = len(self.values)
        out = Text()
        if n == 0:
            return Text("no turns yet", style="dim")
        per = max(1, -(-n // width))  # turns per column
        columns = []
        for start in range(0, n, per):
            chunk = self.values[start : start + per]
            columns.append((start, tuple(max(v[i] for v in chunk) for i in range(4))))
        top = max(sum(v) for _, v in columns) or 1
        cw = max(1, min(4, width // len(columns)))  # a few columns wide per turn when there is room
        # each column's segment tops in eighths of a cell, so small turns still show (▁ … █)
        tops = []
        for _, v in columns:
            acc, edges = 0, []
            for amount in v:
                acc += amount
                edges.append(round(acc / top * height * 8))
            if acc and edges[-1] == 0:
                edges[-1] = 1
            tops.append(edges)
        for row in range(height - 1, -1, -1):
            lo = row * 8
            for edges in tops:
                total = edges[-1] if edges else 0
                if total >= lo + 8:
                    probe, ch = lo + 4, "█"
                elif total > lo:
                    probe, ch = total - 1, "▁▂▃▄▅▆▇"[total - lo - 1]
                else:
                    out.append(" " * cw)
                    continue
                seg = next(i for i, e in enumerate(edges) if probe < e)
                out.append(ch * cw, style=SEGMENTS[seg][2])
            out.append("\n")
        for start, _ in columns:
            span = range(start, start + per)
            if self.selected in span:
                out.append("▲".ljust(cw), style="bold")
            elif any(i in self.breaks for i in span):
                out.append("⚠".ljust(cw), style="bold yellow")
            else:
                out.append(" " * cw)
        out.append("\n")
        for _, label, color in SEGMENTS:
            out.append("█ ", style=color)
            out.append(label + "  ", style="dim")
        out.append(f"peak {top:,} tokens" + (f" · {per} turns per column" if per > 1 else ""), style="dim")
        return out

    def watch_selected(self) -> None:
        self.refresh()
