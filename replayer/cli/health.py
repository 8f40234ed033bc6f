"""Spend and health: `stats`, `alerts` (metrics.stats) and the price table in use."""

from __future__ import annotations

import json
from typing import Any

import click

from ..config import MAX_DAYS
from ..fmt import cost_spread, day_spend, describe_alert, health_word, metric_pair, money, plural, spend
from .base import json_document, one_line, open_store, resolve_id
from .table import Column, Table


def _settings(
    ctx: click.Context, tz: str | None, thresholds: tuple[str, ...], budget: float | None, days: int | None
) -> Any:
    from ..config import check_number, load, set_threshold

    settings = load((ctx.find_root().obj or {}).get("config"))
    for spec in thresholds:
        set_threshold(settings, spec)
    if budget is not None:
        settings.daily_budget_usd = check_number(budget, "--daily-budget")
    if tz:
        settings.tz = tz
    if days:
        settings.days = days
    settings.check()
    return settings


def _health_options(f: Any) -> Any:
    for option in reversed(
        [
            click.option(
                "--days", type=click.IntRange(1, MAX_DAYS), help="The last N days (default 7, or [stats] days)."
            ),
            click.option("--tz", metavar="ZONE", help="Days in this time zone (default UTC, or [stats] tz)."),
            click.option(
                "--threshold",
                "thresholds",
                metavar="NAME=VALUE",
                multiple=True,
                help="Override a metric's threshold (repeatable).",
            ),
            click.option("--daily-budget", "budget", type=float, metavar="USD", help="Per-user daily budget."),
            click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout."),
        ]
    ):
        f = option(f)
    return f


@click.command()
@_health_options
@click.option(
    "--by",
    type=click.Choice(["user", "model", "day", "conversation"]),
    default="user",
    show_default=True,
    help="The breakdown to print.",
)
@click.option("--user", help="Only this user.")
@click.pass_context
def stats(
    ctx: click.Context,
    days: int | None,
    tz: str | None,
    thresholds: tuple[str, ...],
    budget: float | None,
    as_json: bool,
    by: str,
    user: str | None,
) -> None:
    """Spend per user, model and day, cost per conversation, and the health metrics."""
    from ..metrics import stats as compute

    settings = _settings(ctx, tz, thresholds, budget, days)
    store = open_store(ctx)
    if user:
        user = resolve_id(store, user, kind="user")
    doc = compute(store, settings, user=user)
    if as_json:
        click.echo(json_document(doc.document()))
        return
    click.echo(f"{doc.since} .. {doc.until} ({doc.tz})" + (f", user {user}" if user else ""))
    click.echo("")
    if by == "user":
        dates = [d.date for d in doc.days]
        show_days = dates if len(dates) <= 7 else []
        table = Table(
            Column("USER", 24),
            Column("COST", 10, right=True),
            Column("CONV", 5, right=True),
            Column("TURNS", 6, right=True),
            *(Column(d[5:], 9, right=True) for d in show_days),
        )
        click.echo(table.header())
        for u in doc.users:
            per_day = {d.date: day_spend(d) for d in u.days}
            click.echo(
                table.row(
                    one_line(u.user_id or "(no user)", 24),
                    spend(u.cost_usd, u.unpriced_attempts),
                    u.conversations,
                    u.turns,
                    *(per_day[d] for d in show_days),
                )
            )
        if doc.top_users_today:
            click.echo(
                "\ntop users today: "
                + ", ".join(f"{t.user_id or '(no user)'} {spend(t.cost_usd, t.unpriced_attempts)}"
                            for t in doc.top_users_today)
            )
    elif by == "model":
        table = Table(Column("MODEL", 32), Column("COST", 10, right=True), Column("TURNS", 6, right=True))
        click.echo(table.header())
        for m in doc.models:
            click.echo(table.row(one_line(m.model or "(none)", 32), money(m.cost_usd), m.turns))
    elif by == "day":
        table = Table(Column("DAY", 10), Column("COST", 10, right=True))
        click.echo(table.header())
        for d in doc.days:
            click.echo(table.row(d.date, day_spend(d)))
    else:
        width = max([len("CONVERSATION"), *(len(c.conversation_id) for c in doc.top_conversations)])
        table = Table(
            Column("CONVERSATION", width),  # ids whole, as `list` shows them: what show and export take
            Column("USER", 16),
            Column("TURNS", 6, right=True),
            Column("COST", 10, right=True),
        )
        click.echo(table.header())
        for c in doc.top_conversations:
            click.echo(table.row(c.conversation_id, one_line(c.user_id, 16), c.turns,
                                 spend(c.cost_usd, c.unpriced_attempts)))
    conv = doc.conversations
    click.echo(f"\nconversations: {conv.count}, {cost_spread(conv, ', ')}")
    health = Table(
        Column("HEALTH", 32), Column("VALUE", 10, right=True), Column("THRESHOLD", 10, right=True), Column("")
    )
    click.echo("\n" + health.header())
    for name, metric in doc.metrics.items():
        value, threshold = metric_pair(name, metric.value, metric.threshold, metric.unpriced_attempts)
        click.echo(health.row(name, value, threshold, health_word(metric)))
    listed = [a for a in doc.alerts if a.kind != "metric"]  # a metric's alert is its ALERT above
    if listed:
        click.echo("")
    for a in listed:
        click.echo(describe_alert(a))
    if doc.reruns.variants:
        r = doc.reruns
        click.echo(
            f"\nreruns: {plural(r.variants, 'variant')}, {plural(r.turns, 'sample')}, "
            f"{money(r.cost_usd)} (not counted above)"
        )
    for unpriced in doc.unpriced:
        n = unpriced.attempts
        click.echo(
            f"note: {plural(n, 'attempt')} of {unpriced.model} "
            + ("has no price and counts as $0" if n == 1 else "have no price and count as $0"),
            err=True,
        )


