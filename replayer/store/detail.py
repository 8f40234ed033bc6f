"""One turn as the browser shows it: its exact request and response, the context the model saw
and how it changed since the turn before, its tool calls beside their results, and its usage
priced kind by kind."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, NamedTuple

from ..models import ContextChange, ToolCall, TurnDetail, TurnSummary, UsageLine
from ..wire import TOOL_USE_TYPES, content_blocks, is_error_result
from .aggregate import cache_breaks
from .chain import alike, shared_prefix

if TYPE_CHECKING:
    from .queries import Store


class _PreviousTurn(NamedTuple):
    """What the context changes are measured against: the turn before's context and blobs."""

    context_node: int | None
    system_blob: int | None
    tools_blob: int | None


def turn_detail(store: Store, turn_id: str, timeline: list[TurnSummary] | None = None) -> TurnDetail:
    """Everything about one turn: its exact request and response, the context the model saw
    and how it changed since the turn before, its tool calls beside their results, and its
    usage priced kind by kind. `timeline` (the conversation's `turns()`) saves re-reading it."""
    from .imported import reconstructed  # the import's reading side: loaded once, when first needed

    t = store.db.execute(
        "SELECT conversation_id, idx, context_node, system_blob, tools_blob FROM turns WHERE id = ?", [turn_id]
    ).fetchone()
    if t is None:
        raise KeyError(turn_id)
    conversation_id, idx, context_node, system_blob, tools_blob = t
    timeline = timeline if timeline is not None else store.turns(conversation_id)
    summary = (
        timeline[idx]
        if idx < len(timeline) and timeline[idx].turn_id == turn_id
        else next(s for s in timeline if s.turn_id == turn_id)
    )
    cur = store.db.execute(
        "SELECT * FROM attempts WHERE turn_id = ? ORDER BY attempt DESC, id DESC LIMIT 1", [turn_id]
    )
    names = [d[0] for d in cur.description]
    row = dict(zip(names, cur.fetchone(), strict=True))
    request = json.loads(store.request_text(row))
    response_text = store.response_text(row)
    response = json.loads(response_text) if response_text else None

    chain = store.blob_chain(context_node)
    context = [json.loads(t) for t in store.blob_texts(chain)]
    changes: list[ContextChange] = []
    prev = None
    if idx > 0:
        row = store.db.execute(
            "SELECT context_node, system_blob, tools_blob FROM turns WHERE conversation_id = ? AND idx = ?",
            [conversation_id, idx - 1],
        ).fetchone()
        prev = _PreviousTurn(*row) if row is not None else None
    if prev is not None:
        before = store.blob_chain(prev.context_node)
        common = shared_prefix(before, chain)
        gone = [json.loads(text) for text in store.blob_texts(before[common:])]
        while gone and common < len(context) and alike(gone[0], context[common]):
            gone.pop(0)  # only its cache breakpoint moved: the same message to the model
            common += 1
        for pos, old in enumerate(gone, start=common):
            changes.append(ContextChange(kind="removed", position=pos, role=old.get("role"), message=old))
        for pos in range(common, len(chain)):
            changes.append(
                ContextChange(kind="added", position=pos, role=context[pos].get("role"), message=context[pos])
            )
    else:
        changes = [
            ContextChange(kind="added", position=i, role=m.get("role"), message=m) for i, m in enumerate(context)
        ]
    # the system prompt and the tools, before the messages as the model reads them: on the first
    # turn all of them entered; on a later one, where they differ from the turn before's
    system, tools = store.blob_value(system_blob), store.blob_value(tools_blob)
    ahead = []
    for kind, value, blob, was in (("system", system, system_blob, prev.system_blob if prev else None),
                                   ("tools", tools, tools_blob, prev.tools_blob if prev else None)):  # fmt: skip
        if blob != was:
            ahead.append(ContextChange(kind=kind, message=value, before=store.blob_value(was)))
    changes = [*ahead, *changes]

    # tool calls, beside the results the next request carried back (or the server's own)
    calls: list[ToolCall] = []
    blocks = content_blocks(response)
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
            c.is_error = is_error_result(block)
    if idx + 1 < len(timeline):
        nxt = store.db.execute("SELECT context_node FROM turns WHERE id = ?", [timeline[idx + 1].turn_id]).fetchone()
        after = store.blob_chain(nxt[0])
        for text in store.blob_texts(after[shared_prefix(after, chain) :]):  # what the next request brought
            for block in content_blocks(json.loads(text)):
                if (
                    isinstance(block, dict)
                    and block.get("type") == "tool_result"
                    and block.get("tool_use_id") in by_id
                ):
                    c = by_id[block["tool_use_id"]]
                    c.result, c.pending, c.is_error = block.get("content"), False, bool(block.get("is_error"))

    usage = summary.usage or {}
    b = store.prices.breakdown(usage, summary.model)
    # against the last turn before it that has usage (as the turn list's Δ prompt): a failed
    # turn between them has none, and measuring from it made the whole prompt look new
    earlier = next((t for t in reversed(timeline[:idx]) if t.usage), None)
    prev_tokens = store.prices.breakdown(earlier.usage or {}, earlier.model).tokens if earlier is not None else None
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
        if s.copied:  # a fork's copy costs nothing now: the conversation spent nothing on it
            continue
        if s.cost_usd is None and s.usage:
            running = None  # type: ignore[assignment]
            break
        running += s.cost_usd or 0.0
    breaks = cache_breaks([s.usage for s in timeline])
    # in turns()' order of attempts
    rows = store.db.execute(
        "SELECT response_headers, usage_json, model FROM attempts WHERE turn_id = ? ORDER BY attempt, id", [turn_id]
    ).fetchall()
    said = [blob for blob, _, _ in rows]
    # the tab itemises the last attempt with usage (summary.usage: the one that counts the turn);
    # what the turn cost beyond its lines is said apart, so that the lines add up to its cost
    billed = [(json.loads(u), m) for _, u, m in rows if u]
    billed_before = billed[:-1]
    whole = store.prices.cost(usage, summary.model) if summary.usage else 0.0
    compaction: float | None = 0.0  # unknown only where the lines are priced and an iteration's model is not
    if b.total is not None:
        compaction = None if whole is None else whole - b.total
    earlier_costs = [store.prices.cost(u, m) for u, m in billed_before]
    earlier_cost = None if None in earlier_costs else sum(c for c in earlier_costs if c is not None)
    store.blob_texts([blob for blob in said if blob is not None])
    response_headers = [json.loads(store.blob_text(blob)) if blob is not None else {} for blob in said]
    return TurnDetail(
        turn=summary,
        request=request,
        response=response,
        context=context,
        system=system,
        tools=tools,
        changes=changes,
        tool_calls=calls,
        usage=lines,
        cost_usd=summary.cost_usd,
        running_cost_usd=running,
        cache_break=idx in breaks,
        band_above_tokens=b.row.above_tokens if b.banded and b.row is not None else None,
        reconstructed=reconstructed(store.db, turn_id),
        response_headers=response_headers,
        earlier_attempts=len(billed_before),
        earlier_cost_usd=earlier_cost,
        compaction_cost_usd=compaction,
    )
