"""The dashboard (`d` from the conversation list): spend per user and day, spend by model, the
health metrics against their thresholds, and the alerts. It shows what `replayer stats` computes
(metrics.stats), fetched in a thread worker; a chosen user is returned (dismiss) to the screen
that opened it, which filters the conversation list to them."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import ScrollableContainer, Vertical, VerticalScroll
from textual.widgets import DataTable, Footer, Header, Static

from ..config import LOWER_IS_BAD
from ..fmt import cost_spread, day_spend, describe_alert, health_word, metric_label, metric_pair, money, plural, spend
from ..models import Stats
from .base import ReplayerScreen
from .messages import StatsLoaded
from .widgets import KeyTable, keep_numbers_whole

TOP = 10
COLOURS = ["#1f77b4", "#e06000", "#2e8b2e", "#d62728", "#8e5cc9", "#a88000", "#11939c", "#d1479e", "#5a6e00", "#8c564b"]
"""The top users' colours: ten hues far apart from each other and from OTHERS (the bars put any
two side by side), and mid-tone, so that each reads on a dark background and on a light one."""
OTHERS = "#8a8a8a"
BAR = 40


def spend_bars(doc: Stats) -> Text:
    """One stacked bar per day: the top users' shares in their colours, the rest in grey."""
    users = doc.users
    top = users[:TOP]
    colour = {u.user_id: COLOURS[i % len(COLOURS)] for i, u in enumerate(top)}
    days = [d.date for d in doc.days]
    totals = {d.date: d for d in doc.days}
    per_day: dict[str, list[tuple[str, float]]] = {d: [] for d in days}
    rest: dict[str, float] = dict.fromkeys(days, 0.0)  # the others, summed into one segment
    for u in users:
        style = colour.get(u.user_id)
        for d in u.days:
            if d.cost_usd:
                if style is None:
                    rest[d.date] += d.cost_usd
                else:
                    per_day[d.date].append((style, d.cost_usd))
    for date, c in rest.items():
        if c:
            per_day[date].append((OTHERS, c))
    peak = max((sum(c for _, c in v) for v in per_day.values()), default=0.0)
    text = Text()
    for date in days:
        text.append(f"{date[5:]} ", style="dim")
        # each segment ends where the day's running sum does, rounded: the bar's length is the
        # day's spend however many users share it (rounding each alone lost the small ones)
        width = 0
        total = 0.0
        for style, c in per_day[date]:
            total += c
            end = round(total / peak * BAR) if peak else 0
            text.append("█" * (end - width), style=style)
            width = end
        text.append(" " * (BAR - width + 1))
        text.append(f"{day_spend(totals[date])}\n")
    text.append("\n")
    for u in top:
        text.append("■ ", style=colour[u.user_id])
        text.append(f"{u.user_id or '(no user)'}  ")
    if len(users) > TOP:
        text.append("■ ", style=OTHERS)
        text.append(f"{len(users) - TOP} others")
    return text


NAME_NARROWEST = 8
"""The least a user, health metric or model name is cut to before a number goes off screen whole."""