@click.command()
@_health_options
@click.pass_context
def alerts(
    ctx: click.Context,
    days: int | None,
    tz: str | None,
    thresholds: tuple[str, ...],
    budget: float | None,
    as_json: bool,
) -> None:
    """Users over the daily budget today, metrics past their thresholds, broken caches.

    Exits 1 when any alert fires, so cron or CI can act on it.
    """
    from ..metrics import stats as compute

    settings = _settings(ctx, tz, thresholds, budget, days)
    store = open_store(ctx)
    found = compute(store, settings).alerts
    if as_json:
        click.echo(json_document([a.document() for a in found]))
    elif not found:
        click.echo(
            "no alerts" + ("" if settings.daily_budget_usd is not None else " (no daily budget set: --daily-budget)")
        )
    else:
        for a in found:
            click.echo(describe_alert(a))
    if found:
        ctx.exit(1)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def pricing(ctx: click.Context, as_json: bool) -> None:
    """The price table in use (USD per million tokens) and where each row came from."""
    from ..pricing import KINDS, PriceTable

    prices = PriceTable.load((ctx.find_root().obj or {}).get("pricing"))
    rows: list[dict[str, Any]] = []
    for row in prices.effective_rows():
        rows.append(
            {
                "ids": list(row.ids),
                **{k: row.rates.get(k) for k in KINDS},
                "above_prompt_tokens": row.above_tokens,
                "above": {k: row.above.get(k) for k in KINDS} if row.above else None,
                "source": row.source,
                "date": row.date,
                "origin": row.origin,
            }
        )
    if as_json:
        click.echo(
            json.dumps(
                {"models": rows, "batch_factor": prices.batch_factor, "web_search_per_1k": prices.web_search_per_1k}
            )
        )
        return
    width = max(len(i) for r in rows for i in r["ids"])
    rate_titles = ("INPUT", "OUTPUT", "WRITE 5M", "WRITE 1H", "READ")
    table = Table(Column("MODEL", width), *(Column(h, 8, right=True) for h in rate_titles), Column(""))

    def rates(r: dict[str, Any]) -> list[str]:
        return [f"{r[k]:g}" for k in KINDS]

    click.echo(table.header())
    for r in rows:  # the note after the rates is set off by one more space
        click.echo(table.row(r["ids"][0], *rates(r), f" {r['origin']}: {r['source']} ({r['date']})"))
        for alias in r["ids"][1:]:
            click.echo(table.row(alias, "(as above)"))
        if r["above"]:
            label = f"  above {r['above_prompt_tokens']:,}"
            click.echo(table.row(label, *rates(r["above"]), " (prompt tokens: every token at these rates)"))
    click.echo(
        f"\nUSD per million tokens; batch requests at {prices.batch_factor:g}x; web search "
        f"${prices.web_search_per_1k:g} per 1,000; dated ids (model-YYYYMMDD) price as their alias."
    )
