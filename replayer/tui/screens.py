"""The screens: conversations, one conversation, help. Data comes from thread workers."""

from __future__ import annotations

import json
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
from textual.worker import Worker, WorkerState, get_current_worker

from ..filters import FilterError, parse_filter
from ..fmt import local_time, money
from ..models import ConversationSummary, TurnDetail, TurnSummary
from ..store.queries import prompt_tokens
from .widgets import ContextChart
from .workers import ShowsWorkerErrors

PAGE = 100
CUT = 4_000
"""Characters of one payload shown before "show all" (a 1 MB tool result must not freeze the UI)."""


def tokens(n: int | None) -> str:
    return "" if n is None else f"{n:,}"


def signed(n: int | None) -> str:
    return "" if n is None else f"{n:+,}"


def cut(text: str, limit: int, full: bool = False) -> str:
    if full or len(text) <= limit:
        return text
    return text[:limit] + f"\n… {len(text) - limit:,} more characters (press a to show all)"


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
        "In tok",
        "Out tok",
        "Cost",
        "Cache",
        "Err",
        "Duration",
        "First message",
        "Models",
    )
    SQL_SORTS = {
        "Started": "started",
        "Conversation": "id",
        "User": "user",
        "Turns": "turns",
        "In tok": "input",
        "Out tok": "output",
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
        "Conversation": 32,
        "User": 14,
        "Turns": 5,
        "In tok": 11,
        "Out tok": 9,
        "Cost": 10,
        "Cache": 5,
        "Err": 3,
        "Duration": 8,
        "First message": 44,
        "Models": 28,
    }

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
        self.sub_title = str(self.app.db_path)  # type: ignore[attr-defined]
        self.load(reset=True)
        table.focus()
        self.set_interval(self.app.refresh_seconds, self.poll)  # type: ignore[attr-defined]

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
            r.conversation_id,
            r.user_id or "",
            Text(str(r.turns), justify="right"),
            Text(tokens(r.input_tokens), justify="right"),
            Text(tokens(r.output_tokens), justify="right"),
            Text(money(r.cost_usd), justify="right"),
            Text("" if hit is None else f"{hit:.0%}", justify="right"),
            Text(str(r.errors) if r.errors else "", style="bold red", justify="right"),
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
        Binding("escape", "back", "Back", id="back", tooltip="Back to the conversations"),
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
    ]

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

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="conv-title")
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

    def on_mount(self) -> None:
        self.set_class(self.app.size.width < 140, "narrow")
        table = self.query_one("#turns", DataTable)
        # fixed widths: the table then never measures every cell of a long conversation
        for col, key, width in (
            ("#", "idx", 4),
            ("time", "time", 8),
            ("stop", "stop", 10),
            ("tools", "tools", 16),
            ("Δ in", "delta", 8),
            ("cost", "cost", 9),
            ("ms", "ms", 7),
            ("hit", "cache", 4),
            ("", "err", 18),
        ):
            table.add_column(col, key=key, width=width)
        self.sub_title = self.conversation_id
        self.load_timeline()
        table.focus()
        self.set_interval(self.app.refresh_seconds, self.poll)  # type: ignore[attr-defined]

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
        from ..metrics import cache_breaks

        breaks = set(cache_breaks([t.usage for t in timeline]))
        rows = []
        for t in timeline:
            u = t.usage or {}
            prompt = prompt_tokens(u) if t.usage else None
            delta = prompt - prev_prompt if prompt is not None and prev_prompt is not None else prompt
            prev_prompt = prompt if prompt is not None else prev_prompt
            hit = (int(u.get("cache_read_input_tokens") or 0) / prompt) if prompt else None
            last = t.attempts[-1] if t.attempts else None
            err = Text("")
            if last is not None and last.error:
                err = Text(
                    f"✖ {last.error.get('status') or ''} {last.error.get('type') or ''}".strip(), style="bold red"
                )
            elif len(t.attempts) > 1:
                err = Text(f"↻{len(t.attempts) - 1}", style="yellow")
            if t.index in breaks:
                err.append(" cache⚠", style="bold yellow")
            self.turn_row.append(len(rows))
            self.row_turn.append(t.index)
            rows.append(
                (
                    Text(str(t.index), justify="right"),
                    local_time(t.started_at, with_date=False),
                    t.stop_reason or "",
                    ", ".join(t.tool_calls)[:16],
                    Text(signed(delta), justify="right"),
                    Text(money(t.cost_usd), justify="right"),
                    Text(f"{last.latency_ms:,.0f}" if last and last.latency_ms else "", justify="right"),
                    Text("" if hit is None else f"{hit:.0%}", justify="right"),
                    err,
                )
            )
            for a in t.attempts[:-1]:  # earlier attempts of this turn (retries), under it
                self.row_turn.append(t.index)
                rows.append(
                    (
                        Text(f"↳{a.attempt}", style="dim", justify="right"),
                        Text(local_time(a.started_at, with_date=False), style="dim"),
                        Text(str(a.status or "—"), style="red"),
                        Text(str((a.error or {}).get("type") or "")[:16], style="red"),
                        "",
                        "",
                        Text(f"{a.latency_ms:,.0f}" if a.latency_ms else "", style="dim", justify="right"),
                        "",
                        Text("retry" if a.error else "", style="dim"),
                    )
                )
        table.add_rows(rows)
        total = sum(t.cost_usd or 0 for t in timeline)
        self.query_one("#conv-title", Static).update(
            Text.assemble((self.conversation_id, "bold"), f"  {len(timeline)} turns  {money(total)}")
        )
        self.query_one("#chart", ContextChart).set_turns(timeline, breaks)
        if timeline:
            table.move_cursor(row=self.turn_row[keep])
        if first is not None and first.turn.turn_id == timeline[keep].turn_id:
            self.show_detail(first)

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
            self.query_one("#context-body", Static).update(self._context_text(d))
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
            out.append(f"Whole context: {len(d.context)} messages\n\n", style="bold")
            if d.system is not None:
                out.append("system\n", style="bold yellow")
                out.append(cut(_plain(d.system), CUT, self.show_all) + "\n\n")
            for i, m in enumerate(d.context):
                out.append(f"[{i}] {m.get('role')}\n", style="bold")
                out.append(cut(_plain(m.get("content")), CUT, True) + "\n\n")
            return out
        for ch in d.changes:
            sign, style = marks.get(ch.kind, ("? ", ""))
            if ch.kind == "system":
                out.append(sign + "system prompt changed\n", style=style)
                out.append(cut(_plain(ch.message), 600) + "\n\n", style="yellow")
            elif ch.kind == "tools":
                names = [t.get("name") for t in ch.message] if isinstance(ch.message, list) else []
                out.append(sign + f"tool list changed: {', '.join(map(str, names))}\n\n", style=style)
            else:
                label = "removed (compaction, truncation or an edit)" if ch.kind == "removed" else "added"
                out.append(f"{sign}[{ch.position}] {ch.role} — {label}\n", style=style)
                out.append(
                    cut(_plain((ch.message or {}).get("content")), CUT) + "\n\n",
                    style="strike dim" if ch.kind == "removed" else "",
                )
        out.append(f"\n{len(d.context)} messages in context · press a for the whole context", style="dim")
        return out

    def _fill_response(self, d: TurnDetail) -> None:
        box = self.query_one("#response-body", VerticalScroll)
        box.remove_children()
        widgets: list[Any] = []
        if d.response is None:
            err = d.turn.error or {}
            widgets.append(Static(Text(f"No response: {err.get('type')} {err.get('message') or ''}", style="bold red")))
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
                    widgets.append(Static(Syntax(as_json(block.get("input")), "json", word_wrap=True)))
                else:
                    widgets.append(Static(Text(f"{kind}", style="bold magenta")))
                    widgets.append(Static(Syntax(cut(as_json(block), CUT, self.show_all), "json", word_wrap=True)))
            stop = d.response.get("stop_reason") if isinstance(d.response, dict) else None
            widgets.append(Static(Text(f"stop_reason: {stop}", style="dim")))
        box.mount_all(widgets)

    def _tools_text(self, d: TurnDetail) -> Text:
        out = Text()
        if not d.tool_calls:
            out.append("No tool calls in this turn.", style="dim")
        for c in d.tool_calls:
            head = f"{'server tool' if c.server else 'tool'} {c.name}  {c.id}"
            out.append(head + "\n", style="bold cyan")
            out.append("input  " + cut(as_json(c.input), CUT, self.show_all) + "\n")
            if c.pending:
                out.append("result pending: no result came back in the next request\n\n", style="bold yellow")
            else:
                style = "bold red" if c.is_error else "green"
                out.append(
                    ("ERROR  " if c.is_error else "result ") + cut(_plain(c.result), CUT, self.show_all) + "\n\n",
                    style=style,
                )
        return out

    def _usage_text(self, d: TurnDetail) -> Text:
        out = Text()
        out.append(f"model {d.turn.model}\n\n", style="bold")
        out.append(f"{'kind':16}{'tokens':>12}{'Δ prev':>12}{'$/MTok':>10}{'cost':>12}\n", style="bold")
        for line in d.usage:
            rate = "" if line.rate_per_mtok is None else f"{line.rate_per_mtok:.3f}"
            out.append(
                f"{line.kind:16}{line.tokens:>12,}{signed(line.delta_tokens):>12}{rate:>10}{money(line.cost_usd):>12}\n"
            )
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
                f"  #{a.attempt}  {a.status or '—'}  {a.latency_ms or 0:,.0f} ms{ttft}{err}"
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

    def action_first_turn(self) -> None:
        self.goto_turn(0)

    def action_last_turn(self) -> None:
        self.goto_turn(len(self.timeline) - 1)

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_tab(self, tab: str) -> None:
        self.query_one("#tabs", TabbedContent).active = tab

    def action_show_all(self) -> None:
        self.show_all = not self.show_all
        if self.detail is not None:
            self.show_detail(self.detail)

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


def _plain(value: Any) -> str:
    """Message content as readable text: text blocks as text, the rest as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for b in value:
            if isinstance(b, dict) and b.get("type") == "text":
                parts.append(str(b.get("text", "")))
            elif isinstance(b, dict) and b.get("type") == "tool_result":
                flag = " (is_error)" if b.get("is_error") else ""
                parts.append(f"tool_result {b.get('tool_use_id')}{flag}: " + _plain(b.get("content")))
            elif isinstance(b, dict) and b.get("type") == "tool_use":
                parts.append(
                    f"tool_use {b.get('name')} {b.get('id')}: " + json.dumps(b.get("input"), ensure_ascii=False)
                )
            else:
                parts.append(json.dumps(b, ensure_ascii=False))
        return "\n".join(parts)
    return json.dumps(value, indent=2, ensure_ascii=False)


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
        text.append("\nThe mouse works too: click rows, tabs and column headers.", style="dim")
        with Vertical(id="help"):
            yield Static(text)

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.app.pop_screen()
