"""Earlier variants of a turn (its past reruns); enter reopens one's comparison."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header

from .. import comparison, replay
from ..fmt import local_time
from ..models import Variant
from .base import ReplayerScreen
from .compare import CompareScreen
from .messages import ComparisonReady, VariantsLoaded
from .widgets import KeyTable


class VariantsScreen(ReplayerScreen[None]):
    """Earlier variants of a turn; enter reopens one's comparison."""

    BINDINGS = [Binding("escape", "back", "Back", id="back")]

    def __init__(self, orig: replay.Original) -> None:
        super().__init__()
        self.orig = orig
        self.variants: list[Variant] = []

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
        app = self.app
        with app.store() as store:
            found = store.variants_of(self.orig.turn_id)
        self.post_message(VariantsLoaded(found))

    @on(VariantsLoaded)
    def show(self, loaded: VariantsLoaded) -> None:
        found = loaded.variants
        self.variants = found
        table = self.query_one(DataTable)
        for v in found:
            names = replay.Edits.from_json(v.edits).names()
            created = local_time(v.created_at, tz=self.app.settings.tz)
            variant = Text(v.variant, no_wrap=True, overflow="ellipsis")  # never cut silently
            table.add_row(variant, created, str(v.samples), ", ".join(names), key=v.variant)
        if not found:
            self.notify("no earlier variants of this turn", timeout=3)
        table.focus()

    @on(DataTable.RowSelected, "#variants")
    def selected(self, event: DataTable.RowSelected) -> None:
        self.open(str(event.row_key.value))

    @work(thread=True, exclusive=True, group="variants", exit_on_error=False)
    def open(self, variant: str) -> None:
        app = self.app
        with app.store() as store:
            result = comparison.compare(store, self.orig, variant)
        self.post_message(ComparisonReady(result))

    @on(ComparisonReady)
    def show_comparison(self, ready: ComparisonReady) -> None:
        self.app.push_screen(CompareScreen(ready.result))

    def action_back(self) -> None:
        self.app.pop_screen()
