"""`replayer browse`: the terminal app. A thin layer over the headless store.

The UI never runs SQL and never blocks on I/O: screens ask the store (one connection per worker
thread) for typed models inside thread workers and get them back on the UI thread. Worker errors
are shown as a notice by workers.notify_worker_error, from the app and from every screen (base.
ReplayerScreen): a worker's state message goes to its screen and doesn't bubble.
"""

from __future__ import annotations

import enum
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from textual.app import App
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.worker import Worker

from ..config import Settings
from ..fmt import plural
from ..models import Stats
from ..pricing import PriceTable
from ..store.codec import readable
from ..store.queries import Store
from ..store.schema import open_db
from .workers import notify_worker_error


class _Keys(str, enum.Enum):  # noqa: UP042 (shaped like textual.keys.Keys, which the parser expects)
    ALT_ENTER = "alt+enter"


def read_escape_cr_as_alt_enter() -> None:
    """Terminals that don't speak the kitty keyboard protocol (tmux, xterm, most SSH sessions)
    send alt+enter as ESC CR. Textual 8 reads that as a plain enter, so "send" typed a newline
    into the editor instead (an edit the user never made). Read ESC CR as the alt+enter it is."""
    from textual import _ansi_sequences

    table = cast(dict[str, Any], _ansi_sequences.ANSI_SEQUENCES_KEYS)
    table.setdefault("\x1b\r", (_Keys.ALT_ENTER,))


read_escape_cr_as_alt_enter()


PALETTE_NEWEST = 200
"""Conversations the palette offers before anything is typed into it (the newest)."""
PALETTE_BY_ID = 20
"""...and those it adds whose id begins with what was typed."""


class GotoProvider(Provider):
    """Command palette: go to a conversation (by id, user or first message) or a turn."""

    async def search(self, query: str) -> Hits:
        app = cast("ReplayerApp", self.app)
        matcher = self.matcher(query)
        for label, action, help_text in await _in_thread(lambda: app.palette_entries(query.strip())):
            score = matcher.match(label)
            if score > 0:
                yield Hit(score, matcher.highlight(label), action, help=help_text)

    async def discover(self) -> Hits:
        app = cast("ReplayerApp", self.app)
        for label, action, help_text in (await _in_thread(app.palette_entries))[:20]:
            yield DiscoveryHit(label, action, help=help_text)


async def _in_thread(fn: Any) -> Any:
    import asyncio

    return await asyncio.get_running_loop().run_in_executor(None, fn)


