"""Sending a rerun's samples: progress while they are out, then the comparison.

esc cancels: the wait ends at once (replay.send stores the samples still out as abandoned and
records nothing that comes for them later), and the editor is back. Leaving the screen any other
way (ctrl+q) cancels too, so nothing waits for an answer that may never come."""

from __future__ import annotations

import threading
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message_pump import MessagePump
from textual.widgets import Footer, Header, ProgressBar, Static

from .. import comparison, replay
from ..fmt import plural
from .base import ReplayerScreen
from .compare import CompareScreen
from .messages import ComparisonReady, SampleDone, VariantStored


class SendScreen(ReplayerScreen[None]):
    """Progress while the samples are out; then the comparison."""

    BINDINGS = [
        Binding(
            "escape",
            "cancel",
            "Cancel",
            id="cancel",
            tooltip="Stop waiting and go back to the editor (samples not answered yet are stored as abandoned)",
        ),
    ]

    def __init__(
        self,
        orig: replay.Original,
        edits: replay.Edits,
        req: dict[str, Any],
        samples: int,
        *,
        editor: MessagePump | None = None,
    ) -> None:
        super().__init__()
        self.orig, self.edits, self.req, self.samples = orig, edits, req, samples
        self.editor = editor
        """Told when a cancelled send has stored its samples (VariantStored): it is back on screen by then."""
        self.cancelled = threading.Event()
        """Set when the screen is left before the comparison: replay.send stops waiting."""
        self.answered = 0

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
        app = self.app

        def done(i: int, error: BaseException | None) -> None:
            self.post_message(SampleDone())

        cancelled = self.cancelled
        variant = replay.send(
            app.db_path, self.orig, self.req, self.edits, samples=self.samples, on_done=done, cancel=cancelled
        )
        if cancelled.is_set():  # the screen was left: nothing to show
            if self.editor is not None:
                self.editor.post_message(VariantStored())
            return
        with app.store() as store:
            result = comparison.compare(store, self.orig, variant)
        self.post_message(ComparisonReady(result))

    @on(SampleDone)
    def advance(self) -> None:
        self.answered += 1
        self.query_one("#rr-bar", ProgressBar).advance(1)

    @on(ComparisonReady)
    def finish(self, ready: ComparisonReady) -> None:
        if not self.cancelled.is_set():
            self.app.switch_screen(CompareScreen(ready.result))

    def action_cancel(self) -> None:
        self.cancelled.set()
        left = self.samples - self.answered
        self.notify(f"{plural(left, 'sample')} abandoned before an answer came", title="Rerun cancelled")
        self.app.pop_screen()

    def on_unmount(self) -> None:
        self.cancelled.set()
