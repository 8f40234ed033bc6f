"""How numbers and times read on screen, the same in the CLI and the terminal app."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def local_time(iso: str | None, with_date: bool = True) -> str:
    """An ISO-8601 UTC timestamp in the user's local time."""
    if not iso:
        return ""
    try:
        t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    return t.astimezone().strftime("%Y-%m-%d %H:%M" if with_date else "%H:%M:%S")


def money(v: float | None) -> str:
    """USD to the hundredth of a cent; `?` when the price is unknown."""
    return "?" if v is None else f"${v:,.4f}"


def fmt_metric(name: str, value: float | None) -> str:
    """A health metric's value (or threshold) as people read it."""
    if value is None:
        return "n/a"
    if name in ("cache_hit_rate", "tool_failure_rate", "rate_limit_error_rate"):
        return f"{value:.1%}"
    if name == "p95_latency_ms":
        return f"{value / 1000:.2f} s"
    if name == "mean_cost_per_conversation_usd":
        return money(value)
    return f"{value:.1f}"


def describe_alert(a: dict[str, Any]) -> str:
    """One alert of `replayer alerts --json`, as a line."""
    if a["kind"] == "budget":
        who = a["user_id"] or "(no user)"
        return f"budget  {who} spent {money(a['cost_usd'])} on {a['date']} (budget {money(a['budget_usd'])})"
    if a["kind"] == "metric":
        name = a["metric"]
        return f"metric  {name} is {fmt_metric(name, a['value'])} (threshold {fmt_metric(name, a['threshold'])})"
    return (
        f"cache   {a['conversation_id']}: a moving cache breakpoint from turn {a['turn_index']} "
        f"cost {money(a['extra_cost_usd'])} more than cache reads would have"
    )
