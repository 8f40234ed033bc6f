"""The conversation list, the home screen: every conversation, a page at a time, with filter,
sort and a live reload while agents record. Rows come from thread workers.

The rows held are always one end of the list: its first ones, or (after G) its last ones, read
from the end (Store.conversations from_end) so the last conversation is one page away however
long the list; scrolling towards the rows not held reads them, a page at a time, either way.
The list's whole length is counted with each page, and the scrollbar drawn within it
(widgets.whole_list_scrollbar): where the rows on screen are in the list, not in the rows held.

About 720 lines: paging (from either end), the self-refresh that places new and changed rows
among those loaded, and the widths fitted to the screen all move the same rows and cursor, so
they stay in one screen class."""

from __future__ import annotations

import shlex
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual import on, work
from textual._two_way_dict import TwoWayDict
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Input, Static
from textual.widgets.data_table import DuplicateKey, Row, RowKey
from textual.worker import Worker, WorkerState

from ..filters import FILTER_SYNTAX, FilterError, ListFilter, parse_filter
from ..fmt import local_time, spend, users_label
from ..models import ConversationSummary
from ..store.queries import AmbiguousId
from .base import ReplayerScreen
from .dashboard import DashboardScreen
from .messages import ConversationsChanged, ConversationsLoaded, StoreChanged
from .render import IdText, duration, tokens
from .widgets import FittedTable, set_widths, whole_list_scrollbar, width_keeping_numbers_whole

PAGE = 100


class ConversationTable(FittedTable):
    """The conversation list's table: home and end (ctrl+ too) go to the first and last
    conversation of the list, as g and G do (DataTable's own move sideways, or to the last row
    loaded), and a row added costs no measuring."""

    BINDINGS = [
        Binding("home,ctrl+home", "screen.top", "Top", show=False),
        Binding("end,ctrl+end", "screen.bottom", "Bottom", show=False),
    ]

    def _update_dimensions(self, new_rows: Any) -> None:
        # every column has a fixed width and every row is one line: the new rows change the
        # table's size by their count alone. DataTable measures each of their cells for columns
        # that size to their content (240 us a row: 24 s of the screen's time for 100,000 rows)
        super()._update_dimensions([])

    def measure_now(self) -> None:
        """The table's height brought up to date with the rows added and removed since it last was:
        DataTable does it when next idle, and a scroll to keep the rows on screen in place when
        rows come above them (or to show one come at the end) stopped at the old end before that."""
        if self._require_update_dimensions:
            self._require_update_dimensions = False
            self._new_rows.clear()
            self._update_dimensions([])

    def add_many(self, rows: list[tuple[str, tuple[Any, ...]]], on_top: bool = False) -> None:
        """Rows (key, cells) added at the bottom (above the rows held, `on_top`), as add_row adds
        each: its bookkeeping once for them all. add_row sorts the columns and moves the cursor (a
        reactive, with its watchers) for every row: 100 us a row, half a second of a frozen
        screen for a page of 5,000. The cursor keeps its row number (on_top: the caller moves it)."""
        keys = [column.key for column in self.ordered_columns]
        held = self.row_count
        start = 0 if on_top else held
        if on_top:  # the rows held move down by as many (DataTable itself only appends)
            self._row_locations = TwoWayDict({key: i + len(rows) for key, i in self._row_locations._forward.items()})
        for i, (key, cells) in enumerate(rows):
            row_key = RowKey(key)
            if row_key in self._row_locations:
                raise DuplicateKey(f"The row key {row_key!r} already exists.")
            self._row_locations[row_key] = start + i
            self._data[row_key] = dict(zip(keys, cells, strict=True))
            self.rows[row_key] = Row(row_key, 1)
            self._new_rows.add(row_key)
        self._require_update_dimensions = True
        self.cursor_coordinate = self.cursor_coordinate  # (clamped, as after add_row)
        if held == 0 and self.columns and self.show_cursor and self.cursor_type != "none":
            self._highlight_cursor()  # a cursor where there was none: its highlighted event
        self._update_count += 1
        self.check_idle()


