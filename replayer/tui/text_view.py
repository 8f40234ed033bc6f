"""A long Rich Text, wrapped and drawn only where it is on screen (Textual's Line API).

A Static holding a conversation's whole context (3 million characters over 70,000 lines at a
thousand turns) wrapped all of it on each draw: 6-12 s per key. Here the text is split into
its lines once (string work), each line's height at the current width is counted from its
plain characters (a line no wider than the view is one row, with no wrapping done), and only
the rows on screen are styled and wrapped, the way Static does it (Textual's Content), so they
look the same. Wrapped lines are kept in a small cache; a new width or theme drops it."""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict
from itertools import accumulate
from typing import Any

from rich._wrap import divide_line  # what Content wraps with, so rows are counted as drawn
from rich.cells import cell_len
from rich.text import Text
from textual.content import Content, Span
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.selection import Selection
from textual.strip import Strip
from textual.style import Style
from textual.visual import RenderOptions

TAB_SIZE = 8
"""As Static expands tabs."""
CHUNK = 64
"""Lines per bucket of the span index (which spans may touch a line)."""
CACHED_LINES = 512
"""Wrapped lines kept: a few screens' worth either side of the view."""


class TextView(ScrollView, can_focus=True):
    """Shows a Rich Text as Static would, wrapped to the view's width, drawing only the visible
    rows: `update(text)` is quick whatever its length, and so is scrolling through it."""

    DEFAULT_CSS = """
    TextView { overflow-x: hidden; overflow-y: auto; height: 1fr; }
    """

    class WidthChanged(Message):
        """The view's text is now this many cells wide: text made for a width (a row cut to fit
        it) can be made again."""

        def __init__(self, view: TextView, width: int) -> None:
            super().__init__()
            self.view, self.width = view, width

        @property
        def control(self) -> TextView:
            return self.view

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:  # noqa: A002 (Textual's name)
        super().__init__(id=id, classes=classes)
        self.text = Text()
        """What is shown (its plain text and spans, as given)."""
        self._lines: list[str] = [""]
        self._starts: list[int] = [0]
        """Where each line begins in the text."""
        self._spans: list[Span] = []
        self._buckets: list[list[int]] = [[]]
        """For each CHUNK lines, the spans (their indexes, in order) that touch them."""
        self._width = 0
        self._row_starts: list[int] = [0]
        """The first row of each line at `_width`, and the total row count last."""
        self._wrapped: OrderedDict[int, list[Strip]] = OrderedDict()

    # -- content ------------------------------------------------------------------------------
    def update(self, text: Text) -> None:
        """Show `text` (the scroll position stays, within the new length)."""
        self.text = text
        plain = text.plain
        self._lines = plain.split("\n")
        self._starts = [0, *accumulate(len(line) + 1 for line in self._lines)][:-1]
        self._spans = []
        self._buckets = [[] for _ in range((len(self._lines) + CHUNK - 1) // CHUNK)]
        styles: dict[Any, Style] = {}
        get_style = self.app.console.get_style
        for start, end, rich_style in text.spans:
            if end <= start:
                continue
            style = styles.get(rich_style)
            if style is None:
                style = styles[rich_style] = Style.from_rich_style(
                    get_style(rich_style) if isinstance(rich_style, str) else rich_style, self.app.ansi_theme
                )
            index = len(self._spans)
            self._spans.append(Span(start, end, style))
            first = bisect_right(self._starts, start) - 1
            last = bisect_right(self._starts, end - 1) - 1
            for bucket in range(first // CHUNK, last // CHUNK + 1):
                self._buckets[bucket].append(index)
        self._width = 0  # counted again at the next layout
        self._measure()

    @property
    def line_count(self) -> int:
        return len(self._lines)

    def _measure(self) -> None:
        """Count each line's rows at the view's width (the plain text suffices)."""
        width = self.scrollable_content_region.width
        if width <= 0:
            return
        if width != self._width:
            self._width = width
            self._wrapped.clear()
            self.post_message(self.WidthChanged(self, width))
            self._row_starts = [0, *accumulate(self._rows(line, width) for line in self._lines)]
        height = self._row_starts[-1]
        if self.virtual_size != Size(width, height):
            self.virtual_size = Size(width, height)
        self.refresh()

    @staticmethod
    def _expanded(line: str) -> str:
        return Content(line).expand_tabs(TAB_SIZE).plain if "\t" in line else line

    def _rows(self, line: str, width: int) -> int:
        if len(line) <= width and line.isascii() and "\t" not in line:
            return 1
        line = self._expanded(line)
        if cell_len(line) <= width:
            return 1
        return len(divide_line(line, width, fold=True)) + 1

    def row_of(self, offset: int) -> int:
        """The row showing the character at `offset` in the text."""
        index = max(0, bisect_right(self._starts, offset) - 1)
        column = offset - self._starts[index]
        line = self._expanded(self._lines[index])
        width = self._width or self.scrollable_content_region.width or 80
        breaks = divide_line(line, width, fold=True) if cell_len(line) > width else []
        return self._row_starts[index] + bisect_right(breaks, column) if self._width else index

    # -- Textual ------------------------------------------------------------------------------
    def on_resize(self) -> None:
        self._measure()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._wrapped.clear()

    def selection_updated(self, selection: Selection | None) -> None:
        self._wrapped.clear()
        self.refresh()

    def get_selection(self, selection: Selection) -> tuple[str, str] | None:
        return selection.extract(self.text.plain), "\n"

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        if width != self._width:
            self._measure()
        row = self.scroll_offset.y + y
        base = self.rich_style
        if row >= self._row_starts[-1] or not self._width:
            return Strip.blank(width, base)
        index = bisect_right(self._row_starts, row) - 1
        strips = self._line_strips(index)
        strip = strips[min(row - self._row_starts[index], len(strips) - 1)]
        return strip.adjust_cell_length(width, base)

    def _line_strips(self, index: int) -> list[Strip]:
        """Line `index` styled and wrapped as Static draws it, with the offsets selection reads."""
        strips = self._wrapped.get(index)
        if strips is not None:
            self._wrapped.move_to_end(index)
            return strips
        start, line = self._starts[index], self._lines[index]
        end = start + len(line)
        spans = []
        for i in self._buckets[index // CHUNK]:  # in the text's order, which layers the styles
            s = self._spans[i]
            if s.start < end and s.end > start:
                spans.append(Span(max(s.start, start) - start, min(s.end, end) - start, s.style))
        content = Content(line, spans)
        selection = self.text_selection
        if selection is not None and (span := selection.get_span(index)) is not None:
            select_style = Style.from_styles(self.screen.get_component_styles("screen--selection"))
            content = content.stylize(select_style, span[0], len(line) if span[1] == -1 else span[1])
        options = RenderOptions(self._get_style, {})  # Static's defaults: left, wrapped, folded, as counted
        strips = content.render_strips(self._width, None, self.visual_style, options)
        expanded = self._expanded(line)
        breaks = divide_line(expanded, self._width, fold=True) if cell_len(expanded) > self._width else []
        strips = [strip.apply_offsets(x, index) for strip, x in zip(strips, [0, *breaks], strict=False)]
        self._wrapped[index] = strips
        if len(self._wrapped) > CACHED_LINES:
            self._wrapped.popitem(last=False)
        return strips
