"""Widgets of our own and helpers for Textual's: the context-growth chart, a DataTable that moves
with j/k and g/G, resizing a DataTable's columns, keeping
its number columns whole at the screen's edge, and a scrollbar for a list a table holds in part."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual.binding import Binding
from textual.color import Color
from textual.geometry import Region
from textual.reactive import reactive
from textual.scrollbar import ScrollBarRender
from textual.widget import Widget
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

from ..models import TurnSummary

SEGMENTS = (
    ("input_tokens", "uncached", "#1f77b4"),
    ("cache_creation_input_tokens", "cache write", "#e06000"),
    ("cache_read_input_tokens", "cache read", "#2e8b2e"),
    ("output_tokens", "output", "#d1479e"),
)
"""The parts of a turn's tokens, bottom to top: usage key, the word used everywhere, colour.
Mid-tone colours, readable on dark and light backgrounds alike (the Usage tab uses them too)."""
SEGMENT_COLOURS = {label: colour for _, label, colour in SEGMENTS}
GUTTER = 7
"""Columns left of the bars for the token axis: a label of up to 5 characters, a space, a tick."""
NICE = (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8)


def compact(n: float) -> str:
    """A token count in at most 5 characters: 750, 1.75k, 12k, 1.2M."""
    for div, unit in ((1_000_000, "M"), (1_000, "k")):
        if n >= div:
            for digits in (2, 1, 0):
                s = f"{n / div:.{digits}f}".rstrip("0").rstrip(".") if digits else f"{n / div:.0f}"
                if len(s) + 1 <= 5:
                    return s + unit
    return f"{n:.0f}"


def axis_step(peak: int, rows: int) -> float:
    """The tokens one row of the chart stands for: a round number (one of NICE times a power of
    ten), so that every row's top is a round figure and the labels read cleanly."""
    need = max(1, peak) / rows
    scale = 1.0
    while scale * 10 <= need:
        scale *= 10
    while True:
        for m in NICE:
            if m * scale >= need:
                return m * scale
        scale *= 10


