"""An attempt's export-line values, for its span, read from the database without making the
export line and parsing it back (store/export.py makes the line; its values are the same).

Each turn of an agent's loop re-sends the whole history, so rebuilding the line and parsing it
again cost the exporter time that grew with the history, turn after turn, content or not
(2-4 ms a span at 200 turns). Here a span's values come from its attempt's row and small parts:
the request's skeleton (its model and parameters), its system prompt and tools (parsed once per
stored blob), the response without its content. Only with content is the history touched, and
then joined, never parsed: the request's exact text is its skeleton filled with the stored
message texts (as `replayer export` writes it), and the convention's input messages are the
messages' converted texts (each message converted once: a conversation's next turn converts
only what it added). A context's message list is followed from the one before it (`_chain`).

tests/test_otlp_export.py checks, attempt by attempt, that these values give the attributes
the export line gives."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlite_utils import Database

from ..bounded import BoundedDict
from ..pricing import default_table
from ..store.chain import chain_blobs
from ..store.codec import RowTexts, dumps, storable, stored_json
from ..store.export import attempt_cost
from . import spans

ROWS = """SELECT a.*, t.conversation_id, t.idx, t.user_id, t.trace_id, t.endpoint, t.stream,
                 i.source AS imported_from, l.parent_id AS parent_conversation_id,
                 COALESCE(tt.tags_json, c.tags_json) AS turn_tags
          FROM attempts a JOIN turns t ON t.id = a.turn_id JOIN conversations c ON c.id = t.conversation_id
          LEFT JOIN imported_turns i ON i.turn_id = t.id LEFT JOIN conversation_links l ON l.conversation_id = c.id
          LEFT JOIN turn_tags tt ON tt.turn_id = t.id
          WHERE a.id IN ({marks})"""
"""The attempts' rows, with what their export lines take from the turn and conversation, and the
turn's tags (its own when it has some, else its conversation's)."""
COLUMNS = (("turn_id", "turn_id"), ("conversation_id", "conversation_id"), ("index", "idx"), ("user_id", "user_id"),
           ("trace_id", "trace_id"), ("started_at", "started_at"), ("latency_ms", "latency_ms"),
           ("ttft_ms", "ttft_ms"), ("attempt", "attempt"), ("endpoint", "endpoint"), ("model", "model"),
           ("status", "status"), ("request_id", "request_id"))
"""The export line's keys that hold a column of the row as it is (store/export.py's `_line`)."""
OPTIONAL = ("imported_from", "parent_conversation_id", "copied_from")
WALK = 64
"""Nodes read one by one back to a context seen before; a longer new context is read in one query."""
CHAINS = 512
"""Contexts remembered (their message blob ids): the last ones of the conversations being recorded."""
PARSED = 2_048
"""Skeletons, system prompts and tool lists remembered parsed, by blob."""
BLOBS = 20_000
"""Stored texts (messages, system prompts, tool lists, skeletons) remembered, by blob."""
CONVERTED = 20_000
"""Messages remembered in the convention's form (JSON text), by blob."""
JOINED = 16
"""Contexts whose joined texts are remembered: the last turns of the conversations being
recorded, which the next turns extend (a long history's are a megabyte or two each)."""


