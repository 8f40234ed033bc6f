"""The numbers of each attempt, kept where they aggregate fast (migration m003).

Stats, alerts, the dashboard and sorting conversations by cost read these instead of parsing
every attempt's JSON. They hold token counts, never money: costs are priced at read time with
the current table (store/aggregate.py), so a corrected price still re-prices history.

- `usage`: one row per attempt (`part` 0), plus one per billed compaction iteration (`part` 1,
  2, ...), so every priced unit is a row with its own model. Clustered by conversation and turn.
- `rollup`: the same numbers summed per conversation, 15-minute bucket (every time zone's
  midnight falls on one), model, batch or not, prompt-size class (which of EDGES the prompt
  lies between, so a price band above any of those sizes is priced exactly from the sums) and
  user: the turn's (`turns.user_id`, '' for none: rollup_user), so a call is billed to the user it
  was made for, not to its conversation's first user (a conversation continued by another user:
  `record --user u2` into u1's). A conversation of one user has as many rows as without the user
  in the key; one of two has a row of each where both called in the same quarter hour and model
  (migration m021 summed the rollup again with the user in its key).
  Everything billed is summed (compaction iterations are billed at the turns' rates), and what
  was billed but is no turn's prompt or reply is also summed apart (the aside_ fields, columns
  cp_...): compaction iterations, and the attempts of a turn other than the one that counts it
  (`new_turn`: its last attempt with usage, else its first; a stream cut after its message_start,
  then sent again, was billed twice for one prompt). So a conversation's prompt, output and cache
  hit rate are its turns', as the conversation view shows them, while its cost is all it was
  billed (migrations m011 and m017 filled them for older databases).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from operator import add
from typing import Any, NamedTuple

from ..pricing import token_parts as pricing_parts

BUCKET_S = 900
EDGES = (32_000, 64_000, 100_000, 128_000, 200_000, 256_000, 500_000, 1_000_000)
"""Prompt sizes the rollup keeps apart: a price band starting above one of these is exact."""

USAGE_COLUMNS = (
    "conv, idx, attempt_id, part, turn, at, model, status, latency_ms, error, new_turn, "
    "input, output, w5m, w1h, cr, web, batch, tool_results, tool_errors, system, rewrite"
)
INSERT_USAGE = f"INSERT INTO usage({USAGE_COLUMNS}) VALUES ({','.join('?' * len(USAGE_COLUMNS.split(',')))})"



class UsageRow(NamedTuple):
    """One row of `usage` (see SCHEMA for each column); a tuple, so executemany takes it as is."""

    conv: int
    idx: int
    attempt_id: int
    part: int
    turn: int
    at: float
    model: str | None
    status: int | None
    latency_ms: float | None
    error: int
    new_turn: int
    input: int | None
    output: int | None
    cache_write_5m: int | None
    cache_write_1h: int | None
    cache_read: int | None
    web_searches: int | None
    batch: int
    tool_results: int
    tool_errors: int
    system: int | None
    rewrite: int


COLUMN_OF_FIELD = {"cache_write_5m": "w5m", "cache_write_1h": "w1h", "cache_read": "cr", "web_searches": "web",
                   "aside_prompt": "cp_prompt", "aside_output": "cp_output", "aside_read": "cp_read"}
"""The short column names the tables were created with (renaming a column is a migration; a field is not)."""


def _columns(fields: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(COLUMN_OF_FIELD.get(f, f) for f in fields)


assert ", ".join(_columns(UsageRow._fields)) == USAGE_COLUMNS

ROLLUP_SUMS = (
    "turns", "attempts", "errors", "limited", "priced",
    "input", "output", "w5m", "w1h", "cr", "web", "tool_results", "tool_errors", "rewrites", "timed",
    "cp_prompt", "cp_output", "cp_read",
)  # fmt: skip
ROLLUP_KEY = ("conv", "bucket", "model", "batch", "band", "user")
ROLLUP_COLUMNS = (*ROLLUP_KEY, *ROLLUP_SUMS, "sys_min", "sys_max", "sys_nulls")


class RollupRow(NamedTuple):
    """A usage row's contribution to one `rollup` row, or several summed (in ROLLUP_COLUMNS' order)."""

    conv: int
    bucket: int
    model: str
    batch: int
    band: int
    user: str
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


_FIELD = {name: i for i, name in enumerate(RollupRow._fields)}
# `_summed` runs once or twice per attempt on the write path: it adds rows up in place by
# position (the positions named here, from the fields) rather than building a new NamedTuple
# for every addition, which measured slower
_KEY_LEN = _FIELD["turns"]
"""conv, bucket, model, batch, band, user: the rollup's primary key (rows with the same key are summed)."""
_SUMS_FROM, _SUMS_TO = _FIELD["turns"], _FIELD["sys_min"]
_SUMS = range(_SUMS_FROM, _SUMS_TO)
"""turns .. aside_read: the columns the upsert adds up (ROLLUP_SUMS), side by side."""
_SYS_MIN, _SYS_MAX, _SYS_NULLS = _FIELD["sys_min"], _FIELD["sys_max"], _FIELD["sys_nulls"]
SUMMED = frozenset([*_SUMS, _SYS_NULLS])
"""The positions of a RollupRow that the upsert adds up: a row with them negated takes one out."""