class ContextChart(Widget):
    """One bar per turn (bucketed when there are more turns than room): each turn's prompt split
    into uncached input, cache writes and cache reads, with its output on top, so the context
    visibly grows and a broken cache shows. A token axis on the left, turn numbers below with ⚠
    where cache writes start rising while reads stay flat, the selected turn shaded and marked ▲."""

    DEFAULT_CSS = """
    ContextChart { height: 10; }
    """
    selected: reactive[int] = reactive(0)

    def __init__(self, **kwargs: Any) -> None:
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
        width = max(GUTTER + 10, self.size.width)
        height = max(3, self.size.height - 2)
        if not self.values:
            return Text("no turns yet", style="dim")
        key = (width, height, len(self.values))
        if self._bars is None or self._bars[0] != key:
            self._bars = (key, *self._draw_bars(width - GUTTER, height))
            swatches, note = self._bars[-1]
            if swatches.cell_len + note.cell_len > width and height > 3:  # the legend takes two lines
                self._bars = (key, *self._draw_bars(width - GUTTER, height - 1))
        _, bars, starts, per, cw, (swatches, note) = self._bars
        fits = swatches.cell_len + note.cell_len <= width
        legend = Text.assemble(swatches, "" if fits else "\n", note)
        out = bars.copy()
        group = max(0, min(self.selected // per, len(starts) - 1))
        # shade the selected turn's column, the gap left of it included
        shade = self._shade()
        line = GUTTER + len(starts) * cw + 1
        for row in range(height):
            at = row * line + GUTTER + group * cw
            out.stylize(shade, at, at + cw)
        out.append_text(self._ticks(starts, per, cw, group, width - GUTTER))
        out.append("\n")
        out.append_text(legend)
        return out

    def _shade(self) -> str:
        try:
            theme = self.app.theme_variables or self.app.get_css_variables()
            bg = Color.parse(theme.get("background", "#000000"))
            return "on " + bg.blend(Color.parse(theme.get("primary", "#0178D4")), 0.3).hex
        except Exception:  # noqa: BLE001 - no app (a bare render in a test): a plain shade
            return "on grey35"

    def _ticks(self, starts: list[int], per: int, cw: int, selected_group: int, room: int) -> Text:
        """The turn axis: turn numbers where they fit, ⚠ at a cache break, ▲N at the selection."""
        cells = [" "] * room
        styles: list[str] = [""] * len(cells)
        widest = len(str(starts[-1])) + 1
        every = max(1, -(-widest // cw))
        for g, start in enumerate(starts):
            if g % every == 0 and g * cw + len(str(start)) < room:
                for i, ch in enumerate(str(start)):
                    cells[g * cw + 1 + i] = ch
                    styles[g * cw + 1 + i] = "dim"
        for g, start in enumerate(starts):
            if any(i in self.breaks for i in range(start, start + per)):
                for i in range(cw):  # the mark replaces the number under it
                    cells[g * cw + i], styles[g * cw + i] = " ", ""
                cells[g * cw + 1], styles[g * cw + 1] = "⚠", "bold " + SEGMENT_COLOURS["cache write"]
        mark = f"▲{self.selected}" + ("⚠" if self.selected in self.breaks else "")
        at = max(0, min(selected_group * cw + 1, room - len(mark)))
        for i in range(-1, len(mark) + 1):  # clear a space either side of the mark
            if 0 <= at + i < len(cells):
                cells[at + i], styles[at + i] = " ", ""
        for i, step in ((at - 2, -1), (at + len(mark) + 1, 1)):  # and any number it cut in two
            while 0 <= i < len(cells) and cells[i].isdigit():
                cells[i], styles[i] = " ", ""
                i += step
        for i, ch in enumerate(mark):
            cells[at + i], styles[at + i] = ch, "bold reverse"
        out = Text("turn".rjust(GUTTER - 2) + "  ", style="dim")
        for ch, style in zip(cells, styles):  # noqa: B905 - same length
            out.append(ch, style=style)
        out.rstrip()
        return out

    def _draw_bars(self, width: int, height: int) -> tuple[Text, list[int], int, int, tuple[Text, Text]]:
        """The bars and the token axis (drawn once per data and size; moving the selection only
        restyles). Runs of cells in one colour are appended as one span: a wide chart stays cheap.
        Every bar is followed by a one-column gap, so neighbouring turns never merge. When a bar
        stands for several turns it is the largest of them, whole: a bar of each part's maximum
        would show a context no turn had (and a peak above the real one)."""
        n = len(self.values)
        per = max(1, -(-n // max(1, width // 2)))  # turns per bar: at least 2 columns each
        groups = []
        for start in range(0, n, per):
            chunk = self.values[start : start + per]
            groups.append((start, max(chunk, key=sum)))
        peak = max(sum(v) for _, v in groups)
        step = axis_step(peak, height)
        top = step * height
        cw = max(2, min(6, width // len(groups)))  # a bar and its gap
        bw = cw - 1
        # each bar's segment tops in eighths of a cell, so small turns still show (▁ … █)
        tops = []
        for _, v in groups:
            acc, edges = 0, []
            for amount in v:
                acc += amount
                edges.append(round(acc / top * height * 8))
            if acc and edges[-1] == 0:
                edges[-1] = 1
            tops.append(edges)
        labelled = {height - 1 - r for r in range(0, height, max(2, height // 3))}
        out = Text()
        for row in range(height - 1, -1, -1):
            lo = row * 8
            grid = row in labelled
            if grid:
                out.append(compact(step * (row + 1)).rjust(GUTTER - 2) + " ┤", style="dim")
            else:
                out.append(" " * (GUTTER - 1) + "│", style="dim")
            empty = "┈" if grid else " "
            run_text, run_style = "", ""
            for edges in tops:
                total = edges[-1] if edges else 0
                if total >= lo + 8:
                    probe, ch = lo + 4, "█"
                elif total > lo:
                    probe, ch = total - 1, "▁▂▃▄▅▆▇"[total - lo - 1]
                else:
                    probe, ch = -1, empty
                style = SEGMENTS[next(i for i, e in enumerate(edges) if probe < e)][2] if probe >= 0 else "dim"
                for text, st in ((ch * bw, style), (empty, "dim")):
                    if st != run_style and run_text:
                        out.append(run_text, style=run_style)
                        run_text = ""
                    run_style = st
                    run_text += text
            out.append(run_text, style=run_style)
            out.append("\n")
        swatches = Text()
        for _, label, color in SEGMENTS:
            swatches.append("█ ", style=color)
            swatches.append(label + "  ", style="dim")
        grouped = f" · each bar the largest of {per} turns" if per > 1 else ""
        note = Text(f"peak {peak:,} tokens{grouped}", style="dim")
        return out, [start for start, _ in groups], per, cw, (swatches, note)

    def watch_selected(self) -> None:
        self.refresh()


class FittedTable(DataTable[Any]):
    """A DataTable whose columns a screen fits to its right edge (keep_numbers_whole, a column
    given the room the others leave): `refit_with(fit)` calls `fit` again whenever that edge may
    have moved. It moves with the table's own size, not only the terminal's: a panel beside it
    that opens or closes, a scrollbar of the screen's own (a Resize goes to the table alone; the
    screen's comes only when the terminal's size changes); and with its vertical scrollbar,
    which can come a layout pass after the rows that bring it, its cells moving the edge."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fits: list[Callable[[], None]] = []

    def refit_with(self, fit: Callable[[], None]) -> None:
        self._fits.append(fit)

        def came_or_went(shown: bool) -> None:
            self.call_after_refresh(fit)

        self.watch(self, "show_vertical_scrollbar", came_or_went, init=False)

    def on_resize(self, event: Any) -> None:
        for fit in self._fits:
            self.call_after_refresh(fit)


class KeyTable(FittedTable):
    """A DataTable that also moves with j/k and g/G while it has focus (screens whose j/k mean
    something else, like next turn, bind them themselves)."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", id="table-down", tooltip="Next row", show=False),
        Binding("k", "cursor_up", "Up", id="table-up", tooltip="Previous row", show=False),
        Binding("g", "scroll_top", "Top", id="table-top", tooltip="First row", show=False),
        Binding("G", "scroll_bottom", "Bottom", id="table-bottom", tooltip="Last row", show=False),
    ]

    def on_data_table_row_highlighted(self) -> None:
        """The row the cursor moved to, on screen. A DataTable scrolls itself to its cursor, but
        where it is taller than the container around it shows (the dashboard's users under its
        bars, on a short screen), the container doesn't follow, and the cursor moves off screen."""
        self.call_after_refresh(self.show_cursor_row)

    def show_cursor_row(self) -> None:
        if self.cursor_type != "row" or not self.row_count:
            return
        # the cursor row's top on screen (rows here are one line each), after the table's own scroll
        y = self.region.y + self.header_height + self.cursor_row - round(self.scroll_y)
        for node in self.ancestors:
            if isinstance(node, Widget) and node.allow_vertical_scroll:
                top = node.content_region.y - round(node.scroll_y)  # its virtual top, on screen
                node.scroll_to_region(Region(0, y - top, 1, 1), animate=False, immediate=True)
                return


def whole_list_scrollbar(rows_around: Callable[[], tuple[int, int]]) -> type[ScrollBarRender]:
    """A vertical scrollbar renderer (for a widget's `vertical_scrollbar.renderer`, Textual's own
    hook) for a table that holds some rows of a longer list: `rows_around()` says how many of
    the list's rows come before the rows held and how many after them, and the thumb's size and
    place are drawn within the whole list, not within the rows held (after G on 100,000
    conversations, at the bottom, and 30 rows of 100,000 tall, not of the 100 held).

    It draws the thumb only: a drag of the thumb still moves through the rows held, as the
    ScrollBar widget measures the mouse against those (Textual offers no hook for that), so
    over a long list the thumb follows the mouse more slowly than it moves."""

    class WholeListScrollBar(ScrollBarRender):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if self.vertical and self.window_size:  # (no window size: nothing to scroll, no thumb)
                before, after = rows_around()
                self.virtual_size += before + after
                self.position += before

    return WholeListScrollBar


def set_widths(table: DataTable[Any], widths: dict[str, int]) -> None:
    """Give columns (by key) new widths, and draw the table again if any changed."""
    changed = False
    for key, width in widths.items():
        column = table.columns[ColumnKey(key)]
        if column.width != width:
            column.width, changed = width, True
    if changed:
        table._require_update_dimensions = True  # noqa: SLF001 - DataTable has no public way to resize a column
        table._clear_caches()  # noqa: SLF001
        table.refresh()


def hold_cells_whole(table: DataTable[Any], least: dict[str, int]) -> None:
    """Widen each column of `table` in `least` (key -> the width it keeps at least) to its widest
    cell, so that the column itself never cuts what it holds: `180 ms→179 ms` cut to `180 ms→179`
    reads as a figure of another unit. Call it once the rows are in; keep_numbers_whole then
    keeps the widened columns whole at the screen's edge."""

    def width(cell: Any) -> int:
        return cell.cell_len if isinstance(cell, Text) else cell_len(str(cell))

    set_widths(table, {key: max([w, *map(width, table.get_column(key))]) for key, w in least.items()})


def width_keeping_numbers_whole(
    columns: Sequence[tuple[str, int]],
    give: str,
    narrowest: int,
    numbers: Collection[str],
    edges: Iterable[int],
    padding: int,
    shown: Collection[str] = (),
) -> int:
    """The width for text column `give` of a table whose columns are `columns` ((key, width), in
    order; `give`'s own width the one it would like) so that a right edge at any of `edges` cuts
    no column in `numbers`: a number cut by the screen's edge reads as another number ($0.003 for
    $0.0033, +8 for +82). The width it would like when that keeps them whole, else the widest
    narrower one down to `narrowest` (the text is cut instead), else the narrowest wider one (the
    number then starts past the edge: shown whole a scroll away, or not at all). The columns in
    `shown` (what a user compares) must also end inside the edge, not only start past it, when
    any of those widths has them so; when none does, they too go past the edge whole."""
    edges = tuple(edges)
    wanted = next(w for key, w in columns if key == give)

    def spans(width: int) -> Iterable[tuple[str, int, int]]:
        x = 0
        for key, w in columns:
            w = (width if key == give else w) + padding
            yield key, x, x + w
            x += w

    def cuts_a_number(width: int) -> bool:
        return any(key in numbers and any(x < edge < end for edge in edges) for key, x, end in spans(width))

    def shows_them(width: int) -> bool:
        return all(end <= min(edges, default=end) for key, _, end in spans(width) if key in shown)

    widest = wanted + sum(w + padding for _, w in columns) + max(edges, default=0)
    widths = (*range(wanted, narrowest - 1, -1), *range(wanted + 1, widest))
    for fits in (lambda w: shows_them(w) and not cuts_a_number(w), lambda w: not cuts_a_number(w)):
        for width in widths:
            if fits(width):
                return width
    return wanted


def push_past_edge(table: DataTable[Any], keys: Sequence[str], widths: dict[str, int]) -> None:
    """Give the columns in `widths` (keys) those widths, what they hold; then widen the first
    column of `keys` that the table's right edge cuts just enough that what it holds (right-
    justified: a number, or text set right) starts past the edge, whole a scroll away. A number
    or a model id cut by the edge reads as another ($0.003 for $0.0033, claude-sonnet-4 for
    claude-sonnet-4-5); the room this takes is blank at the edge, where the shown part of the
    table ends, not in a text column in its middle (a Stop column 23 wide holding `end_turn`).
    (Where a number must not even span the edge, keep_numbers_whole widens a column before it
    instead.) Called again when the edge moves (FittedTable.refit_with)."""
    set_widths(table, widths)
    for key in widths:  # its title back at its left, where the title of a column as wide as its cells is
        column = table.columns[ColumnKey(key)]
        if column.label.justify == "right":
            column.label = Text(column.label.plain)
    edge = table.scrollable_content_region.width
    if not edge:  # not laid out yet
        return
    pad, x = table.cell_padding, 0
    for column in table.ordered_columns:
        key, width = str(column.key.value), column.get_render_width(table)
        if key in keys and x < edge < x + width:
            # its cells start `pad` in from its left, right-justified: widen it by what keeps
            # them from starting before the edge, and set its title right too (else the title
            # is cut, or stands over blank cells)
            column.label = Text(column.label.plain, justify="right")
            set_widths(table, {key: width - 2 * pad + max(0, edge - x - pad)})
            table._clear_caches()  # noqa: SLF001 - (a new title in a column of the same width)
            table.refresh()
            return
        x += width


def keep_numbers_whole(
    table: DataTable[Any],
    numbers: Collection[str],
    give: str,
    wanted: int,
    narrowest: int,
    shown: Collection[str] = (),
) -> int:
    """Set the width of `table`'s text column `give` (`wanted` when it can be) so that the table's
    right edge cuts none of the number columns (their keys), and has those in `shown` inside it
    where it can; see width_keeping_numbers_whole. Called again when the edge moves
    (FittedTable.refit_with). Returns the width."""
    pad = 2 * table.cell_padding
    columns = [
        (str(c.key.value), wanted if c.key.value == give else c.get_render_width(table) - pad)
        for c in table.ordered_columns
    ]
    edge = table.scrollable_content_region.width
    if not edge:  # not laid out yet: nothing to keep whole
        return wanted
    width = width_keeping_numbers_whole(columns, give, narrowest, numbers, (edge,), pad, shown)
    set_widths(table, {give: width})
    return width

