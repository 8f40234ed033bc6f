"""The trajectories screen: two conversations aligned turn by turn (replayer/trajectory.py), the
first divergence marked, the highlighted turn's two sides word by word with their tool calls,
and the totals and final answers. Reached from the conversation list: `m` marks one
conversation, `c` on another compares them; `c` with nothing marked compares a conversation
with its fork (or a fork with its original). The render functions are pure (no app)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static, TabbedContent, TabPane
from textual.widgets.data_table import ColumnKey

from ..diffing import change_parts, compare_tools, words
from ..fmt import error_head, money, ms, plural
from ..models import JsonChange
from ..trajectory import (
    Step,
    TrajectoryComparison,
    TurnPair,
    both,
    final_words,
    prompt_word,
    stop_word,
    tool_names,
    totals_rows,
)
from .base import ReplayerScreen
from .render import side_by_side
from .widgets import KeyTable, hold_cells_whole, keep_numbers_whole

if TYPE_CHECKING:
    from .conversations import ConversationsScreen

STATUS_STYLES = {"same": "dim", "differs": "bold yellow", "added": "bold green", "missing": "bold red"}
TOOL_STYLES = {"same": "green", "changed": "yellow", "added": "bold green", "removed": "bold red"}
COLUMNS = (("#", 5), ("", 7), ("Stop A→B", 17), ("Tools A→B", 0), ("Prompt A→B", 13), ("Cost A→B", 17),
           ("Time A→B", 11))  # fmt: skip
"""(title, width); 0: the column that takes what the others leave (tool names)."""
TOOLS_MIN = 12
NUMBERS = {"#", "Prompt A→B", "Cost A→B", "Time A→B"}
"""Columns the screen's edge must never cut (widgets.keep_numbers_whole)."""
WORDS_UP_TO = 20_000
"""Characters of a side's text diffed word by word; longer texts are shown as they are (a word
diff of two long texts can take seconds)."""
TOOLS_MAX = 48


# -- pure render ---------------------------------------------------------------------------------


def title_text(c: TrajectoryComparison) -> Text:
    t = Text()
    t.append("A ", style="bold")
    t.append(f"{c.a.conversation_id} ({plural(c.a.turns, 'turn')})  ")
    t.append("B ", style="bold")
    t.append(f"{c.b.conversation_id} ({plural(c.b.turns, 'turn')})  ")
    if c.diverged_at is None:
        t.append("the same path all the way", style="green")
    else:
        t.append(f"▶ diverge at turn {c.diverged_at}", style="bold magenta")
    return t


def pair_cells(p: TurnPair, diverged_at: int | None) -> tuple[Text, ...]:
    """One row of the turn table: a value once when both sides agree, `a→b` when not."""

    def each(get: Any) -> str:
        return both(get(p.a) if p.a is not None else None, get(p.b) if p.b is not None else None, "→")

    diverged = p.index == diverged_at
    return (
        Text(("▶ " if diverged else "") + str(p.index), style="bold magenta" if diverged else "", justify="right"),
        Text(p.status, style=STATUS_STYLES[p.status]),
        Text(each(stop_word), no_wrap=True, overflow="ellipsis"),
        Text(each(tool_names), no_wrap=True, overflow="ellipsis"),
        Text(each(prompt_word), justify="right"),
        Text(each(lambda s: money(s.cost_usd)), justify="right"),
        Text(each(lambda s: ms(s.latency_ms)), justify="right"),
    )


def side_title(name: str, s: Step | None, index: int) -> str:
    if s is None:
        return f"{name}: no turn {index}"
    bits = [f"{name} turn {index}", stop_word(s)]  # its numbers are on the table's row
    if s.errors:
        bits.append(plural(s.errors, "failed attempt"))
    return " · ".join(b for b in bits if b)


def _error(s: Step) -> Text:
    e = s.error or {}
    return Text(f"{error_head(e)}\n{e.get('message')}".strip(), style="bold red")


