"""Reading the store back: listings, one conversation, and the JSONL export.

Documents are rebuilt from their deduplicated parts as text: a skeleton is dumped with markers
where system/tools/messages/content were taken out, and each marker is replaced by the stored
canonical JSON of that part. Nothing large is parsed, and the result is JSON-equal to the wire.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from sqlite_utils import Database

from ..filters import like_part, time_bound
from ..metrics import cache_breaks
from ..models import (
    AttemptInfo,
    ContextChange,
    ConversationSummary,
    ToolCall,
    TurnDetail,
    TurnSummary,
    UsageLine,
)
from ..pricing import PriceTable, default_table
from .aggregate import Totals, conversation_totals
from .codec import storable, unpack

_MARK = "\u0000replayer:{}\u0000"

SORTS = {
    "started": "c.started_at",
    "last": "c.last_at",
    "id": "c.id",
    "user": "c.user_id",
    "turns": "c.turn_count",
    "duration": "julianday(c.last_at) - julianday(c.started_at)",
}
"""What `Store.conversations` sorts by in SQL."""
AGG_SORTS: dict[str, Callable[[Totals], Any]] = {
    "cost": lambda t: t.cost_usd,
    "input": lambda t: t.prompt,
    "output": lambda t: t.output,
    "cache": lambda t: t.cr / t.prompt if t.prompt else None,
    "errors": lambda t: t.errors,
    "models": lambda t: ", ".join(sorted(t.models)),
    "first": lambda t: None,  # by Store.first_texts, not the rollup
}
"""...and by the priced totals of each conversation (store/aggregate.py)."""


class Store:
    def __init__(self, db: Database, prices: PriceTable | None = None):
        self.db = db
        self.prices = prices or default_table()
        self._nodes: dict[int, tuple[int, int]] = {}
        self._blobs: dict[int, str] = {}

    # -- parts ---------------------------------------------------------------------------------
    def blob_text(self, blob_id: int) -> str:
        got = self._blobs.get(blob_id)
        if got is None:
            row = self.db.execute("SELECT json FROM blobs WHERE id = ?", [blob_id]).fetchone()
            got = unpack(row[0])
            if len(self._blobs) > 50_000:
                self._blobs.clear()
            self._blobs[blob_id] = got
        return got

    def blob_texts(self, ids: list[int]) -> list[str]:
        """Many blobs in a few queries. (Each query from a worker thread gives up the GIL and must
        win it back from the UI thread: hundreds of one-row queries would mostly wait.)"""
        missing = list({b for b in ids if b not in self._blobs})
        for i in range(0, len(missing), 500):
            chunk = missing[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for bid, stored in self.db.execute(f"SELECT id, json FROM blobs WHERE id IN ({marks})", chunk):
                self._blobs[bid] = unpack(stored)
        if len(self._blobs) > 50_000:
            keep = {b: self._blobs[b] for b in ids if b in self._blobs}
            self._blobs.clear()
            self._blobs.update(keep)
        return [self._blobs[b] for b in ids]

    def blob_chain(self, node: int | None) -> list[int]:
        """The message blob ids of the list ending at `node`, first to last."""
        out: list[int] = []
        while node:
            hit = self._nodes.get(node)
            if hit is None:
                rows = self.db.execute(
                    """WITH RECURSIVE chain(id, parent, blob) AS (
                           SELECT id, parent, blob FROM nodes WHERE id = ?
                           UNION ALL
                           SELECT n.id, n.parent, n.blob FROM nodes n JOIN chain c ON n.id = c.parent
                       ) SELECT id, parent, blob FROM chain""",
                    [node],
                ).fetchall()
                if len(self._nodes) > 500_000:
                    self._nodes.clear()
                for nid, parent, blob in rows:
                    self._nodes[nid] = (parent, blob)
                hit = self._nodes.get(node)
                if hit is None:
                    break
            out.append(hit[1])
            node = hit[0]
        out.reverse()
        return out

    def messages_text(self, node: int | None) -> str:
        return "[" + ",".join(self.blob_texts(self.blob_chain(node))) + "]"

    def messages(self, node: int | None) -> list[Any]:
        return json.loads(self.messages_text(node))

    def _fill(self, skeleton_text: str, parts: dict[str, str]) -> str:
        doc = json.loads(skeleton_text)
        if not isinstance(doc, dict):
            return skeleton_text
        for key in parts:
            doc[key] = _MARK.format(key)
        text = json.dumps(doc, ensure_ascii=False)
        for key, part in parts.items():
            text = text.replace(json.dumps(_MARK.format(key)), part, 1)
        return text

    def request_text(self, row: dict[str, Any]) -> str:
        parts = {}
        if row["request_system"] is not None:
            parts["system"] = self.blob_text(row["request_system"])
        if row["request_tools"] is not None:
            parts["tools"] = self.blob_text(row["request_tools"])
        if row["request_node"] is not None:
            parts["messages"] = self.messages_text(row["request_node"])
        text = self._fill(self.blob_text(row["request_skel"]), parts)
        if text.startswith('{"__body__":'):
            text = json.dumps(json.loads(text)["__body__"], ensure_ascii=False)
        return text

    def response_text(self, row: dict[str, Any]) -> str | None:
        if row["response_json"] is None:
            return None
        parts = {}
        if row["response_content"] is not None:
            parts["content"] = json.dumps(
                json.loads(self.blob_text(row["response_content"]))["content"], ensure_ascii=False
            )
        if row["usage_json"] is not None:
            parts["usage"] = row["usage_json"]
        return self._fill(row["response_json"], parts) if parts else row["response_json"]

    # -- export --------------------------------------------------------------------------------
    def export_lines(self, conversation_id: str | None = None) -> Iterator[str]:
        """One JSON line per recorded attempt (DESIGN.md's export format): conversations oldest
        first, each in turn order, each turn's attempts in order."""
        where, args = ("WHERE t.conversation_id = ?", [conversation_id]) if conversation_id else ("", [])
        cur = self.db.execute(
            f"""SELECT a.*, t.conversation_id, t.idx, t.user_id, t.trace_id, t.endpoint, t.stream
                FROM attempts a JOIN turns t ON t.id = a.turn_id JOIN conversations c ON c.id = t.conversation_id
                {where}
                ORDER BY c.started_at, c.id, t.idx, a.attempt, a.id""",
            args,
        )
        names = [d[0] for d in cur.description]
        for values in cur:
            row = dict(zip(names, values, strict=True))
            usage = json.loads(row["usage_json"]) if row["usage_json"] else None
            head = {
                "turn_id": row["turn_id"],
                "conversation_id": row["conversation_id"],
                "index": row["idx"],
                "user_id": row["user_id"],
                "trace_id": row["trace_id"],
                "started_at": row["started_at"],
                "latency_ms": row["latency_ms"],
                "ttft_ms": row["ttft_ms"],
                "attempt": row["attempt"],
                "stream": bool(row["stream"]),
                "endpoint": row["endpoint"],
                "model": row["model"],
                "request": _MARK.format("request"),
                "request_headers": json.loads(self.blob_text(row["request_headers"])) if row["request_headers"] else {},
                "status": row["status"],
                "response": _MARK.format("response"),
                "error": json.loads(row["error_json"]) if row["error_json"] else None,
                "request_id": row["request_id"],
                "usage": usage,
                "cost_usd": self.prices.cost(usage, row["model"]) if usage else None,
                "abandoned": bool(row["abandoned"]),
                "unknown_events": json.loads(row["unknown_events_json"]) if row["unknown_events_json"] else [],
            }
            line = json.dumps(head, ensure_ascii=False)
            line = line.replace(json.dumps(_MARK.format("request")), self.request_text(row), 1)
            line = line.replace(json.dumps(_MARK.format("response")), self.response_text(row) or "null", 1)
            yield storable(line)  # a lone surrogate in a string, escaped: a UTF-8 file takes the line

    # -- listings ------------------------------------------------------------------------------
    def ids_starting(self, prefix: str, *, kind: str = "conversation", limit: int = 3) -> tuple[int, list[str]]:
        """Conversation (kind "conversation") or turn ("turn") ids the text names: the id itself
        when one is exactly that, else every id it begins. (how many, the first `limit` of them in
        id order). Ids are long and typed or copied in part; a prefix names one when unique."""
        table = {"conversation": "conversations", "turn": "turns"}[kind]
        if not prefix:
            return 0, []
        if self.db.execute(f"SELECT 1 FROM {table} WHERE id = ?", [prefix]).fetchone():
            return 1, [prefix]
        # a range over the primary key's index (ids compare as UTF-8 bytes)
        bounds = [prefix, prefix + "\U0010ffff"]
        count = self.db.execute(f"SELECT COUNT(*) FROM {table} WHERE id >= ? AND id < ?", bounds).fetchone()[0]
        rows = self.db.execute(f"SELECT id FROM {table} WHERE id >= ? AND id < ? ORDER BY id LIMIT ?", [*bounds, limit])
        return count, [r[0] for r in rows]

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

    def turns(self, conversation_id: str) -> list[TurnSummary]:
        turn_rows = self.db.execute(
            """SELECT id, conversation_id, idx, started_at, model, stream, context_len
               FROM turns WHERE conversation_id = ? ORDER BY idx""",
            [conversation_id],
        ).fetchall()
        attempts: dict[str, list[tuple[Any, ...]]] = {}
        for a in self.db.execute(
            """SELECT a.turn_id, a.attempt, a.started_at, a.status, a.latency_ms, a.ttft_ms, a.error_json,
                      a.request_id, a.abandoned, a.usage_json, a.model, a.stop_reason, a.response_content
               FROM attempts a JOIN turns t ON t.id = a.turn_id
               WHERE t.conversation_id = ? ORDER BY a.attempt, a.id""",
            [conversation_id],
        ):
            attempts.setdefault(a[0], []).append(a)
        self.blob_texts([r[12] for rows in attempts.values() for r in rows if r[12] is not None])
        out = []
        for tid, cid, idx, started, model, stream, ctx_len in turn_rows:
            rows = attempts.get(tid, [])
            answered = [r for r in rows if r[9]]
            last = answered[-1] if answered else None
            usage = json.loads(last[9]) if last else None
            resp_model = last[10] if last else model
            tools: list[str] = []
            if last is not None and last[12] is not None:
                for block in json.loads(self.blob_text(last[12])).get("content") or ():
                    if isinstance(block, dict) and block.get("type") in ("tool_use", "server_tool_use", "mcp_tool_use"):
                        tools.append(str(block.get("name")))
            out.append(
                TurnSummary(
                    turn_id=tid,
                    conversation_id=cid,
                    index=idx,
                    started_at=started,
                    model=resp_model,
                    stream=bool(stream),
                    stop_reason=last[11] if last else None,
                    usage=usage,
                    cost_usd=sum_costs(self.prices, [(json.loads(r[9]), r[10]) for r in answered]),
                    context_messages=ctx_len,
                    tool_calls=tools,
                    attempts=[
                        AttemptInfo(
                            attempt=r[1],
                            started_at=r[2],
                            status=r[3],
                            latency_ms=r[4],
                            ttft_ms=r[5],
                            error=json.loads(r[6]) if r[6] else None,
                            request_id=r[7],
                            abandoned=bool(r[8]),
                        )
                        for r in rows
                    ],
                )
            )
        return out

    def conversations(
        self,
        *,
        user: str | None = None,
        model: str | None = None,
        since: str | None = None,
        until: str | None = None,
        query: str | None = None,
        errors_only: bool = False,
        reruns: bool = False,
        min_cost: float | None = None,
        sort: str = "started",
        descending: bool = True,
        limit: int = 50,
        offset: int = 0,
    ) -> list[ConversationSummary]:
        """A page of conversations, sorted and filtered by SQLite, priced ones included: `sort`
        is one of SORTS. Costs are priced from the usage table with the current prices. The
        filters follow replayer.filters (FilterError for a date that can't be read)."""
        where, args = [], []
        if not reruns:  # variants sent by `replayer rerun` are shown with the turn they rerun
            where.append("c.origin != 'rerun'")
        if until:  # a bare date: that whole day (filters.time_bound)
            where.append("c.started_at < ?")
            args.append(time_bound(until, "until", end=True))
        if errors_only:
            where.append(
                "EXISTS (SELECT 1 FROM turns t JOIN attempts a ON a.turn_id = t.id "
                "WHERE t.conversation_id = c.id AND a.error_json IS NOT NULL)"
            )
        if user:
            where.append("c.user_id = ?")
            args.append(user)
        if since:
            where.append("c.last_at >= ?")
            args.append(time_bound(since, "since"))
        if model:  # any part of the id, in any case: "haiku" finds claude-haiku-4-5
            where.append(
                "EXISTS (SELECT 1 FROM turns t WHERE t.conversation_id = c.id AND t.model LIKE ? ESCAPE '\\')"
            )
            args.append(like_part(model))
        if query:
            from ..text import fts_query

            where.append(
                """c.id IN (SELECT t.conversation_id FROM turns t WHERE t.rowid IN
                           (SELECT rowid / 2 FROM turn_text WHERE turn_text MATCH ?))"""
            )
            args.append(fts_query(query))
        cols = "c.id, c.user_id, c.started_at, c.last_at, c.turn_count, c.tags_json"
        filters = " WHERE " + " AND ".join(where) if where else ""
        if sort not in SORTS and sort not in AGG_SORTS:
            raise ValueError(f"sort must be one of {', '.join([*SORTS, *AGG_SORTS])}")
        if sort == "first":  # the first message's text, over every conversation
            texts = self.first_texts()
            first = {rowid: (texts.get(rowid) or "").casefold() or None for rowid in texts}
        if sort in AGG_SORTS or min_cost is not None:
            # priced: every matching conversation's totals from the rollup, sorted and paged here
            totals = conversation_totals(self.db, self.prices) if sort != "first" or min_cost is not None else {}
            order = "c.id" if sort in AGG_SORTS else f"{SORTS[sort]} {'DESC' if descending else 'ASC'} NULLS LAST, c.id"
            keyed = []
            for rowid, cid in self.db.execute(
                f"SELECT c.rowid, c.id FROM conversations c{filters} ORDER BY {order}", args
            ):
                t = totals.get(rowid)
                if min_cost is not None and (t is None or t.cost_usd is None or t.cost_usd < min_cost):
                    continue
                if sort == "first":
                    keyed.append((first.get(rowid), cid))
                else:
                    keyed.append((AGG_SORTS[sort](t) if sort in AGG_SORTS and t is not None else None, cid))
            if sort in AGG_SORTS:
                known = [k for k in keyed if k[0] is not None]
                known.sort(key=lambda k: k[0], reverse=descending)
                keyed = known + [k for k in keyed if k[0] is None]
            page = [cid for _, cid in keyed[offset : offset + limit]]
            if not page:
                return []
            got = {
                r[0]: r
                for r in self.db.execute(
                    f"SELECT {cols} FROM conversations c WHERE c.id IN ({','.join('?' * len(page))})", page
                )
            }
            conv_rows = [got[cid] for cid in page]
        else:
            sql = f"SELECT {cols} FROM conversations c{filters}"
            sql += f" ORDER BY {SORTS[sort]} {'DESC' if descending else 'ASC'} NULLS LAST, c.id LIMIT ? OFFSET ?"
            conv_rows = self.db.execute(sql, [*args, limit, offset]).fetchall()
        if not conv_rows:
            return []
        ids = [r[0] for r in conv_rows]
        marks = ",".join("?" * len(ids))
        per: dict[str, dict[str, Any]] = {i: {"models": [], "usages": [], "errors": 0, "first": None} for i in ids}
        for cid, model_, usage_json, error_json, turn_idx, ctx_node in self.db.execute(
            f"""SELECT t.conversation_id, a.model, a.usage_json, a.error_json, t.idx, t.context_node
                FROM attempts a JOIN turns t ON t.id = a.turn_id WHERE t.conversation_id IN ({marks})""",
            ids,
        ):
            p = per[cid]
            if model_ and model_ not in p["models"]:
                p["models"].append(model_)
            if usage_json:
                p["usages"].append((json.loads(usage_json), model_))
            if error_json:
                p["errors"] += 1
            if turn_idx == 0 and p["first"] is None:
                p["first"] = ctx_node
        out = []
        for cid, user_id, started, last, count, tags in conv_rows:
            p = per[cid]
            usages = p["usages"]
            billed = [part for u, _ in usages for part in billed_parts(u)]
            out.append(
                ConversationSummary(
                    conversation_id=cid,
                    user_id=user_id,
                    started_at=started,
                    last_at=last,
                    turns=count,
                    models=p["models"],
                    input_tokens=sum(prompt_tokens(u) for u in billed),
                    output_tokens=sum(int(u.get("output_tokens") or 0) for u in billed),
                    cache_read_tokens=sum(int(u.get("cache_read_input_tokens") or 0) for u in billed),
                    cost_usd=sum_costs(self.prices, usages),
                    errors=p["errors"],
                    first_message=self.first_user_text(p["first"]),
                    tags=json.loads(tags) if tags else None,
                )
            )
        return out

    # -- one turn, as the browser shows it ------------------------------------------------------
    def turn_detail(self, turn_id: str, timeline: list[TurnSummary] | None = None) -> TurnDetail:
        """Everything about one turn: its exact request and response, the context the model saw
        and how it changed since the turn before, its tool calls beside their results, and its
        usage priced kind by kind. `timeline` (the conversation's `turns()`) saves re-reading it."""
        t = self.db.execute(
            "SELECT conversation_id, idx, context_node, system_blob, tools_blob FROM turns WHERE id = ?", [turn_id]
        ).fetchone()
        if t is None:
            raise KeyError(turn_id)
        conversation_id, idx, context_node, system_blob, tools_blob = t
        timeline = timeline if timeline is not None else self.turns(conversation_id)
        summary = (
            timeline[idx]
            if idx < len(timeline) and timeline[idx].turn_id == turn_id
            else next(s for s in timeline if s.turn_id == turn_id)
        )
        cur = self.db.execute(
            "SELECT * FROM attempts WHERE turn_id = ? ORDER BY attempt DESC, id DESC LIMIT 1", [turn_id]
        )
        names = [d[0] for d in cur.description]
        row = dict(zip(names, cur.fetchone(), strict=True))
        request = json.loads(self.request_text(row))
        response_text = self.response_text(row)
        response = json.loads(response_text) if response_text else None

        chain = self.blob_chain(context_node)
        context = [json.loads(t) for t in self.blob_texts(chain)]
        changes: list[ContextChange] = []
        prev = None
        if idx > 0:
            prev = self.db.execute(
                "SELECT context_node, system_blob, tools_blob FROM turns WHERE conversation_id = ? AND idx = ?",
                [conversation_id, idx - 1],
            ).fetchone()
        if prev is not None:
            before = self.blob_chain(prev[0])
            common = _shared(before, chain)
            for pos, text in enumerate(self.blob_texts(before[common:]), start=common):
                old = json.loads(text)
                changes.append(ContextChange(kind="removed", position=pos, role=old.get("role"), message=old))
            for pos in range(common, len(chain)):
                changes.append(
                    ContextChange(kind="added", position=pos, role=context[pos].get("role"), message=context[pos])
                )
            if prev[1] != system_blob:
                changes.insert(0, ContextChange(kind="system", message=self._maybe(system_blob)))
            if prev[2] != tools_blob:
                changes.insert(0, ContextChange(kind="tools", message=self._maybe(tools_blob)))
        else:
            changes = [
                ContextChange(kind="added", position=i, role=m.get("role"), message=m) for i, m in enumerate(context)
            ]

        # tool calls, beside the results the next request carried back (or the server's own)
        calls: list[ToolCall] = []
        blocks = _content(response)
        for block in blocks:
            if isinstance(block, dict) and block.get("type") in TOOL_USE_TYPES:
                calls.append(
                    ToolCall(
                        id=block.get("id"),
                        name=block.get("name"),
                        input=block.get("input"),
                        server=block.get("type") != "tool_use",
                    )
                )
        by_id = {c.id: c for c in calls}
        for block in blocks:  # server tools answer in the same response
            if (
                isinstance(block, dict)
                and block.get("type", "").endswith("_tool_result")
                and block.get("tool_use_id") in by_id
            ):
                c = by_id[block["tool_use_id"]]
                c.result, c.pending = block.get("content"), False
                c.is_error = _is_error_result(block)
        if idx + 1 < len(timeline):
            nxt = self.db.execute("SELECT context_node FROM turns WHERE id = ?", [timeline[idx + 1].turn_id]).fetchone()
            after = self.blob_chain(nxt[0])
            for text in self.blob_texts(after[_shared(after, chain) :]):  # what the next request brought
                for block in _content(json.loads(text)):
                    if (
                        isinstance(block, dict)
                        and block.get("type") == "tool_result"
                        and block.get("tool_use_id") in by_id
                    ):
                        c = by_id[block["tool_use_id"]]
                        c.result, c.pending, c.is_error = block.get("content"), False, bool(block.get("is_error"))

        usage = summary.usage or {}
        b = self.prices.breakdown(usage, summary.model)
        prev_tokens = (
            self.prices.breakdown(timeline[idx - 1].usage or {}, timeline[idx - 1].model).tokens if idx > 0 else None
        )
        lines = [
            UsageLine(
                kind=k,
                tokens=b.tokens[k],
                rate_per_mtok=b.rates.get(k) if b.rates else None,
                cost_usd=b.costs.get(k) if b.costs else None,
                delta_tokens=(b.tokens[k] - prev_tokens[k]) if prev_tokens is not None else None,
            )
            for k in b.tokens
        ]
        if b.web_search_requests:
            lines.append(
                UsageLine(
                    kind="web_search",
                    tokens=b.web_search_requests,
                    rate_per_mtok=None,
                    cost_usd=b.web_search_cost if b.total is not None else None,
                )
            )
        running = 0.0
        for s in timeline[: idx + 1]:
            if s.cost_usd is None and s.usage:
                running = None  # type: ignore[assignment]
                break
            running += s.cost_usd or 0.0
        breaks = cache_breaks([s.usage for s in timeline])
        return TurnDetail(
            turn=summary,
            request=request,
            response=response,
            context=context,
            system=self._maybe(system_blob),
            tools=self._maybe(tools_blob),
            changes=changes,
            tool_calls=calls,
            usage=lines,
            cost_usd=summary.cost_usd,
            running_cost_usd=running,
            cache_break=idx in breaks,
        )

    def find_in_conversation(self, conversation_id: str, text: str) -> list[tuple[int, str]]:
        """Where `text` occurs in a conversation, from the full-text index (every word as a prefix,
        as the conversation list's search): (turn index, "context" | "response") in turn order,
        "context" when the turn's request brought it (the messages it added), "response" when the
        turn's reply holds it. Nothing of the turns is read."""
        from ..text import fts_query

        rows = self.db.execute(
            """SELECT t.idx, m.rowid % 2 FROM turn_text m JOIN turns t ON t.rowid = m.rowid / 2
               WHERE turn_text MATCH ? AND t.conversation_id = ? ORDER BY t.idx, m.rowid % 2""",
            [fts_query(text), conversation_id],
        ).fetchall()
        return [(idx, "response" if odd else "context") for idx, odd in rows]

    def _maybe(self, blob: int | None) -> Any:
        return json.loads(self.blob_text(blob)) if blob is not None else None

    def first_texts(self) -> dict[int, str | None]:
        """Conversation rowid -> the text of the first message its first turn sent."""
        out: dict[int, str | None] = {}
        for conv, text in self.db.execute(
            """WITH RECURSIVE up(conv, parent, blob, depth) AS (
                   SELECT c.rowid, n.parent, n.blob, n.depth FROM conversations c
                   JOIN turns t ON t.conversation_id = c.id AND t.idx = 0 JOIN nodes n ON n.id = t.context_node
                   UNION ALL SELECT up.conv, n.parent, n.blob, n.depth FROM nodes n JOIN up ON n.id = up.parent)
               SELECT up.conv, CASE WHEN typeof(b.json) != 'text' THEN b.json
                                    WHEN json_type(b.json, '$.content') = 'text' THEN json_extract(b.json, '$.content')
                                    ELSE json_extract(b.json, '$.content[0].text') END
               FROM up JOIN blobs b ON b.id = up.blob WHERE up.depth = 1"""
        ):
            if isinstance(text, bytes):  # a long first message, stored compressed: read it here
                content = json.loads(unpack(text)).get("content")
                if isinstance(content, list) and content and isinstance(content[0], dict):
                    content = content[0].get("text")
                text = content
            out[conv] = text if isinstance(text, str) else None
        return out

    def first_user_text(self, node: int | None) -> str | None:
        chain = self.blob_chain(node)
        for b in chain[:1]:
            return message_text(json.loads(self.blob_text(b)))
        return None


TOOL_USE_TYPES = ("tool_use", "server_tool_use", "mcp_tool_use")


def _content(message: Any) -> list[Any]:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return content if isinstance(content, list) else []


def billed_parts(usage: dict[str, Any]) -> list[dict[str, Any]]:
    """A response's usage and its compaction iterations (billed on top of the totals)."""
    its = usage.get("iterations") if isinstance(usage, dict) else None
    if not its:
        return [usage]
    return [usage, *(it for it in its if isinstance(it, dict) and it.get("type") == "compaction")]


def prompt_tokens(usage: dict[str, Any]) -> int:
    """Everything the model read: uncached input + cache writes + cache reads."""
    return (
        int(usage.get("input_tokens") or 0)
        + int(usage.get("cache_creation_input_tokens") or 0)
        + int(usage.get("cache_read_input_tokens") or 0)
    )


def _shared(a: list[int], b: list[int]) -> int:
    """How many leading messages two contexts share."""
    n = 0
    for x, y in zip(a, b):  # noqa: B905 - stops at the shorter
        if x != y:
            break
        n += 1
    return n


def _is_error_result(block: dict[str, Any]) -> bool:
    if block.get("is_error"):
        return True
    content = block.get("content")
    return isinstance(content, dict) and str(content.get("type", "")).endswith("_error")


def sum_costs(prices: PriceTable, usages: list[tuple[dict[str, Any], str | None]]) -> float | None:
    total = 0.0
    for usage, model in usages:
        cost = prices.cost(usage, model)
        if cost is None:
            return None
        total += cost
    return total


def message_text(message: Any) -> str | None:
    if not isinstance(message, dict):
        return None
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for b in content:
            if isinstance(b, dict):
                if b.get("type") == "text":
                    texts.append(str(b.get("text", "")))
                elif b.get("type") == "tool_result":
                    texts.append("[tool_result]")
        return " ".join(texts) if texts else None
    return None
