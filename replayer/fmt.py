"""How numbers and times read on screen, the same in the CLI and the terminal app."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from .config import zone

if TYPE_CHECKING:
    from .models import Alert, ConversationCosts, DayCost, Metric, SampleView


def local_time(iso: str | None, with_date: bool = True, tz: str | None = None) -> str:
    """An ISO-8601 UTC timestamp in the zone `tz` (Settings.shown_tz: the one filters read dates
    in), else the machine's."""
    if not iso:
        return ""
    try:
        t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    shown = t.astimezone(zone(tz) if tz else None)
    return shown.strftime("%Y-%m-%d %H:%M" if with_date else "%H:%M:%S")


def plural(n: int, word: str, many: str | None = None) -> str:
    """`1 message`, `2 messages`, `0 messages` (with thousands separators)."""
    return f"{n:,} {word if n == 1 else many or word + 's'}"


def users_label(user_id: str | None, others: int, width: int) -> str:
    """A conversation's user in a list column `width` wide: its first user, then `+N` for the N
    other users its calls were made for (`u1 +1`), whole where the name is cut to make room."""
    more = f" +{others}" if others else ""
    name = " ".join((user_id or "").split())
    room = width - len(more)
    return (name if len(name) <= room else name[: room - 1] + "…") + more


def _first_digit(a: float, shown: int, finest: int) -> str | None:
    """`a` (>= 0) with as many decimals past `shown` as make it non-zero (`0.00004`), up to
    `finest`; None when it is zero even there."""
    for places in range(shown + 1, finest + 1):
        q = Decimal(f"{a:.{finest}f}").quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)
        if q:
            return f"{q:,f}"
    return None


def ms(v: float | None, signed: bool = False) -> str:
    """A duration in milliseconds as people read it: `850 ms`, `12.3 s`; `+38 ms` when signed
    (`0.01 s` hides a figure; `10000 ms` makes one count digits).

    Signed (a difference), it is never a signed zero: under half a millisecond it shows the
    digits that make it non-zero (`-0.3 ms`, to the microsecond latencies are kept to), and no
    difference at all is `0 ms`."""
    if v is None:
        return ""
    sign = ("+" if v >= 0 else "-") if signed else ("-" if v < 0 else "")
    a = abs(v)
    if signed and round(a) == 0:
        small = _first_digit(a, 0, 3)
        return f"{sign}{small} ms" if small else "0 ms"
    return f"{sign}{a:,.0f} ms" if a < 1000 else f"{sign}{a / 1000:,.1f} s"


def shown_ms(v: float) -> float:
    """`v` (>= 0) as ms() shows it, in milliseconds: 68.006 -> 68, 1234 -> 1200."""
    return float(f"{v:.0f}") if v < 1000 else float(f"{v / 1000:.1f}") * 1000


def ms_delta(new: float | None, old: float | None) -> str:
    """The difference of two latencies as shown beside them: `68 ms` against `68 ms` is `0 ms`,
    where their raw difference (67.501 - 68.006) read `-1 ms` between two equal figures."""
    if new is None or old is None:
        return ""
    return ms(shown_ms(new) - shown_ms(old), signed=True)


def error_head(error: Mapping[str, Any]) -> str:
    """What failed, the words before its message: `529 overloaded_error`, `timeout_error` (no
    status: no answer came). An `event: error` in a stream comes after its 200 status said the
    call had been taken (the status sse.py gives it): `overloaded_error mid-stream`, never a
    `200` that reads as a success. A 200 whose body is no JSON keeps its status."""
    where, kind = error_status(error), error.get("type")
    if where == "mid-stream":
        return f"{kind} mid-stream"
    return f"{where} {kind}" if where else str(kind)


def error_status(error: Mapping[str, Any]) -> str:
    """error_head without the error's type, for where the type is shown beside it (the turn
    list's stop column): `mid-stream`, else the HTTP status (`529`), or "" when none came.
    `mid-stream` is any error under a status that said the call was taken: an error event (sse.py
    gives it the 200), or a connection lost or timed out after the 200 (the recorder keeps no
    status in that error; the store reads it with its attempt's: store.queries._error_of)."""
    status, kind = error.get("status"), error.get("type")
    if isinstance(status, int) and status < 400 and kind not in ("invalid_response", "decode_error"):
        return "mid-stream"
    return str(status) if status else ""


CONNECTION_FAULTS = (
    ("refused", ("refused", "errno 111", "econnrefused")),
    ("reset", ("reset by peer", "connection reset", "econnreset", "errno 104")),
    ("DNS", ("name or service not known", "nodename nor servname", "getaddrinfo", "name resolution",
             "cannot resolve", "errno -2", "errno -3", "no address associated")),
    ("TLS", ("ssl", "tls", "certificate")),
    ("no net", ("unreachable", "no route to host")),
    ("timeout", ("timed out", "timeout")),
    ("closed", ("disconnected", "connection closed", "peer closed", "remoteprotocolerror", "incomplete", "eof")),
)
"""A failed connection's kind, by words of its message (the SDK's, the HTTP library's, the
OS's), in the order they are looked for: `Connection to HOST failed: [Errno 111] Connection
refused` is `refused`. Each at most 7 cells: the turn list's notes column at its narrowest."""


