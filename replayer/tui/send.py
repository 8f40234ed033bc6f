"""Sending a rerun's samples: progress while they are out, then the comparison."""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Footer, Header, ProgressBar, Static

from .. import replay
from ..fmt import plural
from .base import ReplayerScreen
from .compare import CompareScreen
from .messages import ComparisonReady, SampleDone


class SendScreen(ReplayerScreen[None]):
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
        app = self.app

        def done(i: int, error: BaseException | None) -> None:
            self.post_message(SampleDone())

        variant = replay.send(app.db_path, self.orig, self.req, self.edits, samples=self.samples, on_done=done)
        with app.store() as store:
            result = replay.compare(store, self.orig, variant)
        self.post_message(ComparisonReady(result))

    @on(SampleDone)
    def advance(self) -> None:
        self.query_one("#rr-bar", ProgressBar).advance(1)

    @on(ComparisonReady)
    def finish(self, ready: ComparisonReady) -> None:
        self.app.switch_screen(CompareScreen(ready.result))