assert _columns(RollupRow._fields) == ROLLUP_COLUMNS and ROLLUP_COLUMNS[:_KEY_LEN] == ROLLUP_KEY
assert tuple(_columns(RollupRow._fields)[i] for i in _SUMS) == ROLLUP_SUMS
UPSERT_ROLLUP = (
    f"INSERT INTO rollup({', '.join(ROLLUP_COLUMNS)}) VALUES ({','.join('?' * len(ROLLUP_COLUMNS))}) "
    f"ON CONFLICT({', '.join(ROLLUP_KEY)}) DO UPDATE SET "
    + ", ".join(f"{c} = {c} + excluded.{c}" for c in ROLLUP_SUMS)
    + ", sys_min = MIN(COALESCE(sys_min, excluded.sys_min), COALESCE(excluded.sys_min, sys_min))"
    + ", sys_max = MAX(COALESCE(sys_max, excluded.sys_max), COALESCE(excluded.sys_max, sys_max))"
    + ", sys_nulls = sys_nulls + excluded.sys_nulls"
)

ROLLUP_TABLE = """CREATE TABLE rollup (
        conv INTEGER NOT NULL,
        bucket INTEGER NOT NULL,       -- start time // 900 s
        model TEXT NOT NULL,           -- '' when unknown
        batch INTEGER NOT NULL,
        band INTEGER NOT NULL,         -- prompt-size class: bisect_left(EDGES, prompt tokens)
        user TEXT NOT NULL,            -- the turn's user ('' for none): rollup_user(turns.user_id)
        turns INTEGER NOT NULL, attempts INTEGER NOT NULL, errors INTEGER NOT NULL,
        limited INTEGER NOT NULL,      -- attempts answered 429 or 529, or cut by such an error event
        priced INTEGER NOT NULL,       -- attempts with usage
        input INTEGER NOT NULL, output INTEGER NOT NULL, w5m INTEGER NOT NULL, w1h INTEGER NOT NULL,
        cr INTEGER NOT NULL, web INTEGER NOT NULL,
        tool_results INTEGER NOT NULL, tool_errors INTEGER NOT NULL, rewrites INTEGER NOT NULL,
        timed INTEGER NOT NULL,        -- attempts with a latency (to rank them for percentiles)
        sys_min INTEGER, sys_max INTEGER, sys_nulls INTEGER NOT NULL,
        cp_prompt INTEGER NOT NULL DEFAULT 0, cp_output INTEGER NOT NULL DEFAULT 0,
        cp_read INTEGER NOT NULL DEFAULT 0,
                                       -- of the sums, what was billed but is no turn's prompt or
                                       -- reply: compaction iterations (part > 0, m011) and the
                                       -- attempts that don't count their turn (new_turn 0, m017)
        PRIMARY KEY (conv, bucket, model, batch, band, user)
    ) WITHOUT ROWID"""

SCHEMA = (
    """CREATE TABLE usage (
        conv INTEGER NOT NULL,         -- conversations.rowid
        idx INTEGER NOT NULL,          -- the turn's index in its conversation
        attempt_id INTEGER NOT NULL,   -- attempts.id
        part INTEGER NOT NULL,         -- 0: the attempt; 1..: its billed compaction iterations
        turn INTEGER NOT NULL,         -- turns.rowid
        at REAL NOT NULL,              -- start, unix seconds
        model TEXT,
        status INTEGER,
        latency_ms REAL,
        error INTEGER NOT NULL,        -- 1 when the attempt has an error (HTTP, an error event, no connection);
                                       -- 2 when that error is a rate limit or overload (error_kind)
        new_turn INTEGER NOT NULL,     -- 1 on the attempt that counts its turn (its tokens are the
                                       -- turn's): its last with usage, else its first (take_turn)
        input INTEGER, output INTEGER, w5m INTEGER, w1h INTEGER, cr INTEGER, web INTEGER,
                                       -- usage as received (NULL: none); w5m/w1h: cache writes
        batch INTEGER NOT NULL,
        tool_results INTEGER NOT NULL, -- tool_result blocks the turn's request added (first attempt)
        tool_errors INTEGER NOT NULL,  -- of them, with is_error
        system INTEGER,                -- the turn's system prompt blob
        rewrite INTEGER NOT NULL,      -- writes to the cache while reading no more than the turn before
        PRIMARY KEY (conv, idx, attempt_id, part)
    ) WITHOUT ROWID""",
    "CREATE INDEX usage_latency ON usage(latency_ms, at) WHERE part = 0 AND latency_ms IS NOT NULL",
    ROLLUP_TABLE,
)


