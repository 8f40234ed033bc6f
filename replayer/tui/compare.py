"""The compare screen: a rerun's original against each sample (output, tool calls, cost and
latency, and the request as sent against the original's)."""

from __future__ import annotations

import json

from rich.cells import cell_len
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Footer, Header, Static, TabbedContent, TabPane
from textual.widgets.data_table import ColumnKey

from .. import replay
from ..diffing import change_parts, unified
from ..fmt import delta_money, error_head, money, ms, ms_delta, plural, retry_note
from ..models import Comparison, Sample, SampleView
from ..wire import token_count
from .base import ReplayerScreen
from .render import request_diff_text, side_by_side
from .widgets import KeyTable, hold_cells_whole, keep_numbers_whole, push_past_edge


class CompareScreen(ReplayerScreen[None]):
    """The original against each sample: a row each, and the highlighted one in detail."""

    FIRST = {"Output", "Cost", "Δ cost", "Latency", "Δ lat"}
    """The numbers a user compares, left of the model and prompt columns: on screen whole at 100
    columns, the Stop column (a failed sample's error) giving way for them down to STOP_NARROWEST."""
    LATER = {"Prompt", "Δ prompt", "Hit"}
    NUMBERS = FIRST | LATER
    """Columns the screen's edge must never cut (widgets.keep_numbers_whole)."""
    STOP_NARROWEST = 8
    """`end_turn` and `tool_use` whole; a longer reason or an error cut with a visible …"""

    BINDINGS = [
        Binding("escape", "back", "Back", id="back"),
        Binding("u", "toggle_unified", "Unified/side by side", id="unified", tooltip="Switch the text diff view"),
        Binding("1", "tab('cmp-output')", "Output", id="tab-output", tooltip="What came back", show=False),
        Binding("2", "tab('cmp-request')", "Request", id="tab-request", tooltip="What was sent, against the original"),
        Binding("y", "copy", "Copy", id="copy", tooltip="Copy the comparison as JSON"),
    ]

    def __init__(self, result: Comparison) -> None:
        super().__init__()
        self.result = result
        self.unified = False
        self.model_width = 5
        self.stop_width = 4
        """The widths the Model and Stop columns would like: their widest cells (on_mount)."""
        self.held: dict[str, int] = {}
        """Each column's width that holds its cells whole (on_mount): what `fit_columns` starts from."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="cmp-title")
        yield KeyTable(id="cmp-samples", cursor_type="row", zebra_stripes=True)
        with TabbedContent(id="cmp-tabs", initial="cmp-output"):
            with TabPane("1 Output", id="cmp-output"):
                with Horizontal(id="cmp-body"):
                    yield VerticalScroll(Static("", id="cmp-left"), id="cmp-left-box")
                    yield VerticalScroll(Static("", id="cmp-right"), id="cmp-right-box")
                yield Static("", id="cmp-tools")
            with TabPane("2 Request sent", id="cmp-request"):
                yield VerticalScroll(Static("", id="cmp-request-body"), id="cmp-request-box")
        yield Footer()

    def on_mount(self) -> None:
        r = self.result
        s = r.spread
        calls = ", ".join(f"{k} {n}/{s.answered}" for k, n in s.tool_calls.items()) or "no tool calls"
        edits = replay.Edits.from_json(r.edits).names()
        self.sub_title = f"compare {r.variant}"
        self.query_one("#cmp-title", Static).update(
            Text.assemble(
                ("Compare ", "bold"),
                f"turn {r.turn_id} · edits: {', '.join(edits)} · "
                f"{plural(s.distinct_outputs, 'distinct output')} in {s.answered} of {s.samples} · {calls}",
            )
        )
        table = self.query_one("#cmp-samples", KeyTable)
        self.model_width = max(5, *(len(v.model or "") for v in [r.original, *r.samples]))  # ids shown whole
        # what a user compares first, then the rest (FIRST, LATER); each number column as wide as
        # its title or widest figure (hold_cells_whole): at 100 columns a failed sample's
        # `400 invalid_request_error: bad thing` (36) beside name, output, cost, Δ cost, latency
        # and Δ lat takes about 93, and the 9 and 10 wide columns these had took 103
        for col in ("", "Stop", "Output", "Cost", "Δ cost", "Latency", "Δ lat", "Model", "Prompt", "Δ prompt", "Hit"):
            table.add_column(col, key=col or "name", width=self.model_width if col == "Model" else len(col))
        for name, v in [("original", r.original), *((f"sample {i}", v) for i, v in enumerate(r.samples, 1))]:
            delta = v if isinstance(v, Sample) else None  # the original has no deltas
            table.add_row(
                name,
                # a failed sample's error where its stop reason would be, whole where there is room,
                # else cut with a visible … (the side panel has it all); a retried call's attempts
                self.stop_cell(v),
                Text("" if not v.usage else f"{token_count(v.usage, 'output_tokens'):,}", justify="right"),
                Text(money(v.cost_usd), justify="right"),
                Text(delta_money(delta.cost_delta_usd if delta else None), justify="right"),
                Text(ms(v.latency_ms), justify="right"),
                # the difference of the figures shown beside it (68 ms and 68 ms: 0 ms, not -1 ms)
                Text(ms_delta(v.latency_ms, r.original.latency_ms) if delta else "", justify="right"),
                # (Text: a str cell is read as markup); set right, as the figures are, so that a
                # column widened to start past the screen's edge has the id there (push_past_edge)
                Text(v.model or "", justify="right"),
                Text("" if v.prompt_tokens is None else f"{v.prompt_tokens:,}", justify="right"),
                Text(
                    "" if delta is None or delta.prompt_delta_tokens is None else f"{delta.prompt_delta_tokens:+,}",
                    justify="right",
                ),
                Text("" if v.cache_hit_rate is None else f"{v.cache_hit_rate:.0%}", justify="right"),
                key=name,
            )
        hold_cells_whole(table, {"name": 0, **{key: len(key) for key in self.NUMBERS}})
        self.stop_width = max(cell_len("Stop"), *(cell.cell_len for cell in table.get_column("Stop")))
        self.held = {str(c.key.value): c.width for c in table.ordered_columns}
        table.move_cursor(row=1 if r.samples else 0)
        table.focus()
        self.call_after_refresh(self.fit_columns)
        table.refit_with(self.fit_columns)
        self.show_sample()
        self.query_one("#cmp-request-body", Static).update(request_diff_text(r.request_diff))
        changed = [d.section for d in r.request_diff if d.changed]
        self.query_one("#cmp-tabs", TabbedContent).get_tab("cmp-request").label = (
            f"2 Request sent ({', '.join(changed)} changed)" if changed else "2 Request sent (as recorded)"
        )

    @staticmethod
    def stop_cell(v: SampleView) -> Text:
        """The Stop column's cell: the stop reason, or the call's error in red; and how many
        attempts it took when it was retried (in yellow: an answer after a 529 is no failure, but
        its time and retries are worth seeing). Cut with a visible … where the column is narrow."""
        err, note = v.error, retry_note(v)
        if err is not None:
            text = Text(f"{error_head(err)}: {err.get('message')}" + (f" · {note}" if note else ""), style="red")
        else:
            text = Text(v.stop_reason or "")
            if note:
                text.append((" · " if v.stop_reason else "") + note, style="yellow")
        text.no_wrap, text.overflow = True, "ellipsis"
        return text

    def _selected(self) -> Sample | None:
        row = self.query_one("#cmp-samples", DataTable).cursor_row
        return self.result.samples[row - 1] if row >= 1 and row - 1 < len(self.result.samples) else None

    @on(DataTable.RowHighlighted, "#cmp-samples")
    def highlighted(self) -> None:
        self.show_sample()

    def fit_columns(self) -> None:
        """Fit the columns to the table's edge, what a user compares first: each column as wide
        as what it holds, the Stop column giving way (down to STOP_NARROWEST, cut with …) until
        the FIRST numbers are on screen whole, or else pushing them off whole (below about 65
        columns); then the model id, when the edge would cut it (`claude-sonnet-4` read for
        `claude-sonnet-4-5`), starts past the edge whole, the room that takes blank at the edge
        (push_past_edge); else the model column (its ids set right) is widened so that the LATER
        numbers start past the edge whole. The Stop column does not grow to push the model id
        off: at 80 columns it was 23 wide beside `end_turn`, a blank between each stop reason and
        its figures."""
        table = self.query_one("#cmp-samples", DataTable)
        push_past_edge(table, (), self.held)  # (the last fit widened one)
        first = self.FIRST
        keep_numbers_whole(table, first, "Stop", self.stop_width, narrowest=self.STOP_NARROWEST, shown=first)
        push_past_edge(table, ["Model"], {})
        model = table.columns[ColumnKey("Model")].width
        keep_numbers_whole(table, self.NUMBERS, "Model", model, narrowest=model)

    def show_sample(self) -> None:
        v = self._selected()
        left = self.query_one("#cmp-left", Static)
        right = self.query_one("#cmp-right", Static)
        tools = self.query_one("#cmp-tools", Static)
        base = self.result.original
        row = self.query_one("#cmp-samples", DataTable).cursor_row
        self.query_one("#cmp-left-box").border_title = "original" + (" · unified diff" if self.unified and v else "")
        self.query_one("#cmp-right-box").border_title = f"sample {row}" if v is not None else ""
        if v is None:
            left.update(Text(base.text))
            right.update(Text("pick a sample to compare", style="dim"))
            tools.update("")
            return
        if v.error:
            left.update(Text(base.text))
            e = v.error
            right.update(Text(f"{error_head(e)}\n{e.get('message')}", style="bold red"))
        elif self.unified:
            diff = unified(base.text, v.text, "original", "sample") or "(the texts are identical)\n"
            t = Text()
            for line in diff.splitlines(keepends=True):
                style = (
                    "green"
                    if line.startswith("+")
                    else "red"
                    if line.startswith("-")
                    else "cyan"
                    if line.startswith("@@")
                    else ""
                )
                t.append(line, style=style)
            left.update(t)
            right.update(Text(v.text))
        else:
            a, b = side_by_side(v.words)
            left.update(a)
            right.update(b)
        t = Text("tool calls: ", style="bold")
        if not v.tool_diff:
            t.append("none on either side", style="dim")
        for d in v.tool_diff:
            style = {"same": "green", "changed": "yellow", "added": "bold green", "removed": "bold red"}[d.status]
            t.append(f"\n  {d.name} ", style="bold")
            t.append(d.status, style=style)
            for c in d.diff[:8]:
                t.append("\n    ")
                for text, _role in change_parts(c, "→"):
                    t.append(text)
            if d.status in ("added", "removed"):
                t.append(f"  {json.dumps(d.input)[:200]}")
        tools.update(t)

    def action_tab(self, tab: str) -> None:
        self.query_one("#cmp-tabs", TabbedContent).active = tab

    def action_toggle_unified(self) -> None:
        self.unified = not self.unified
        self.show_sample()

    def action_copy(self) -> None:
        doc = self.result.document(words=False)
        self.app.copy_to_clipboard(json.dumps(doc, ensure_ascii=False, indent=2))
        self.notify("copied the comparison as JSON", timeout=3)

    def action_back(self) -> None:
        self.app.pop_screen()
