"""One conversation: its turn list (a turn's retries under it), the context-growth chart, the
selected turn's detail in tabs (drawn by tabs and turn_view), find across every turn, and the
way into a rerun. Data comes from thread workers.

About 620 lines: the screen's key bindings and their handlers stay in one class, as
Textual binds them; what can be drawn without the screen is already in render.py, tabs.py and turn_view.py."""

from __future__ import annotations

import re
from bisect import bisect_left
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Footer, Header, Input, Static, TabbedContent, TabPane, TextArea
from textual.widgets.data_table import ColumnKey
from textual.worker import get_current_worker

from ..fmt import plural
from ..models import TurnDetail, TurnSummary
from ..text import TOKEN  # a word as the index keeps it: what `/` in a conversation highlights
from ..wire import prompt_tokens
from .base import ReplayerScreen
from .blocks import TOOL_LINE
from .messages import DetailLoaded, DetailToCopy, FoundInConversation, TimelineLoaded
from .render import conversation_title, turn_marks, turn_rows
from .rerun import RerunScreen
from .tabs import context_text, copy_text, raw_text, tools_text, usage_text
from .text_view import TextView
from .turn_view import response_widgets
from .widgets import ContextChart, FittedTable, hold_cells_whole, keep_numbers_whole, set_widths


def position_of(timeline: list[TurnSummary], index: int | None) -> int:
    """The row, among a conversation's turns, of the turn numbered `index` (the first when None;
    the nearest before it when there is none so numbered)."""
    if index is None or not timeline:
        return 0
    before = bisect_left(timeline, index, key=lambda t: t.index)  # the turns come in index order
    return before if before < len(timeline) and timeline[before].index == index else max(0, before - 1)