class RowIdText(IdText):
    """The Conversation cell, which also carries its row's conversation id: the key the table's
    rows are put back in the store's order by (DataTable can't insert a row at a position)."""

    def __init__(self, text: str, conversation_id: str, **kwargs: Any) -> None:
        super().__init__(text, **kwargs)
        self.conversation_id = conversation_id


class ConversationsScreen(ReplayerScreen[None]):
    """Every conversation, newest first, a page at a time."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", id="down", tooltip="Next conversation", show=False),
        Binding("k", "cursor_up", "Up", id="up", tooltip="Previous conversation", show=False),
        Binding("g,home", "top", "Top", id="top", tooltip="First conversation", show=False),
        Binding("G,end", "bottom", "Bottom", id="bottom",
                tooltip="Last conversation (the rows before it load as you move up)", show=False),
        Binding("enter,l", "open", "Open", id="open", tooltip="Open the highlighted conversation"),
        Binding(
            "slash",
            "search",
            "Search/filter",
            id="search",
            tooltip="Search text, or filter by user:, run:, tag:, …",
        ),
        Binding("s", "sort", "Sort", id="sort", tooltip="Sort by the next column (also: click a column header)"),
        Binding("S", "reverse_sort", "Reverse", id="reverse-sort", tooltip="Reverse the sort order", show=False),
        Binding("ctrl+r", "reload", "Refresh", id="refresh", tooltip="Reload the list from the database", show=False),
        Binding("y", "copy", "Copy id", id="copy", tooltip="Copy the highlighted conversation id"),
        Binding("d", "dashboard", "Dashboard", id="dashboard", tooltip="Spend per user and day, health, alerts"),
        Binding("m", "mark", "Mark", id="mark", tooltip="Mark this conversation as A, to compare (again: unmark)",
                show=False),  # fmt: skip
        Binding("c", "compare", "Compare", id="compare",
                tooltip="The marked conversation (m) against this one; with none marked, this against its fork"),
        Binding("escape", "clear", "Clear filter", id="clear", tooltip="Clear the filter", show=False),
    ]
    COLUMNS = (
        "Started",
        "Conversation",
        "User",
        "Turns",
        "Cost",
        "Err",
        "Prompt",
        "Output",
        "Cache",
        "Duration",
        "First message",
        "Models",
    )
    SQL_SORTS = {
        "Started": "started",
        "Conversation": "id",
        "User": "user",
        "Turns": "turns",
        "Prompt": "input",
        "Output": "output",
        "Cost": "cost",
        "Cache": "cache",
        "Err": "errors",
        "Duration": "duration",
        "Models": "models",
        "First message": "first",
    }
    """Every column sorts over every conversation (by the store), not just the loaded page."""
    WIDTHS = {
        "Started": 16,
        "Conversation": 34,
        "User": 14,
        "Turns": 5,
        "Prompt": 11,
        "Output": 9,
        "Cost": 10,
        "Cache": 5,
        "Err": 3,
        "Duration": 8,
        "First message": 44,
        "Models": 28,
    }

    NUMBERS = {"Turns", "Cost", "Err", "Prompt", "Output", "Cache", "Duration"}
    """Columns that must never be cut by the screen's edge: 179,026 cut to "179" reads as 179."""
    NARROWEST_ID = 16

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[ConversationSummary] = []
        self.filters: ListFilter = {}
        self.sort = ("Started", True)
        self.exhausted = False
        self._querying = False
        """A list query runs (at most one at a time). Not `loading`: that is Textual's own, which
        covers the screen with its spinner, the rows hidden at every refresh while agents record."""
        self.generation = 0
        """Counts the list's queries (filter, sort, reload): a page from an older one is dropped."""
        self.mark: tuple[int, int] | None = None
        """The store's change mark when the rows on screen were read (Store.change_mark)."""
        self.keep_cursor: str | None = None
        """The conversation to put the cursor back on when a reload lands."""
        self.marked: str | None = None
        """The conversation `m` marked: A of the next comparison (`c`)."""
        self.fitted_edge = -1
        """The table's right edge (its scrollable width) when the columns were last fitted."""
        self.from_end = False
        """The rows held are the list's last ones, read from its end (G): self.rows holds them last
        first (a prefix of the list's reverse, which every read, page and refresh uses as the
        list's own order otherwise); the table shows them in the list's order. Back to False once
        the list's first row is read: every row is held then."""
        self.total: int | None = None
        """How many conversations the list has in all, read with its first page and each refresh: the
        scrollbar shows where the rows on screen are within them all (rows_around)."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder=f"search text, or {FILTER_SYNTAX}", id="filter")
        table = ConversationTable(id="conversations", cursor_type="row", zebra_stripes=True)
        yield table
        yield Static("", id="empty")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        table = self.query_one(DataTable)
        # (one scrollbar's own renderer, as Textual's ScrollBar.renderer documents; typed a ClassVar)
        table.vertical_scrollbar.renderer = whole_list_scrollbar(self.rows_around)  # type: ignore[misc]
        for col in self.COLUMNS:  # fixed widths: a page of rows is not measured cell by cell
            table.add_column(col, key=col, width=self.WIDTHS.get(col))
        self._label_sort()
        self.call_after_refresh(self.fit_columns)
        # fitted again whenever the table's edge may have moved: its own size (not only when the
        # terminal is resized: it also narrows and widens by the two cells of a scrollbar of the
        # screen's own, there while the empty-list notice still took room, at the start on a short
        # terminal), and its vertical scrollbar, which can come a layout pass after the rows that
        # bring it (on a busy machine)
        self.query_one(ConversationTable).refit_with(self.fit_columns)
        self.sub_title = self.home_subtitle()
        self.load(reset=True)
        table.focus()
        self.set_interval(self.app.refresh_seconds, self._tick)

    def _tick(self) -> None:
        """Every refresh period: the columns are fitted again if the table's edge moved since they
        were (a safety net: on a busy machine the vertical scrollbar's cells were seen to move the
        edge with no fit after it, one run in seven under load, the numbers cut for good), and
        the store is polled."""
        if self.query_one("#conversations", DataTable).scrollable_content_region.width != self.fitted_edge:
            self.fit_columns()
        self.poll()

    def conversation_width(self, edges: tuple[int, ...], padding: int) -> int:
        """The Conversation column's width for a table whose right edge is at one of `edges`
        (with and without a vertical scrollbar): as wide as an id when that keeps the edge out of
        every number column, else the widest narrower one that does (the number then shows whole),
        else wider (the number goes off screen whole)."""
        columns = [(col, self.width_of(col)) for col in self.COLUMNS]
        return width_keeping_numbers_whole(columns, "Conversation", self.NARROWEST_ID, self.NUMBERS, edges, padding)

    def width_of(self, column: str) -> int:
        """A column's width: its own, and for the sorted column at least its header's with the
        arrow (`Err ▼` in a column of 3 read `Err`)."""
        if column == self.sort[0]:
            return max(self.WIDTHS[column], cell_len(f"{column} ▼"))
        return self.WIDTHS[column]

    def fit_columns(self) -> None:
        """Called on resize, when rows arrive (a vertical scrollbar may have come or gone) and
        when the sort moves (the sorted column's header is wider)."""
        table = self.query_one("#conversations", DataTable)
        edge = table.scrollable_content_region.width
        widths = {col: self.width_of(col) for col in self.COLUMNS}
        widths["Conversation"] = self.conversation_width((edge,), 2 * table.cell_padding)
        set_widths(table, widths)
        self.sub_title = self.home_subtitle()
        self.fitted_edge = edge

    # -- loading ----------------------------------------------------------------------------
    def load(self, reset: bool = False, at_least: int = PAGE, keep: str | None = None, from_end: bool = False) -> None:
        if reset:  # a new query replaces any page still loading (the worker group is exclusive)
            self.rows, self.exhausted, self._querying = [], False, False
            self.generation += 1
            self.keep_cursor = keep
            self.from_end = from_end
        if self.exhausted or self._querying:
            return
        self._querying = True
        limit = max(PAGE, at_least)
        self.fetch(len(self.rows), self.filters.copy(), self.sort, self.generation, limit, self.from_end)

    def held_index(self, row: int) -> int:
        """The index in self.rows of the table's row `row`, and the reverse (the rows read from the
        end are held last first)."""
        return len(self.rows) - 1 - row if self.from_end else row

    def rows_around(self) -> tuple[int, int]:
        """How many of the list's conversations come before the rows held, and how many after
        them: those not read yet, at its start after G (read from the end), else at its end."""
        missing = max(0, (self.total or 0) - len(self.rows))
        return (missing, 0) if self.from_end else (0, missing)

    def _count(self, total: int | None) -> None:
        if total is not None and total != self.total:
            self.total = total
            self.query_one(DataTable).vertical_scrollbar.refresh()

    def near_the_rows_not_held(self, row: int) -> bool:
        """The table's row `row` is within 10 rows of those not read yet: past the last row held,
        or before the first when they were read from the end."""
        return self.held_index(row) >= len(self.rows) - 10

    @work(thread=True, exclusive=True, group="conversations", exit_on_error=False)
    def fetch(
        self, offset: int, filters: ListFilter, sort: tuple[str, bool], generation: int = 0, limit: int = PAGE,
        from_end: bool = False,
    ) -> None:
        column, descending = sort
        with self.app.store() as store:
            mark = store.change_mark()  # read first: anything recorded during the query moves it again
            rows = store.conversations(
                **filters, sort=self.SQL_SORTS.get(column, "started"), descending=descending, limit=limit,
                offset=offset, from_end=from_end,
            )  # fmt: skip
            # a first page (of a new query, a reload, G) only: the count takes as long as the
            # page (30 ms for 100,000), and the pages after it don't change it (a recording
            # does, and its refresh counts again)
            total = store.conversation_count(**filters) if offset == 0 else None
        cells = [self._cells(r) for r in rows]
        # a cancelled worker's thread still runs to here: its rows must not land under a newer header
        self.post_message(ConversationsLoaded(offset, rows, generation, limit, mark, cells, total))

    def reload_in_place(self) -> None:
        """Read the list again as it is (filter, sort), the cursor staying on its conversation: the
        rows down to a page past the cursor, not every row ever loaded (a list scrolled through
        tens of thousands took seconds to read again at each recording); the rest load again as
        the list is scrolled."""
        table = self.query_one(DataTable)
        # a page past the cursor, as on first open: not capped at the rows held (200 held, the
        # cursor on row 150, left it 49 rows from the end of the list); from the end if read so
        self.load(reset=True, at_least=self.held_index(table.cursor_row) + 1 + PAGE, keep=self.cursor_id(),
                  from_end=self.from_end)  # fmt: skip

    def refresh_in_place(self) -> None:
        """Bring the rows on screen up to date with what was recorded since they were read: only
        the conversations created or given a call since then are read, and put where the store's
        order puts them; the rows held stay an exact prefix of that order, the cursor on its
        conversation at the same place on screen, however far down it is (a list at its top stays
        there: the new rows come into view)."""
        if self.mark is None or self._querying:
            return
        self._querying = True
        self.fetch_changes(self.mark, len(self.rows), self.filters.copy(), self.sort, self.generation, self.from_end)

    @work(thread=True, exclusive=True, group="conversations", exit_on_error=False)
    def fetch_changes(
        self, since: tuple[int, int], held: int, filters: ListFilter, sort: tuple[str, bool], generation: int,
        from_end: bool,
    ) -> None:
        column, descending = sort
        with self.app.store() as store:
            mark = store.change_mark()  # read first: anything recorded during the queries moves it again
            changed = store.changed_since(since)
            these = filters.copy()
            these["ids"] = changed
            rows = store.conversations(**these, sort="id", limit=len(changed)) if changed else []
            order = (
                store.conversation_order(
                    **filters, sort=self.SQL_SORTS.get(column, "started"), descending=descending,
                    limit=held + len(rows) + PAGE,  # room for conversations recorded meanwhile
                    from_end=from_end,
                )
                if changed
                else []
            )
            total = store.conversation_count(**filters) if changed else None
        self.post_message(ConversationsChanged(changed, rows, order, generation, mark, total))

    @on(ConversationsChanged)
    def merge_changes(self, news: ConversationsChanged) -> None:
        if news.generation != self.generation:
            return  # a newer filter, sort or reload replaced the rows it would update
        self._querying = False
        self.mark = news.mark
        table = self.query_one(DataTable)
        if news.changed:
            self._merge(news)
        self._count(news.total)
        if self.near_the_rows_not_held(table.cursor_row):  # as when the cursor comes near them (a page
            self.load()  # may have waited for this refresh)

    def _merge(self, news: ConversationsChanged) -> None:
        table = self.query_one(DataTable)
        changed = set(news.changed)
        fresh = {r.conversation_id: r for r in news.rows}
        held = {r.conversation_id: r for r in self.rows}
        rows: list[ConversationSummary] = []
        unplaced = sum(1 for cid in held if cid not in changed)
        for cid in news.order:  # the store's order, down to the first conversation not read
            row = fresh.get(cid) or (None if cid in changed else held.get(cid))
            if row is None:
                if unplaced:  # recorded while the changes were read: the next refresh brings it (the
                    continue  # mark moved: a page waits for that refresh)
                break
            if cid not in fresh:
                unplaced -= 1
            rows.append(row)
        cursor = self.cursor_id()
        cursor_row, screen_y = table.cursor_row, table.scroll_y
        at_the_end = self.from_end and screen_y >= table.max_scroll_y - 0.5
        kept = {r.conversation_id for r in rows}
        for cid in held:
            if cid not in kept:  # changed and now past the rows held, or filtered out
                table.remove_row(cid)
        for r in rows:
            cid = r.conversation_id
            if cid in fresh and cid in held:
                for column, cell in zip(self.COLUMNS, self._cells(r), strict=True):
                    table.update_cell(cid, column, cell)
            elif cid not in held:
                table.add_row(*self._cells(r), key=cid)
        # the table now holds the rows kept in their old order, then the new ones; put back in the
        # store's order by a sort (DataTable can't insert a row at a place; filled again from
        # memory, 40,000 rows took 30 s)
        flip = (lambda ids: ids[::-1]) if self.from_end else (lambda ids: ids)  # held last first
        in_table = flip([cid for cid in held if cid in kept])
        in_table += [r.conversation_id for r in rows if r.conversation_id not in held]
        shown = flip([r.conversation_id for r in rows])
        if in_table != shown:
            place = {cid: i for i, cid in enumerate(shown)}
            table.sort("Conversation", key=lambda cell: place[cell.conversation_id])
        self.rows = rows
        # the cursor on the same conversation, its row at the same place on screen; but a list
        # looked at from its top stays at its top, where new conversations come (newest first),
        # as far as the cursor's row stays on screen (and one read from its end, looked at from
        # there, at its end)
        at = shown.index(cursor) if cursor in kept else min(cursor_row, max(0, len(rows) - 1))
        if at != table.cursor_row:
            table.move_cursor(row=at, animate=False, scroll=False)
        y = screen_y + at - cursor_row
        self.query_one(ConversationTable).measure_now()  # (the scroll below goes as far as the new rows)
        lines = table.scrollable_content_region.height - table.header_height
        if at_the_end:
            y = max(0, min(len(rows) - lines, at))
        elif round(screen_y) == 0:
            y = max(0, at - lines + 1)
        self.call_after_refresh(table.scroll_to, y=y, animate=False, immediate=True)
        self.call_after_refresh(self.fit_columns)
        self._show_empty()

    @work(thread=True, exclusive=True, group="list-poll", exit_on_error=False)
    def poll(self) -> None:
        """Agents may be recording now: a cheap check of the store's change mark, and a reload
        only when it moved (the list is read again only while it is on screen)."""
        if not self.is_current or self.mark is None or self._querying:
            return
        with self.app.store() as store:
            mark = store.change_mark()
        if mark != self.mark:
            self.post_message(StoreChanged(mark))

    @on(StoreChanged)
    def _changed(self, message: StoreChanged) -> None:
        if self.mark is not None and message.mark != self.mark and not self._querying:
            self.refresh_in_place()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # ReplayerScreen's own handler shows the error (Textual calls both); the list must not
        # stay busy, never querying again
        if event.worker.group == "conversations" and event.state == WorkerState.ERROR:
            self._querying = False

    @on(ConversationsLoaded)
    def show_rows(self, page: ConversationsLoaded) -> None:
        if page.generation != self.generation:
            return  # the answer to a query that a newer filter, sort or reload replaced
        self._querying = False
        offset, rows = page.offset, page.rows
        if offset and page.mark != self.mark:
            # recorded since the rows above were read: this page's offset no longer follows on
            # from them (its first rows would be theirs again); they are brought up to date
            # first, then the page is read again (merge_changes, the cursor near the end)
            self.refresh_in_place()
            return
        table = self.query_one(ConversationTable)
        if offset and any(r.conversation_id in table.rows for r in rows):
            # rows held that are not the store's first ones (a refresh could not read them all):
            # read again whole rather than show a conversation twice
            self.load(reset=True, at_least=len(self.rows) + page.limit, keep=self.cursor_id(), from_end=self.from_end)
            return
        self.mark = page.mark
        if offset == 0:
            table.clear()
            self.rows = []
        if len(rows) < page.limit:
            self.exhausted = True
        cells = page.cells if page.cells is not None else [self._cells(r) for r in rows]
        self.rows += rows
        added = [(r.conversation_id, row_cells) for r, row_cells in zip(rows, cells, strict=True)]
        if self.from_end:  # read last first: shown above the rows held, in the list's order
            cursor_row, screen_y = table.cursor_row, table.scroll_y
            table.add_many(added[::-1], on_top=True)
            if offset:  # the cursor on its conversation, its row on the same line of the screen
                table.measure_now()
                table.move_cursor(row=cursor_row + len(rows), animate=False, scroll=False)
                self.call_after_refresh(table.scroll_to, y=screen_y + len(rows), animate=False, immediate=True)
            else:  # G: the list's last conversation
                table.move_cursor(row=max(0, table.row_count - 1), animate=False)
            if self.exhausted:  # the list's first row is held too: it is held whole, as if read from the top
                self.rows.reverse()
                self.from_end = False
        else:
            table.add_many(added)
        self._count(page.total)
        self.call_after_refresh(self.fit_columns)  # a vertical scrollbar may have come or gone
        keep, self.keep_cursor = self.keep_cursor, None
        if offset == 0 and keep is not None:
            at = next((i for i, r in enumerate(self.rows) if r.conversation_id == keep), None)
            if at is not None:
                table.move_cursor(row=self.held_index(at), animate=False)
        self._show_empty()

    def _show_empty(self) -> None:
        empty = self.query_one("#empty", Static)
        if not self.rows:
            if self.filters:
                empty.update("No conversation matches the filter. Press esc to clear it.")
            else:
                empty.update(
                    "No conversations recorded yet.\n\n"
                    "Record from your agent:   client = Recorder().wrap(anthropic.Anthropic())\n"
                    "or with no code change:   replayer record -- python agent.py\n"
                    "or try the demo:          replayer demo"
                )
            empty.display = True
        else:
            empty.display = False

    def home_subtitle(self) -> str:
        """The database, and the zone of the times listed (the one a filter's dates are read in);
        the sort too while its column's header (which shows it) is not on screen: sorted by
        Models at 160 columns, the rows looked in no order, with no arrow anywhere."""
        column, descending = self.sort
        sort = "" if self.sorted_column_shown() else f" · sorted by {column} {'▼' if descending else '▲'}"
        return f"{self.app.db_path} · times in {self.app.settings.tz}{sort}"

    def sorted_column_shown(self) -> bool:
        """Whether the sorted column is on screen whole (its header with the arrow)."""
        table = self.query_one("#conversations", DataTable)
        edge = table.scrollable_content_region.width
        if edge <= 0:  # not laid out yet
            return True
        x = 0
        for key, col in table.columns.items():
            width = col.get_render_width(table)
            if key.value == self.sort[0]:
                return table.scroll_x <= x and x + width <= table.scroll_x + edge
            x += width
        return False

    def _cells(self, r: ConversationSummary) -> tuple[Any, ...]:
        hit = r.cache_hit_rate
        return (
            local_time(r.started_at, tz=self.app.settings.tz),
            # cut visibly in its middle (a subagent's id then doesn't read as its main thread's);
            # `y` copies it whole (the row key holds it). A fork is marked here too: at 100
            # columns the first-message column, which says whose fork it is, is off screen
            RowIdText(("↳ " if r.variant_of else "") + r.conversation_id, r.conversation_id, no_wrap=True,
                      overflow="ellipsis"),
            # (Text: a str cell is read as markup); a conversation another user continued: `u1 +1`
            Text(users_label(r.user_id, len(r.other_users), self.WIDTHS["User"]), no_wrap=True, overflow="ellipsis"),
            Text(str(r.turns), justify="right"),
            Text(spend(r.cost_usd, r.unpriced_attempts), justify="right"),
            Text(str(r.errors) if r.errors else "", style="bold red", justify="right"),
            Text(tokens(r.input_tokens), justify="right"),
            Text(tokens(r.output_tokens), justify="right"),
            Text("" if hit is None else f"{hit:.0%}", justify="right"),
            Text(duration(r.duration_s), justify="right"),
            # a fork reads as a variant of the conversation it forks (`replayer list` says it whole)
            Text(f"fork @{(r.tags or {}).get('fork_turn')} of {(r.tags or {}).get('fork_of')}", style="italic",
                 no_wrap=True, overflow="ellipsis")
            if r.variant_of
            else Text((r.first_message or "")[:44].replace("\n", " ")),
            Text(", ".join(r.models)[:28]),
        )

    # -- actions ----------------------------------------------------------------------------
    @on(DataTable.RowHighlighted, "#conversations")
    def near_the_end(self, event: DataTable.RowHighlighted) -> None:
        # where the cursor is now: a page read from the end lands with the cursor on row 0 first
        if self.near_the_rows_not_held(self.query_one(DataTable).cursor_row):
            self.load()

    @on(DataTable.RowSelected, "#conversations")
    def selected(self, event: DataTable.RowSelected) -> None:
        self.app.open_conversation(str(event.row_key.value))

    @on(DataTable.HeaderSelected, "#conversations")
    def header(self, event: DataTable.HeaderSelected) -> None:
        self._sort_by(str(event.column_key.value))

    def action_cursor_down(self) -> None:
        self.query_one(DataTable).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one(DataTable).action_cursor_up()

    def action_top(self) -> None:
        """The first conversation of the list: its first page read again when the rows held are
        its last ones."""
        if self.from_end:
            self.load(reset=True)
        else:
            self.query_one(DataTable).move_cursor(row=0)

    def action_bottom(self) -> None:
        """The last conversation of the list: when it isn't held, the list's last page is read from
        its end, in place of the rows held (read page after page down to it, 100,000 conversations
        took 11 s); those between load as the cursor moves up to them."""
        table = self.query_one(DataTable)
        if self.exhausted or self.from_end:  # the last row held is the list's last
            table.move_cursor(row=max(0, table.row_count - 1))
        else:
            self.load(reset=True, from_end=True)

    def cursor_id(self) -> str | None:
        """The conversation in the row under the cursor, as the table shows it (self.rows is
        emptied as soon as a reload starts; the table keeps its rows until the new ones land)."""
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def action_open(self) -> None:
        cid = self.cursor_id()
        if cid is not None:
            self.app.open_conversation(cid)

    def action_search(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    @on(Input.Submitted, "#filter")
    def apply_filter(self, event: Input.Submitted) -> None:
        self.filter_to(event.value)

    def filter_to(self, text: str) -> None:
        """Show the conversations that match a filter (as typed after /). A value that can't be
        read is said in one line and left in the bar to fix; the list stays as it was."""
        box = self.query_one("#filter", Input)
        box.value = text
        box.display = bool(text)
        try:
            filters = parse_filter(text, tz=self.app.settings.tz)  # read in the zone the list shows
            if user := filters.get("user"):  # a user id as `list` shows it cut names its user, as `--user` takes it
                with self.app.store() as store:
                    filters["user"] = store.whole_id(user, kind="user")
        except (FilterError, AmbiguousId) as e:
            box.add_class("-invalid")
            box.focus()
            self.notify(str(e), title="Filter", severity="error", timeout=8)
            return
        box.remove_class("-invalid")
        self.filters = filters
        self.query_one(DataTable).focus()
        self.load(reset=True)

    def action_mark(self) -> None:
        from .trajectories import toggle_mark

        toggle_mark(self)

    def action_compare(self) -> None:
        from .trajectories import compare_from_list

        compare_from_list(self)

    def action_dashboard(self) -> None:
        self.app.push_screen(DashboardScreen(), self.show_user)

    def show_user(self, user: str | None) -> None:
        """The user chosen on the dashboard (None: it was left with esc; "": the row of calls
        with no user)."""
        if user:
            self.filter_to("user:" + shlex.quote(user))
        elif user == "":
            self.filter_to("nouser")

    def action_clear(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.display = False
        box.remove_class("-invalid")
        if self.filters:
            self.filters = {}
            self.load(reset=True)
        self.query_one(DataTable).focus()

    def action_sort(self) -> None:
        column = self.sort[0]
        self._sort_by(self.COLUMNS[(self.COLUMNS.index(column) + 1) % len(self.COLUMNS)])

    def action_reverse_sort(self) -> None:
        self._sort_by(self.sort[0])

    def _sort_by(self, column: str) -> None:
        current, descending = self.sort
        self.sort = (column, not descending if column == current else True)
        self._label_sort()  # the header shows the sort: no toast per key press
        self.load(reset=True)

    def _label_sort(self) -> None:
        """Mark the sorted column's header with the direction."""
        column, descending = self.sort
        table = self.query_one(DataTable)
        for key, col in table.columns.items():
            name = str(key.value)
            col.label = Text(name + (" ▼" if descending else " ▲") if name == column else name)
        table.refresh()
        if self.fitted_edge >= 0:  # fitted once laid out (on_mount's first fit comes after a refresh)
            self.fit_columns()

    def action_reload(self) -> None:
        self.reload_in_place()

    def action_copy(self) -> None:
        cid = self.cursor_id()
        if cid is not None:
            self.app.copy_to_clipboard(cid)
            self.notify(f"copied {cid}", timeout=3)
