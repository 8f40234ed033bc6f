"""Health signals, spend and alerts (headless: no Textual; SQL stays in store/aggregate.py).

`stats()` builds the Stats (models.py) that `replayer stats --json` prints, alerts included
(`replayer alerts --json` prints those). Costs come from the raw usage
in the rollup and the current price table; days are calendar days in the given time zone.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from .config import LOWER_IS_BAD, ConfigError, Settings, zone
from .models import (
    Alert,
    BudgetAlert,
    CacheAlert,
    ConversationCosts,
    ConversationSpend,
    DayCost,
    Metric,
    MetricAlert,
    ModelSpend,
    RerunSpend,
    Stats,
    Unpriced,
    UserSpend,
    UserToday,
)
from .pricing import PriceTable, usd
from .store.aggregate import ConversationName, cache_break_runs

if TYPE_CHECKING:
    from .store.queries import Store

_UNNAMED = ConversationName("", None, "")
"""What `names.get` gives for a rowid it does not hold."""
EXPERIMENTS = frozenset({"rerun", "fork"})
"""Origins of the conversations replayer sent itself: reruns and forks (their spend apart)."""


def rewrite_cost(prices: PriceTable, usage: dict[str, Any], model: str | None) -> float | None:
    """What a turn's cache writes cost beyond reading the same tokens from the cache."""
    b = prices.breakdown(usage, model)
    if b.total is None:
        return None
    read = b.rates["cache_read"]
    return (
        b.tokens["cache_write_5m"] * (b.rates["cache_write_5m"] - read)
        + b.tokens["cache_write_1h"] * (b.rates["cache_write_1h"] - read)
    ) / 1_000_000


# -- the stats document -------------------------------------------------------------------------


def window(days: int, tz: tzinfo, now: datetime | None = None) -> tuple[date, date, float, float]:
    """The last `days` calendar days in `tz`, today included: (first, last, since_ts, until_ts)."""
    if days < 1:
        raise ConfigError("--days must be at least 1")
    now = now or datetime.now(UTC)
    today = now.astimezone(tz).date()
    first = today - timedelta(days=days - 1)
    since = datetime.combine(first, datetime.min.time(), tz).timestamp()
    until = datetime.combine(today + timedelta(days=1), datetime.min.time(), tz).timestamp()
    return first, today, since, until