class DashboardScreen(ReplayerScreen[str | None]):
    """Spend and health over the last days."""

    BINDINGS = [
        Binding("escape", "back", "Back", id="back", tooltip="Back to the conversation list"),
        Binding("ctrl+r", "reload", "Refresh", id="refresh", tooltip="Recompute from the database"),
        Binding("plus,equals_sign", "days(1)", "More days", id="more-days", tooltip="One more day (+)"),
        Binding("minus", "days(-1)", "Fewer days", id="fewer-days", tooltip="One day fewer (-)"),
        Binding("enter", "pick_user", "Show user", id="pick-user", tooltip="Conversations of the highlighted user"),
    ]

    WIDTHS = {"User": 24, "Cost": 10, "Today": 10, "Conv": 5, "Turns": 6, "Health": 30, "Model": 34}
    NUMBERS = {"Cost", "Today", "Conv", "Turns", "Value", "Alert at"}
    """Columns the screen's edge must never cut (widgets.keep_numbers_whole)."""

    def __init__(self, days: int | None = None) -> None:
        super().__init__()
        self.days = days
        self.doc: Stats | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Loading…", id="dash-title")
        with ScrollableContainer(id="dash-body"):  # side by side; one scrolling column when narrow
            with VerticalScroll(id="dash-left"):
                yield Static("", id="dash-bars")
                yield KeyTable(id="dash-users", cursor_type="row", zebra_stripes=True)
            with Vertical(id="dash-right"):
                yield _shown(KeyTable(id="dash-metrics", cursor_type="none"))
                yield _shown(KeyTable(id="dash-models", cursor_type="none"))
                yield Static("", id="dash-alerts")
        yield Footer()

    def on_resize(self, event: Any) -> None:
        self.set_class(event.size.width < 120, "narrow")  # the tables' own resize fits their columns

    def fit_columns(self) -> None:
        """A narrow screen: the names give way to the numbers (or push them off whole)."""
        for table, name in (("#dash-users", "User"), ("#dash-metrics", "Health"), ("#dash-models", "Model")):
            keep_numbers_whole(
                self.query_one(table, DataTable), self.NUMBERS, name, self.WIDTHS[name], narrowest=NAME_NARROWEST
            )

    def on_mount(self) -> None:
        self.set_class(self.app.size.width < 120, "narrow")
        self.sub_title = "dashboard"
        if self.days is None:
            self.days = self.app.settings.days
        users = self.query_one("#dash-users", KeyTable)
        for col in ("User", "Cost", "Today", "Conv", "Turns"):
            users.add_column(col, key=col, width=self.WIDTHS[col])
        metrics = self.query_one("#dash-metrics", KeyTable)
        for col, w in (("Health", self.WIDTHS["Health"]), ("Value", 9), ("Alert at", 9), ("", 5)):
            metrics.add_column(col, key=col or "flag", width=w)
        models = self.query_one("#dash-models", KeyTable)
        for col in ("Model", "Cost", "Turns"):
            models.add_column(col, key=col, width=self.WIDTHS[col])
        for table in (users, metrics, models):
            table.refit_with(self.fit_columns)
        self.load()
        users.focus()

    @work(thread=True, exclusive=True, group="dashboard", exit_on_error=False)
    def load(self, fresh: bool = False) -> None:
        days = self.days if self.days is not None else self.app.settings.days
        doc = self.app.stats_doc(days, max_age=0.0 if fresh else 30.0)
        self.post_message(StatsLoaded(doc, days))

    @on(StatsLoaded)
    def show(self, message: StatsLoaded) -> None:
        if message.days != self.days:
            return  # the answer for a number of days that +/- has since changed
        self.doc = doc = message.doc
        conv = doc.conversations
        self.query_one("#dash-title", Static).update(
            Text.assemble(
                (f"Spend and health, {doc.since} to {doc.until} ({doc.tz})", "bold"),
                f"   {plural(conv.count, 'conversation')} · {cost_spread(conv, ' · ')}",
            )
        )
        self.query_one("#dash-bars", Static).update(spend_bars(doc))
        users = self.query_one("#dash-users", DataTable)
        users.clear()
        today = doc.until
        for u in doc.users:
            spent_today = day_spend(next((d for d in u.days if d.date == today), None))
            users.add_row(
                Text(u.user_id or "(no user)"),  # (Text: a str cell is read as markup)
                Text(spend(u.cost_usd, u.unpriced_attempts), justify="right"),
                Text(spent_today, justify="right"),
                Text(str(u.conversations), justify="right"),
                Text(str(u.turns), justify="right"),
                key=u.user_id or "",
            )
        metrics = self.query_one("#dash-metrics", DataTable)
        metrics.clear()
        for name, m in doc.metrics.items():
            style = "bold red" if m.alert else ("dim" if m.value is None else "green")
            word = health_word(m)
            side = "< " if name in LOWER_IS_BAD else "> "
            value, threshold = metric_pair(name, m.value, m.threshold, m.unpriced_attempts)
            metrics.add_row(
                metric_label(name),
                Text(value, style=style, justify="right"),
                Text(side + threshold, justify="right"),
                Text(word, style=style),
            )
        models = self.query_one("#dash-models", DataTable)
        models.clear()
        for row in doc.models:
            models.add_row(
                Text(row.model or "(none)"),
                Text(money(row.cost_usd), justify="right"),
                Text(str(row.turns), justify="right"),
            )
        alerts = Text("Alerts\n", style="bold")
        if not doc.alerts:
            alerts.append("none", style="green")
        for a in doc.alerts:
            kind, _, rest = describe_alert(a).partition(" ")
            alerts.append(kind + " ", style="bold red")
            alerts.append(rest.strip() + "\n")
        for unpriced in doc.unpriced:
            n = unpriced.attempts
            alerts.append(
                f"\n{plural(n, 'attempt')} of {unpriced.model} {_have(n)} no price (counted as $0)",
                style="dim",
            )
        self.query_one("#dash-alerts", Static).update(alerts)
        self.call_after_refresh(self.fit_columns)  # rows may have brought a scrollbar

    def action_back(self) -> None:
        self.dismiss(None)

    def action_reload(self) -> None:
        self.load(fresh=True)

    def action_days(self, delta: int) -> None:
        self.days = max(1, (self.days or 1) + delta)
        self.load()

    @on(DataTable.RowSelected, "#dash-users")
    def user_selected(self, event: DataTable.RowSelected) -> None:
        self._filter_user(str(event.row_key.value))

    def action_pick_user(self) -> None:
        table = self.query_one("#dash-users", DataTable)
        if table.row_count:  # the row as the table shows it (its key is the user id)
            self._filter_user(str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value))

    def _filter_user(self, user: str) -> None:
        self.dismiss(user)  # the conversation list, under this screen, filters to the user


def _shown(table: KeyTable) -> KeyTable:
    """A table only to be read (no cursor): left out of tab's round, which goes from the users to
    the scrolling body, so that keys scroll a narrow screen to the alerts."""
    table.can_focus = False
    return table


def _have(n: int) -> str:
    return "has" if n == 1 else "have"
