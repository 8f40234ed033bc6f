"""The compare screen: a rerun's original against each sample (output, tool calls, cost and
latency, and the request as sent against the original's)."""

from __future__ import annotations

import json

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
from .widgets import KeyTable, hold_cells_whole, keep_numbers_whole


class CompareScreen(ReplayerScreen[None]):
    """The original against each sample: a row each, and the highlighted one in detail."""

    NUMBERS = {"Prompt", "Δ prompt", "Hit", "Output", "Cost", "Δ cost", "Latency", "Δ lat"}
    """Columns the screen's edge must never cut (widgets.keep_numbers_whole)."""
    STOP = 10

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
        model_width = max(len(v.model or "") for v in [r.original, *r.samples])  # ids shown whole
        for col, w in (("", 9), ("Model", max(5, model_width)), ("Stop", self.STOP), ("Prompt", 9), ("Δ prompt", 9),
                       ("Hit", 4), ("Output", 7),
                       ("Cost", 10), ("Δ cost", 10), ("Latency", 9), ("Δ lat", 8), ("Error", 40)):  # fmt: skip
            table.add_column(col, key=col or "name", width=w)
        for name, v in [("original", r.original), *((f"sample {i}", v) for i, v in enumerate(r.samples, 1))]:
            delta = v if isinstance(v, Sample) else None  # the original has no deltas
            table.add_row(
                name,
                Text(v.model or ""),  # (Text: a str cell is read as markup)
                Text(v.stop_reason or ""),
                Text("" if v.prompt_tokens is None else f"{v.prompt_tokens:,}", justify="right"),
                Text(
                    "" if delta is None or delta.prompt_delta_tokens is None else f"{delta.prompt_delta_tokens:+,}",
                    justify="right",
                ),
                Text("" if v.cache_hit_rate is None else f"{v.cache_hit_rate:.0%}", justify="right"),
                Text("" if not v.usage else f"{token_count(v.usage, 'output_tokens'):,}", justify="right"),
                Text(money(v.cost_usd), justify="right"),
                Text(delta_money(delta.cost_delta_usd if delta else None), justify="right"),
                Text(ms(v.latency_ms), justify="right"),
                # the difference of the figures shown beside it (68 ms and 68 ms: 0 ms, not -1 ms)
                Text(ms_delta(v.latency_ms, r.original.latency_ms) if delta else "", justify="right"),
                self.error_cell(v),
                key=name,
            )
        hold_cells_whole(table, {key: table.columns[ColumnKey(key)].width for key in self.NUMBERS})
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
    def error_cell(v: SampleView) -> Text:
        """The call's error in red, and how many attempts it took when it was retried (in
        yellow: an answer after a 529 is no failure, but its time and retries are worth seeing)."""
        err, note = v.error, retry_note(v)
        if err is None:
            return Text(note, style="yellow")
        return Text(f"{error_head(err)}: {err.get('message')}" + (f" · {note}" if note else ""), style="red")

    def _selected(self) -> Sample | None:
        row = self.query_one("#cmp-samples", DataTable).cursor_row
        return self.result.samples[row - 1] if row >= 1 and row - 1 < len(self.result.samples) else None

    @on(DataTable.RowHighlighted, "#cmp-samples")
    def highlighted(self) -> None:
        self.show_sample()

    def fit_columns(self) -> None:
        """A narrow screen: the stop reasons give way to the numbers (or push them off whole)."""
        keep_numbers_whole(self.query_one("#cmp-samples", DataTable), self.NUMBERS, "Stop", self.STOP, narrowest=8)

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