class ReplayerApp(App[None]):
    TITLE = "replayer"
    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {GotoProvider}
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", id="quit", tooltip="Leave replayer", priority=True),
        # ? as well: a terminal may keep F1 for itself (a text field still takes ? as text)
        Binding("f1,question_mark", "help", "Help", id="help", tooltip="Keys for what is on screen"),
    ]

    def __init__(
        self,
        db_path: str | Path,
        prices: PriceTable | None = None,
        *,
        refresh_seconds: float = 2.0,
        settings: Settings | None = None,
    ):
        super().__init__()
        self.db_path = Path(db_path)
        self.prices = prices or PriceTable.load()
        given = settings or Settings()
        self.settings = replace(given, tz=given.shown_tz())
        """Thresholds, budget and the time zone (replayer.config): one zone on every screen, the
        dashboard's days and the times listed alike, the settings' or else the machine's."""
        self.refresh_seconds = refresh_seconds
        self._pool: queue.SimpleQueue[Store] = queue.SimpleQueue()
        self._stats_lock = threading.Lock()
        self._stats_cache: dict[int, tuple[float, Stats]] = {}

    def copy_to_clipboard(self, text: str) -> None:
        # a lone surrogate (a byte of a recorded body that was no UTF-8) as the screen shows it,
        # U+FFFD: the terminal's clipboard sequence carries UTF-8, which has no surrogate
        super().copy_to_clipboard(readable(text))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        notify_worker_error(self, event)

    # -- data access (worker threads only) ----------------------------------------------------
    @contextmanager
    def store(self) -> Iterator[Store]:
        """A connection of the app's own, lent to one worker at a time. Textual starts a thread per
        worker, so connections are pooled rather than kept per thread: opening one per keypress
        would cost more than the query. A pooled Store keeps its caches warm between turns."""
        try:
            store = self._pool.get_nowait()
        except queue.Empty:
            store = Store(open_db(self.db_path, create=False), self.prices)
        try:
            yield store
        finally:
            # a read connection left inside a transaction keeps reading the snapshot it began
            # with: every later worker would see a frozen database (only temp scratch is undone)
            if store.db.conn.in_transaction:
                store.db.conn.rollback()
            self._pool.put(store)

    def stats_doc(self, days: int, max_age: float = 30.0) -> Stats:
        """What the dashboard shows (metrics.stats) for the last `days`, computed at most once
        at a time and kept `max_age` seconds, so going back to the dashboard is instant."""
        import time

        from ..metrics import stats

        with self._stats_lock:
            cached = self._stats_cache.get(days)
            if cached is not None and time.monotonic() - cached[0] < max_age:
                return cached[1]
            with self.store() as store:
                doc = stats(store, self.settings, days=days)
            self._stats_cache[days] = (time.monotonic(), doc)
            return doc

    def palette_entries(self, query: str = "") -> list[tuple[str, Any, str]]:
        """The newest conversations, those whose id begins with `query` however old (an id
        typed or pasted whole), the turns whose id begins with it (in any conversation: a turn
        id from `show --json` or `rerun`), and the open conversation's turns."""
        entries: list[tuple[str, Any, str]] = []
        with self.store() as store:
            conversations = store.conversations(limit=PALETTE_NEWEST)
            _, by_id = store.ids_starting(query.removeprefix("conversation").strip(), limit=PALETTE_BY_ID)
            turns = store.turns_starting(query.removeprefix("turn ").strip(), limit=PALETTE_BY_ID)
        for c in conversations:
            label = f"conversation {c.conversation_id}  {c.user_id or ''}  {(c.first_message or '')[:40]}"
            entries.append((label, lambda cid=c.conversation_id: self.open_conversation(cid), plural(c.turns, "turn")))
        shown = {c.conversation_id for c in conversations}
        for cid in by_id:
            if cid not in shown:
                entries.append((f"conversation {cid}", lambda cid=cid: self.open_conversation(cid), "by its id"))
        for tid, cid, index in turns:
            entries.append(
                (f"turn {tid}", lambda cid=cid, i=index: self.open_conversation(cid, i), f"turn {index} of {cid}")
            )
        from .conversation import ConversationScreen

        # the palette is a screen of its own: the conversation is the one underneath it
        under = next((sc for sc in reversed(self.screen_stack) if isinstance(sc, ConversationScreen)), None)
        for row, t in enumerate(under.timeline if under is not None else []):
            entries.append(
                (
                    f"turn {t.index}  {t.stop_reason or ''}  {', '.join(t.tool_calls)}",
                    lambda i=row, sc=under: sc.goto_turn(i),
                    "in this conversation",
                )
            )
        return entries

    # -- navigation ---------------------------------------------------------------------------
    def on_mount(self) -> None:
        from .conversations import ConversationsScreen

        self.push_screen(ConversationsScreen())

    def open_conversation(self, conversation_id: str, turn: int | None = None) -> None:
        """Open a conversation one step above the conversation list: a jump from the palette
        (from a conversation, the dashboard or the rerun screens) replaces what was open instead
        of stacking on it, so esc always goes back to the list."""
        from .conversation import ConversationScreen
        from .conversations import ConversationsScreen

        home = next((i for i, sc in enumerate(self.screen_stack) if isinstance(sc, ConversationsScreen)), None)
        if home is not None:
            while len(self.screen_stack) > home + 1:
                self.pop_screen()
        self.push_screen(ConversationScreen(conversation_id, turn))

    def action_help(self) -> None:
        from .help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))


def make_app(db_path: str | Path, prices: PriceTable | None = None, **kwargs: Any) -> ReplayerApp:
    """The one factory the CLI and the tests use."""
    return ReplayerApp(db_path, prices, **kwargs)