def rollup_user(user_id: str | None) -> str:
    """A turn's user as the rollup keys it: '' for none (a key column can't be NULL), which an
    empty id also is (every list and figure shows both as no user)."""
    return user_id or ""


def token_parts(usage: dict[str, Any]) -> tuple[int, int, int, int, int, int, int]:
    """input, output, 5-minute writes, 1-hour writes, reads, web searches, batch (0/1)."""
    inp, out, write_5m, write_1h, reads, web, batch = pricing_parts(usage)
    return inp, out, write_5m, write_1h, reads, web, 1 if batch else 0


def tool_counts(messages: list[Any]) -> tuple[int, int]:
    """tool_result blocks in these messages, and how many of them are errors."""
    n = errors = 0
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        if not isinstance(content, list):
            continue
        for b in content:
            if isinstance(b, dict) and b.get("type") == "tool_result":
                n += 1
                if b.get("is_error") is True:
                    errors += 1
    return n, errors


LIMITED_TYPES = frozenset({"rate_limit_error", "overloaded_error"})
"""The error types of the API under pressure (HTTP 429 and 529, or an event mid-stream)."""


def error_kind(status: int | None, error: Any) -> int:
    """`usage.error`: 0 no error; 1 an error; 2 a rate limit or an overload: a 429 or 529, or an
    error of that type in a 2xx stream (the API sends `overloaded_error` mid-stream; API-FACTS:
    classify by the error's type). `error`: the stored error dict, or any true value when only
    its presence is known."""
    if not error:
        return 0
    if status in (429, 529) or (isinstance(error, dict) and error.get("type") in LIMITED_TYPES):
        return 2
    return 1


def is_rewrite(writes: int, reads: int, prev_reads: int | None) -> bool:
    """The per-turn signal store.aggregate.cache_breaks looks for (a turn without usage reads 0)."""
    return writes >= 1 and reads <= (prev_reads or 0)


def usage_rows(
    *,
    conv: int,
    idx: int,
    attempt_id: int,
    turn: int,
    at: float,
    model: str | None,
    status: int | None,
    latency_ms: float | None,
    error: int,
    new_turn: bool,
    usage: Any,
    tools: tuple[int, int],
    system: int | None,
    prev_reads: int | None,
) -> list[UsageRow]:
    """The usage rows of one attempt; `error`: its error_kind; `prev_reads`: cache reads of the turn before."""
    head = (conv, idx, attempt_id, 0, turn, at, model, status, latency_ms, error, 1 if new_turn else 0)
    if not isinstance(usage, dict):
        return [UsageRow(*head, None, None, None, None, None, None, 0, *tools, system, 0)]
    parts = token_parts(usage)
    _inp, _out, write_5m, write_1h, reads, _web, _batch = parts
    out = [UsageRow(*head, *parts, *tools, system, 1 if is_rewrite(write_5m + write_1h, reads, prev_reads) else 0)]
    for i, it in enumerate(usage.get("iterations") or (), 1):
        if isinstance(it, dict) and it.get("type") == "compaction":
            out.append(
                UsageRow(conv, idx, attempt_id, i, turn, at, it.get("model") or model, None, None, 0, 0,
                         *token_parts(it), 0, 0,
                         system, 0)
            )
    return out