def pair_sides(p: TurnPair) -> tuple[Text, Text]:
    """The two texts of a turn: word by word when both sides have one (what A had struck red,
    what B added green), the error when a side got none, a note for a side with no such turn."""
    a, b = p.a, p.b
    if a is not None and b is not None and not a.error and not b.error:
        if len(a.text) <= WORDS_UP_TO and len(b.text) <= WORDS_UP_TO:
            return side_by_side(words(a.text, b.text))
        return Text(a.text), Text(b.text)
    return tuple(  # type: ignore[return-value]
        Text(f"(no turn {p.index}: this trajectory ended before)", style="dim")
        if s is None
        else _error(s)
        if s.error
        else Text(s.text)
        for s in (a, b)
    )


def tools_text(p: TurnPair) -> Text:
    """The turn's tool calls: matched by name in order, each same, changed (with how its input
    changed), added in B or removed from A."""
    t = Text("tool calls: ", style="bold")
    calls: list[tuple[str, str, Any, list[JsonChange]]]
    if p.a is None or p.b is None:
        side = p.b if p.a is None else p.a
        assert side is not None
        calls = [(c.name, "added" if p.a is None else "removed", c.input, []) for c in side.tool_calls]
    else:
        diff = p.tool_diff or compare_tools(
            [(c.name, c.input) for c in p.a.tool_calls], [(c.name, c.input) for c in p.b.tool_calls]
        )
        calls = [(d.name, d.status, d.input, d.diff) for d in diff]
    if not calls:
        t.append("none", style="dim")
    for name, status, value, changes in calls:
        t.append(f"\n  {name} ", style="bold")
        t.append(status, style=TOOL_STYLES[status])
        if status == "changed":
            for c in changes[:8]:
                t.append("\n    ")
                for text, role in change_parts(c, "→"):
                    t.append(text, style={"old": "red", "new": "green"}.get(role, ""))
        else:
            t.append("  " + json.dumps(value, ensure_ascii=False)[:200], style="dim")
    return t


def totals_text(c: TrajectoryComparison) -> Text:
    t = Text()
    t.append(f"{'':<12}{'A':>16}{'B':>16}{'B - A':>16}\n", style="bold")
    for name, a, b, delta in totals_rows(c.a, c.b):
        t.append(f"{name:<12}{a:>16}{b:>16}")
        t.append(f"{delta:>16}\n", style="" if a == b else "yellow")
    return t


def final_text(c: TrajectoryComparison) -> tuple[Text, Text]:
    """The final answers side by side, word by word."""
    if c.final.same:
        same = Text(c.final.a or "(no text)")
        return same, Text("the same final answer", style="green")
    if len(c.final.a) > WORDS_UP_TO or len(c.final.b) > WORDS_UP_TO:
        return Text(c.final.a), Text(c.final.b)
    return side_by_side(final_words(c))


# -- the screen ----------------------------------------------------------------------------------


@dataclass
class TrajectoriesCompared(Message, bubble=False):
    """Two conversations compared (trajectory.compare), or why there is nothing to compare."""

    result: TrajectoryComparison | None
    problem: str = ""


