"""Which conversations to list: one set of rules for `replayer list` and the browser's `/` bar.

A model matches by any part of its id, in any case (`haiku` finds claude-haiku-4-5). A date or
time that names no zone (or offset) is read in the zone given (`tz`: the one times are shown in,
Settings.shown_tz; UTC when none is); a bare date in `until` means the whole of that day. A value
that can't be read raises FilterError with one line saying what is wrong and what to write
instead: a typo must never look like "nothing matches".
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypedDict, cast

from .config import zone
from .store.codec import iso


class FilterError(ValueError):
    """A filter value that can't be used (the message says what to write instead)."""


class ListFilter(TypedDict, total=False):
    """The list's filters, each left out or None for "any": the keyword arguments that
    Store.conversations, conversation_count and conversation_order take besides sort and paging,
    and what parse_filter makes of the `/` bar. Declared once here; the store reads them
    (Store._where, and the cost ones in Store._listing)."""

    user: str | None
    """Conversations with a call of this user's (its first user, or any turn's)."""
    no_user: bool
    """Conversations with a call made for no user."""
    run: str | None
    """One `replayer record` run's (the tag ("run", ID))."""
    tags: Sequence[tuple[str, str]]
    """(key, value) pairs a conversation must all have (tag_pair)."""
    model: str | None
    """A model id holding this, in any case."""
    since: str | None
    until: str | None
    tz: str | None
    """The zone a date naming none is read in (UTC when None)."""
    query: str | None
    """Words looked for together in one place (text.fts_query)."""
    errors_only: bool
    reruns: bool
    """Keep the variants `replayer rerun` sent (left out by default)."""
    min_cost: float | None
    over_cost: float | None
    ids: Sequence[str] | None
    """Only these conversations."""


FILTER_WORDS = (
    ("user:U", "with a call of U's"),
    ("nouser", "with a call for no user"),
    ("run:ID", "one `record` run's"),
    ("tag:KEY=VALUE", "tagged so (repeatable)"),
    ("model:M", "a model id holding M"),
    ("since:DATE", "active since DATE"),
    ("until:DATE", "started by DATE's end"),
    ("errors", "with a failed call"),
    ("cost>0.5", "costing over $0.50 (cost>=0.5: that or more)"),
)
"""The words the browser's filter takes besides message text, and what each keeps: the help
screen lists them and the filter bar's placeholder names them."""
FILTER_SYNTAX = " ".join(word for word, _ in FILTER_WORDS)


def tag_pair(value: str, what: str = "tag:") -> tuple[str, str]:
    """`KEY=VALUE` as (key, value): a conversation has the tag KEY, and its value, as text, is
    VALUE (a string as it is, a number or true/false as written)."""
    key, sep, tag_value = value.partition("=")
    if not sep or not key:
        raise FilterError(f"{what}{value}: write {what}KEY=VALUE, e.g. {what}team=search")
    return key, tag_value


def time_bound(value: str, what: str, *, end: bool = False, tz: str | None = None) -> str:
    """`value` (YYYY-MM-DD, or a date and time) as a timestamp the store compares with, read in
    the zone `tz` (UTC when None) unless it names its own. With `end`, a bare date stands for its
    whole day: the bound is the start of the next day."""
    text = value.strip()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        day = None
    try:
        t = datetime.fromisoformat(text) if day is None else datetime(day.year, day.month, day.day)
    except ValueError:
        raise FilterError(f"{what} {value!r} is not a date: use YYYY-MM-DD or YYYY-MM-DDTHH:MM") from None
    named = t.tzinfo is not None
    if not named:
        t = t.replace(tzinfo=zone(tz) if tz else UTC)
    try:
        if end and day is not None:
            if day == date.max:  # the last day there is: its last millisecond is as good
                return iso(t.replace(hour=23, minute=59, second=59, microsecond=999_000).timestamp())
            t += timedelta(days=1)
        return iso(t.timestamp())
    except (OverflowError, ValueError):  # a time zone that takes it past year 1 or 9999 in UTC
        if named:  # the zone written with it: said
            raise FilterError(f"{what} {value!r} is out of range: give a date from year 1 to 9999") from None
        # the zone times are shown in: a date of year 1 or 9999 there works, as anywhere
        edge = datetime(9999, 12, 31, 23, 59, 59, 999_000, UTC) if t.year > 1 else datetime(1, 1, 1, tzinfo=UTC)
        return iso(edge.timestamp())


def dollars(value: str, what: str = "cost>") -> float:
    try:
        return float(value.lstrip("$"))
    except ValueError:
        raise FilterError(f"{what}{value}: {value!r} is not a number of dollars: write e.g. cost>0.5") from None


def like_part(value: str) -> str:
    """A LIKE pattern (ESCAPE '\\') matching `value` anywhere, its own % and _ taken literally."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def parse_filter(text: str, tz: str | None = None) -> ListFilter:
    """`user:alice run:run_… tag:team=search model:haiku since:2026-11-20 until:2026-11-25 errors
    cost>0.5 words…` (FILTER_WORDS) as the keyword arguments of Store.conversations, its dates
    read in the zone `tz` (UTC when None). Raises FilterError for a value it can't read."""
    out: dict[str, Any] = {}
    words = []
    tags = []
    try:
        parts = shlex.split(text)
    except ValueError:
        parts = text.split()
    for part in parts:
        key, sep, value = part.partition(":")
        if sep and key in ("user", "run", "model", "since", "until") and value:
            if key in ("since", "until"):
                time_bound(value, key, end=key == "until", tz=tz)  # said now, not as an empty list
                out["tz"] = tz
            out[key] = value
        elif sep and key == "tag":
            tags.append(tag_pair(value))
        elif part == "errors":
            out["errors_only"] = True
        elif part == "nouser":
            out["no_user"] = True
        elif part.startswith("cost>="):
            out["min_cost"] = dollars(part[6:], "cost>=")
        elif part.startswith("cost>"):
            out["over_cost"] = dollars(part[5:])
        else:
            words.append(part)
    if tags:
        out["tags"] = tags
    if words:
        out["query"] = " ".join(words)
    return cast(ListFilter, out)
