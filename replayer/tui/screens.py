"""The screens: conversations, one conversation, help. Data comes from thread workers."""

from __future__ import annotations

import json
import re
from typing import Any

from rich.markup import escape
from rich.syntax import Syntax
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import (
    Collapsible,
    DataTable,
    Footer,
    Header,
    Input,
    Markdown,
    Static,
    TabbedContent,
    TabPane,
    TextArea,
)
from textual.widgets.data_table import ColumnKey
from textual.worker import Worker, WorkerState, get_current_worker

from ..filters import FilterError, parse_filter
from ..fmt import approx_tokens, local_time, money, ms, plural
from ..models import ConversationSummary, TurnDetail, TurnSummary
from ..store.queries import prompt_tokens
from ..text import _TOKEN as _WORD  # a word as the index keeps it: what `/` in a conversation highlights
from .blocks import CUT, added_tokens, content_text, cut, value_text
from .widgets import SEGMENT_COLOURS, ContextChart
from .workers import ShowsWorkerErrors

PAGE = 100


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


def tokens(n: int | None) -> str:
    return "" if n is None else f"{n:,}"


def signed(n: int | None) -> str:
    return "" if n is None else f"{n:+,}"


def as_json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)


class ConversationsScreen(ShowsWorkerErrors, Screen[None]):
    """Every conversation, newest first, a page at a time."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", id="down", tooltip="Next conversation", show=False),
        Binding("k", "cursor_up", "Up", id="up", tooltip="Previous conversation", show=False),
        Binding("g", "top", "Top", id="top", tooltip="First conversation", show=False),
        Binding("G", "bottom", "Bottom", id="bottom", tooltip="Last loaded conversation", show=False),
        Binding("enter,l", "open", "Open", id="open", tooltip="Open the highlighted conversation"),
        Binding(
            "slash",
            "search",
            "Search/filter",
            id="search",
            tooltip="Search message text; also user:U model:M since:DATE until:DATE errors cost>0.5",
        ),
        Binding("s", "sort", "Sort", id="sort", tooltip="Sort by the next column (also: click a column header)"),
        Binding("S", "reverse_sort", "Reverse", id="reverse-sort", tooltip="Reverse the sort order", show=False),
        Binding("ctrl+r", "reload", "Refresh", id="refresh", tooltip="Reload the list from the database"),
        Binding("y", "copy", "Copy id", id="copy", tooltip="Copy the highlighted conversation id"),
        Binding("d", "dashboard", "Dashboard", id="dashboard", tooltip="Spend per user and day, health, alerts"),
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
        self.filters: dict[str, Any] = {}
        self.sort = ("Started", True)
        self.exhausted = False
        self.loading = False
        self.generation = 0
        """Counts the list's queries (filter, sort, reload): a page from an older one is dropped."""
        self.mark: tuple[int, int] | None = None
        """The store's change mark when the rows on screen were read (Store.change_mark)."""
        self.keep_cursor: str | None = None
        """The conversation to put the cursor back on when a reload lands."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="search text, or user:U model:M since:YYYY-MM-DD errors cost>0.5", id="filter")
        table: DataTable[Any] = DataTable(id="conversations", cursor_type="row", zebra_stripes=True)
        yield table
        yield Static("", id="empty")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        table = self.query_one(DataTable)
        for col in self.COLUMNS:  # fixed widths: a page of rows is not measured cell by cell
            table.add_column(col, key=col, width=self.WIDTHS.get(col))
        self._label_sort()
        self.call_after_refresh(self.fit_columns)
        self.sub_title = str(self.app.db_path)  # type: ignore[attr-defined]
        self.load(reset=True)
        table.focus()
        self.set_interval(self.app.refresh_seconds, self.poll)  # type: ignore[attr-defined]

    def on_resize(self, event: Any) -> None:
        self.call_after_refresh(self.fit_columns)

    def conversation_width(self, edges: tuple[int, ...], padding: int) -> int:
        """The Conversation column's width for a table whose right edge is at one of `edges`
        (with and without a vertical scrollbar): as wide as an id when that keeps the edge out of
        every number column, else the widest narrower one that does (the number then shows whole),
        else wider (the number goes off screen whole)."""
        widest = self.WIDTHS["Conversation"]

        def cuts_a_number(width: int) -> bool:
            x = 0
            for col in self.COLUMNS:
                w = (width if col == "Conversation" else self.WIDTHS[col]) + padding
                if col in self.NUMBERS and any(x < edge < x + w for edge in edges):
                    return True
                x += w
            return False

        for width in (*range(widest, self.NARROWEST_ID - 1, -1), *range(widest + 1, widest + 24)):
            if not cuts_a_number(width):
                return width
        return widest

    def fit_columns(self) -> None:
        """Called on resize and when rows arrive (a vertical scrollbar may have come or gone)."""
        table = self.query_one("#conversations", DataTable)
        edge = table.scrollable_content_region.width
        set_widths(table, {"Conversation": self.conversation_width((edge,), 2 * table.cell_padding)})

    # -- loading ----------------------------------------------------------------------------
    def load(self, reset: bool = False, at_least: int = PAGE, keep: str | None = None) -> None:
        if reset:  # a new query replaces any page still loading (the worker group is exclusive)
            self.rows, self.exhausted, self.loading = [], False, False
            self.generation += 1
            self.keep_cursor = keep
        if self.exhausted or self.loading:
            return
        self.loading = True
        limit = max(PAGE, at_least)
        self.fetch(len(self.rows), dict(self.filters), self.sort, self.generation, limit)

    @work(thread=True, exclusive=True, group="conversations", exit_on_error=False)
    def fetch(
        self, offset: int, filters: dict[str, Any], sort: tuple[str, bool], generation: int = 0, limit: int = PAGE
    ) -> None:
        column, descending = sort
        with self.app.store() as store:  # type: ignore[attr-defined]
            mark = store.change_mark()  # read first: anything recorded during the query moves it again
            rows = store.conversations(
                **filters, sort=self.SQL_SORTS.get(column, "started"), descending=descending, limit=limit, offset=offset
            )
        # a cancelled worker's thread still runs to here: its rows must not land under a newer header
        self.app.call_from_thread(self.show_rows, offset, rows, generation, limit, mark)

    def reload_in_place(self) -> None:
        """Read the list again as it is (filter, sort, as many rows as are loaded), the cursor
        staying on its conversation."""
        self.load(reset=True, at_least=len(self.query_one(DataTable).rows), keep=self.cursor_id())

    @work(thread=True, exclusive=True, group="list-poll", exit_on_error=False)
    def poll(self) -> None:
        """Agents may be recording now: a cheap check of the store's change mark, and a reload
        only when it moved (the list is read again only while it is on screen)."""
        if not self.is_current or self.mark is None or self.loading:
            return
        with self.app.store() as store:  # type: ignore[attr-defined]
            mark = store.change_mark()
        if mark != self.mark:
            self.app.call_from_thread(self._changed, mark)

    def _changed(self, mark: tuple[int, int]) -> None:
        if self.mark is not None and mark != self.mark and not self.loading:
            self.reload_in_place()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # the app shows the error (it bubbles on to it); the list must not stay "loading"
        if event.worker.group == "conversations" and event.state == WorkerState.ERROR:
            self.loading = False

    def show_rows(
        self,
        offset: int,
        rows: list[ConversationSummary],
        generation: int | None = None,
        limit: int = PAGE,
        mark: tuple[int, int] | None = None,
    ) -> None:
        if generation is not None and generation != self.generation:
            return  # the answer to a query that a newer filter, sort or reload replaced
        self.loading = False
        if mark is not None:
            self.mark = mark
        table = self.query_one(DataTable)
        if offset == 0:
            table.clear()
            self.rows = []
        if len(rows) < limit:
            self.exhausted = True
        for r in rows:
            self.rows.append(r)
            table.add_row(*self._cells(r), key=r.conversation_id)
        self.call_after_refresh(self.fit_columns)  # a vertical scrollbar may have come or gone
        keep, self.keep_cursor = self.keep_cursor, None
        if offset == 0 and keep is not None:
            at = next((i for i, r in enumerate(self.rows) if r.conversation_id == keep), None)
            if at is not None:
                table.move_cursor(row=at, animate=False)
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

    @staticmethod
    def _cells(r: ConversationSummary) -> tuple[Any, ...]:
        hit = r.cache_hit_rate
        return (
            local_time(r.started_at),
            Text(r.conversation_id, no_wrap=True, overflow="ellipsis"),  # cut visibly; `y` copies it whole
            r.user_id or "",
            Text(str(r.turns), justify="right"),
            Text(money(r.cost_usd), justify="right"),
            Text(str(r.errors) if r.errors else "", style="bold red", justify="right"),
            Text(tokens(r.input_tokens), justify="right"),
            Text(tokens(r.output_tokens), justify="right"),
            Text("" if hit is None else f"{hit:.0%}", justify="right"),
            Text(_duration(r.duration_s), justify="right"),
            (r.first_message or "")[:44].replace("\n", " "),
            ", ".join(r.models)[:28],
        )

    # -- actions ----------------------------------------------------------------------------
    @on(DataTable.RowHighlighted, "#conversations")
    def near_the_end(self, event: DataTable.RowHighlighted) -> None:
        if event.cursor_row >= len(self.rows) - 10:
            self.load()

    @on(DataTable.RowSelected, "#conversations")
    def selected(self, event: DataTable.RowSelected) -> None:
        self.app.open_conversation(str(event.row_key.value))  # type: ignore[attr-defined]

    @on(DataTable.HeaderSelected, "#conversations")
    def header(self, event: DataTable.HeaderSelected) -> None:
        self._sort_by(str(event.column_key.value))

    def action_cursor_down(self) -> None:
        self.query_one(DataTable).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one(DataTable).action_cursor_up()

    def action_top(self) -> None:
        self.query_one(DataTable).move_cursor(row=0)

    def action_bottom(self) -> None:
        table = self.query_one(DataTable)
        table.move_cursor(row=max(0, table.row_count - 1))

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
            self.app.open_conversation(cid)  # type: ignore[attr-defined]

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
            filters = parse_filter(text)
        except FilterError as e:
            box.add_class("-invalid")
            box.focus()
            self.notify(str(e), title="Filter", severity="error", timeout=8)
            return
        box.remove_class("-invalid")
        self.filters = filters
        self.query_one(DataTable).focus()
        self.load(reset=True)

    def action_dashboard(self) -> None:
        from .dashboard import DashboardScreen

        self.app.push_screen(DashboardScreen())

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

    def action_reload(self) -> None:
        self.reload_in_place()

    def action_copy(self) -> None:
        cid = self.cursor_id()
        if cid is not None:
            self.app.copy_to_clipboard(cid)
            self.notify(f"copied {cid}", timeout=3)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


class ConversationScreen(ShowsWorkerErrors, Screen[None]):
    """One conversation: its turns, the context growing, and the selected turn in detail."""

    BINDINGS = [
        Binding("j", "next_turn", "Next turn", id="next", tooltip="Next turn (also down)", show=False),
        Binding("k", "prev_turn", "Prev turn", id="prev", tooltip="Previous turn (also up)", show=False),
        Binding("g", "first_turn", "First", id="first", tooltip="First turn", show=False),
        Binding("G", "last_turn", "Last", id="last", tooltip="Last turn", show=False),
        Binding("escape", "back", "Back", id="back", tooltip="Back to the conversations (a find is cleared first)"),
        Binding("1", "tab('context')", "Context", id="tab-context", tooltip="What entered the context", show=False),
        Binding("2", "tab('response')", "Response", id="tab-response", tooltip="The response, for reading", show=False),
        Binding("3", "tab('tools')", "Tools", id="tab-tools", tooltip="Tool calls beside their results", show=False),
        Binding("4", "tab('usage')", "Usage", id="tab-usage", tooltip="Tokens, rates and cost", show=False),
        Binding("5", "tab('raw')", "Raw", id="tab-raw", tooltip="The exact request and response JSON", show=False),
        Binding(
            "a",
            "show_all",
            "Whole context / show all",
            id="show-all",
            tooltip="Show the whole context, and long payloads uncut",
        ),
        Binding("y", "copy", "Copy", id="copy", tooltip="Copy what the open tab shows (JSON or text)"),
        Binding("r", "rerun", "Rerun", id="rerun", tooltip="Rerun this turn with edits and compare the outputs"),
        Binding(
            "slash", "find", "Find", id="find", tooltip="Find text in every turn (n/N: next/previous match)"
        ),
        Binding("n", "find_next", "Next match", id="find-next", tooltip="The next turn holding the text", show=False),
        Binding("N", "find_prev", "Previous match", id="find-prev", tooltip="The previous one", show=False),
        Binding("e", "jump('error', 1)", "Next error", id="next-error", tooltip="Next turn that failed or was retried"),
        Binding(
            "E",
            "jump('error', -1)",
            "Prev error",
            id="prev-error",
            tooltip="Previous turn that failed or was retried",
            show=False,
        ),
        Binding(
            "b", "jump('break', 1)", "Next cache break", id="next-break", tooltip="Next turn where the cache breaks"
        ),
        Binding(
            "B", "jump('break', -1)", "Prev cache break", id="prev-break", tooltip="Previous cache break", show=False
        ),
    ]
    LEGEND = (
        ("✖", "failed", "error"),
        ("⊘", "abandoned", "abandoned"),
        ("↻", "retried", "retried"),
        ("⚠", "cache break", "break"),
    )
    """The turn list's status column: symbol, meaning, outcome (whose colour it takes)."""
    SYMBOLS = {kind: symbol for symbol, _, kind in LEGEND}
    OUTCOME_COLOURS = {
        "error": "text-error",
        "abandoned": "text-secondary",
        "retried": "text-warning",
        "break": "text-accent",
    }
    """Theme variables made to be read on the theme's background, dark or light."""
    COLUMNS = (
        ("#", "idx", 4),
        ("", "status", 2),
        ("time", "time", 8),
        ("stop", "stop", 10),
        ("tools", "tools", 0),
        ("Δ prompt", "delta", 10),
        ("cost", "cost", 9),
        ("latency", "ms", 8),
        ("hit", "cache", 4),
        ("", "err", 0),
    )
    """The turn list; width 0 marks the columns that share what room is left (at least FLEX_MIN).
    The number columns hold their widest usual values whole (+1,234,567 tokens, $123.4567,
    9999.9 s): a number cut by its column reads as another number."""
    FLEX_MIN = {"tools": 10, "err": 6}

    def __init__(self, conversation_id: str, turn: int | None = None) -> None:
        super().__init__()
        self.conversation_id = conversation_id
        self.start_turn = turn
        self.timeline: list[TurnSummary] = []
        self.row_turn: list[int] = []
        """The turn each row of the turn list belongs to (a turn's retries sit under it)."""
        self.turn_row: list[int] = []
        """The row of each turn's own line."""
        self.detail: TurnDetail | None = None
        self.show_all = False
        self.find_text = ""
        self.find_pattern: re.Pattern[str] | None = None
        """What `/` looks for, as the index matches it: each word as a prefix, any case."""
        self.find_targets: list[tuple[int, str]] = []
        """(turn, tab) where each match shows: the Context tab of the turn its text entered."""
        self.find_at = -1

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="conv-title")
        yield Input(placeholder="find in every turn (enter) · n/N next/previous · esc clears", id="conv-find")
        with Horizontal(id="conv-body"):
            turns: DataTable[Any] = DataTable(id="turns", cursor_type="row", zebra_stripes=True)
            yield turns
            with Vertical(id="detail-side"):
                yield ContextChart(id="chart")
                with TabbedContent(id="tabs", initial="context"):
                    with TabPane("1 Context", id="context"):
                        yield VerticalScroll(Static("", id="context-body"), id="context-scroll")
                    with TabPane("2 Response", id="response"):
                        yield VerticalScroll(id="response-body")
                    with TabPane("3 Tools", id="tools"):
                        yield VerticalScroll(Static("", id="tools-body"))
                    with TabPane("4 Usage & cost", id="usage"):
                        yield VerticalScroll(Static("", id="usage-body"))
                    with TabPane("5 Raw", id="raw"):
                        yield VerticalScroll(id="raw-box")  # its TextArea is made when first opened
        yield Footer()

    def on_resize(self, event: Any) -> None:
        self.set_class(event.size.width < 140, "narrow")
        self.call_after_refresh(self.fit_columns)  # once the turn list has its new size

    def on_mount(self) -> None:
        self.set_class(self.app.size.width < 140, "narrow")
        self.query_one("#conv-find", Input).display = False
        table = self.query_one("#turns", DataTable)
        # fixed widths: the table then never measures every cell of a long conversation
        for col, key, width in self.COLUMNS:
            table.add_column(col, key=key, width=width or self.FLEX_MIN[key])
        self.sub_title = self.conversation_id
        self.load_timeline()
        table.focus()
        self.set_interval(self.app.refresh_seconds, self.poll)  # type: ignore[attr-defined]
        self.app.theme_changed_signal.subscribe(self, self._recolour)

    def _recolour(self, _theme: Any) -> None:
        """Outcome colours come from the theme: draw the rows again in the new one."""
        if self.timeline:
            self.show_timeline(self.timeline)

    def fit_columns(self) -> None:
        """Give the room the fixed columns leave to the tools and notes columns, so the turn
        list uses the width it has (and a wide terminal shows whole error messages)."""
        table = self.query_one("#turns", DataTable)
        room = (  # the room a vertical scrollbar takes is kept for it: rows may come later
            table.size.width
            - table.styles.scrollbar_size_vertical
            - sum(w + 2 * table.cell_padding for _, _, w in self.COLUMNS)
        )
        tools = max(self.FLEX_MIN["tools"], min(24, room // 3))
        set_widths(table, {"tools": tools, "err": max(self.FLEX_MIN["err"], room - tools)})

    # -- loading ----------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="timeline", exit_on_error=False)
    def load_timeline(self) -> None:
        with self.app.store() as store:  # type: ignore[attr-defined]
            timeline = store.turns(self.conversation_id)
            # the first turn to show comes with the list, so the screen is drawn once, whole
            first = None
            if timeline:
                start = max(0, min(self.start_turn or 0, len(timeline) - 1))
                first = store.turn_detail(timeline[start].turn_id, timeline)
        self.app.call_from_thread(self.show_timeline, timeline, first)

    @work(thread=True, exclusive=True, group="poll", exit_on_error=False)
    def poll(self) -> None:
        """A live agent may still be writing: pick up new turns by themselves."""
        with self.app.store() as store:  # type: ignore[attr-defined]
            timeline = store.turns(self.conversation_id)
        if len(timeline) != len(self.timeline) or (
            timeline and self.timeline and len(timeline[-1].attempts) != len(self.timeline[-1].attempts)
        ):
            self.app.call_from_thread(self.show_timeline, timeline)

    def show_timeline(self, timeline: list[TurnSummary], first: TurnDetail | None = None) -> None:
        with self.app.batch_update():
            self._show_timeline(timeline, first)

    def _show_timeline(self, timeline: list[TurnSummary], first: TurnDetail | None) -> None:
        table = self.query_one("#turns", DataTable)
        keep = self.row_turn[table.cursor_row] if self.timeline and table.row_count else None
        if keep is None:
            keep = self.start_turn if self.start_turn is not None else 0
        keep = max(0, min(keep, len(timeline) - 1))
        refresh = bool(self.timeline)
        self.timeline = timeline
        if first is not None and first.turn.turn_id == timeline[keep].turn_id:
            self._requested = first.turn.turn_id
        elif timeline:  # start loading the detail now: the worker reads while this thread draws the list
            self.request_detail(timeline[keep].turn_id, again=refresh)
        self.row_turn, self.turn_row = [], []
        table.clear()
        prev_prompt = None
        breaks = self._breaks()
        rows = []
        colour = self._outcome_colours()
        counts: dict[str, int] = {}
        for t in timeline:
            u = t.usage or {}
            prompt = prompt_tokens(u) if t.usage else None
            delta = prompt - prev_prompt if prompt is not None and prev_prompt is not None else prompt
            prev_prompt = prompt if prompt is not None else prev_prompt
            hit = (int(u.get("cache_read_input_tokens") or 0) / prompt) if prompt else None
            last = t.attempts[-1] if t.attempts else None
            marks = turn_marks(t, t.index in breaks)
            for m in marks:
                counts[m] = counts.get(m, 0) + 1
            outcome = next((m for m in marks if m != "break"), None)
            style = colour.get(outcome or "", "")
            status = Text()
            for m in marks[:2]:
                status.append(self.SYMBOLS[m], style=f"bold {colour[m]}")
            stop = t.stop_reason or ""
            notes = []
            if last is not None and last.error:
                stop = str(last.error.get("type") or "error")
                said = f"{last.error.get('status') or ''} {last.error.get('message') or ''}".strip()
                notes.append(Text(said, style=style))
            if len(t.attempts) > 1:
                notes.append(Text(f"↻{len(t.attempts) - 1}", style=colour["retried"]))
            if "abandoned" in marks:
                notes.append(Text("abandoned", style=colour["abandoned"]))
            if "break" in marks:
                notes.append(Text("cache⚠", style=f"bold {colour['break']}"))
            self.turn_row.append(len(rows))
            self.row_turn.append(t.index)
            rows.append(
                (
                    Text(str(t.index), style=style, justify="right"),
                    status,
                    Text(local_time(t.started_at, with_date=False), style=style),
                    Text(stop, style=style),
                    Text(", ".join(t.tool_calls), style=style, no_wrap=True, overflow="ellipsis"),
                    Text(signed(delta), style=style, justify="right"),
                    Text(money(t.cost_usd), style=style, justify="right"),
                    Text(ms(last.latency_ms) if last else "", style=style, justify="right"),
                    Text("" if hit is None else f"{hit:.0%}", style=style, justify="right"),
                    Text(" ", no_wrap=True, overflow="ellipsis").join(notes),
                )
            )
            for a in t.attempts[:-1]:  # earlier attempts of this turn (retries), under it
                self.row_turn.append(t.index)
                rows.append(
                    (
                        Text(f"↳{a.attempt}", style="dim", justify="right"),
                        "",
                        Text(local_time(a.started_at, with_date=False), style="dim"),
                        Text(str(a.status or "—"), style=colour["error"]),
                        Text(str((a.error or {}).get("type") or ""), style=colour["error"]),
                        "",
                        "",
                        Text(ms(a.latency_ms), style="dim", justify="right"),
                        "",
                        Text("retry" if a.error else "", style="dim"),
                    )
                )
        table.add_rows(rows)
        total = sum(t.cost_usd or 0 for t in timeline)
        title = Text.assemble((self.conversation_id, "bold"), f"  {plural(len(timeline), 'turn')}  {money(total)}")
        for symbol, word, kind in self.LEGEND:  # the status column's legend, with the counts
            if counts.get(kind):
                title.append(f"   {symbol} {counts[kind]} {word}", style=colour[kind])
        self.query_one("#conv-title", Static).update(title)
        self.query_one("#chart", ContextChart).set_turns(timeline, breaks)
        if timeline:
            table.move_cursor(row=self.turn_row[keep])
        if first is not None and first.turn.turn_id == timeline[keep].turn_id:
            self.show_detail(first)

    def _outcome_colours(self) -> dict[str, str]:
        variables = self.app.theme_variables or self.app.get_css_variables()
        return {kind: variables.get(name, "") for kind, name in self.OUTCOME_COLOURS.items()}

    def current_turn(self) -> int:
        table = self.query_one("#turns", DataTable)
        return self.row_turn[table.cursor_row] if self.row_turn and 0 <= table.cursor_row < len(self.row_turn) else 0

    @on(DataTable.RowHighlighted, "#turns")
    def highlighted(self, event: DataTable.RowHighlighted) -> None:
        if self.timeline and 0 <= event.cursor_row < len(self.row_turn):
            index = self.row_turn[event.cursor_row]
            self.query_one("#chart", ContextChart).select(index)
            self.request_detail(self.timeline[index].turn_id)

    def request_detail(self, turn_id: str, again: bool = False) -> None:
        """Load a turn's detail unless it is the one already loading or shown (moving the cursor
        onto the row being loaded would otherwise cancel that load and start it over)."""
        if turn_id == getattr(self, "_requested", None) and not again:
            return
        self._requested = turn_id
        self.load_detail(turn_id)

    @work(thread=True, exclusive=True, group="detail", exit_on_error=False)
    def load_detail(self, turn_id: str) -> None:
        with self.app.store() as store:  # type: ignore[attr-defined]
            detail = store.turn_detail(turn_id, self.timeline)
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self.show_detail, detail)

    # -- the detail tabs --------------------------------------------------------------------
    def show_detail(self, d: TurnDetail) -> None:
        """Draw only the open tab; the others are drawn when opened (moving between turns with a
        megabyte of context must stay instant)."""
        if self.timeline and self.timeline[self.current_turn()].turn_id != d.turn.turn_id:
            return  # a late answer for a turn the cursor has already left
        self.detail = d
        self._drawn: set[str] = set()
        self._draw(self.query_one("#tabs", TabbedContent).active)

    @on(TabbedContent.TabActivated, "#tabs")
    def tab_opened(self, event: TabbedContent.TabActivated) -> None:
        self._draw(event.pane.id or "")

    def _draw(self, tab: str) -> None:
        d = self.detail
        if d is None or tab in getattr(self, "_drawn", set()):
            return
        self._drawn.add(tab)
        if tab == "context":
            text = self._context_text(d)
            self.query_one("#context-body", Static).update(text)
            if self.find_pattern is not None:
                self.call_after_refresh(self._scroll_to_match, text)
        elif tab == "response":
            self._fill_response(d)
        elif tab == "tools":
            self.query_one("#tools-body", Static).update(self._tools_text(d))
        elif tab == "usage":
            self.query_one("#usage-body", Static).update(self._usage_text(d))
        elif tab == "raw":
            raw = (
                "// request (exactly as sent)\n"
                + as_json(d.request)
                + "\n\n// response (as received)\n"
                + as_json(d.response)
            )
            areas = self.query("#raw-body")
            if areas:
                areas.first(TextArea).load_text(raw)
            else:
                self.query_one("#raw-box").mount(TextArea(raw, id="raw-body", read_only=True, soft_wrap=False))

    def _context_text(self, d: TurnDetail) -> Text:
        out = Text()
        marks = {
            "added": ("+ ", "green"),
            "removed": ("- ", "bold red"),
            "system": ("~ ", "bold yellow"),
            "tools": ("~ ", "bold yellow"),
        }
        if d.turn.index == 0:
            out.append("First turn: the whole context entered here.\n\n", style="dim")
        if self.show_all:
            out.append(f"Whole context: {plural(len(d.context), 'message')}\n\n", style="bold")
            if d.system is not None:
                out.append("system\n", style="bold yellow")
                out.append_text(content_text(d.system, True))
                out.append("\n\n")
            for i, m in enumerate(d.context):
                out.append(f"[{i}] {m.get('role')}\n", style="bold")
                out.append_text(content_text(m.get("content") if isinstance(m, dict) else m, True))
                out.append("\n\n")
            return self._mark_matches(out)
        sizes = added_tokens(d, self._previous_prompt(d))
        for n, ch in enumerate(d.changes):
            sign, style = marks.get(ch.kind, ("? ", ""))
            est = sizes.get(n)
            size = f"  {approx_tokens(sum(est))}" if est else ""
            if ch.kind == "system":
                out.append(sign + "system prompt changed", style=style)
                out.append(size + "\n", style="dim")
                out.append_text(content_text(ch.message))
                out.append("\n\n")
            elif ch.kind == "tools":
                names = [t.get("name") for t in ch.message] if isinstance(ch.message, list) else []
                out.append(sign + f"tool list changed: {', '.join(map(str, names))}", style=style)
                out.append(size + "\n\n", style="dim")
            else:
                label = "removed (compaction, truncation or an edit)" if ch.kind == "removed" else "added"
                out.append(f"{sign}[{ch.position}] {ch.role} — {label}", style=style)
                out.append(size + "\n", style="dim")
                content = (ch.message or {}).get("content") if isinstance(ch.message, dict) else ch.message
                several = est is not None and len(est) > 1
                body = content_text(
                    content,
                    note=(lambda i, est=est: approx_tokens(est[i])) if several else None,
                    expand=self._holds_match if self.find_pattern is not None else None,
                )
                if ch.kind == "removed":
                    body.stylize("strike dim")
                out.append_text(body)
                out.append("\n\n")
        out.append(f"\n{plural(len(d.context), 'message')} in context · press a for the whole context", style="dim")
        if sizes:
            out.append(
                "\n~ tok: estimated from the usage: the prompt's growth since the previous turn (the whole "
                "prompt on a first turn or after a removal), shared by size",
                style="dim",
            )
        return self._mark_matches(out)

    # -- find (/) ----------------------------------------------------------------------------
    def _holds_match(self, block: Any) -> bool:
        """A block holding the text is shown whole, so the match is on screen."""
        assert self.find_pattern is not None
        plain = block if isinstance(block, str) else json.dumps(block, ensure_ascii=False)
        return bool(self.find_pattern.search(plain))

    def _mark_matches(self, text: Text) -> Text:
        if self.find_pattern is not None:
            text.highlight_regex(self.find_pattern, style="bold black on yellow")
        return text

    def _scroll_to_match(self, text: Text) -> None:
        """Bring the first match in the Context tab into view."""
        found = self.find_pattern.search(text.plain) if self.find_pattern is not None else None
        if found is None:
            return
        width = self.query_one("#context-body", Static).content_size.width or 80
        row = len(Text(text.plain[: found.start()]).wrap(self.app.console, width)) - 1
        self.query_one("#context-scroll", VerticalScroll).scroll_to(y=max(0, row - 2), animate=False)

    def action_find(self) -> None:
        box = self.query_one("#conv-find", Input)
        box.display = True
        box.focus()

    @on(Input.Submitted, "#conv-find")
    def find_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            self.clear_find()
            return
        words = _WORD.findall(text)
        self.find_text = text
        # the text as typed where it occurs, else each word as the index matched it: a word's start
        alternatives = [re.escape(text), *(r"\b" + re.escape(w) for w in words)]
        self.find_pattern = re.compile("|".join(alternatives), re.IGNORECASE) if words else None
        self.find_targets, self.find_at = [], -1
        self.query_one("#turns", DataTable).focus()
        self.find(text)

    @work(thread=True, exclusive=True, group="find", exit_on_error=False)
    def find(self, text: str) -> None:
        """In the store's full-text index, not in the turns loaded here."""
        with self.app.store() as store:  # type: ignore[attr-defined]
            hits = store.find_in_conversation(self.conversation_id, text)
        self.app.call_from_thread(self.found, text, hits)

    def found(self, text: str, hits: list[tuple[int, str]]) -> None:
        if text != self.find_text:
            return  # a newer search was started
        last = len(self.timeline) - 1
        targets = set()
        for turn, where in hits:
            # a reply's text enters the context of the turn after it; the last reply only shows as one
            targets.add((turn + 1, "context") if where == "response" and turn < last else (turn, where))
        self.find_targets = sorted(targets)
        if not self.find_targets:
            self.notify(f"no turn holds {text!r}", timeout=4)
            self._redraw()
            return
        here = self.current_turn()
        self.find_at = next((i for i, (turn, _) in enumerate(self.find_targets) if turn >= here), 0) - 1
        self.notify(f"{plural(len(self.find_targets), 'turn')} hold {text!r} · n/N next/previous", timeout=4)
        self.action_find_next()

    def action_find_next(self) -> None:
        self._find_step(+1)

    def action_find_prev(self) -> None:
        self._find_step(-1)

    def _find_step(self, step: int) -> None:
        if not self.find_targets:
            if self.find_text:
                self.notify(f"no turn holds {self.find_text!r}", timeout=3)
            return
        self.find_at = (self.find_at + step) % len(self.find_targets)
        turn, tab = self.find_targets[self.find_at]
        self.action_tab(tab)
        if turn == self.current_turn():
            self._redraw()
        else:
            self.goto_turn(turn)
        where = f"match {self.find_at + 1} of {len(self.find_targets)}"
        self.sub_title = f"{self.conversation_id} · {self.find_text!r}: {where}"

    def clear_find(self) -> None:
        box = self.query_one("#conv-find", Input)
        box.value, box.display = "", False
        self.find_text, self.find_pattern, self.find_targets, self.find_at = "", None, [], -1
        self.sub_title = self.conversation_id
        self.query_one("#turns", DataTable).focus()
        self._redraw()

    def _redraw(self) -> None:
        if self.detail is not None:
            self.show_detail(self.detail)

    def _previous_prompt(self, d: TurnDetail) -> int | None:
        """The previous turn's whole prompt (input + cache writes + cache reads), when known."""
        i = d.turn.index - 1
        if 0 <= i < len(self.timeline) and self.timeline[i].usage:
            return prompt_tokens(self.timeline[i].usage or {})
        return None

    def _fill_response(self, d: TurnDetail) -> None:
        box = self.query_one("#response-body", VerticalScroll)
        box.remove_children()
        widgets: list[Any] = []
        if d.response is None:
            err = d.turn.error or {}
            what = f"{err.get('type') or 'nothing came back'} {err.get('message') or ''}"
            widgets.append(Static(Text(f"No response: {what}", style="bold red")))
        else:
            content = d.response.get("content") if isinstance(d.response, dict) else None
            if not isinstance(content, list):
                widgets.append(Static(Syntax(as_json(d.response), "json", word_wrap=True)))
            for block in content or []:
                kind = block.get("type") if isinstance(block, dict) else None
                if kind == "text":
                    widgets.append(Markdown(cut(block.get("text") or "", CUT * 5, self.show_all)))
                elif kind == "thinking":
                    widgets.append(
                        Collapsible(
                            Static(cut(block.get("thinking") or "", CUT, self.show_all)),
                            title="thinking",
                            collapsed=True,
                        )
                    )
                elif kind == "redacted_thinking":
                    widgets.append(Static(Text("[redacted thinking]", style="dim italic")))
                elif kind in ("tool_use", "server_tool_use", "mcp_tool_use"):
                    widgets.append(Static(Text(f"{kind}: {block.get('name')}  {block.get('id')}", style="bold cyan")))
                    widgets.append(Static(value_text(block.get("input"), self.show_all)))
                else:
                    widgets.append(Static(Text(f"{kind}", style="bold magenta")))
                    widgets.append(Static(Syntax(cut(as_json(block), CUT, self.show_all), "json", word_wrap=True)))
            stop = d.response.get("stop_reason") if isinstance(d.response, dict) else None
            widgets.append(Static(Text(f"stop_reason: {stop or '—'}", style="dim")))
        box.mount_all(widgets)

    def _tools_text(self, d: TurnDetail) -> Text:
        out = Text()
        if not d.tool_calls:
            out.append("No tool calls in this turn.", style="dim")
        for c in d.tool_calls:
            head = f"{'server tool' if c.server else 'tool'} {c.name}  {c.id}"
            out.append(head + "\n", style="bold cyan")
            out.append("input\n", style="bold")
            out.append_text(value_text(c.input, self.show_all))
            out.append("\n")
            if c.pending:
                out.append("result pending: no result came back in the next request\n\n", style="bold yellow")
            else:
                out.append(*(("ERROR result\n", "bold red") if c.is_error else ("result\n", "bold green")))
                result = value_text(c.result, self.show_all) if c.result is not None else Text("(empty)", style="dim")
                if c.is_error:
                    result.stylize("red")
                out.append_text(result)
                out.append("\n\n")
        return out

    def _usage_text(self, d: TurnDetail) -> Text:
        out = Text()
        out.append(f"model {d.turn.model or '—'}\n\n", style="bold")
        lines = {line.kind: line for line in d.usage} if d.turn.usage else {}
        if lines:
            out.append(f"  {'kind':16}{'tokens':>12}{'Δ prev':>12}{'$/MTok':>10}{'cost':>12}\n", style="bold")
        else:  # zeros with deltas against the turn before would read as a context that shrank
            out.append("no usage: no answer came back for this turn (its attempts are below)\n", style="yellow")

        def row(swatch: Text, label: str, tokens: int, delta: int | None, rate: str, cost: float | None) -> None:
            out.append_text(swatch)
            out.append(f"{label:16}{tokens:>12,}{signed(delta):>12}{rate:>10}{money(cost):>12}\n")

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
                    out.append(f"  {'cache hit':16}{line.tokens / prompt:>12.0%}\n", style="dim")
        out.append(f"\nturn cost {money(d.cost_usd)}   conversation so far {money(d.running_cost_usd)}\n")
        if d.cost_usd is None and d.turn.usage:
            out.append(f"no price for {d.turn.model}: add it to a price file (--pricing)\n", style="yellow")
        if d.cache_break:
            out.append(
                "\n⚠ cache writes keep rising while reads stay flat from this turn: a moving cache breakpoint?\n",
                style="bold yellow",
            )
        out.append("\nattempts\n", style="bold")
        for a in d.turn.attempts:
            err = f"  {a.error.get('type')}: {a.error.get('message')}" if a.error else ""
            ttft = f"  ttft {a.ttft_ms:,.0f} ms" if a.ttft_ms else ""
            out.append(
                f"  #{a.attempt}  {a.status or '—'}  {ms(a.latency_ms) or '—'}{ttft}{err}"
                f"{'  (abandoned)' if a.abandoned else ''}\n",
                style="red" if a.error else "",
            )
        return out

    # -- actions ----------------------------------------------------------------------------
    def goto_turn(self, index: int) -> None:
        """Move to a turn's own row (j/k step over the attempt rows under a turn)."""
        if self.turn_row:
            index = max(0, min(index, len(self.turn_row) - 1))
            self.query_one("#turns", DataTable).move_cursor(row=self.turn_row[index])

    def action_next_turn(self) -> None:
        self.goto_turn(self.current_turn() + 1)

    def action_prev_turn(self) -> None:
        self.goto_turn(self.current_turn() - 1)

    def action_jump(self, kind: str, step: int) -> None:
        """To the next (step 1) or previous (-1) turn with an error or a cache break, wrapping
        around at the ends like a search."""
        wanted = ("error", "retried") if kind == "error" else ("break",)
        breaks = self._breaks()
        hits = [t.index for t in self.timeline if any(m in wanted for m in turn_marks(t, t.index in breaks))]
        what = "error" if kind == "error" else "cache break"
        if not hits:
            self.notify(f"no {what} in this conversation", timeout=3)
            return
        here = self.current_turn()
        ahead = [i for i in hits if (i > here if step > 0 else i < here)]
        if ahead:
            self.goto_turn(ahead[0] if step > 0 else ahead[-1])
        else:
            self.goto_turn(hits[0] if step > 0 else hits[-1])
            self.notify(f"wrapped around to the {'first' if step > 0 else 'last'} {what}", timeout=2)

    def _breaks(self) -> set[int]:
        from ..metrics import cache_breaks

        return set(cache_breaks([t.usage for t in self.timeline]))

    def action_first_turn(self) -> None:
        self.goto_turn(0)

    def action_last_turn(self) -> None:
        self.goto_turn(len(self.timeline) - 1)

    def action_back(self) -> None:
        if self.query_one("#conv-find", Input).display:  # esc first clears a find
            self.clear_find()
            return
        self.app.pop_screen()

    def action_tab(self, tab: str) -> None:
        self.query_one("#tabs", TabbedContent).active = tab

    def action_show_all(self) -> None:
        self.show_all = not self.show_all
        self._redraw()

    def cursor_turn_id(self) -> str | None:
        """The turn the cursor shows (its detail may still be loading)."""
        return self.timeline[self.current_turn()].turn_id if self.timeline else None

    def action_copy(self) -> None:
        turn_id = self.cursor_turn_id()
        if turn_id is None:
            return
        tab = self.query_one("#tabs", TabbedContent).active
        if self.detail is not None and self.detail.turn.turn_id == turn_id:
            self._copy(self.detail, tab)
        else:  # the cursor's turn isn't loaded yet: copy it once it is, never the one shown before
            self.copy_turn(turn_id, tab)

    @work(thread=True, group="copy", exit_on_error=False)
    def copy_turn(self, turn_id: str, tab: str) -> None:
        with self.app.store() as store:  # type: ignore[attr-defined]
            detail = store.turn_detail(turn_id, self.timeline)
        self.app.call_from_thread(self._copy, detail, tab)

    def _copy(self, d: TurnDetail, tab: str) -> None:
        if tab == "response":
            text = "\n\n".join(
                b.get("text", "") if b.get("type") == "text" else as_json(b)
                for b in ((d.response or {}).get("content") or [])
                if isinstance(b, dict)
            )
        elif tab == "tools":
            text = as_json([c.model_dump() for c in d.tool_calls])
        elif tab == "usage":
            text = as_json([u.model_dump() for u in d.usage])
        elif tab == "context":
            text = as_json(d.context)
        else:
            text = as_json({"request": d.request, "response": d.response})
        self.app.copy_to_clipboard(text)
        self.notify(f"copied the {tab} of turn {d.turn.index} ({len(text):,} characters)", timeout=3)

    def action_rerun(self) -> None:
        turn_id = self.cursor_turn_id()
        if turn_id is None:
            return
        from .rerun import RerunScreen

        self.app.push_screen(RerunScreen(turn_id))


PROMPT_KINDS = ("input", "cache_write_5m", "cache_write_1h", "cache_read")
"""The usage lines that make up the prompt (input + cache writes + cache reads), in that order."""
USAGE_LABELS = {
    "input": "uncached",
    "cache_write_5m": "cache write 5m",
    "cache_write_1h": "cache write 1h",
    "cache_read": "cache read",
}
"""The one vocabulary: "prompt" is everything the model read, "uncached" the API's input_tokens."""


def turn_marks(t: TurnSummary, cache_break: bool) -> list[str]:
    """What a turn's status column shows, most important first: error | abandoned, retried, break."""
    last = t.attempts[-1] if t.attempts else None
    marks = []
    if last is not None and last.error:
        marks.append("error")
    elif any(a.abandoned for a in t.attempts):
        marks.append("abandoned")
    if len(t.attempts) > 1:
        marks.append("retried")
    if cache_break:
        marks.append("break")
    return marks


class HelpScreen(ModalScreen[None]):
    """F1: the keys of the screen underneath, built from its bindings."""

    BINDINGS = [Binding("escape,f1,q", "dismiss", "Close", id="close", tooltip="Close help")]

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
                keys = ", ".join(k.replace("slash", "/") for k in b.key.split(","))
                text.append(f"{keys:>14}  ", style="bold cyan")
                text.append(f"{b.description}")
                if b.tooltip:
                    text.append(f" — {escape(b.tooltip)}", style="dim")
                text.append("\n")
        text.append(f"{'ctrl+p':>14}  ", style="bold cyan")
        text.append("Command palette — go to a conversation or a turn\n")
        legend = getattr(self.under, "LEGEND", None)
        if legend:
            text.append("\nStatus column beside #: ", style="bold")
            colours = self.under._outcome_colours()  # type: ignore[attr-defined]
            for symbol, word, kind in legend:
                text.append(f"{symbol} ", style=f"bold {colours[kind]}")
                text.append(f"{word}   ")
            text.append("\n")
        text.append("\nThe mouse works too: click rows, tabs and column headers.", style="dim")
        with Vertical(id="help"):
            yield Static(text)

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.app.pop_screen()