class ConversationScreen(ReplayerScreen[None]):
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
        # The footer holds at 100 columns what is shown (F1 lists every key): each pane that `a`
        # widens says "press a", so it stays out of the footer; the jumps' labels are short
        Binding(
            "a",
            "show_all",
            "Whole context / show all",
            id="show-all",
            tooltip="Show the whole context, and long payloads uncut",
            show=False,
        ),
        Binding("y", "copy", "Copy", id="copy", tooltip="Copy what the open tab shows (JSON or text)"),
        Binding("r", "rerun", "Rerun", id="rerun", tooltip="Rerun this turn with edits and compare the outputs"),
        Binding("f", "fork", "Fork", id="fork", tooltip="Fork the run: re-run its command, live from this turn"),
        Binding("slash", "find", "Find", id="find", tooltip="Find text in every turn (n/N: next/previous match)"),
        Binding("n", "find_next", "Next match", id="find-next", tooltip="The next turn holding the text", show=False),
        Binding("N", "find_prev", "Previous match", id="find-prev", tooltip="The previous one", show=False),
        Binding(
            "e", "jump('error', 1)", "Errors", id="next-error", tooltip="Next error (a turn that failed or was retried)"
        ),
        Binding(
            "E",
            "jump('error', -1)",
            "Prev error",
            id="prev-error",
            tooltip="Previous turn that failed or was retried",
            show=False,
        ),
        Binding(
            "b",
            "jump('break', 1)",
            "Cache breaks",
            id="next-break",
            tooltip="Next cache break (a turn where the cache broke)",
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
    FLEX_MIN = {"tools": 10, "err": 7}
    """The notes column holds a connection's fault whole (`refused`, `timeout`: 7 cells)."""
    NUMBERS = {"idx", "delta", "cost", "ms", "cache"}
    """Columns the screen's edge must never cut (widgets.keep_numbers_whole)."""

    def __init__(self, conversation_id: str, turn: int | None = None) -> None:
        """`turn`: the turn to open on, by its index (as `show` numbers it: a conversation
        imported in part may start past 0 or skip some)."""
        super().__init__()
        self.conversation_id = conversation_id
        self.start_turn = turn
        self.timeline: list[TurnSummary] = []
        self.reconstructed: dict[int, str] = {}
        """Turn index -> the source of each imported turn (Store.reconstructed_turns)."""
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
            turns = FittedTable(id="turns", cursor_type="row", zebra_stripes=True)
            yield turns
            with Vertical(id="detail-side"):
                yield ContextChart(id="chart")
                with TabbedContent(id="tabs", initial="context"):
                    with TabPane("1 Context", id="context"):
                        yield TextView(id="context-body")  # the whole context can be megabytes
                    with TabPane("2 Response", id="response"):
                        yield VerticalScroll(id="response-body")
                    with TabPane("3 Tools", id="tools"):
                        yield TextView(id="tools-body")  # a tool result can be megabytes (`a` shows all)
                    with TabPane("4 Usage & cost", id="usage"):
                        yield VerticalScroll(Static("", id="usage-body"))
                    with TabPane("5 Raw", id="raw"):
                        yield VerticalScroll(id="raw-box")  # its TextArea is made when first opened
        yield Footer()

    SHORT_ROWS = 20
    """Below this many rows the context chart is hidden: at 60x15 it took every row the tabs had."""

    def _fit_layout(self, width: int, height: int) -> None:
        self.set_class(width < 140, "narrow")
        self.set_class(height < self.SHORT_ROWS, "short")

    def on_resize(self, event: Any) -> None:
        self._fit_layout(event.size.width, event.size.height)  # the turn list's own resize fits its columns
        self._hold_turn_list()

    def on_mount(self) -> None:
        self._fit_layout(self.app.size.width, self.app.size.height)
        self.query_one("#conv-find", Input).display = False
        table = self.query_one("#turns", FittedTable)
        # fixed widths: the table then never measures every cell of a long conversation
        for col, key, width in self.COLUMNS:
            table.add_column(col, key=key, width=width or self.FLEX_MIN[key])
        self._hold_turn_list()
        table.refit_with(self.fit_columns)
        self.sub_title = self.home_subtitle()
        self.load_timeline()
        table.focus()
        self.set_interval(self.app.refresh_seconds, self.poll)
        self.app.theme_changed_signal.subscribe(self, self._recolour)

    def _recolour(self, _theme: Any) -> None:
        """Outcome colours come from the theme: draw the rows again in the new one."""
        if self.timeline:
            self.show_timeline(self.timeline)

    def _hold_turn_list(self) -> None:
        """Beside the detail (140 columns and wider), the turn list is at least as wide as its
        columns' least: the fixed ones as they are (the stop column hold_cells_whole widened, 16
        cells for `overloaded_error` where it has 10), the shared ones' FLEX_MIN, the padding and
        a scrollbar: 94 cells, 100 with that stop column. The detail beside it gives up the room
        (at 160 columns it keeps 60 of 67 cells, the tabs' labels 55), where the tools column had
        given it (4 cells: `lis…`, `get…`). Above the detail (narrow) the list has the whole width."""
        table = self.query_one("#turns", FittedTable)
        if self.has_class("narrow"):
            table.styles.min_width = None  # the stylesheet's: none
            return
        pad = 2 * table.cell_padding
        least = sum((table.columns[ColumnKey(key)].width if w else self.FLEX_MIN[key]) + pad
                    for _, key, w in self.COLUMNS)  # fmt: skip
        table.styles.min_width = least + table.styles.scrollbar_size_vertical

    def fit_columns(self) -> None:
        """Give the room the fixed columns leave to the tools and notes columns, so the turn
        list uses the width it has (and a wide terminal shows whole error messages)."""
        table = self.query_one("#turns", DataTable)
        room = (  # the room a vertical scrollbar takes is kept for it: rows may come later
            table.size.width
            - table.styles.scrollbar_size_vertical
            - sum(table.columns[ColumnKey(key)].width + 2 * table.cell_padding if w else 2 * table.cell_padding
                  for _, key, w in self.COLUMNS)
        )
        tools = max(self.FLEX_MIN["tools"], min(24, room // 3))
        # a stop column wider than its usual (hold_cells_whole) takes its room from the tools
        # first, not from the notes, which the screen's edge would cut with no mark
        tools = max(3, min(tools, room - self.FLEX_MIN["err"]))
        set_widths(table, {"err": max(self.FLEX_MIN["err"], room - tools)})
        # too narrow for them all (a narrow terminal): the tools give way to the numbers
        keep_numbers_whole(table, self.NUMBERS, "tools", tools, narrowest=3)

    # -- loading ----------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="timeline", exit_on_error=False)
    def load_timeline(self) -> None:
        with self.app.store() as store:
            timeline = store.turns(self.conversation_id)
            # the first turn to show comes with the list, so the screen is drawn once, whole
            first = None
            if timeline:
                start = position_of(timeline, self.start_turn)
                first = store.turn_detail(timeline[start].turn_id, timeline)
            reconstructed = store.reconstructed_turns(self.conversation_id)
        self.post_message(TimelineLoaded(timeline, first, reconstructed))

    @work(thread=True, exclusive=True, group="poll", exit_on_error=False)
    def poll(self) -> None:
        """A live agent may still be writing: pick up new turns by themselves."""
        with self.app.store() as store:
            timeline = store.turns(self.conversation_id)
            if len(timeline) != len(self.timeline) or (
                timeline and self.timeline and len(timeline[-1].attempts) != len(self.timeline[-1].attempts)
            ):
                reconstructed = store.reconstructed_turns(self.conversation_id)
                self.post_message(TimelineLoaded(timeline, reconstructed=reconstructed))

    @on(TimelineLoaded)
    def timeline_loaded(self, message: TimelineLoaded) -> None:
        self.reconstructed = message.reconstructed
        self.show_timeline(message.timeline, message.first)

    def show_timeline(self, timeline: list[TurnSummary], first: TurnDetail | None = None) -> None:
        with self.app.batch_update():
            self._show_timeline(timeline, first)

    def _show_timeline(self, timeline: list[TurnSummary], first: TurnDetail | None) -> None:
        table = self.query_one("#turns", DataTable)
        keep = self.row_turn[table.cursor_row] if self.timeline and table.row_count else None
        if keep is None:
            keep = position_of(timeline, self.start_turn)
        keep = max(0, min(keep, len(timeline) - 1))
        refresh = bool(self.timeline)
        self.timeline = timeline
        if first is not None and first.turn.turn_id == timeline[keep].turn_id:
            self._requested = first.turn.turn_id
        elif timeline:  # start loading the detail now: the worker reads while this thread draws the list
            self.request_detail(timeline[keep].turn_id, again=refresh)
        table.clear()
        breaks = self._breaks()
        colour = self.outcome_colours()
        rows, self.row_turn, self.turn_row, counts = turn_rows(
            timeline, breaks, colour, self.SYMBOLS, self.reconstructed, tz=self.app.settings.tz
        )
        table.add_rows(rows)
        # the stop column holds its widest stop reason or error type whole (`timeout_er` read as a
        # word of its own); the tools column gives it the room (fit_columns)
        hold_cells_whole(table, {key: w for _, key, w in self.COLUMNS if key == "stop"})
        self._hold_turn_list()
        self.fit_columns()
        title = conversation_title(self.conversation_id, timeline, self.LEGEND, counts, colour, self.reconstructed)
        self.query_one("#conv-title", Static).update(title)
        self.query_one("#chart", ContextChart).set_turns(timeline, breaks)
        if timeline:
            table.move_cursor(row=self.turn_row[keep])
        if first is not None and first.turn.turn_id == timeline[keep].turn_id:
            self.show_detail(first)

    def outcome_colours(self) -> dict[str, str]:
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
        with self.app.store() as store:
            detail = store.turn_detail(turn_id, self.timeline)
        if not get_current_worker().is_cancelled:
            self.post_message(DetailLoaded(detail))

    # -- the detail tabs --------------------------------------------------------------------
    @on(DetailLoaded)
    def detail_loaded(self, message: DetailLoaded) -> None:
        if message.detail == self.detail:
            return  # the turn shown read again as new turns came, unchanged: drawn again it would lose its scroll
        self.show_detail(message.detail)

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
            view = self.query_one("#context-body", TextView)
            self._context_width = self._width_of(view)
            text = context_text(d, self.show_all, self._previous_prompt(d), self.find_pattern, self._context_width)
            view.update(text)
            if self.find_pattern is not None:
                self.call_after_refresh(self._scroll_to_match, text)
        elif tab == "response":
            box = self.query_one("#response-body", VerticalScroll)
            box.remove_children()
            box.mount_all(response_widgets(d, self.show_all, self.app.settings.tz))
        elif tab == "tools":
            self.query_one("#tools-body", TextView).update(tools_text(d, self.show_all))
        elif tab == "usage":
            self.query_one("#usage-body", Static).update(usage_text(d, self.app.settings.tz))
        elif tab == "raw":
            raw = raw_text(d)
            areas = self.query("#raw-body")
            if areas:
                area = areas.first(TextArea)
                if area.text != raw:
                    self._load_raw(area, raw, keep=getattr(self, "_raw_turn", None) == d.turn.turn_id)
            else:
                self.query_one("#raw-box").mount(TextArea(raw, id="raw-body", read_only=True, soft_wrap=False))
            self._raw_turn = d.turn.turn_id

    @staticmethod
    def _width_of(view: TextView) -> int:
        """The Context tab's width, for the rows cut to it (a tool's); until laid out, a
        100-column terminal's."""
        return view.scrollable_content_region.width or TOOL_LINE

    @on(TextView.WidthChanged, "#context-body")
    def context_resized(self, event: TextView.WidthChanged) -> None:
        """Rows cut to the tab's width are cut again to its new one (the text is made anew only
        when the width it was made for changed)."""
        if self.detail is not None and event.width != getattr(self, "_context_width", None):
            self._drawn.discard("context")
            if self.query_one("#tabs", TabbedContent).active == "context":
                self._draw("context")

    def _load_raw(self, area: TextArea, raw: str, keep: bool) -> None:
        """The Raw tab's new text; the same turn's (a new attempt came) where it was read, scroll and
        cursor kept (load_text puts both back at the top)."""
        scroll, cursor = area.scroll_offset, area.cursor_location
        area.load_text(raw)
        if keep:
            last = area.document.line_count - 1
            row = min(cursor[0], last)
            area.move_cursor((row, min(cursor[1], len(area.document.get_line(row)))))
            self.call_after_refresh(area.scroll_to, scroll.x, scroll.y, animate=False, immediate=True)

    # -- find (/) ----------------------------------------------------------------------------
    def _scroll_to_match(self, text: Text) -> None:
        """Bring the first match in the Context tab into view: of the words as typed, where they
        are together, else of any of them (`Rule 120` in a system prompt of 300 rules: the rule,
        not the first `Rule`, nor a `the` of the tab's first line for `the main branch`)."""
        if self.find_pattern is None:
            return
        found = re.search(re.escape(self.find_text), text.plain, re.IGNORECASE) or self.find_pattern.search(text.plain)
        if found is None:
            return
        view = self.query_one("#context-body", TextView)
        view.scroll_to(y=max(0, view.row_of(found.start()) - 2), animate=False)

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
        words = TOKEN.findall(text)
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
        with self.app.store() as store:
            hits = store.find_in_conversation(self.conversation_id, text)
        self.post_message(FoundInConversation(text, hits))

    @on(FoundInConversation)
    def found(self, message: FoundInConversation) -> None:
        text, hits = message.text, message.hits
        if text != self.find_text:
            return  # a newer search was started
        last = len(self.timeline) - 1
        targets = set()
        for index, where in hits:
            turn = position_of(self.timeline, index)
            # a reply's text enters the context of the turn after it; the last reply only shows as one
            targets.add((turn + 1, "context") if where == "response" and turn < last else (turn, where))
        self.find_targets = sorted(targets)
        if not self.find_targets:
            self.notify(f"no turn holds {text!r}", timeout=4)
            self._redraw()
            return
        here = self.current_turn()
        self.find_at = next((i for i, (turn, _) in enumerate(self.find_targets) if turn >= here), 0) - 1
        found = len(self.find_targets)
        verb = "holds" if found == 1 else "hold"
        self.notify(f"{plural(found, 'turn')} {verb} {text!r} · n/N next/previous", timeout=4)
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

    def home_subtitle(self) -> str:
        """The conversation, and the zone of its turns' times."""
        return f"{self.conversation_id} · times in {self.app.settings.tz}"

    def clear_find(self) -> None:
        box = self.query_one("#conv-find", Input)
        box.value, box.display = "", False
        self.find_text, self.find_pattern, self.find_targets, self.find_at = "", None, [], -1
        self.sub_title = self.home_subtitle()
        self.query_one("#turns", DataTable).focus()
        self._redraw()

    def _redraw(self) -> None:
        if self.detail is not None:
            self.show_detail(self.detail)

    def _previous_prompt(self, d: TurnDetail) -> int | None:
        """The previous turn's whole prompt (input + cache writes + cache reads), when known."""
        i = position_of(self.timeline, d.turn.index) - 1
        if 0 <= i < len(self.timeline) and self.timeline[i].usage:
            return prompt_tokens(self.timeline[i].usage or {})
        return None

    # -- actions ----------------------------------------------------------------------------
    def goto_turn(self, index: int) -> None:
        """Move to a turn's own row (j/k step over the attempt rows under a turn), by the turn's
        place in the timeline (position_of gives it for a turn's index)."""
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
        hits = [i for i, t in enumerate(self.timeline) if any(m in wanted for m in turn_marks(t, i in breaks))]
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
        from ..store.aggregate import cache_breaks

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
        with self.app.store() as store:
            detail = store.turn_detail(turn_id, self.timeline)
        self.post_message(DetailToCopy(detail, tab))

    @on(DetailToCopy)
    def copy_loaded(self, message: DetailToCopy) -> None:
        self._copy(message.detail, message.tab)

    def _copy(self, d: TurnDetail, tab: str) -> None:
        width = self._width_of(self.query_one("#context-body", TextView))
        text = copy_text(d, tab, show_all=self.show_all, previous_prompt=self._previous_prompt(d),
                         tz=self.app.settings.tz, width=width)  # fmt: skip
        self.app.copy_to_clipboard(text)
        self.notify(f"copied the {tab} of turn {d.turn.index} ({len(text):,} characters)", timeout=3)

    def action_rerun(self) -> None:
        turn_id = self.cursor_turn_id()
        if turn_id is None:
            return
        self.app.push_screen(RerunScreen(turn_id))

    def action_fork(self) -> None:
        turn_id = self.cursor_turn_id()
        if turn_id is None:
            return
        self.app.push_screen(RerunScreen(turn_id, fork=True))