class Reader(RowTexts):
    """Export-line values of stored attempts, on one connection (the exporter's thread)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        """(Not a store/queries.Store: that module's import, the models', costs the writer
        process a fifth of a second of CPU; what is read here is a few tables and blobs.)"""
        self.prices = default_table()
        self._blobs: BoundedDict[int, str] = BoundedDict(BLOBS)
        self._chains: BoundedDict[int, tuple[int, ...]] = BoundedDict(CHAINS)
        self._parsed: BoundedDict[int, Any] = BoundedDict(PARSED)
        self._converted: BoundedDict[int, str] = BoundedDict(CONVERTED)
        self._templates: BoundedDict[tuple[Any, ...], list[str]] = BoundedDict(PARSED)
        self._joined: BoundedDict[int, tuple[str, str]] = BoundedDict(JOINED)

    def rows(self, ids: list[int]) -> list[dict[str, Any]]:
        cur = self.db.conn.execute(ROWS.format(marks=",".join("?" * len(ids))), ids)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, values, strict=True)) for values in cur.fetchall()]

    def line(self, row: dict[str, Any], *, content: bool) -> tuple[dict[str, Any], dict[str, str], str | None]:
        """(the line's values, the exact JSON text of its request, response, request_headers,
        error, unknown_events, usage and response_headers when `content`, the convention's input messages as JSON
        text when `content` and the request's messages are stored as a list). The request's value
        holds no messages when they are stored as a list: they are in the texts."""
        usage = json.loads(row["usage_json"]) if row["usage_json"] else None
        line: dict[str, Any] = {key: row[column] for key, column in COLUMNS}
        line.update(
            stream=bool(row["stream"]),
            abandoned=bool(row["abandoned"]),
            error=json.loads(row["error_json"]) if row["error_json"] else None,
            usage=usage,
            cost_usd=attempt_cost(self.prices, row, usage),
        )
        for key in OPTIONAL:  # the export line has these only when they hold something
            line[key] = row[key] or None
        if not content:
            line["request"] = self._parsed_blob(row["request_skel"])
            # the response without its content and usage: what the span takes of it without content
            line["response"] = json.loads(row["response_json"]) if row["response_json"] else None
            return line, {}, None
        request_text = self.request_text(row)
        response_text = self.response_text(row)
        headers = json.loads(self._blob(row["request_headers"])) if row["request_headers"] else {}
        line["response"] = json.loads(response_text) if response_text is not None else None
        line["request_headers"] = headers
        line["unknown_events"] = json.loads(row["unknown_events_json"]) if row["unknown_events_json"] else []
        line["response_headers"] = json.loads(self._blob(row["response_headers"])) if row["response_headers"] else {}
        texts = {"request": request_text, "response": storable(response_text or "null")}
        for key in ("request_headers", "error", "unknown_events", "usage", "response_headers"):
            texts[key] = dumps(line[key])
        skeleton = self._parsed_blob(row["request_skel"])
        if not isinstance(skeleton, dict) or "__body__" in skeleton:  # a body that isn't an object
            line["request"] = json.loads(request_text)
            return line, texts, None
        request = dict(skeleton)
        for key, column in (("system", "request_system"), ("tools", "request_tools")):
            if row[column] is not None:
                request[key] = self._parsed_blob(row[column])
        line["request"] = request
        node = row["request_node"]
        messages = "[" + self._texts(node)[1] + "]" if node is not None else None
        return line, texts, messages

    def request_text(self, row: Mapping[str, Any]) -> str:
        """The request's JSON text as `replayer export` writes it, its messages joined from a
        context followed incrementally."""
        return storable(super().request_text(row))

    def messages_text(self, node: int) -> str:
        return "[" + self._texts(node)[0] + "]"

    def blob_text(self, blob_id: int) -> str:
        return self._blob(blob_id)

    def _blob(self, blob: int) -> str:
        got = self._blobs.get(blob)
        if got is None:
            got = self._blobs[blob] = stored_json(self.db.conn, blob)
        return got

    def _parsed_blob(self, blob: int) -> Any:
        got = self._parsed.get(blob)
        if got is None:
            got = self._parsed[blob] = json.loads(self._blob(blob))
        return got

    def _convert(self, blob: int) -> str:
        """A stored message in the convention's form, as JSON text."""
        got = self._converted.get(blob)
        if got is None:
            got = self._converted[blob] = spans.text(spans.message(json.loads(self._blob(blob))))
        return got

    def _texts(self, node: int) -> tuple[str, str]:
        """The context's messages as (their stored texts, their texts in the convention's form),
        each joined by commas: the texts of the context it extends, when still remembered
        (usually the previous turn's), and those of the messages added since."""
        got = self._joined.get(node)
        if got is not None:
            return got
        chain, base, reused = self._chain(node)
        stored: list[str] = []
        converted: list[str] = []
        known = self._joined.get(base) if base is not None and reused else None
        if known is not None:
            stored.append(known[0])
            converted.append(known[1])
        else:
            reused = 0
        added = list(chain[reused:])
        stored += (self._blob(b) for b in added)
        converted += (self._convert(b) for b in added)
        got = self._joined[node] = (",".join(stored), ",".join(converted))
        return got

    def _chain(self, node: int) -> tuple[tuple[int, ...], int | None, int]:
        """The message blob ids of the context ending at `node`, first to last: the context of a
        node seen before (usually the conversation's previous turn) and the nodes added since.
        With that node and how many messages of its context this one starts with (None, 0 when
        there is none)."""
        known = self._chains
        got = known.get(node)
        if got is not None:
            return got, None, 0
        conn = self.db.conn
        added: list[int] = []
        at: int | None = node
        while at and at not in known and len(added) < WALK:
            found = conn.execute("SELECT parent, blob FROM nodes WHERE id = ?", [at]).fetchone()
            if found is None:
                break
            at = found[0]
            added.append(found[1])
        base, reused = None, 0
        if not at:
            chain = tuple(reversed(added))
        elif at in known:
            base, reused = at, len(known[at])
            chain = known[at] + tuple(reversed(added))
        else:
            chain = tuple(chain_blobs(self.db, node))
        known[node] = chain
        return chain, base, reused