def connection_fault(error: Mapping[str, Any]) -> str | None:
    """What kind of connection failure an error with no answer was, in a word (CONNECTION_FAULTS;
    a timeout_error is `timeout`, another connection_error `network`); None for an error that
    came with a status (an answer, or a stream cut after its 200)."""
    if error.get("status") is not None:
        return None
    kind, message = error.get("type"), str(error.get("message") or "").lower()
    if kind == "timeout_error":
        return "timeout"
    if kind != "connection_error":
        return None
    return next((word for word, signs in CONNECTION_FAULTS if any(s in message for s in signs)), "network")


def attempts_note(attempts: int, failed: int, errors: Sequence[Mapping[str, Any]] = ()) -> str:
    """How many attempts a call took: `2 attempts (1 failed: 529 overloaded_error)`; with no
    `errors` to name (compare's steps count them), `2 attempts (1 failed)`. Each kind of error
    is named once, in the order they came."""
    heads = list(dict.fromkeys(error_head(e) for e in errors))
    why = f": {', '.join(heads)}" if heads else ""
    return plural(attempts, "attempt") + (f" ({failed} failed{why})" if failed else "")


def retry_note(v: SampleView) -> str:
    """`2 attempts (1 failed: 529 overloaded_error)` for a rerun's sample or original that was
    retried, "" for a call answered (or failed) at its one attempt."""
    return "" if v.attempts <= 1 else attempts_note(v.attempts, len(v.attempt_errors), v.attempt_errors)


def attempt_status(status: int | None, error: Mapping[str, Any] | None) -> str:
    """An attempt's status where its own column or slot says it (a retry's row, the Usage tab's
    attempts): a failed one's error_status (`mid-stream` for an error event in a stream, not the
    200 that took it), else its HTTP status; "" when none came."""
    said = error_status(error) if error else ""
    return said or (str(status) if status else "")


def approx_tokens(n: float) -> str:
    """An estimated token count, said to be one: `~850 tok`, `~1.2k tok`, `~3.4M tok`."""
    if n < 1000:
        return f"~{n:.0f} tok"
    if n < 1_000_000:
        return f"~{n / 1000:.1f}k tok" if n < 10_000 else f"~{n / 1000:.0f}k tok"
    return f"~{n / 1_000_000:.1f}M tok"


def money(v: float | None, places: int = 4) -> str:
    """USD to the hundredth of a cent (or to `places` decimals), half up; `?` when the price is
    unknown; `<$0.0001` for a cost too small to show, so that `$0.0000` only ever means calls that
    cost nothing.

    The float is first taken to 12 decimals: sums of prices carry noise (three $0.00015 make
    0.00045 or 0.00045000000000000004, by the order of the sums) that would otherwise round
    the same cost down in one command and up in another."""
    if v is None:
        return "?"
    if not math.isfinite(v):
        return f"${v}"
    exact = Decimal(f"{v:.12f}")
    unit = Decimal(1).scaleb(-places)
    cents = exact.quantize(unit, ROUND_HALF_UP)
    if exact > 0 and not cents:
        return f"<${unit:f}"
    return f"${cents:,.{places}f}"


def delta_money(v: float | None) -> str:
    """A difference of costs, signed: `+$0.0012`; never a signed zero: one under the hundredth
    of a cent `money` shows has the digits that make it non-zero (`-$0.00004`), and none at all
    (to the 12 decimals `money` takes a cost to) is `$0`."""
    if v is None:
        return ""
    sign, a = "+" if v >= 0 else "-", abs(v)
    shown = money(a)
    if shown != "$0.0000" and not shown.startswith("<"):  # `<$0.0001`: a cost, not a difference
        return sign + shown
    small = _first_digit(a, 4, 12)
    return f"{sign}${small}" if small else "$0"


def spend(v: float | None, unpriced: int, places: int = 4) -> str:
    """A sum of costs (or a mean or quantile of such sums), some of whose attempts (`unpriced`)
    have no price: `?` when that is all there is, `≥$…` when it leaves some out (counted as $0,
    each sum, and so each mean and quantile of them, can only be higher). `places` as for money."""
    if not unpriced or v is None:
        return money(v, places)
    return f"≥{money(v, places)}" if v else "?"


def day_spend(day: DayCost | None) -> str:
    """What a day cost, as `spend` shows it; `–` for a day with no calls (or none given), which
    `$0.0000` would make look like calls that cost nothing."""
    if day is None or not day.attempts:
        return "–"
    return spend(day.cost_usd, day.unpriced_attempts)


