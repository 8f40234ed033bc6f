"""The Store: the read API the CLI, the terminal app and metrics call (conversation listings, a
conversation's turns, variants, spend), in front of the modules that hold the larger reads
(detail.py one turn, export.py the JSONL export, aggregate.py the sums over the rollup).

Documents are rebuilt from their deduplicated parts as text: a skeleton is dumped with markers
where system/tools/messages/content were taken out, and each marker is replaced by the stored
JSON of that part (codec.splice). Nothing large is parsed, and the result is JSON-equal to the
wire, its keys in the order they came (a part sent again in another order: as first sent;
databases written before that keep sorted keys: codec.in_order).

About 760 lines on purpose: the Store is the one read API the CLI and the app see, so each
read they make has a method here, most of them a few lines that hand on to those modules (the
listing's query is the longest, shared by a page of rows and by the ids alone that the list's
self-refresh places).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, Unpack

from sqlite_utils import Database

from ..bounded import BoundedDict
from ..filters import ListFilter, like_part, time_bound
from ..models import (
    AttemptInfo,
    ConversationSummary,
    TurnDetail,
    TurnSummary,
    Variant,
)
from ..pricing import PriceTable, default_table
from ..wire import TOOL_USE_TYPES, message_text
from . import aggregate
from .aggregate import ConversationName, Group, Totals, conversation_totals, figures
from .chain import CHAIN_SQL, chain_nodes, first_texts
from .codec import RowTexts, stored_json, unpack
from .faults import missing_row
from .runs import Run, add_run, get_run

BLOB_CACHE = 50_000
"""Blob texts a Store keeps (the app reads the same conversation's messages again and again)."""
NODE_CACHE = 500_000
"""Message-list nodes a Store keeps (each a parent id and a blob id: small)."""
TEMPLATE_CACHE = 10_000
"""Request skeletons a Store keeps cut at their slots (an export reads the same few again and again)."""

SORTS = {
    "started": "c.started_at",
    "last": "c.last_at",
    "id": "c.id",
    "user": "c.user_id",
    "turns": "c.turn_count",
    "duration": "julianday(c.ended_at) - julianday(c.started_at)",  # as ConversationSummary.duration_s
}
"""What `Store.conversations` sorts by in SQL."""
RUN_MATCH = """EXISTS (SELECT 1 FROM (SELECT c.tags_json AS tags UNION ALL
                                      SELECT tags_json FROM turn_tags WHERE conversation_id = c.id)
                      WHERE json_extract(tags, '$.run') = ?)"""
"""A conversation (aliased c) of one `replayer record` run: the run's id is the "run" tag of the
conversation or of any of its turns (a later run that continued it tags the turns it added)."""
TAG_MATCH = """EXISTS (SELECT 1 FROM (SELECT c.tags_json AS tags UNION ALL
                                      SELECT tags_json FROM turn_tags WHERE conversation_id = c.id) AS t,
                                     json_each(t.tags) AS e
                      WHERE e.key = ?
                        AND CASE WHEN e.type IN ('true', 'false', 'null') THEN e.type
                                 ELSE CAST(e.value AS TEXT) END = ?)"""
"""A conversation (aliased c) with the tag KEY (the first argument) whose value, as text, is
VALUE (the second): a string as it is, a number or true/false/null as written
(filters.tag_pair); the conversation's own tags or any of its turns' (see RUN_MATCH)."""
QUERY_MATCH = """c.id IN (WITH b AS (SELECT rowid FROM context_text WHERE context_text MATCH ?)
                       SELECT t.conversation_id FROM turns t
                       WHERE t.rowid IN (SELECT rowid / 2 FROM turn_text WHERE turn_text MATCH ?)
                       UNION ALL SELECT conversation_id FROM turns WHERE system_blob IN b
                       UNION ALL SELECT conversation_id FROM turns WHERE tools_blob IN b)"""
"""A conversation (aliased c) the list's search (`-q`, `/`: the words as text.fts_query, given
twice) finds: the words are all in what one of its turns' requests added or in one reply
(turn_text), or all in one system prompt or one tool list a turn sent (context_text, a row per
blob), as find in the conversation (Store.find_in_conversation) looks for them: a word of the
messages with one of the system prompt matches neither. The turns sending a matching blob are
found through turns_system / turns_tools (m022), so a search no system prompt or tool list
answers costs what it did (0.1 ms for a rare word on 20,000 conversations of 100,000 turns;
without them it read every turn twice, 50-75 ms more), and one that the tools of every turn
answer costs about 50 ms more there (every turn read from the index: 120 ms for `lookup`
against 80 ms for its message rows alone; a busy 2-core machine)."""
USER_CALLS = "c.rowid IN (SELECT conv FROM rollup WHERE user = ?)"
"""A conversation (aliased c) with a call made for the user given ('' for none): the rollup's rows
are keyed by their turns' user (store/facts.py), so a conversation another user continued is
found under both."""
AGG_SORTS: dict[str, Callable[[Totals], Any]] = {
    "cost": lambda t: t.cost_usd,
    "input": lambda t: t.prompt,
    "output": lambda t: t.output,
    "cache": lambda t: t.cache_read / t.prompt if t.prompt else None,
    "errors": lambda t: t.errors,
    "models": lambda t: ", ".join(sorted(t.models)),
    "first": lambda t: None,  # by Store.first_texts, not the rollup
}
"""...and by the priced totals of each conversation (store/aggregate.py). A cost that leaves out
attempts with no price sorts (and `min_cost` / `over_cost` filter it) by what its priced attempts
cost, a lower bound; one with nothing priced in it (shown `?`) sorts last either way and passes no
cost filter."""


class AmbiguousId(ValueError):
    """An id given in part that begins several (Store.whole_id): its message names them."""


def one_named(text: str, kind: str, count: int, ids: list[str]) -> str:
    """The id `text` names when it begins `count` ids (`ids`: the first few, in order): that one
    id; `text` itself when none; AmbiguousId, naming the first few, when several (Store.whole_id,
    and `import otlp --user`, which counts the spans' users too)."""
    if count == 1:
        return str(ids[0])
    if count > 1:
        listed = ", ".join(ids) + (", …" if count > len(ids) else "")
        raise AmbiguousId(f"{text!r} begins {count} {kind} ids ({listed}): give more of it")
    return text


class _AttemptRow(NamedTuple):
    """An attempt's columns as Store.turns reads them."""

    turn_id: str
    attempt: int
    started_at: str
    status: int | None
    latency_ms: float | None
    ttft_ms: float | None
    error_json: str | None
    request_id: str | None
    abandoned: int
    usage_json: str | None
    model: str | None
    stop_reason: str | None
    response_content: int | None
    copied: int



def _error_of(error_json: str | None, status: int | None) -> tuple[dict[str, Any] | None, bool]:
    """An attempt's error, carrying the attempt's status as any recorded error does, and whether
    that status was added here: one given to `Recorder.record(status=..., error={type, message})`
    was stored without it (before record() put the status in), and then showed with none
    (`rate_limit_error`, not `429 rate_limit_error`). A connection lost or timed out after a
    stream's 200 (recorded with no status of its own) so reads as cut mid-stream
    (fmt.error_status), as an error event after it does. Its JSON says the error as recorded
    (AttemptInfo.error), as export does."""
    if not error_json:
        return None, False
    error = json.loads(error_json)
    if isinstance(error, dict) and error.get("status") is None and status is not None:
        return {**error, "status": status}, True
    return error, False


def _attempt_info(a: _AttemptRow) -> AttemptInfo:
    error, added = _error_of(a.error_json, a.status)
    info = AttemptInfo(attempt=a.attempt, started_at=a.started_at, status=a.status, latency_ms=a.latency_ms,
                       ttft_ms=a.ttft_ms, error=error, request_id=a.request_id, abandoned=bool(a.abandoned))
    info._error_status_added = added
    return info


def _costs(t: Totals | None, at_least: float | None, over: float | None) -> bool:
    """A conversation's known spend is at least `at_least` and over `over` dollars (`cost>=`,
    `cost>`), compared as money shows it: to 12 decimals, the noise of float sums left out (three
    $0.00015 make 0.00045000000000000004, which is not over $0.00045). Nothing priced passes none."""
    if t is None or t.cost_usd is None:
        return False
    cost = round(t.cost_usd, 12)
    return (at_least is None or cost >= at_least) and (over is None or cost > over)

class Store(RowTexts):
    def __init__(self, db: Database, prices: PriceTable | None = None):
        self.db = db
        self.prices = prices or default_table()
        self._nodes: BoundedDict[int, tuple[int | None, int]] = BoundedDict(NODE_CACHE)
        self._blobs: BoundedDict[int, str] = BoundedDict(BLOB_CACHE)
        self._templates: BoundedDict[tuple[str, ...], list[str]] = BoundedDict(TEMPLATE_CACHE)

    # -- parts ---------------------------------------------------------------------------------
    def blob_text(self, blob_id: int) -> str:
        got = self._blobs.get(blob_id)
        if got is None:
            got = stored_json(self.db, blob_id)
            self._blobs[blob_id] = got
        return got

    def blob_texts(self, ids: list[int]) -> list[str]:
        """Many blobs in a few queries. (Each query from a worker thread gives up the GIL and must
        win it back from the UI thread: hundreds of one-row queries would mostly wait.)"""
        missing = list({b for b in ids if b not in self._blobs})
        if not missing:
            return [self._blobs[b] for b in ids]
        fetched: dict[int, str] = {}
        for i in range(0, len(missing), 500):
            chunk = missing[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for bid, stored in self.db.execute(f"SELECT id, json FROM blobs WHERE id IN ({marks})", chunk):
                fetched[bid] = unpack(stored)
        gone = next((b for b in missing if b not in fetched), None)
        if gone is not None:
            raise missing_row(self.db, f"blob {gone}")
        texts = [fetched[b] if b in fetched else self._blobs[b] for b in ids]
        self._blobs.fill(zip(ids, texts, strict=True))  # all of them: a full cache keeps this batch
        return texts

    def blob_chain(self, node: int | None) -> list[int]:
        """The message blob ids of the list ending at `node`, first to last."""
        out: list[int] = []
        while node:
            hit = self._nodes.get(node)
            if hit is None:
                self._nodes.fill((nid, (parent, blob)) for nid, parent, blob in chain_nodes(self.db, node))
                hit = self._nodes.get(node)
                if hit is None:
                    raise missing_row(self.db, f"message node {node}")
            out.append(hit[1])
            node = hit[0]
        out.reverse()
        return out

    def prefetch_chains(self, nodes: list[int]) -> None:
        """Read the message chains ending at `nodes` in one query per 500 (a walk per context
        would read a long conversation's shared start again for every turn)."""
        todo = list({n for n in nodes if n and n not in self._nodes})
        found: list[tuple[int, tuple[int | None, int]]] = []
        for i in range(0, len(todo), 500):
            chunk = todo[i : i + 500]
            sql = CHAIN_SQL.replace("WHERE id = ?", f"WHERE id IN ({','.join('?' * len(chunk))})")
            sql = sql.replace("UNION ALL", "UNION")  # each shared node once
            found += ((nid, (parent, blob)) for nid, parent, blob in self.db.execute(sql, chunk))
        self._nodes.fill(found)  # all of them together: a full cache is cleared first, not midway

    def messages_text(self, node: int | None) -> str:
        return "[" + ",".join(self.blob_texts(self.blob_chain(node))) + "]"

    def messages(self, node: int | None) -> list[Any]:
        return json.loads(self.messages_text(node))

    # -- export --------------------------------------------------------------------------------
    def export_lines(self, conversation_id: str | None = None, *, run_id: str | None = None) -> Iterator[str]:
        """One JSON line per recorded attempt (store/export.py)."""
        from .export import export_lines

        return export_lines(self, conversation_id, run_id=run_id)

    def stream_body(self, body_id: int) -> bytes:
        """A stored stream's bytes as received (store/events.py)."""
        from .events import read_body

        return read_body(self.db, body_id)

    # -- listings ------------------------------------------------------------------------------
    def ids_starting(self, prefix: str, *, kind: str = "conversation", limit: int = 3) -> tuple[int, list[str]]:
        """Conversation (kind "conversation"), turn ("turn") or user ("user") ids the text names:
        the id itself when one is exactly that, else every id it begins. (how many, the first
        `limit` of them in id order). Ids are long and typed or copied in part (a Claude Code user
        is a 64-hex device id, shown cut to 13); a prefix names one when unique."""
        if not prefix:
            return 0, []
        # where the ids are, each over an index (the primary key's; for users conversations_user,
        # a conversation's first user, and rollup_user, every user a call was made for: a user
        # seen only in a later turn of another's conversation is a user too)
        places = {"conversation": [("conversations", "id")], "turn": [("turns", "id")],
                  "user": [("conversations", "user_id"), ("rollup", "user")]}[kind]  # fmt: skip
        exact = " UNION ALL ".join(f"SELECT 1 FROM {table} WHERE {column} = ?" for table, column in places)
        if self.db.execute(exact + " LIMIT 1", [prefix] * len(places)).fetchone():
            return 1, [prefix]
        # a range of each index: ids compare as UTF-8 bytes
        bounds = [prefix, prefix + "\U0010ffff"] * len(places)
        found = " UNION ".join(
            f"SELECT {column} AS id FROM {table} WHERE {column} >= ? AND {column} < ?" for table, column in places
        )
        count = self.db.execute(f"SELECT COUNT(*) FROM ({found})", bounds).fetchone()[0]
        rows = self.db.execute(f"SELECT id FROM ({found}) ORDER BY id LIMIT ?", [*bounds, limit])
        return count, [r[0] for r in rows]

    def turns_starting(self, prefix: str, limit: int = 20) -> list[tuple[str, str, int]]:
        """The turns whose id begins with `prefix` (a turn id typed or pasted, whole or in part):
        (turn id, its conversation, its index), the first `limit` in id order, read over the
        primary key's index (nothing is counted)."""
        if not prefix:
            return []
        rows = self.db.execute(
            "SELECT id, conversation_id, idx FROM turns WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
            [prefix, prefix + "\U0010ffff", limit],
        )
        return [(r[0], r[1], r[2]) for r in rows]

    def whole_id(self, text: str, kind: str = "conversation") -> str:
        """The whole id `text` names (ids_starting): an id, a prefix of exactly one, or one cut as
        displayed (…). The text itself when it names none (the caller says it is unknown);
        AmbiguousId, saying the first few, when it begins several."""
        count, ids = self.ids_starting(text.removesuffix("…"), kind=kind)
        return one_named(text, kind, count, ids)

    def change_mark(self) -> tuple[int, int]:
        """Moves whenever a call or a conversation is recorded: the newest attempt's and
        conversation's rowids (two b-tree lookups however big the database), for a view to check
        before it reloads anything."""
        row = self.db.execute(
            "SELECT (SELECT max(id) FROM attempts), (SELECT max(rowid) FROM conversations)"
        ).fetchone()
        return (row[0] or 0, row[1] or 0)

    def conversation_exists(self, conversation_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM conversations WHERE id = ?", [conversation_id]).fetchone() is not None

    def run_conversations(self, run: str) -> list[str]:
        """The conversations one `replayer record` run recorded (its id is their "run" tag), oldest first
        (those that started at the same moment in the order they were stored)."""
        return [
            r[0]
            for r in self.db.execute(
                f"SELECT id FROM conversations c WHERE {RUN_MATCH} ORDER BY started_at, rowid", [run]
            )
        ]

    def conversation_runs(self, conversation_id: str) -> list[str]:
        """Every `replayer record` run that recorded turns of a conversation, first one first."""
        runs: list[str] = []
        for (run,) in self.db.execute(
            """SELECT run FROM (SELECT -1 AS idx, json_extract(tags_json, '$.run') AS run FROM conversations
                                 WHERE id = ? UNION ALL
                                 SELECT t.idx, json_extract(g.tags_json, '$.run') FROM turn_tags g
                                 JOIN turns t ON t.id = g.turn_id WHERE g.conversation_id = ?)
               ORDER BY idx""",
            [conversation_id, conversation_id],
        ):
            if isinstance(run, str) and run not in runs:
                runs.append(run)
        return runs

    def add_run(self, run: Run) -> None:
        """Keep what a `replayer record` run ran (store/runs.py), for `replayer fork`."""
        add_run(self.db, run)

    def run(self, run_id: str) -> Run | None:
        """What a `replayer record` run ran; None for a run not recorded by `record`."""
        return get_run(self.db, run_id)

    def conversation_tags(self, conversation_id: str) -> dict[str, Any]:
        """A conversation's tags ({} when it has none)."""
        row = self.db.execute("SELECT tags_json FROM conversations WHERE id = ?", [conversation_id]).fetchone()
        tags = json.loads(row[0]) if row and row[0] else None
        return tags if isinstance(tags, dict) else {}

    def turns(self, conversation_id: str) -> list[TurnSummary]:
        turn_rows = self.db.execute(
            """SELECT id, conversation_id, idx, started_at, model, stream, context_len
               FROM turns WHERE conversation_id = ? ORDER BY idx""",
            [conversation_id],
        ).fetchall()
        attempts: dict[str, list[_AttemptRow]] = {}
        for values in self.db.execute(
            """SELECT a.turn_id, a.attempt, a.started_at, a.status, a.latency_ms, a.ttft_ms, a.error_json,
                      a.request_id, a.abandoned, a.usage_json, a.model, a.stop_reason, a.response_content,
                      a.copied_from IS NOT NULL
               FROM attempts a JOIN turns t ON t.id = a.turn_id
               WHERE t.conversation_id = ? ORDER BY a.attempt, a.id""",
            [conversation_id],
        ):
            a = _AttemptRow(*values)
            attempts.setdefault(a.turn_id, []).append(a)
        replies = [a.response_content for rows in attempts.values() for a in rows]
        self.blob_texts([blob for blob in replies if blob is not None])
        out = []
        for tid, cid, idx, started, model, stream, ctx_len in turn_rows:
            rows = attempts.get(tid, [])
            answered = [a for a in rows if a.usage_json]
            usages = [(json.loads(a.usage_json), a.model) for a in answered if a.usage_json]
            last = answered[-1] if answered else None
            usage = usages[-1][0] if usages else None
            resp_model = last.model if last else model
            tools: list[str] = []
            if last is not None and last.response_content is not None:
                for block in json.loads(self.blob_text(last.response_content)).get("content") or ():
                    if isinstance(block, dict) and block.get("type") in TOOL_USE_TYPES:
                        tools.append(str(block.get("name")))
            out.append(
                TurnSummary(
                    turn_id=tid,
                    conversation_id=cid,
                    index=idx,
                    started_at=started,
                    model=resp_model,
                    stream=bool(stream),
                    stop_reason=last.stop_reason if last else None,
                    usage=usage,
                    cost_usd=sum_costs(self.prices, usages),
                    copied=bool(rows) and all(a.copied for a in rows),
                    context_messages=ctx_len,
                    tool_calls=tools,
                    attempts=[_attempt_info(a) for a in rows],
                )
            )
        return out

    def conversations(
        self,
        *,
        sort: str = "started",
        descending: bool = True,
        limit: int = 50,
        offset: int = 0,
        from_end: bool = False,
        **filters: Unpack[ListFilter],
    ) -> list[ConversationSummary]:
        """A page of conversations, sorted and filtered by SQLite, priced ones included: `sort`
        is one of SORTS. Costs are priced from the usage table with the current prices. The
        filters are replayer.filters.ListFilter's (FilterError for a date that can't be read;
        `tz` the zone a date naming none is read in, UTC when None); `tags` are (key, value)
        pairs a conversation must all have, `run` is the tag ("run", run); `ids` keeps only those
        conversations."""
        conv_rows = self._listing(
            filters, sort=sort, descending=descending, limit=limit, offset=offset, from_end=from_end
        )
        if not conv_rows:
            return []
        return self._summaries(conv_rows)

    def conversation_count(self, **filters: Unpack[ListFilter]) -> int:
        """How many conversations `conversations` lists with these filters (in any sort): one
        COUNT over the conversations table (15-30 ms for 100,000, a full-text search 250 ms,
        about what reading its first page takes), or, filtered by cost, as many as the priced
        listing keeps."""
        if filters.get("min_cost") is not None or filters.get("over_cost") is not None:
            return len(self._listing(filters, limit=1 << 62, ids_only=True))
        where, args = self._where(filters)
        return int(self.db.execute(f"SELECT COUNT(*) FROM conversations c{where}", args).fetchone()[0])

    def conversation_order(self, *, sort: str = "started", descending: bool = True, limit: int = 50,
                           from_end: bool = False, **filters: Unpack[ListFilter]) -> list[str]:  # fmt: skip
        """The ids of the first `limit` conversations in the order `conversations` lists them
        with the same filters and sort (the last `limit`, the last first, `from_end`), and
        nothing else read: a view that holds rows already puts the new or changed ones where the
        store would (Store.changed_since)."""
        rows = self._listing(filters, sort=sort, descending=descending, limit=limit, ids_only=True, from_end=from_end)
        return [r[0] for r in rows]

    def changed_since(self, mark: tuple[int, int]) -> list[str]:
        """The conversations created or given a call since the change mark `mark` (change_mark):
        a range of each primary key, whatever the size of the database."""
        return [
            r[0]
            for r in self.db.execute(
                """SELECT id FROM conversations WHERE rowid > ?
                   UNION SELECT t.conversation_id FROM attempts a JOIN turns t ON t.id = a.turn_id WHERE a.id > ?""",
                [mark[1], mark[0]],
            )
        ]

    def _listing(
        self,
        filters: ListFilter,
        *,
        sort: str = "started",
        descending: bool = True,
        limit: int = 50,
        offset: int = 0,
        ids_only: bool = False,
        from_end: bool = False,
    ) -> list[Any]:
        """The conversations' rows `conversations` lists (only their ids with `ids_only`); read
        from the list's end with `from_end`: the exact reverse of its order, a total one (every
        sort ends on the id, unique)."""
        where, args = self._where(filters)
        min_cost, over_cost = filters.get("min_cost"), filters.get("over_cost")
        cols = "c.id, c.user_id, c.started_at, c.last_at, c.ended_at, c.turn_count, c.tags_json, c.rowid"
        if sort not in SORTS and sort not in AGG_SORTS:
            raise ValueError(f"sort must be one of {', '.join([*SORTS, *AGG_SORTS])}")
        if sort == "first":  # the first message's text, over every conversation
            texts = self.first_texts()
            first = {rowid: (texts.get(rowid) or "").casefold() or None for rowid in texts}
        by_cost = min_cost is not None or over_cost is not None
        if sort in AGG_SORTS or by_cost:
            # priced: every matching conversation's totals from the rollup, sorted and paged here
            totals = conversation_totals(self.db, self.prices) if sort != "first" or by_cost else {}
            order = "c.id" if sort in AGG_SORTS else f"{SORTS[sort]} {'DESC' if descending else 'ASC'} NULLS LAST, c.id"
            keyed: list[tuple[Any, str]] = []  # (sort key, conversation id)
            for rowid, cid in self.db.execute(
                f"SELECT c.rowid, c.id FROM conversations c{where} ORDER BY {order}", args
            ):
                t = totals.get(rowid)
                if by_cost and not _costs(t, min_cost, over_cost):
                    continue
                if sort == "first":
                    keyed.append((first.get(rowid), cid))
                else:
                    keyed.append((AGG_SORTS[sort](t) if sort in AGG_SORTS and t is not None else None, cid))
            if sort in AGG_SORTS:
                known = [k for k in keyed if k[0] is not None]
                known.sort(key=lambda k: k[0], reverse=descending)
                keyed = known + [k for k in keyed if k[0] is None]
            if from_end:
                keyed.reverse()
            page = [cid for _, cid in keyed[offset : offset + limit]]
            if not page or ids_only:
                return [(cid,) for cid in page]
            got = {
                r[0]: r
                for r in self.db.execute(
                    f"SELECT {cols} FROM conversations c WHERE c.id IN ({','.join('?' * len(page))})", page
                )
            }
            conv_rows = [got[cid] for cid in page]
        else:
            sql = f"SELECT {'c.id' if ids_only else cols} FROM conversations c{where}"
            # from the end: every term of the order turned round (the id that breaks ties too), the
            # same rows in the reverse order, the last page one LIMIT away
            direction = "DESC" if descending != from_end else "ASC"
            nulls, ties = ("FIRST", "c.id DESC") if from_end else ("LAST", "c.id")
            sql += f" ORDER BY {SORTS[sort]} {direction} NULLS {nulls}, {ties} LIMIT ? OFFSET ?"
            conv_rows = self.db.execute(sql, [*args, limit, offset]).fetchall()
        return conv_rows

    def _where(self, filters: ListFilter) -> tuple[str, list[Any]]:
        """The list's filters (all but the cost ones) as a WHERE clause on `conversations c`
        ('' for none), and its arguments."""
        unknown = filters.keys() - ListFilter.__optional_keys__
        if unknown:  # a misspelt filter must not list everything
            raise TypeError(f"unknown list filter(s): {', '.join(sorted(unknown))}")
        ids, until, tz, user = filters.get("ids"), filters.get("until"), filters.get("tz"), filters.get("user")
        where, args = [], []
        if ids is not None:  # one JSON argument: no limit on how many
            where.append("c.id IN (SELECT value FROM json_each(?))")
            args.append(json.dumps(list(ids)))
        if not filters.get("reruns"):  # variants sent by `replayer rerun` are shown with the turn they rerun
            where.append("c.origin != 'rerun'")
        if until:  # a bare date: that whole day (filters.time_bound)
            where.append("c.started_at < ?")
            args.append(time_bound(until, "until", end=True, tz=tz))
        if filters.get("errors_only"):
            where.append(
                "EXISTS (SELECT 1 FROM turns t JOIN attempts a ON a.turn_id = t.id "
                "WHERE t.conversation_id = c.id AND a.error_json IS NOT NULL)"
            )
        # a conversation of U's: its own user (its first), or any of its calls made for U (each
        # bills its own user: the rollup's key has it); the same for the calls made for no user
        if user:
            where.append(f"(c.user_id = ? OR {USER_CALLS})")
            args.extend((user, user))
        if filters.get("no_user"):
            where.append(f"(c.user_id IS NULL OR {USER_CALLS})")
            args.append("")
        run = filters.get("run")
        for key, value in [*filters.get("tags", ()), *([("run", run)] if run else [])]:
            where.append(TAG_MATCH)
            args.extend((key, value))
        if since := filters.get("since"):
            where.append("c.last_at >= ?")
            args.append(time_bound(since, "since", tz=tz))
        if model := filters.get("model"):  # any part of the id, in any case: "haiku" finds claude-haiku-4-5
            where.append(
                "EXISTS (SELECT 1 FROM turns t WHERE t.conversation_id = c.id AND t.model LIKE ? ESCAPE '\\')"
            )
            args.append(like_part(model))
        if query := filters.get("query"):
            from ..text import fts_query

            where.append(QUERY_MATCH)
            args.extend([fts_query(query)] * 2)
        return (" WHERE " + " AND ".join(where) if where else ""), args

    def _summaries(self, conv_rows: list[Any]) -> list[ConversationSummary]:
        """The list's summaries of conversations read by _listing."""
        counts = figures(self.db, self.prices, [r[-1] for r in conv_rows])
        # the earliest turn held (turn 0, unless an import brought later turns only): its request
        # holds the conversation's first message (one step down the (conversation, idx) index each)
        first_nodes = dict(
            self.db.execute(
                "SELECT c.id, (SELECT context_node FROM turns WHERE conversation_id = c.id ORDER BY idx LIMIT 1) "
                f"FROM conversations c WHERE c.id IN ({','.join('?' * len(conv_rows))})",
                [r[0] for r in conv_rows],
            ).fetchall()
        )
        others = self._other_users({r[-1]: r[1] for r in conv_rows})  # rowid: user
        out = []
        for cid, user_id, started, last, ended, count, tags_json, rowid in conv_rows:
            f = counts[rowid]
            out.append(
                ConversationSummary(
                    conversation_id=cid,
                    user_id=user_id,
                    started_at=started,
                    last_at=last,
                    ended_at=ended,
                    turns=count,
                    models=f.models,
                    input_tokens=f.prompt,
                    output_tokens=f.output,
                    cache_read_tokens=f.cache_read,
                    cost_usd=f.cost_usd,
                    errors=f.errors,
                    first_message=self.first_user_text(first_nodes.get(cid)),
                    tags=json.loads(tags_json) if tags_json else None,
                    unpriced_attempts=f.unpriced,
                    other_users=others.get(rowid, []),
                )
            )
        return out

    def _other_users(self, users: dict[int, str | None]) -> dict[int, list[str]]:
        """Conversation rowid (with its own user) -> the other users its calls were made for, in
        the order they first called (the rollup's rows of those conversations: a few each)."""
        out: dict[int, list[str]] = {}
        for conv, user in self.db.execute(
            f"""SELECT conv, user FROM rollup WHERE conv IN ({','.join('?' * len(users))}) AND user != ''
                GROUP BY conv, user ORDER BY conv, MIN(bucket), user""",
            list(users),
        ):
            if user != users[conv]:
                out.setdefault(conv, []).append(user)
        return out

    # -- one turn, as the browser shows it ------------------------------------------------------
    def turn_detail(self, turn_id: str, timeline: list[TurnSummary] | None = None) -> TurnDetail:
        """Everything about one turn (store/detail.py)."""
        from .detail import turn_detail

        return turn_detail(self, turn_id, timeline)

    def reconstructed_turns(self, conversation_id: str) -> dict[int, str]:
        """Turn index -> the source of each imported (reconstructed) turn (store/imported.py)."""
        from .imported import reconstructed_turns

        return reconstructed_turns(self.db, conversation_id)

    # -- reruns ---------------------------------------------------------------------------------
    def request_headers(self, turn_id: str) -> dict[str, str]:
        """The protocol headers (wire.PROTOCOL_HEADERS) the turn's first attempt sent."""
        row = self.db.execute(
            "SELECT request_headers FROM attempts WHERE turn_id = ? ORDER BY attempt LIMIT 1", [turn_id]
        ).fetchone()
        return json.loads(self.blob_text(row[0])) if row and row[0] is not None else {}

    def variants_of(self, turn_id: str) -> list[Variant]:
        """The variants `replayer rerun` sent of a turn, newest first."""
        return [
            _variant(cid, started, tags_json, turns)
            for cid, started, tags_json, turns in self.db.execute(
                """SELECT id, started_at, tags_json, turn_count FROM conversations
                   WHERE origin = 'rerun' AND json_extract(tags_json, '$.rerun_of') = ? ORDER BY started_at DESC""",
                [turn_id],
            )
        ]

    def variant(self, variant_id: str) -> Variant | None:
        """One variant by its conversation id; None when there is no such conversation."""
        row = self.db.execute(
            "SELECT id, started_at, tags_json, turn_count FROM conversations WHERE id = ?", [variant_id]
        ).fetchone()
        return _variant(*row) if row else None

    def find_in_conversation(self, conversation_id: str, text: str) -> list[tuple[int, str]]:
        """Where `text` occurs in a conversation, from the full-text indexes (every word as a
        prefix, as the conversation list's search): (turn index, "context" | "response") in turn
        order, "context" when the turn's request brought it (the messages it added, or a system
        prompt or tools that entered there: on the turn that first sent them, and where they
        changed, if the match is in what changed), "response" when the turn's reply holds it.
        Nothing of the turns is read but a changed system prompt's or tool list's parts."""
        from ..text import fts_query

        query = fts_query(text)
        rows = self.db.execute(
            """SELECT t.idx, m.rowid % 2 FROM turn_text m JOIN turns t ON t.rowid = m.rowid / 2
               WHERE turn_text MATCH ? AND t.conversation_id = ? ORDER BY t.idx, m.rowid % 2""",
            [query, conversation_id],
        ).fetchall()
        hits = [(idx, "response" if odd else "context") for idx, odd in rows]
        blobs = {b for (b,) in self.db.execute("SELECT rowid FROM context_text WHERE context_text MATCH ?", [query])}
        if blobs:
            hits += [(idx, "context") for idx in self._context_entered(conversation_id, blobs, text)]
        return sorted(set(hits), key=lambda hit: (hit[0], hit[1] != "context"))

    def _context_entered(self, conversation_id: str, blobs: set[int], text: str) -> list[int]:
        """The turns of a conversation where a system prompt or tool list among `blobs` (those
        holding `text`) entered: the first to send one, a later one that changed one that didn't
        hold it, and a later one that changed one that did if what entered there (new or redefined
        blocks and tools) holds the text."""
        from ..text import context_searchable, holds_words
        from .chain import lacking

        out = []
        for idx, system, tools, was_system, was_tools in self.db.execute(
            """SELECT idx, system_blob, tools_blob, LAG(system_blob) OVER w, LAG(tools_blob) OVER w
               FROM turns WHERE conversation_id = ? WINDOW w AS (ORDER BY idx) ORDER BY idx""",
            [conversation_id],
        ).fetchall():
            for kind, blob, was in (("system", system, was_system), ("tools", tools, was_tools)):
                if blob == was or blob not in blobs:
                    continue
                if was in blobs:  # a change to one that held it: the match may be in what stayed,
                    # which entered before; a change to one that didn't made the match here, even if
                    # its words are some in what stayed and some in what entered
                    new = lacking(kind, self.blob_value(blob), self.blob_value(was))
                    if not holds_words(context_searchable(kind, new), text):
                        continue
                out.append(idx)
        return out

    def blob_value(self, blob: int | None) -> Any:
        """The parsed JSON of a stored part, None for none."""
        return json.loads(self.blob_text(blob)) if blob is not None else None

    def first_texts(self) -> dict[int, str | None]:
        """Conversation rowid -> the text of the first message its first turn sent."""
        return first_texts(self.db)

    def first_user_text(self, node: int | None) -> str | None:
        chain = self.blob_chain(node)
        for b in chain[:1]:
            return message_text(json.loads(self.blob_text(b)))
        return None

    # -- spend and health (metrics.py): the SQL is in store/aggregate.py -------------------------
    def spend_groups(self, since: float | None = None, until: float | None = None) -> list[Group]:
        """The rollup's rows of [since, until), priced (aggregate.groups)."""
        return aggregate.groups(self.db, self.prices, since, until)

    def conversation_names(self) -> dict[int, ConversationName]:
        """Conversation rowid -> its id, user and origin."""
        return aggregate.conversations_by_rowid(self.db)

    def latency_percentile(
        self, q: float, n: int, since: float | None, until: float | None,
        convs: list[int] | None = None, exclude: list[int] | None = None, user: str | None = None,
    ) -> float | None:  # fmt: skip
        """The q-quantile of attempt latencies in [since, until) (aggregate.latency_percentile)."""
        return aggregate.latency_percentile(self.db, q, n, since, until, convs, exclude, user)

    def turn_usages(self, conv: int) -> list[tuple[str | None, dict[str, Any] | None]]:
        """Each turn's (model, usage) of the conversation with rowid `conv` (aggregate.turn_usages)."""
        return aggregate.turn_usages(self.db, conv)


def sum_costs(prices: PriceTable, usages: list[tuple[dict[str, Any], str | None]]) -> float | None:
    total = 0.0
    for usage, model in usages:
        cost = prices.cost(usage, model)
        if cost is None:
            return None
        total += cost
    return total


def _variant(conversation_id: str, started_at: str, tags_json: str | None, turns: int) -> Variant:
    tags = json.loads(tags_json) if tags_json else {}
    return Variant(variant=conversation_id, created_at=started_at, samples=turns, edits=tags.get("edits") or {})
