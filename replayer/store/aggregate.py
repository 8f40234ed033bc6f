"""Sums over the `rollup` table (store/facts.py), priced at read time.

Costs are never stored. The rollup keeps token sums per conversation, quarter hour, model, batch,
prompt-size class and user (the turn's: a row bills the user its calls were made for, whoever
else called in the same conversation), so each of its rows is priced with one rate set: the band comes from the
class (a band starting at one of facts.EDGES is exact; any other threshold is priced from the
attempts of that class one by one). A model with no price gives None, never a guess.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..pricing import KINDS, PriceTable
from ..wire import token_count
from .facts import BUCKET_S, EDGES, ROLLUP_SUMS


@dataclass(slots=True)
class Group:
    """One rollup row, priced (its fields named as facts.RollupRow's; the table's short column
    names are facts.COLUMN_OF_FIELD)."""

    conv: int
    bucket: int
    model: str
    batch: int
    user: str | None
    """The user its calls were made for (their turns'), None for none."""
    cost_usd: float | None
    turns: int
    attempts: int
    errors: int
    limited: int
    priced: int
    input: int
    output: int
    cache_write_5m: int
    cache_write_1h: int
    cache_read: int
    web_searches: int
    tool_results: int
    tool_errors: int
    rewrites: int
    timed: int
    aside_prompt: int
    aside_output: int
    aside_read: int
    sys_min: int | None
    sys_max: int | None
    sys_nulls: int

    @property
    def prompt(self) -> int:
        """The turns' prompts (input + cache writes + reads): what the attempt that counts each
        turn read, without what was billed aside (compaction iterations, the turn's other
        attempts: facts.py)."""
        return self.input + self.cache_write_5m + self.cache_write_1h + self.cache_read - self.aside_prompt

    @property
    def turn_output(self) -> int:
        """The replies' output tokens, without what was billed aside (compaction summaries, the
        output of attempts that don't count their turn)."""
        return self.output - self.aside_output

    @property
    def unpriced(self) -> int:
        """The attempts this row leaves out of a cost (its model has no price): those with usage;
        a row of only compaction iterations under a model of their own (no attempt counted in
        it: its turn's row counts the attempt) is 1, so that its cost is still said to be left
        out. `list` and `stats` both count by this."""
        return 0 if self.cost_usd is not None else self.priced or 1

    @property
    def turn_cache_read(self) -> int:
        """Cache reads by the turns, without what was billed aside."""
        return self.cache_read - self.aside_read


def _rates(prices: PriceTable, model: str, batch: int, above: bool | None) -> tuple[float, ...] | None:
    """USD per token of each kind (input, output, 5m write, 1h write, read) and per web search."""
    row = prices.row_for(model or None)
    if row is None:
        prices.breakdown({}, model or None)  # the one warning about an unknown model
        return None
    rates = row.above if above and row.above is not None else row.rates
    factor = prices.batch_factor if batch else 1.0
    return (*(rates.get(k) * factor / 1_000_000 for k in KINDS), prices.web_search_per_1k / 1000)


def _cost(prices: PriceTable, model: str, batch: int, tokens: tuple[int, ...], above: bool | None) -> float | None:
    r = _rates(prices, model, batch, above)
    if r is None:
        return None
    return sum(t * rate for t, rate in zip(tokens, r, strict=True))


def _band(prices: PriceTable, model: str, band: int) -> bool | None:
    """Whether every prompt of this size class is above the model's band (None: some are, some
    aren't: the class straddles the threshold)."""
    row = prices.row_for(model or None)
    if row is None or row.above is None or row.above_tokens is None:
        return False
    lo = EDGES[band - 1] if band > 0 else 0
    hi = EDGES[band] if band < len(EDGES) else None
    if lo >= row.above_tokens:
        return True
    if hi is not None and hi <= row.above_tokens:
        return False
    return None


def groups(db: Any, prices: PriceTable, since: float | None = None, until: float | None = None) -> list[Group]:
    """Every rollup row with start time in [since, until) (to the quarter hour), priced."""
    where, args = [], []
    if since is not None:
        where.append("bucket >= ?")
        args.append(int(since // BUCKET_S))
    if until is not None:
        where.append("bucket < ?")
        args.append(int(-(-until // BUCKET_S)))
    sql = (
        "SELECT conv, bucket, model, batch, band, user, "
        + ", ".join(ROLLUP_SUMS)
        + ", sys_min, sys_max, sys_nulls FROM rollup"
    )
    if where:
        sql += " WHERE " + " AND ".join(where)
    out = []
    rate_sets: dict[tuple[str, int, int], tuple[float, ...] | None | bool] = {}
    for r in db.execute(sql, args):
        conv, bucket, model, batch, band, user = r[:6]
        sums = r[6 : 6 + len(ROLLUP_SUMS)]
        key = (model, band, batch)
        rates = rate_sets.get(key, False)
        if rates is False:
            above = _band(prices, model, band)
            # None (a straddling class) is priced attempt by attempt below; True marks it
            rates = rate_sets[key] = True if above is None else _rates(prices, model, batch, above)
        if not sums[4] and not any(sums[5:11]):  # no usage came back (a compaction's has no attempt)
            cost: float | None = 0.0
        elif rates is True:
            cost = _exact(db, prices, conv, bucket, model, batch, band, user)
        elif rates is None:
            cost = None
        else:
            i, o, w5, w1, cr, web = rates  # type: ignore[misc]
            cost = sums[5] * i + sums[6] * o + sums[7] * w5 + sums[8] * w1 + sums[9] * cr + sums[10] * web
        out.append(Group(conv, bucket, model, batch, user or None, cost, *sums, *r[6 + len(ROLLUP_SUMS) :]))
    return out


def _exact(
    db: Any, prices: PriceTable, conv: int, bucket: int, model: str, batch: int, band: int, user: str
) -> float | None:
    """Price a straddling class attempt by attempt (a user's band threshold that isn't in EDGES);
    `user`: the row's (its turns')."""
    row = prices.row_for(model or None)
    assert row is not None and row.above_tokens is not None
    total = 0.0
    for toks in db.execute(
        """SELECT input, output, w5m, w1h, cr, web FROM usage WHERE conv = ? AND COALESCE(model, '') = ?
           AND batch = ? AND at >= ? AND at < ? AND input IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.id = attempt_id AND a.copied_from IS NOT NULL)
           AND (SELECT COALESCE(t.user_id, '') FROM turns t WHERE t.rowid = turn) = ?""",
        (conv, model, batch, bucket * BUCKET_S, (bucket + 1) * BUCKET_S, user),
    ):
        prompt = toks[0] + toks[2] + toks[3] + toks[4]
        if bisect.bisect_left(EDGES, prompt) == band:
            total += _cost(prices, model, batch, toks, prompt > row.above_tokens) or 0.0
    return total


def known_spend(cost: float, unpriced: int) -> float | None:
    """What a sum of costs that leaves out `unpriced` attempts (models with no price) is known to
    be at least; None when nothing priced is in it (fmt.spend's `?`, where `≥$…` shows the rest).
    The list shows, sorts and filters a conversation's cost by this."""
    return None if unpriced and not cost else cost


@dataclass(slots=True)
class Totals:
    """A conversation's cost (everything billed: compaction iterations and every attempt with
    usage) and its turns' tokens (each turn's counting attempt's, facts.take_turn)."""

    cost_usd: float | None
    """What its priced attempts cost (known_spend): a lower bound when `unpriced` is not 0."""
    prompt: int
    output: int
    cache_read: int
    errors: int
    models: set[str]
    unpriced: int = 0
    """Attempts whose model has no price, left out of cost_usd (as `stats` counts them)."""


def conversation_totals(db: Any, prices: PriceTable) -> dict[int, Totals]:
    """Per conversation rowid: what its priced attempts cost and how many had no price, tokens,
    errors."""
    out: dict[int, Totals] = {}
    for g in groups(db, prices):
        t = out.get(g.conv)
        if t is None:
            t = out[g.conv] = Totals(0.0, 0, 0, 0, 0, set())
        if g.cost_usd is None:
            t.unpriced += g.unpriced
        else:
            t.cost_usd = (t.cost_usd or 0.0) + g.cost_usd
        t.prompt += g.prompt
        t.output += g.turn_output
        t.cache_read += g.turn_cache_read
        t.errors += g.errors
        if g.model:
            t.models.add(g.model)
    for t in out.values():
        t.cost_usd = known_spend(t.cost_usd or 0.0, t.unpriced)
    return out


@dataclass(slots=True)
class Figures:
    """A conversation's figures as the list shows them: what it spent, the cost of its priced
    attempts (compaction iterations included) and how many had no price, its turns' prompt,
    output and cache-read tokens (those of the attempt that counts each turn, `usage.new_turn`:
    compaction iterations and a turn's other attempts are billed, not its tokens, as `show` has
    them), a fork's copied turns left out
    of both (they cost nothing now, as in every spend figure); failed attempts, and models in the
    order they first answered, copies included."""

    cost_usd: float | None
    """What its priced attempts cost (known_spend): a lower bound when `unpriced` is not 0."""
    prompt: int
    output: int
    cache_read: int
    errors: int
    models: list[str]
    unpriced: int = 0
    """Attempts with usage whose model (or a compaction iteration's) has no price."""


def figures(db: Any, prices: PriceTable, convs: Sequence[int]) -> dict[int, Figures]:
    """Figures of the conversations with these rowids, from the `usage` table's parsed counts:
    each attempt priced at its own band, as pricing its usage does, with no JSON read."""
    out = {conv: Figures(0.0, 0, 0, 0, 0, []) for conv in convs}
    if not convs:
        return out
    rate_sets: dict[tuple[str | None, int, bool], tuple[float, ...] | None] = {}
    marks = ",".join("?" * len(convs))
    left_out = None  # the last attempt counted in `unpriced` (its parts come one after another)
    for conv, aid, part, counts, model, error, inp, outp, w5m, w1h, cr, web, batch, copied in db.execute(
        f"""SELECT u.conv, u.attempt_id, u.part, u.new_turn, u.model, u.error, u.input, u.output, u.w5m, u.w1h,
                   u.cr, u.web, u.batch, a.copied_from IS NOT NULL
            FROM usage u JOIN attempts a ON a.id = u.attempt_id
            WHERE u.conv IN ({marks}) ORDER BY u.conv, u.attempt_id, u.part""",
        list(convs),
    ):
        f = out[conv]
        if part == 0:
            f.errors += 1 if error else 0
            if model and model not in f.models:
                f.models.append(model)
        if inp is None or copied:
            continue  # no usage came back, or a fork's copy: it cost nothing (now)
        prompt = inp + w5m + w1h + cr
        if part == 0 and counts:  # the turn's tokens; every attempt's are priced below
            f.prompt += prompt
            f.output += outp
            f.cache_read += cr
        row = prices.row_for(model)
        above = bool(row is not None and row.above is not None and row.above_tokens is not None
                     and prompt > row.above_tokens)
        key = (model, batch, above)
        if key not in rate_sets:
            rate_sets[key] = _rates(prices, model or "", batch, above)
        rates = rate_sets[key]
        if rates is None:
            if aid != left_out:
                f.unpriced += 1
                left_out = aid
        else:
            i, o, w5, w1, r, s = rates
            f.cost_usd = (f.cost_usd or 0.0) + inp * i + outp * o + w5m * w5 + w1h * w1 + cr * r + web * s
    for f in out.values():
        f.cost_usd = known_spend(f.cost_usd or 0.0, f.unpriced)
    return out


class ConversationName(NamedTuple):
    """A conversation as the rollup's rowids name it."""

    conversation_id: str
    user_id: str | None
    origin: str


def conversations_by_rowid(db: Any) -> dict[int, ConversationName]:
    """rowid -> the conversation's id, user and origin."""
    return {
        rowid: ConversationName(conversation_id, user_id, origin)
        for rowid, conversation_id, user_id, origin in db.execute(
            "SELECT rowid, id, user_id, origin FROM conversations"
        )
    }


def latency_percentile(
    db: Any,
    q: float,
    n: int,
    since: float | None,
    until: float | None,
    convs: list[int] | None = None,
    exclude: list[int] | None = None,
    user: str | None = None,
) -> float | None:
    """The q-quantile (nearest rank) of the `n` attempt latencies started in [since, until)
    (`n` from the rollup's `timed`), read from the top of the latency index: the ranks above a
    high quantile are few. `user`: only the attempts of that user's turns ('' for none), as the
    rollup's rows of that user count them."""
    if not n:
        return None
    where: list[str] = ["part = 0", "latency_ms IS NOT NULL"]
    args: list[Any] = []
    if user is not None:
        where.append("(SELECT COALESCE(t.user_id, '') FROM turns t WHERE t.rowid = turn) = ?")
        args.append(user)
    if since is not None:
        where.append("at >= ?")
        args.append(since)
    if until is not None:
        where.append("at < ?")
        args.append(until)
    # filling the temp tables opens a transaction (sqlite3 begins one before an INSERT/DELETE);
    # it is ended here, or the connection keeps reading this snapshot forever after
    began = not db.conn.in_transaction
    try:
        for name, ids in (("_only", convs), ("_skip", exclude)):
            if ids is None:
                continue
            db.execute(f"CREATE TEMP TABLE IF NOT EXISTS {name} (conv INTEGER PRIMARY KEY)")
            db.execute(f"DELETE FROM temp.{name}")
            db.conn.executemany(f"INSERT INTO temp.{name} VALUES (?)", [(c,) for c in ids])
            where.append(f"conv {'IN' if name == '_only' else 'NOT IN'} (SELECT conv FROM temp.{name})")
        rank = max(1, -(-int(q * 1_000_000) * n // 1_000_000))  # ceil(q * n), exactly
        row = db.execute(
            f"SELECT latency_ms FROM usage WHERE {' AND '.join(where)} ORDER BY latency_ms DESC LIMIT 1 OFFSET ?",
            [*args, n - rank],
        ).fetchone()
    finally:
        if began and db.conn.in_transaction:
            db.conn.rollback()
    return float(row[0]) if row else None


def turn_usages(db: Any, conv: int) -> list[tuple[str | None, dict[str, Any] | None]]:
    """Each turn's (model, usage) in order, from its last attempt that got usage back (None
    for a turn without one), as the conversation view takes them."""
    by_idx: dict[int, tuple[str | None, dict[str, Any]]] = {}
    last = -1
    for idx, model, inp, out, w5m, w1h, cr, web, batch in db.execute(
        """SELECT idx, model, input, output, w5m, w1h, cr, web, batch FROM usage
           WHERE conv = ? AND part = 0 ORDER BY idx, attempt_id""",
        (conv,),
    ):
        last = max(last, idx)
        if inp is None:
            continue
        usage: dict[str, Any] = {
            "input_tokens": inp,
            "output_tokens": out,
            "cache_creation_input_tokens": w5m + w1h,
            "cache_read_input_tokens": cr,
            "cache_creation": {"ephemeral_5m_input_tokens": w5m, "ephemeral_1h_input_tokens": w1h},
        }
        if web:
            usage["server_tool_use"] = {"web_search_requests": web}
        if batch:
            usage["service_tier"] = "batch"
        by_idx[idx] = (model, usage)
    return [by_idx.get(i, (None, None)) for i in range(last + 1)]


# -- broken caches -------------------------------------------------------------------------------

MIN_WRITE_TOKENS = 1
"""A turn that writes at least this much to the cache counts as writing."""


def cache_break_runs(usages: Sequence[dict[str, Any] | None]) -> list[tuple[int, int]]:
    """(first, last) turn index of each broken-cache run: for at least two turns in a row, the
    turn writes to the cache while its reads don't grow. That is the signature of a moving
    breakpoint (a timestamp in the system prompt, a reordered tool list): every turn pays for a
    write and gets no read back."""
    runs = []
    start = None
    for i in range(1, len(usages) + 1):
        rewrites = False
        if i < len(usages):
            prev, cur = usages[i - 1], usages[i]
            rewrites = token_count(cur, "cache_creation_input_tokens") >= MIN_WRITE_TOKENS and token_count(
                cur, "cache_read_input_tokens"
            ) <= token_count(prev, "cache_read_input_tokens")
        if rewrites and start is None:
            start = i
        elif not rewrites and start is not None:
            if i - start >= 2:
                runs.append((start, i - 1))
            start = None
    return runs


def cache_breaks(usages: Sequence[dict[str, Any] | None]) -> list[int]:
    """Indexes of turns where a broken cache starts (see cache_break_runs)."""
    return [first for first, _ in cache_break_runs(usages)]