class TrajectoriesScreen(ReplayerScreen[None]):
    """Two trajectories turn by turn, the highlighted turn in detail."""

    BINDINGS = [
        Binding("escape", "back", "Back", id="back"),
        Binding("enter,l", "open('b')", "Open turn", id="open", tooltip="B's turn in its conversation (else A's)"),
        Binding("a", "open('a')", "Open A", id="open-a", tooltip="A's turn in its conversation", show=False),
        Binding("b", "open('b')", "Open B", id="open-b", tooltip="B's turn in its conversation", show=False),
        Binding("n", "difference(1)", "Next diff", id="next-diff", tooltip="The next turn that differs"),
        Binding("N", "difference(-1)", "Prev diff", id="prev-diff", tooltip="The previous turn that differs",
                show=False),  # fmt: skip
        Binding("d", "divergence", "Divergence", id="divergence", tooltip="The first turn where they diverge"),
        Binding("s", "swap", "Swap", id="swap", tooltip="Compare B against A"),
        Binding("1", "tab('traj-turn')", "Turn", id="tab-turn", tooltip="The highlighted turn", show=False),
        Binding("2", "tab('traj-totals')", "Totals", id="tab-totals", tooltip="Totals and final answers",
                show=False),  # fmt: skip
        Binding("y", "copy", "Copy", id="copy", tooltip="Copy the comparison as JSON"),
    ]
    DEFAULT_CSS = """
    #traj-title { height: auto; padding: 0 1; background: $boost; }
    #traj-turns { height: auto; max-height: 45%; }
    #traj-tabs, #traj-tabs ContentSwitcher, #traj-tabs TabPane { height: 1fr; }
    .traj-sides { height: auto; max-height: 70%; }
    .traj-side { width: 1fr; height: auto; padding: 0 1; border: solid $primary-background; }
    #traj-tools { height: auto; padding: 0 1; }
    #traj-totals-body { height: auto; padding: 0 1; }
    """

    def __init__(self, a: str, b: str | None = None) -> None:
        super().__init__()
        self.a, self.b = a, b
        """B None: the conversation linked to A as its fork, or the original A was forked from."""
        self.result: TrajectoryComparison | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("comparing…", id="traj-title")
        yield KeyTable(id="traj-turns", cursor_type="row", zebra_stripes=True)
        with TabbedContent(id="traj-tabs", initial="traj-turn"):
            with TabPane("1 Turn", id="traj-turn"):
                with Horizontal(classes="traj-sides"):
                    yield VerticalScroll(Static("", id="traj-a"), id="traj-a-box", classes="traj-side")
                    yield VerticalScroll(Static("", id="traj-b"), id="traj-b-box", classes="traj-side")
                yield VerticalScroll(Static("", id="traj-tools"))
            with TabPane("2 Totals · final answers", id="traj-totals"):
                yield Static("", id="traj-totals-body")
                with Horizontal(classes="traj-sides"):
                    yield VerticalScroll(Static("", id="traj-final-a"), id="traj-final-a-box", classes="traj-side")
                    yield VerticalScroll(Static("", id="traj-final-b"), id="traj-final-b-box", classes="traj-side")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#traj-turns", KeyTable)
        for title, width in COLUMNS:
            table.add_column(title, key=title or "status", width=width or TOOLS_MIN)
        table.refit_with(self.fit_columns)
        table.focus()
        self.sub_title = "compare trajectories"
        self.load(self.a, self.b)

    def fit_columns(self) -> None:
        """The tool names take the width the fixed columns leave."""
        table = self.query_one("#traj-turns", DataTable)
        tools = ColumnKey("Tools A→B")
        fixed = sum(c.get_render_width(table) for c in table.ordered_columns if c.key != tools) + 2 * table.cell_padding
        room = table.scrollable_content_region.width or self.size.width - 2
        wanted = min(TOOLS_MAX, max(TOOLS_MIN, room - fixed))
        keep_numbers_whole(table, NUMBERS, "Tools A→B", wanted, narrowest=3)  # too narrow: the tools give way

    @work(thread=True, exclusive=True, group="trajectories", exit_on_error=False)
    def load(self, a: str, b: str | None) -> None:
        from ..store.trajectories import fork_partner, trajectory
        from ..trajectory import compare

        with self.app.store() as store:
            if b is None:
                pair = fork_partner(store, a)
                if pair is None:
                    self.post_message(TrajectoriesCompared(None, f"{a} has no fork: mark a conversation with m, "
                                                                 "then press c on another"))  # fmt: skip
                    return
                a, b = pair
            result = compare(trajectory(store, a), trajectory(store, b))
        self.post_message(TrajectoriesCompared(result))

    @on(TrajectoriesCompared)
    def show(self, message: TrajectoriesCompared) -> None:
        if message.result is None:
            self.notify(message.problem, title="Compare", timeout=8)
            self.app.pop_screen()
            return
        c = self.result = message.result
        self.a, self.b = c.a.conversation_id, c.b.conversation_id
        self.query_one("#traj-title", Static).update(title_text(c))
        table = self.query_one("#traj-turns", DataTable)
        table.clear()
        for p in c.pairs:
            table.add_row(*pair_cells(p, c.diverged_at), key=str(p.index))
        hold_cells_whole(table, {title: width for title, width in COLUMNS if title in NUMBERS})
        self.query_one("#traj-totals-body", Static).update(totals_text(c))
        fa, fb = final_text(c)
        self.query_one("#traj-final-a", Static).update(fa)
        self.query_one("#traj-final-b", Static).update(fb)
        self.query_one("#traj-final-a-box").border_title = f"A final answer · {c.a.conversation_id}"
        self.query_one("#traj-final-b-box").border_title = f"B final answer · {c.b.conversation_id}"
        table.move_cursor(row=c.diverged_at or 0, animate=False)
        self.call_after_refresh(self.fit_columns)
        self.show_pair()

    def pair(self) -> TurnPair | None:
        if self.result is None or not self.result.pairs:
            return None
        row = self.query_one("#traj-turns", DataTable).cursor_row
        return self.result.pairs[min(max(row, 0), len(self.result.pairs) - 1)]

    @on(DataTable.RowHighlighted, "#traj-turns")
    def highlighted(self) -> None:
        self.show_pair()

    def show_pair(self) -> None:
        p = self.pair()
        if p is None:
            return
        left, right = pair_sides(p)
        self.query_one("#traj-a", Static).update(left)
        self.query_one("#traj-b", Static).update(right)
        self.query_one("#traj-a-box").border_title = side_title("A", p.a, p.index)
        self.query_one("#traj-b-box").border_title = side_title("B", p.b, p.index)
        self.query_one("#traj-tools", Static).update(tools_text(p))

    @on(DataTable.RowSelected, "#traj-turns")
    def selected(self) -> None:
        self.action_open("b")

    def action_open(self, side: str) -> None:
        """The turn in its own conversation (esc comes back here); the other side when this one
        has no such turn."""
        from .conversation import ConversationScreen

        p = self.pair()
        if p is None or self.result is None:
            return
        step, cid = (p.a, self.result.a.conversation_id) if side == "a" else (p.b, self.result.b.conversation_id)
        if step is None:
            step, cid = (p.b, self.result.b.conversation_id) if side == "a" else (p.a, self.result.a.conversation_id)
        if step is not None:
            self.app.push_screen(ConversationScreen(cid, step.index))

    def action_difference(self, step: int) -> None:
        if self.result is None:
            return
        table = self.query_one("#traj-turns", DataTable)
        pairs = self.result.pairs
        at = table.cursor_row + step
        while 0 <= at < len(pairs):
            if pairs[at].status != "same":
                table.move_cursor(row=at)
                return
            at += step
        self.notify("no other turn differs that way", timeout=3)

    def action_divergence(self) -> None:
        if self.result is not None and self.result.diverged_at is not None:
            self.query_one("#traj-turns", DataTable).move_cursor(row=self.result.diverged_at)

    def action_swap(self) -> None:
        if self.result is not None:
            self.load(self.result.b.conversation_id, self.result.a.conversation_id)

    def action_tab(self, tab: str) -> None:
        self.query_one("#traj-tabs", TabbedContent).active = tab

    def action_copy(self) -> None:
        if self.result is not None:
            self.app.copy_to_clipboard(json.dumps(self.result.document(), ensure_ascii=False, indent=2))
            self.notify("copied the comparison as JSON", timeout=3)

    def action_back(self) -> None:
        self.app.pop_screen()


# -- from the conversation list --------------------------------------------------------------------


def toggle_mark(screen: ConversationsScreen) -> None:
    """`m` on the list: mark the highlighted conversation as A (again: unmark it)."""
    cid = screen.cursor_id()
    if cid is None:
        return
    if screen.marked == cid:
        screen.marked = None
        screen.sub_title = screen.home_subtitle()
        screen.notify("unmarked", timeout=3)
        return
    screen.marked = cid
    screen.sub_title = f"marked {cid}: c on another conversation compares them"
    screen.notify(f"marked {cid} as A: press c on another conversation to compare", timeout=5)


def compare_from_list(screen: ConversationsScreen) -> None:
    """`c` on the list: the marked conversation (A) against the highlighted one (B); with none
    marked, the highlighted one against its fork."""
    cid = screen.cursor_id()
    if cid is None:
        return
    if screen.marked == cid:
        screen.notify("this is the marked conversation: press c on another one", timeout=5)
        return
    screen.app.push_screen(TrajectoriesScreen(screen.marked, cid) if screen.marked else TrajectoriesScreen(cid))
