"""Rerun in the terminal app: `r` on a turn opens this editor on its request as recorded; ctrl+j
(alt+enter) validates, estimates and asks (confirm.py) before sending 1-10 samples (send.py); the
compare screen (compare.py) shows the original against each sample, and variants.py reopens
earlier ones. All the work is replayer.replay's, in thread workers."""

from __future__ import annotations

import copy
import json
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.suggester import SuggestFromList
from textual.widgets import Footer, Header, Input, Label, Static, TextArea
from textual.worker import get_current_worker

from .. import replay
from ..fmt import money, plural
from ..wire import system_text
from .base import ReplayerScreen
from .confirm import ConfirmScreen
from .messages import EstimateReady, OriginalLoaded, RerunRefused, VariantsCounted, VariantStored
from .send import SendScreen
from .variants import VariantsScreen

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


class RerunScreen(ReplayerScreen[None]):
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

    def __init__(self, turn_id: str, *, fork: bool = False) -> None:
        super().__init__()
        self.turn_id = turn_id
        self.fork = fork
        """Fork mode (`f`): the edits apply to every request from this turn on, in a re-run of
        the recorded command (tui/fork.py), instead of samples of this one request."""
        self.orig: replay.Original | None = None
        self.paths: list[str] = []
        self.loaded: dict[str | None, str] = {}
        self.asking = False
        """An estimate is on its way or its confirmation is open: a second send key then did
        cancel the first estimate's worker, whose thread still answered, so two dialogs stacked
        and the second sent the samples again (a paid duplicate). Now the key waits for the answer."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Loading the recorded request…", id="rr-title")
        yield VerticalScroll(id="rr-form")
        yield Static("", id="rr-problems")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"{'fork' if self.fork else 'rerun'} {self.turn_id}"
        self.load()

    @work(thread=True, exclusive=True, group="rerun-load", exit_on_error=False)
    def load(self) -> None:
        from ..playback.fork_point import LiveError, recorded_command

        app = self.app
        try:
            with app.store() as store:
                orig = replay.original(store, self.turn_id)
                variants = store.variants_of(self.turn_id)
                if self.fork:  # refused before any editing when there is no command to run again
                    recorded_command(store, self.turn_id)
        except (replay.ReplayError, LiveError) as e:
            self.post_message(RerunRefused(str(e)))
            return
        self.post_message(OriginalLoaded(orig, variants))

    @on(RerunRefused)
    def fail(self, refused: RerunRefused) -> None:
        what = "fork the run at" if self.fork else "rerun"
        self.notify(refused.message, title=f"Can't {what} this turn", severity="error", timeout=8)
        self.app.pop_screen()

    @on(OriginalLoaded)
    def show(self, loaded: OriginalLoaded) -> None:
        self.orig = orig = loaded.original
        variants = loaded.variants
        req = orig.request
        models = [i for row in self.app.prices.effective_rows() for i in row.ids]
        self.show_title(len(variants))
        form = self.query_one("#rr-form", VerticalScroll)
        thinking: dict[str, Any] = req["thinking"] if isinstance(req.get("thinking"), dict) else {}
        rows = [
            Horizontal(  # side by side when the screen is wide enough, else one above the other (fit_fields)
                Horizontal(
                    Label("model "),
                    Input(str(req.get("model", "")), id="rr-model", suggester=SuggestFromList(models)),
                    Label(" max_tokens "),
                    Input(str(req.get("max_tokens", "")), id="rr-max-tokens", type="integer"),
                    classes="rr-row",
                ),
                Horizontal(
                    Label(" thinking "),
                    Input(str(thinking.get("budget_tokens", "")), id="rr-thinking", type="integer", placeholder="off"),
                    *([] if self.fork else [Label(" samples "), Input("1", id="rr-samples", type="integer")]),
                    classes="rr-row",
                ),
                id="rr-fields",
            ),
            Label("system prompt"),
            TextArea(system_text(req.get("system")), id="rr-system", classes="rr-text"),
        ]
        if self.fork:  # as `replayer fork --ignore`: a field that changes from run to run (a timestamp)
            rows[1:1] = [
                Label("ignore when matching the replayed turns (field paths, space-separated)"),
                Input("", id="rr-ignore", placeholder="e.g. metadata.user_id system.0.text"),
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
        self.call_after_refresh(self.fit_fields)

    def on_resize(self, event: Any) -> None:
        self.call_after_refresh(self.fit_fields)

    def fit_fields(self) -> None:
        """The short fields on one line when they fit the form's width, else on two: every
        field stays on screen (a row that doesn't wrap hid the samples at 80 columns)."""
        found = self.query("#rr-fields")
        if not found:
            return
        fields = found.first(Horizontal)
        needed = sum(w.outer_size.width for row in fields.query(".rr-row") for w in row.children)
        room = self.query_one("#rr-form", VerticalScroll).scrollable_content_region.width
        fields.set_class(needed > room, "stacked")

    def show_title(self, variants: int) -> None:
        orig = self.orig
        assert orig is not None
        rebuilt = " · history rebuilt from its thread" if orig.rebuilt else ""
        earlier = f"{plural(variants, 'earlier variant')} (ctrl+o)" if variants else "no earlier variants"
        if self.fork:
            earlier = "edits apply from this turn on · the recorded command runs again"
        self.query_one("#rr-title", Static).update(
            Text.assemble(
                ("Fork " if self.fork else "Rerun ", "bold"),
                f"turn {orig.index} of {orig.conversation_id}{rebuilt} · recorded {orig.model or '—'} · "
                f"{money(orig.cost_usd)} · {earlier} · send: ctrl+j",
            )
        )

    @on(VariantsCounted)
    def variants_counted(self, message: VariantsCounted) -> None:
        self.show_title(message.count)

    def on_screen_resume(self) -> None:
        """Back from a rerun (or the variants list): the count of earlier variants has changed."""
        if self.orig is not None:
            self.count_variants()

    @on(VariantStored)
    def variant_stored(self) -> None:
        """esc on the send screen is back here at once, before its samples are stored: counted
        on resume, the cancelled variant was left out until the editor was left and opened again."""
        if self.orig is not None:
            self.count_variants()

    @work(thread=True, exclusive=True, group="rerun-count", exit_on_error=False)
    def count_variants(self) -> None:
        app = self.app
        with app.store() as store:
            found = store.variants_of(self.turn_id)
        if not get_current_worker().is_cancelled:  # a later count (after more was stored) is on its way
            self.post_message(VariantsCounted(len(found)))

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
            e.set["max_tokens"] = _whole_number(mt, "max_tokens")
        budget = self.query_one("#rr-thinking", Input).value.strip()
        thinking: dict[str, Any] = req["thinking"] if isinstance(req.get("thinking"), dict) else {}
        if budget != str(thinking.get("budget_tokens", "")):
            e.set["thinking"] = (
                {"type": "enabled", "budget_tokens": _whole_number(budget, "thinking budget")} if budget else None
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
        if self.fork:  # one trajectory, not samples
            return e, 1
        samples = _whole_number(self.query_one("#rr-samples", Input).value.strip() or "1", "samples")
        if not 1 <= samples <= replay.MAX_SAMPLES:
            raise replay.ReplayError(f"samples: 1 to {replay.MAX_SAMPLES}")
        return e, samples

    def ignored(self) -> tuple[str, ...]:
        """The fork's --ignore paths (each checked: ReplayError names a bad one)."""
        from ..playback.matching import parse_path

        if not self.fork:
            return ()
        paths = tuple(self.query_one("#rr-ignore", Input).value.split())
        for path in paths:
            try:
                parse_path(path)
            except ValueError as e:
                raise replay.ReplayError(f"ignore {e}") from None
        return paths

    def action_send(self) -> None:
        if self.orig is None:
            return
        if self.asking:
            self.notify("The estimate is on its way: answer its confirmation first", timeout=4)
            return
        try:
            self.ignored()
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
        self.asking = True
        self.prepare(edits, req, samples, problems)

    def ready_to_send(self) -> None:
        self.asking = False

    @work(thread=True, exclusive=True, group="rerun-estimate", exit_on_error=False)
    def prepare(self, edits: replay.Edits, req: dict[str, Any], samples: int, problems: list[replay.Problem]) -> None:
        """The estimate needs the network (count_tokens): off the UI thread. Only one at a time
        (`asking`): until its confirmation is answered the send key does nothing."""
        app = self.app
        assert self.orig is not None
        try:
            sdk = replay.client({**self.orig.headers, **edits.headers}, max_retries=0)
            est = replay.estimate(self.orig, req, app.prices, samples, replay.counter(sdk))
        except replay.ReplayError as e:
            app.call_from_thread(self.notify, str(e), severity="error", timeout=8)
            app.call_from_thread(self.ready_to_send)
            return
        except BaseException:
            app.call_from_thread(self.ready_to_send)
            raise
        self.post_message(EstimateReady(edits, req, samples, problems, est))

    @on(EstimateReady)
    def confirm(self, ready: EstimateReady) -> None:
        orig = self.orig
        assert orig is not None  # prepare() runs only once the original is loaded

        def answered(go: bool | None) -> None:
            self.ready_to_send()
            if go and self.fork:
                from .fork import start_fork

                start_fork(self.app, self.turn_id, ready.edits, self.ignored())
            elif go:
                self.app.push_screen(SendScreen(orig, ready.edits, ready.request, ready.samples, editor=self))

        confirm = ConfirmScreen(ready.edits, ready.samples, ready.problems, ready.estimate, orig, fork=self.fork)
        self.app.push_screen(confirm, answered)

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_variants(self) -> None:
        if self.orig is not None:
            self.app.push_screen(VariantsScreen(self.orig))


def _whole_number(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise replay.ReplayError(f"{what}: {value!r} is not a whole number") from None


def _json(value: str, what: str) -> Any:
    try:
        return json.loads(value)
    except ValueError as e:
        raise replay.ReplayError(f"{what}: not valid JSON ({e})") from None
