"""Making background workers' failures visible."""

from __future__ import annotations

from typing import Any

from textual.app import App
from textual.worker import Worker, WorkerState

from ..store.faults import described


def notify_worker_error(app: App[Any], event: Worker.StateChanged) -> None:
    """A worker reports its state to the screen (or app) that started it, and that message does
    not bubble: each of them calls this from its handler, or a failed load just never arrives."""
    if event.state == WorkerState.ERROR and event.worker.error is not None:
        err = event.worker.error
        # a damaged or unusable database in the words the command line uses for it
        said = described(err, getattr(app, "db_path", "the database"))
        app.notify(said or f"{type(err).__name__}: {err}", title="Could not load", severity="error", timeout=8)
