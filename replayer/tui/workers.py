"""Making background workers' failures visible."""

from __future__ import annotations

from textual.worker import Worker, WorkerState


class ShowsWorkerErrors:
    """A worker reports its state to the screen (or app) that started it, and that message does
    not bubble: each of them needs this handler, or a failed load just never arrives."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            err = event.worker.error
            self.app.notify(  # type: ignore[attr-defined]
                f"{type(err).__name__}: {err}", title="Could not load", severity="error", timeout=8
            )