def cost_spread(conv: ConversationCosts, sep: str) -> str:
    """Cost per conversation as `stats` and the dashboard show it: `cost mean $… / p50 $… / p95 $…`
    with `sep` between, each a lower bound (`≥`) when unpriced attempts counted as $0 in it."""
    left_out = conv.unpriced_attempts
    return sep.join((f"cost mean {spend(conv.mean_cost_usd, left_out)}", f"p50 {spend(conv.p50_cost_usd, left_out)}",
                     f"p95 {spend(conv.p95_cost_usd, left_out)}"))


RATE_METRICS = ("cache_hit_rate", "tool_failure_rate", "rate_limit_error_rate")
"""Health metrics that are fractions, shown as percentages."""
MORE_PLACES = 4
"""How many decimals past its short form a health figure may take to read differently from the
figure it is printed beside (metric_pair): 9/4 against a threshold of 2.2 reads `2.25` and `2.20`,
5/13 against 0.3846 `38.462%` and `38.460%`. Figures closer than that (0.1 + 0.2 against 0.3, a
float's noise) are the same to anyone reading them, and keep the short form."""


def _half_up(v: Decimal, places: int) -> Decimal:
    return v.quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)


def fmt_metric(name: str, value: float | None, unpriced: int = 0, more: int = 0) -> str:
    """A health metric's value (or threshold) as people read it, half up as money is: `2.3`,
    `38.5%`, `850 ms`, `$0.0150`, with `more` decimals than that; a cost that leaves out `unpriced`
    attempts as `spend` shows it."""
    if value is None:
        return "n/a"
    if name == "mean_cost_per_conversation_usd":
        return spend(value, unpriced, 4 + more)
    if not math.isfinite(value):
        return str(value)
    exact = Decimal(repr(value))  # the float's shortest decimal: 2.25 is 2.25, to round half up
    if name in RATE_METRICS:
        return f"{_half_up(exact * 100, 1 + more):f}%"
    if name == "p95_latency_ms":  # as `ms` shows a latency: `850 ms`, `12.3 s`
        if value < 1000:
            return f"{_half_up(exact, more):,f} ms"
        return f"{_half_up(exact / 1000, 1 + more):,f} s"
    return f"{_half_up(exact, 1 + more):f}"


def places_apart(show: Callable[[float, int], str], value: float | None, other: float) -> int:
    """How many more decimals (up to MORE_PLACES) `show(x, more)` needs for `value` and `other`,
    printed side by side, to read differently when they differ: so that an alert never reads
    `2.2` against `2.2`, or `$0.0092` against a budget of `$0.0092`."""
    if value is None or value == other:
        return 0
    return next((m for m in range(MORE_PLACES + 1) if show(value, m) != show(other, m)), 0)


def metric_pair(name: str, value: float | None, threshold: float, unpriced: int = 0) -> tuple[str, str]:
    """A metric's value and its threshold as they are printed side by side (fmt_metric), with as
    many more decimals, the same for both, as tell them apart (places_apart)."""
    more = places_apart(lambda v, m: fmt_metric(name, v, 0, m), value, threshold)
    return fmt_metric(name, value, unpriced, more), fmt_metric(name, threshold, 0, more)


def health_word(m: Metric) -> str:
    """A metric against its threshold: `ALERT`, `ok`, nothing when there was nothing to measure,
    and `ok?` when the value is a lower bound under its threshold (the unpriced part may pass it)."""
    if m.alert:
        return "ALERT"
    if m.value is None:
        return ""
    return "ok?" if m.unpriced_attempts else "ok"


METRIC_LABELS = {"p95_latency_ms": "p95 latency", "mean_cost_per_conversation_usd": "mean cost per conversation"}
"""A health metric's name in words, its unit left to the value (`p95 latency  850 ms`)."""


def metric_label(name: str) -> str:
    return METRIC_LABELS.get(name, name.replace("_", " "))


def describe_alert(a: Alert) -> str:
    """One alert of `replayer alerts --json`, as a line."""
    if a.kind == "budget":
        who = a.user_id or "(no user)"
        places = 4 + places_apart(lambda v, m: money(v, 4 + m), a.cost_usd, a.budget_usd)
        spent = spend(a.cost_usd, a.unpriced_attempts, places)
        return f"budget  {who} spent {spent} on {a.date} (budget {money(a.budget_usd, places)})"
    if a.kind == "metric":
        name = a.metric
        shown, threshold = metric_pair(name, a.value, a.threshold, a.unpriced_attempts)
        return f"metric  {name} is {shown} (threshold {threshold})"
    return (
        f"cache   {a.conversation_id}: a moving cache breakpoint from turn {a.turn_index} "
        f"cost {money(a.extra_cost_usd)} more than cache reads would have"
    )
