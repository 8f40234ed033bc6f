"""Rerun in the terminal app: `r` on a turn opens the editor on its request as recorded; ctrl+j
(alt+enter) validates, estimates and asks before sending 1-10 samples; the compare screen shows
the original against each sample. All the work is replayer.replay's, in thread workers."""

from __future__ import annotations

import copy
import json
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.suggester import SuggestFromList
from textual.widgets import (
    Button,
    DataTable,
    Footer,
    Header,
    Input,
    Label,
    ProgressBar,
    Static,
    TabbedContent,
    TabPane,
    TextArea,
)

from .. import replay
from ..diffing import unified
from ..fmt import local_time, money, ms, plural
from .widgets import KeyTable
from .workers import ShowsWorkerErrors

EDITED = ("system", "messages", "model", "max_tokens", "thinking", "tools", "tool_choice")
"""Fields with an editor of their own; every other field is in the raw JSON editor."""


def _tool_result_text(block: dict[str, Any]) -> str | None:
    """A tool_result's content as editable text (None when it holds more than text)."""
    content = block.get("content")
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list) and all(isinstance(b, dict) and b.get("type") == "text" for b in content):
        return "\n".join(str(b.get("text", "")) for b in content)
    return None


def text_fields(request: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(path, label, text) of each editable text in the messages: string contents, text blocks,
    and tool_result contents that are text."""
    out = []
    for i, m in enumerate(request.get("messages") or []):
        if not isinstance(m, dict):
            continue
        role = m.get("role", "?")
        content = m.get("content")
        if isinstance(content, str):
            out.append((f"messages.{i}.content", f"message {i} · {role}", content))
            continue
        for j, b in enumerate(content if isinstance(content, list) else []):
            if not isinstance(b, dict):
                continue
            if b.get("type") == "text":
                out.append((f"messages.{i}.content.{j}.text", f"message {i} · {role} · text", str(b.get("text", ""))))
            elif b.get("type") == "tool_result":
                text = _tool_result_text(b)
                if text is not None:
                    flag = " · is_error" if b.get("is_error") else ""
                    label = f"message {i} · tool_result for {b.get('tool_use_id')}{flag}"
                    out.append((f"messages.{i}.content.{j}.content", label, text))
    return out


def _system_text(system: Any) -> str:
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "\n".join(str(b.get("text", "")) for b in system if isinstance(b, dict) and b.get("type") == "text")
    return ""


class RerunScreen(ShowsWorkerErrors, Screen[None]):
    """The editor: the turn's request as recorded, field by field."""

    BINDINGS = [
        Binding(
            "ctrl+j,alt+enter,ctrl+s",
            "send",
            "Send",
            id="send",
            tooltip="Validate, estimate, confirm, send (ctrl+j, alt+enter or ctrl+s)",
            priority=True,
        ),
        Binding("escape", "back", "Back", id="back", tooltip="Back to the conversation (edits are dropped)"),
        Binding("ctrl+o", "variants", "Variants", id="variants", tooltip="Reopen an earlier variant of this turn"),
    ]

    def __init__(self, turn_id: str) -> None:
        super().__init__()
        self.turn_id = turn_id
        self.orig: replay.Original | None = None
        self.paths: list[str] = []
        self.loaded: dict[str | None, str] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Loading the recorded request…", id="rr-title")
        yield VerticalScroll(id="rr-form")
        yield Static("", id="rr-problems")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"rerun {self.turn_id}"
        self.load()

    @work(thread=True, exclusive=True, group="rerun-load", exit_on_error=False)
    def load(self) -> None:
        app: Any = self.app
        try:
            with app.store() as store:
                orig = replay.original(store, self.turn_id)
                variants = replay.variants_of(store, self.turn_id)
        except replay.ReplayError as e:
            app.call_from_thread(self.fail, str(e))
            return
        app.call_from_thread(self.show, orig, variants)

    def fail(self, message: str) -> None:
        self.notify(message, title="Can't rerun this turn", severity="error", timeout=8)
        self.app.pop_screen()

    def show(self, orig: replay.Original, variants: list[dict[str, Any]]) -> None:
        self.orig = orig
        req = orig.request
        models = [i for row in self.app.prices.effective_rows() for i in row.ids]  # type: ignore[attr-defined]
        self.show_title(len(variants))
        form = self.query_one("#rr-form", VerticalScroll)
        thinking = req.get("thinking") if isinstance(req.get("thinking"), dict) else {}
        rows = [
            Horizontal(
                Label("model "),
                Input(str(req.get("model", "")), id="rr-model", suggester=SuggestFromList(models)),
                Label(" max_tokens "),
                Input(str(req.get("max_tokens", "")), id="rr-max-tokens", type="integer"),
                Label(" thinking "),
                Input(str(thinking.get("budget_tokens", "")), id="rr-thinking", type="integer", placeholder="off"),
                Label(" samples "),
                Input("1", id="rr-samples", type="integer"),
                classes="rr-row",
            ),
            Label("system prompt"),
            TextArea(_system_text(req.get("system")), id="rr-system", classes="rr-text"),
        ]
        self.paths = []
        for n, (path, label, text) in enumerate(text_fields(req)):
            self.paths.append(path)
            rows += [Label(label), TextArea(text, id=f"rr-msg-{n}", classes="rr-text")]
        other = {k: v for k, v in req.items() if k not in EDITED}
        rows += [
            Label("tool_choice (JSON)"),
            Input(
                json.dumps(req["tool_choice"]) if "tool_choice" in req else "", id="rr-tool-choice", placeholder="none"
            ),
            Label("tools (JSON)"),
            TextArea(
                json.dumps(req.get("tools"), indent=2) if "tools" in req else "",
                id="rr-tools",
                language="json",
                classes="rr-json",
            ),  # fmt: skip
            Label("other fields (JSON)"),
            TextArea(json.dumps(other, indent=2), id="rr-other", language="json", classes="rr-json"),
        ]
        # what each editor made of the recorded text (a TextArea rewrites mixed or unusual line
        # breaks): a field is edited when it differs from this, never merely from the record
        self.loaded = {w.id: w.text for w in rows if isinstance(w, TextArea)}
        form.mount_all(rows)
        self._widest_model = max([*map(len, models), 26])
        self.call_after_refresh(self.fit_model)
        self.query_one("#rr-system", TextArea).focus()

    @on(Input.Changed, "#rr-model")
    def fit_model(self) -> None:
        """The whole model id shows, as recorded or typed (border, padding and cursor take 5 columns)."""
        found = self.query("#rr-model")
        if not found:  # the form is still being mounted: its own Changed message comes after
            return
        box = found.first(Input)
        box.styles.width = max(getattr(self, "_widest_model", 26), len(box.value)) + 5

    def show_title(self, variants: int) -> None:
        orig = self.orig
        assert orig is not None
        rebuilt = " · history rebuilt from its thread" if orig.rebuilt else ""
        earlier = f"{plural(variants, 'earlier variant')} (ctrl+o)" if variants else "no earlier variants"
        self.query_one("#rr-title", Static).update(
            Text.assemble(
                ("Rerun ", "bold"),
                f"turn {orig.index} of {orig.conversation_id}{rebuilt} · recorded {orig.model or '—'} · "
                f"{money(orig.cost_usd)} · {earlier} · send: ctrl+j",
            )
        )

    def on_screen_resume(self) -> None:
        """Back from a rerun (or the variants list): the count of earlier variants has changed."""
        if self.orig is not None:
            self.count_variants()

    @work(thread=True, exclusive=True, group="rerun-count", exit_on_error=False)
    def count_variants(self) -> None:
        app: Any = self.app
        with app.store() as store:
            found = replay.variants_of(store, self.turn_id)
        app.call_from_thread(self.show_title, len(found))

    # -- the edits ---------------------------------------------------------------------------
    def edits(self) -> tuple[replay.Edits, int]:
        """The form as edits against the recorded request (only what changed), and the samples."""
        assert self.orig is not None
        req = self.orig.request
        e = replay.Edits()
        model = self.query_one("#rr-model", Input).value.strip()
        if model != req.get("model"):
            e.model = model
        system = self.query_one("#rr-system", TextArea).text
        if system != self.loaded["rr-system"]:
            e.system = system
        for n, path in enumerate(self.paths):
            text = self.query_one(f"#rr-msg-{n}", TextArea).text
            if text != self.loaded[f"rr-msg-{n}"]:
                e.set[path] = text
        mt = self.query_one("#rr-max-tokens", Input).value.strip()
        if mt != str(req.get("max_tokens", "")):
            e.set["max_tokens"] = _int(mt, "max_tokens")
        budget = self.query_one("#rr-thinking", Input).value.strip()
        thinking = req.get("thinking") if isinstance(req.get("thinking"), dict) else {}
        if budget != str(thinking.get("budget_tokens", "")):
            e.set["thinking"] = (
                {"type": "enabled", "budget_tokens": _int(budget, "thinking budget")} if budget else None
            )
        choice = self.query_one("#rr-tool-choice", Input).value.strip()
        if choice != (json.dumps(req["tool_choice"]) if "tool_choice" in req else ""):
            e.set["tool_choice"] = _json(choice, "tool_choice") if choice else None
        tools = self.query_one("#rr-tools", TextArea).text.strip()
        if (_json(tools, "tools") if tools else None) != req.get("tools"):
            e.set["tools"] = _json(tools, "tools") if tools else None
        other = _json(self.query_one("#rr-other", TextArea).text or "{}", "other fields")
        if not isinstance(other, dict):
            raise replay.ReplayError("other fields: must be a JSON object")
        before = {k: v for k, v in req.items() if k not in EDITED}
        for k in set(before) | set(other):
            if before.get(k) != other.get(k) or (k in before) != (k in other):
                e.set[k] = copy.deepcopy(other[k]) if k in other else None
        samples = _int(self.query_one("#rr-samples", Input).value.strip() or "1", "samples")
        if not 1 <= samples <= replay.MAX_SAMPLES:
            raise replay.ReplayError(f"samples: 1 to {replay.MAX_SAMPLES}")
        return e, samples

    def action_send(self) -> None:
        if self.orig is None:
            return
        try:
            edits, samples = self.edits()
            req = replay.apply(self.orig, edits)
        except replay.ReplayError as e:
            self.notify(str(e), severity="error", timeout=6)
            return
        problems = replay.validate(req, {**self.orig.headers, **edits.headers}, self.orig)
        text = Text()
        for p in problems:
            text.append("problem: " if p.blocking else "warning: ", style="bold red" if p.blocking else "bold yellow")
            text.append(p.message + "\n")
        self.query_one("#rr-problems", Static).update(text)
        self.prepare(edits, req, samples, problems)

    @work(thread=True, exclusive=True, group="rerun-estimate", exit_on_error=False)
    def prepare(self, edits: replay.Edits, req: dict[str, Any], samples: int, problems: list[replay.Problem]) -> None:
        """The estimate needs the network (count_tokens): off the UI thread."""
        app: Any = self.app
        assert self.orig is not None
        try:
            sdk = replay.client({**self.orig.headers, **edits.headers}, max_retries=0)
        except replay.ReplayError as e:
            app.call_from_thread(self.notify, str(e), severity="error", timeout=8)
            return
        est = replay.estimate(self.orig, req, app.prices, samples, replay.counter(sdk))
        app.call_from_thread(self.confirm, edits, req, samples, problems, est)

    def confirm(
        self,
        edits: replay.Edits,
        req: dict[str, Any],
        samples: int,
        problems: list[replay.Problem],
        est: replay.Estimate,
    ) -> None:
        def answered(go: bool | None) -> None:
            if go:
                self.app.push_screen(SendScreen(self.orig, edits, req, samples))  # type: ignore[arg-type]

        self.app.push_screen(ConfirmScreen(edits, samples, problems, est, self.orig), answered)  # type: ignore[arg-type]

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_variants(self) -> None:
        if self.orig is not None:
            self.app.push_screen(VariantsScreen(self.orig))


def _int(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise replay.ReplayError(f"{what}: {value!r} is not a whole number") from None


def _json(value: str, what: str) -> Any:
    try:
        return json.loads(value)
    except ValueError as e:
        raise replay.ReplayError(f"{what}: not valid JSON ({e})") from None


class ConfirmScreen(ModalScreen[bool]):
    """The estimate and any problems, before anything is sent."""

    BINDINGS = [
        Binding("escape,n", "answer(False)", "Cancel", id="cancel"),
        Binding("y,ctrl+j,alt+enter,ctrl+s", "answer(True)", "Send", id="confirm"),
    ]

    def __init__(
        self,
        edits: replay.Edits,
        samples: int,
        problems: list[replay.Problem],
        est: replay.Estimate,
        orig: replay.Original,
    ) -> None:
        super().__init__()
        self.edits, self.samples, self.problems, self.est, self.orig = edits, samples, problems, est, orig

    def compose(self) -> ComposeResult:
        e = self.est
        text = Text()
        text.append(f"Send {plural(self.samples, 'sample')}?\n\n", style="bold")
        text.append(f"edits: {', '.join(self.edits.names())}\n")
        text.append(
            f"estimate: {e.input_tokens:,} prompt tokens ({e.source}) + ~{e.output_tokens:,} output each: "
            f"{money(e.cost_usd)} for {self.samples} (at most {money(e.max_cost_usd)})\n"
            f"the original cost {money(self.orig.cost_usd)}\n"
        )
        blocking = [p for p in self.problems if p.blocking]
        for p in self.problems:
            text.append(
                "\nproblem: " if p.blocking else "\nwarning: ", style="bold red" if p.blocking else "bold yellow"
            )
            text.append(p.message)
        with Vertical(id="rr-confirm"):
            yield Static(text)
            with Horizontal(id="rr-buttons"):
                yield Button(
                    "Send anyway" if blocking else "Send", id="rr-go", variant="error" if blocking else "primary"
                )
                yield Button("Cancel", id="rr-cancel")

    @on(Button.Pressed, "#rr-go")
    def go(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#rr-cancel")
    def cancel(self) -> None:
        self.dismiss(False)

    def action_answer(self, go: bool) -> None:
        self.dismiss(go)


class SendScreen(ShowsWorkerErrors, Screen[None]):
    """Progress while the samples are out; then the comparison."""

    def __init__(self, orig: replay.Original, edits: replay.Edits, req: dict[str, Any], samples: int) -> None:
        super().__init__()
        self.orig, self.edits, self.req, self.samples = orig, edits, req, samples

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="rr-progress"):
            yield Static(f"Sending {plural(self.samples, 'sample')} of {self.req.get('model')}…", id="rr-progress-text")
            yield ProgressBar(total=self.samples, id="rr-bar")
        yield Footer()

    def on_mount(self) -> None:
        self.go()

    @work(thread=True, exclusive=True, group="rerun-send", exit_on_error=False)
    def go(self) -> None:
        app: Any = self.app

        def done(i: int, error: BaseException | None) -> None:
            app.call_from_thread(self.query_one("#rr-bar", ProgressBar).advance, 1)

        variant = replay.send(app.db_path, self.orig, self.req, self.edits, samples=self.samples, on_done=done)
        with app.store() as store:
            result = replay.compare(store, self.orig, variant)
        app.call_from_thread(self.finish, result)

    def finish(self, result: dict[str, Any]) -> None:
        self.app.switch_screen(CompareScreen(result))


def side_by_side(words: list[tuple[str, str]]) -> tuple[Text, Text]:
    """The original with what the sample removed struck red, and the sample with what it added green."""
    left, right = Text(), Text()
    for op, chunk in words:
        if op == "=":
            left.append(chunk)
            right.append(chunk)
        elif op == "-":
            left.append(chunk, style="bold red strike")
        else:
            right.append(chunk, style="bold green")
    return left, right


class CompareScreen(ShowsWorkerErrors, Screen[None]):
    """The original against each sample: a row each, and the highlighted one in detail."""

    BINDINGS = [
        Binding("escape", "back", "Back", id="back"),
        Binding("u", "toggle_unified", "Unified/side by side", id="unified", tooltip="Switch the text diff view"),
        Binding("1", "tab('cmp-output')", "Output", id="tab-output", tooltip="What came back", show=False),
        Binding(
            "2", "tab('cmp-request')", "Request", id="tab-request", tooltip="What was sent, against the original"
        ),
        Binding("y", "copy", "Copy", id="copy", tooltip="Copy the comparison as JSON"),
    ]

    def __init__(self, result: dict[str, Any]) -> None:
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
        s = r["spread"]
        calls = ", ".join(f"{k} {n}/{s['answered']}" for k, n in s["tool_calls"].items()) or "no tool calls"
        edits = replay.Edits.from_json(r["edits"]).names()
        self.sub_title = f"compare {r['variant']}"
        self.query_one("#cmp-title", Static).update(
            Text.assemble(
                ("Compare ", "bold"),
                f"turn {r['turn_id']} · edits: {', '.join(edits)} · "
                f"{plural(s['distinct_outputs'], 'distinct output')} in {s['answered']} of {s['samples']} · {calls}",
            )
        )
        table = self.query_one("#cmp-samples", DataTable)
        model_width = max(len(v["model"] or "") for v in [r["original"], *r["samples"]])  # ids shown whole
        for col, w in (("", 9), ("Model", max(5, model_width)), ("Stop", 10), ("Prompt", 9), ("Δ prompt", 9),
                       ("Hit", 4), ("Output", 7),
                       ("Cost", 10), ("Δ cost", 10), ("Latency", 9), ("Δ lat", 8), ("Error", 40)):  # fmt: skip
            table.add_column(col, key=col or "name", width=w)
        for name, v in [("original", r["original"]), *((f"sample {i}", v) for i, v in enumerate(r["samples"], 1))]:
            usage = v["usage"] or {}
            err = v["error"]
            table.add_row(
                name,
                v["model"] or "",
                v["stop_reason"] or "",
                Text("" if v.get("prompt_tokens") is None else f"{v['prompt_tokens']:,}", justify="right"),
                Text("" if v.get("prompt_delta_tokens") is None else f"{v['prompt_delta_tokens']:+,}", justify="right"),
                Text("" if v.get("cache_hit_rate") is None else f"{v['cache_hit_rate']:.0%}", justify="right"),
                Text(f"{usage.get('output_tokens', 0):,}", justify="right"),
                Text(money(v["cost_usd"]), justify="right"),
                Text(_delta_money(v.get("cost_delta_usd")), justify="right"),
                Text("" if v["latency_ms"] is None else f"{v['latency_ms']:,.0f} ms", justify="right"),
                Text(ms(v.get("latency_delta_ms"), signed=True), justify="right"),
                Text(f"{err.get('status') or ''} {err.get('type')}: {err.get('message')}" if err else "", style="red"),
                key=name,
            )
        table.move_cursor(row=1 if r["samples"] else 0)
        table.focus()
        self.show_sample()
        self.query_one("#cmp-request-body", Static).update(request_diff_text(r.get("request_diff") or []))
        changed = [d["section"] for d in r.get("request_diff") or [] if d["changed"]]
        self.query_one("#cmp-tabs", TabbedContent).get_tab("cmp-request").label = (
            f"2 Request sent ({', '.join(changed)} changed)" if changed else "2 Request sent (as recorded)"
        )

    def _selected(self) -> dict[str, Any] | None:
        row = self.query_one("#cmp-samples", DataTable).cursor_row
        return self.result["samples"][row - 1] if row >= 1 and row - 1 < len(self.result["samples"]) else None

    @on(DataTable.RowHighlighted, "#cmp-samples")
    def highlighted(self) -> None:
        self.show_sample()

    def show_sample(self) -> None:
        v = self._selected()
        left = self.query_one("#cmp-left", Static)
        right = self.query_one("#cmp-right", Static)
        tools = self.query_one("#cmp-tools", Static)
        base = self.result["original"]
        row = self.query_one("#cmp-samples", DataTable).cursor_row
        self.query_one("#cmp-left-box").border_title = "original" + (" · unified diff" if self.unified and v else "")
        self.query_one("#cmp-right-box").border_title = f"sample {row}" if v is not None else ""
        if v is None:
            left.update(Text(base["text"]))
            right.update(Text("pick a sample to compare", style="dim"))
            tools.update("")
            return
        if v["error"]:
            left.update(Text(base["text"]))
            e = v["error"]
            right.update(Text(f"{e.get('status') or ''} {e.get('type')}\n{e.get('message')}", style="bold red"))
        elif self.unified:
            diff = unified(base["text"], v["text"], "original", "sample") or "(the texts are identical)\n"
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
            right.update(Text(v["text"]))
        else:
            a, b = side_by_side(v["words"])
            left.update(a)
            right.update(b)
        t = Text("tool calls: ", style="bold")
        if not v["tool_diff"]:
            t.append("none on either side", style="dim")
        for d in v["tool_diff"]:
            style = {"same": "green", "changed": "yellow", "added": "bold green", "removed": "bold red"}[d["status"]]
            t.append(f"\n  {d['name']} ", style="bold")
            t.append(d["status"], style=style)
            for c in d["diff"][:8]:
                t.append(f"\n    {c['path']}: {json.dumps(c['old'])} → {json.dumps(c['new'])}")
            if d["status"] in ("added", "removed"):
                t.append(f"  {json.dumps(d['input'])[:200]}")
        tools.update(t)

    def action_tab(self, tab: str) -> None:
        self.query_one("#cmp-tabs", TabbedContent).active = tab

    def action_toggle_unified(self) -> None:
        self.unified = not self.unified
        self.show_sample()

    def action_copy(self) -> None:
        doc = copy.deepcopy(self.result)
        for v in [doc["original"], *doc["samples"]]:
            v.pop("words", None)
        self.app.copy_to_clipboard(json.dumps(doc, ensure_ascii=False, indent=2))
        self.notify("copied the comparison as JSON", timeout=3)

    def action_back(self) -> None:
        self.app.pop_screen()


LINE_CUT = 2_000
"""Characters of one diff line shown (a recorded megabyte tool result is one line)."""


def request_diff_text(sections: list[dict[str, Any]]) -> Text:
    """diffing.request_diff as coloured text: each section with what changed, or that it is
    the same as the original's."""
    out = Text()
    if not sections:
        return Text("no sample was recorded: nothing to compare", style="dim")
    for d in sections:
        if not d["changed"]:
            out.append(f"{d['section']}", style="bold")
            out.append("  same as the original\n\n", style="dim")
            continue
        out.append(f"{d['section']}", style="bold")
        out.append(f"  -{d['removed']} +{d['added']} lines\n", style="yellow")
        for op, line in d["lines"]:
            more = len(line) - LINE_CUT
            shown = line if more <= 0 else line[:LINE_CUT] + f" … ({plural(more, 'more character')})"
            if op == "@":
                out.append(f"  {shown}\n", style="cyan")
            elif op == "-":
                out.append(f"- {shown}\n", style="red")
            elif op == "+":
                out.append(f"+ {shown}\n", style="green")
            else:
                out.append(f"  {shown}\n", style="dim")
        out.append("\n")
    return out


def _delta_money(v: float | None) -> str:
    if v is None:
        return ""
    return ("+" if v >= 0 else "-") + money(abs(v))


class VariantsScreen(ShowsWorkerErrors, Screen[None]):
    """Earlier variants of a turn; enter reopens one's comparison."""

    BINDINGS = [Binding("escape", "back", "Back", id="back")]

    def __init__(self, orig: replay.Original) -> None:
        super().__init__()
        self.orig = orig
        self.variants: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield KeyTable(id="variants", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for col, w in (("Variant", 34), ("Created", 16), ("Samples", 8), ("Edits", 60)):  # a variant id is 34
            table.add_column(col, key=col, width=w)
        self.load()

    @work(thread=True, exclusive=True, group="variants", exit_on_error=False)
    def load(self) -> None:
        app: Any = self.app
        with app.store() as store:
            found = replay.variants_of(store, self.orig.turn_id)
        app.call_from_thread(self.show, found)

    def show(self, found: list[dict[str, Any]]) -> None:
        self.variants = found
        table = self.query_one(DataTable)
        for v in found:
            names = replay.Edits.from_json(v["edits"]).names()
            created = local_time(v["created_at"])
            variant = Text(v["variant"], no_wrap=True, overflow="ellipsis")  # never cut silently
            table.add_row(variant, created, str(v["samples"]), ", ".join(names), key=v["variant"])
        if not found:
            self.notify("no earlier variants of this turn", timeout=3)
        table.focus()

    @on(DataTable.RowSelected, "#variants")
    def selected(self, event: DataTable.RowSelected) -> None:
        self.open(str(event.row_key.value))

    @work(thread=True, exclusive=True, group="variants", exit_on_error=False)
    def open(self, variant: str) -> None:
        app: Any = self.app
        with app.store() as store:
            result = replay.compare(store, self.orig, variant)
        app.call_from_thread(app.push_screen, CompareScreen(result))

    def action_back(self) -> None:
        self.app.pop_screen()