def rollup_row(u: UsageRow, user: str) -> RollupRow:
    """A usage row as its contribution to the rollup; `user`: its turn's (rollup_user)."""
    (conv, _idx, _aid, part, _turn, at, model, status, latency, error, new_turn,
     inp, out, write_5m, write_1h, reads, web, batch, tool_results, tool_errors, system, rewrite) = u  # fmt: skip
    priced = inp is not None
    prompt = (inp or 0) + (write_5m or 0) + (write_1h or 0) + (reads or 0)
    first = part == 0
    counted = first and new_turn  # the turn's own tokens; the rest was billed aside from them
    return tuple.__new__(RollupRow, (  # as _make does, without its Python frame (the write path)
        conv, int(at // BUCKET_S), model or "", batch, bisect.bisect_left(EDGES, prompt) if priced else 0, user,
        new_turn, 1 if first else 0, 1 if error else 0, 1 if first and error == 2 else 0, 1 if priced and first else 0,
        inp or 0, out or 0, write_5m or 0, write_1h or 0, reads or 0, web or 0, tool_results, tool_errors, rewrite,
        1 if first and latency is not None else 0,
        *((0, 0, 0) if counted else (prompt, out or 0, reads or 0)),
        system, system, 1 if system is None and first else 0,
    ))  # fmt: skip


def prev_reads(db: Any, conv: int, idx: int) -> int | None:
    """Cache reads of turn idx-1 (its last attempt with usage); None when it has none."""
    if idx == 0:
        return None
    row = db.execute(
        "SELECT cr FROM usage WHERE conv = ? AND idx = ? AND part = 0 AND input IS NOT NULL "
        "ORDER BY attempt_id DESC LIMIT 1",
        (conv, idx - 1),
    ).fetchone()
    return row[0] if row else None


def take_turn(db: Any, row: UsageRow, *, user: str | None, rollup: bool = True) -> UsageRow:
    """`row` (part 0 of a later attempt of its turn that got usage back, not yet written) as the
    row that counts the turn: a turn's tokens are those of its last attempt with usage, and it
    counts under that attempt's model, as `show` has them, not its first attempt's (a 429 stored
    with the request's alias, a fallback to another model, a stream cut after its message_start
    and then sent again). The count moves off the written row that held it, and that row's tokens
    go aside in the rollup (still priced, no longer the turn's), unless `rollup` is False (a
    copy's rows are not in the rollup). `user`: the turn's (rollup_user); None in the migrations
    before m021, whose rollup has no user in its key yet (m021 sums it again from `usage`)."""
    held = db.execute(
        f"SELECT {USAGE_COLUMNS} FROM usage WHERE conv = ? AND idx = ? AND part = 0 AND new_turn = 1 AND turn = ?",
        (row.conv, row.idx, row.turn),
    ).fetchone()
    if held is None:
        return row
    old = UsageRow(*held)
    db.execute(
        "UPDATE usage SET new_turn = 0 WHERE conv = ? AND idx = ? AND attempt_id = ? AND part = 0",
        (old.conv, old.idx, old.attempt_id),
    )
    if rollup:
        r = rollup_row(old._replace(new_turn=0), user or "")
        key = r[:_KEY_LEN] if user is not None else r[: _KEY_LEN - 1]  # (the user is the key's last column)
        db.execute(
            f"""UPDATE rollup SET turns = turns - 1, cp_prompt = cp_prompt + ?, cp_output = cp_output + ?,
                                  cp_read = cp_read + ?
                WHERE {' AND '.join(c + ' = ?' for c in ROLLUP_KEY[: len(key)])}""",
            (r.aside_prompt, r.aside_output, r.aside_read, *key),
        )
    return row._replace(new_turn=1)


Billed = tuple[str, list[UsageRow]]
"""An attempt's usage rows and the user its turn was made for (rollup_user): whom they bill."""


def write(db: Any, billed: list[Billed]) -> None:
    """Insert usage rows and add them to the rollup: one upsert per rollup key, not per row."""
    # as plain tuples: the sqlite3 module reads a tuple subclass's items one call at a time
    db.executemany(INSERT_USAGE, [tuple(u) for _, rows in billed for u in rows])
    add_to_rollup(db, (rollup_row(u, user) for user, rows in billed for u in rows))


def add_to_rollup(db: Any, contributions: Iterable[RollupRow]) -> None:
    """Add rollup_row contributions to the rollup: summed here per key first, then one upsert each."""
    db.executemany(UPSERT_ROLLUP, _summed(contributions))


def _summed(contributions: Iterable[RollupRow]) -> list[tuple[Any, ...]]:
    """The contributions (RollupRow's columns), summed per key as the upsert would sum them."""
    acc: dict[tuple[Any, ...], list[Any]] = {}
    for r in contributions:
        key = r[:_KEY_LEN]
        got = acc.get(key)
        if got is None:
            acc[key] = list(r)
            continue
        got[_SUMS_FROM:_SUMS_TO] = map(add, got[_SUMS_FROM:_SUMS_TO], r[_SUMS_FROM:_SUMS_TO])  # in C, not a loop here
        low, high = r.sys_min, r.sys_max
        if low is not None:
            got[_SYS_MIN] = low if got[_SYS_MIN] is None else min(got[_SYS_MIN], low)
            got[_SYS_MAX] = high if got[_SYS_MAX] is None else max(got[_SYS_MAX], high)
        got[_SYS_NULLS] += r.sys_nulls
    return [tuple(v) for v in acc.values()]
