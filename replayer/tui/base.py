"""The base of the app's screens: `app` typed as the ReplayerApp it is, and worker errors shown."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.screen import Screen, ScreenResultType
from textual.worker import Worker

from .workers import notify_worker_error

if TYPE_CHECKING:
    from textual import getters

    from .app import ReplayerApp


class ReplayerScreen(Screen[ScreenResultType]):
    """A screen of replayer's app. Textual calls each class's own `on_worker_state_changed` in
    the MRO, so a subclass's handler runs as well as this one: no need to call super()."""

    if TYPE_CHECKING:
        # for the type checker only, as Textual types MessagePump.app itself: at run time `app`
        # stays Textual's (the app imports the screens, so they can't import it back)
        app = getters.app(ReplayerApp)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        notify_worker_error(self.app, event)