def _quantile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank quantile."""
    if not sorted_values:
        return None
    return sorted_values[max(1, math.ceil(q * len(sorted_values))) - 1]


def _metric(name: str, value: float | None, settings: Settings, unpriced: int = 0) -> Metric:
    threshold = settings.thresholds[name]
    if value is None:
        alert = False
    else:
        v, limit = (usd(value), usd(threshold)) if name.endswith("_usd") else (value, threshold)
        alert = v < limit if name in LOWER_IS_BAD else v > limit
    return Metric(value=value, threshold=threshold, alert=alert, unpriced_attempts=unpriced)


def stats(
    store: Store,
    settings: Settings,
    *,
    days: int | None = None,
    user: str | None = None,
    now: datetime | None = None,
) -> Stats:
    """Spend, the health metrics against their thresholds, and the alerts, over the last `days`
    (default: the settings' days)."""
    prices = store.prices
    tz_name = settings.tz or "UTC"  # stats' days are UTC days unless a zone is set (README)
    tz = zone(tz_name)
    first, today, since, until = window(days or settings.days, tz, now)
    names = store.conversation_names()
    groups = store.spend_groups(since, until)
    # variants sent by `replayer rerun` and forks (`replayer replay --live-from`, `replayer fork`)
    # are experiments, not the agent's traffic: their spend is shown on its own and they stay out
    # of the users, models and health metrics
    reruns = RerunSpend(cost_usd=0.0, turns=0, variants=0)
    variants = set()
    for g in groups:
        if names.get(g.conv, _UNNAMED).origin in EXPERIMENTS:
            reruns.cost_usd += g.cost_usd or 0.0
            reruns.turns += g.turns
            variants.add(g.conv)
    reruns.variants = len(variants)
    groups = [g for g in groups if g.conv not in variants]
    if user is not None:  # each call under its own user: of a conversation shared, only this user's calls
        groups = [g for g in groups if (g.user or "") == user]

    day_of: dict[int, date] = {}

    def day(bucket: int) -> date:
        d = day_of.get(bucket)
        if d is None:
            d = day_of[bucket] = datetime.fromtimestamp(bucket * 900, tz).date()
        return d

    dates = [first + timedelta(days=i) for i in range((today - first).days + 1)]
    users: dict[str | None, dict[str, Any]] = {}
    models: dict[str, dict[str, Any]] = {}
    convs: dict[int, dict[str, Any]] = {}
    unpriced: dict[str, int] = defaultdict(int)
    for g in groups:
        uid = g.user  # the user each call was made for (its turn's), not its conversation's first
        cost = g.cost_usd or 0.0
        on = day(g.bucket)
        u = users.get(uid)
        if u is None:
            u = users[uid] = {"cost": 0.0, "convs": set(), "turns": 0, "days": defaultdict(float),
                              "unpriced": defaultdict(int), "attempts": defaultdict(int)}  # fmt: skip
        if g.cost_usd is None:
            unpriced[g.model or "(none)"] += g.unpriced
            u["unpriced"][on] += g.unpriced
        u["cost"] += cost
        u["convs"].add(g.conv)
        u["turns"] += g.turns
        u["days"][on] += cost
        u["attempts"][on] += g.attempts
        spend = models.setdefault(g.model, {"cost": 0.0, "turns": 0})
        spend["cost"] = None if g.cost_usd is None or spend["cost"] is None else spend["cost"] + cost
        spend["turns"] += g.turns
        c = convs.get(g.conv)
        if c is None:
            c = convs[g.conv] = dict.fromkeys(
                ("cost", "turns", "attempts", "limited", "tool_results", "tool_errors", "cache_read", "prompt",
                 "rewrites", "unpriced"), 0
            )  # fmt: skip
            c.update(sys=set(), nulls=0)
        c["cost"] += cost
        c["unpriced"] += g.unpriced
        c["turns"] += g.turns
        c["attempts"] += g.attempts
        c["limited"] += g.limited
        c["tool_results"] += g.tool_results
        c["tool_errors"] += g.tool_errors
        c["cache_read"] += g.turn_cache_read
        c["rewrites"] += g.rewrites
        c["prompt"] += g.prompt
        if g.sys_min is not None:
            c["sys"].add(g.sys_min)
            c["sys"].add(g.sys_max)
        c["nulls"] += g.sys_nulls

    conv_costs = sorted(c["cost"] for c in convs.values())
    conv_unpriced = sum(c["unpriced"] for c in convs.values())
    n_conv = len(convs)
    total_turns = sum(c["turns"] for c in convs.values())
    stable = [c for c in convs.values() if len(c["sys"]) + (1 if c["nulls"] else 0) <= 1]
    stable_prompt = sum(c["prompt"] for c in stable)
    attempts = sum(c["attempts"] for c in convs.values())
    results = sum(c["tool_results"] for c in convs.values())
    timed = sum(g.timed for g in groups)
    p95 = store.latency_percentile(
        0.95, timed, since, until, list(convs) if user is not None else None, sorted(variants) or None, user
    )
    metrics = {
        "cache_hit_rate": _metric(
            "cache_hit_rate", sum(c["cache_read"] for c in stable) / stable_prompt if stable_prompt else None, settings
        ),
        "avg_turns_per_conversation": _metric(
            "avg_turns_per_conversation", total_turns / n_conv if n_conv else None, settings
        ),
        "p95_latency_ms": _metric("p95_latency_ms", p95, settings),
        "mean_cost_per_conversation_usd": _metric(
            "mean_cost_per_conversation_usd", sum(conv_costs) / n_conv if n_conv else None, settings, conv_unpriced
        ),
        "tool_failure_rate": _metric(
            "tool_failure_rate", sum(c["tool_errors"] for c in convs.values()) / results if results else None, settings
        ),
        "rate_limit_error_rate": _metric(
            "rate_limit_error_rate",
            sum(c["limited"] for c in convs.values()) / attempts if attempts else None,
            settings,
        ),
    }

    alerts: list[Alert] = []
    if settings.daily_budget_usd is not None:
        for uid, u in sorted(users.items(), key=lambda kv: -kv[1]["days"].get(today, 0.0)):
            spent = u["days"].get(today, 0.0)
            if usd(spent) > usd(settings.daily_budget_usd):
                alerts.append(
                    BudgetAlert(user_id=uid, date=today.isoformat(), cost_usd=spent,
                                budget_usd=settings.daily_budget_usd, unpriced_attempts=u["unpriced"].get(today, 0))
                )  # fmt: skip
    for name, metric in metrics.items():
        if metric.alert:
            alerts.append(MetricAlert(metric=name, value=metric.value, threshold=metric.threshold,
                                      unpriced_attempts=metric.unpriced_attempts))
    for conv, c in convs.items():
        if c["rewrites"] < 2:  # a broken run needs two rewriting turns: the rest can't have one
            continue
        series = store.turn_usages(conv)
        usages = [u for _, u in series]
        for first_turn, last_turn in cache_break_runs(usages):
            costs = [rewrite_cost(prices, usage or {}, model) for model, usage in series[first_turn : last_turn + 1]]
            extra = None if None in costs else sum(c for c in costs if c is not None)  # a turn with no price: unknown
            alerts.append(
                CacheAlert(conversation_id=names[conv].conversation_id, turn_index=first_turn, extra_cost_usd=extra)
            )

    return Stats(
        since=first.isoformat(),
        until=today.isoformat(),
        tz=tz_name,
        users=[
            UserSpend(
                user_id=uid,
                cost_usd=u["cost"],
                conversations=len(u["convs"]),
                turns=u["turns"],
                days=[
                    DayCost(date=d.isoformat(), cost_usd=u["days"].get(d, 0.0),
                            unpriced_attempts=u["unpriced"].get(d, 0), attempts=u["attempts"].get(d, 0))
                    for d in dates
                ],
                unpriced_attempts=sum(u["unpriced"].values()),
            )
            for uid, u in sorted(users.items(), key=lambda kv: (-kv[1]["cost"], kv[0] or ""))
        ],
        top_users_today=[
            UserToday(user_id=uid, cost_usd=u["days"].get(today, 0.0), unpriced_attempts=u["unpriced"].get(today, 0))
            for uid, u in sorted(users.items(), key=lambda kv: (-kv[1]["days"].get(today, 0.0), kv[0] or ""))
            if u["days"].get(today) or u["unpriced"].get(today)
        ][:10],
        models=[
            ModelSpend(model=name or None, cost_usd=spend["cost"], turns=spend["turns"])
            for name, spend in sorted(models.items(), key=lambda kv: (-(kv[1]["cost"] or 0.0), kv[0]))
        ],
        days=[
            DayCost(date=d.isoformat(), cost_usd=sum(u["days"].get(d, 0.0) for u in users.values()),
                    unpriced_attempts=sum(u["unpriced"].get(d, 0) for u in users.values()),
                    attempts=sum(u["attempts"].get(d, 0) for u in users.values()))
            for d in dates
        ],
        conversations=ConversationCosts(
            count=n_conv,
            mean_cost_usd=sum(conv_costs) / n_conv if n_conv else None,
            p50_cost_usd=_quantile(conv_costs, 0.5),
            p95_cost_usd=_quantile(conv_costs, 0.95),
            unpriced_attempts=conv_unpriced,
        ),
        top_conversations=[
            ConversationSpend(
                conversation_id=names[conv].conversation_id,
                # with a user given, its cost and turns are that user's calls in it
                user_id=names[conv].user_id if user is None else user or None,
                cost_usd=c["cost"],
                turns=c["turns"],
                unpriced_attempts=c["unpriced"],
            )
            for conv, c in sorted(convs.items(), key=lambda kv: -kv[1]["cost"])[:10]
        ],
        metrics=metrics,
        alerts=alerts,
        unpriced=[Unpriced(model=k, attempts=v) for k, v in sorted(unpriced.items())],
        reruns=reruns,
    )
