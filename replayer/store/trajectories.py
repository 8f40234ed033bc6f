"""Reading a conversation as a trajectory (trajectory.Step per turn): the turn summaries the
store already prices, plus each turn's reply (text and tool calls with their inputs)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ..models import ToolUse
from ..trajectory import Step, Trajectory
from ..wire import prompt_tokens, text_of, token_count, tool_calls
from .codec import iso

if TYPE_CHECKING:
    from .queries import Store


def trajectory(store: Store, conversation_id: str) -> Trajectory:
    """Every turn of a conversation as a Step; KeyError when there is no such conversation."""
    if not store.conversation_exists(conversation_id):
        raise KeyError(conversation_id)
    summaries = store.turns(conversation_id)
    # the reply of each turn's last attempt that got one (as TurnSummary reads its usage)
    replies: dict[str, int] = {}
    for turn_id, blob in store.db.execute(
        """SELECT a.turn_id, a.response_content FROM attempts a JOIN turns t ON t.id = a.turn_id
           WHERE t.conversation_id = ? AND a.response_content IS NOT NULL ORDER BY a.attempt, a.id""",
        [conversation_id],
    ):
        replies[turn_id] = blob
    texts = dict(zip(replies, store.blob_texts(list(replies.values())), strict=True))
    steps = []
    for t in summaries:
        reply = json.loads(texts[t.turn_id]) if t.turn_id in texts else None
        usage = t.usage
        last = t.attempts[-1] if t.attempts else None
        ended = None
        if last is not None and last.started_at:
            start = datetime.fromisoformat(last.started_at.replace("Z", "+00:00"))
            ended = iso((start + timedelta(milliseconds=last.latency_ms or 0)).timestamp())
        steps.append(
            Step(
                index=t.index,
                turn_id=t.turn_id,
                started_at=t.started_at,
                model=t.model,
                stop_reason=t.stop_reason,
                prompt_tokens=prompt_tokens(usage) if usage is not None else None,
                output_tokens=token_count(usage, "output_tokens") if usage is not None else None,
                cost_usd=t.cost_usd,
                latency_ms=t.latency_ms,
                ended_at=ended,
                attempts=len(t.attempts),
                errors=len(t.attempt_errors),
                error=t.error,
                text=text_of(reply),
                tool_calls=[ToolUse(name=name, input=value) for name, value in tool_calls(reply)],
            )
        )
    return Trajectory(conversation_id=conversation_id, steps=steps)


FORK_KINDS = ("fork",)
"""conversation_links kinds whose two ends are two trajectories of one task (replay --live-from, fork)."""


def fork_partner(store: Store, conversation_id: str) -> tuple[str, str] | None:
    """(original, fork) for a conversation that has a fork (its newest) or is one; None for neither."""
    kinds = ",".join("?" * len(FORK_KINDS))
    row = store.db.execute(
        f"""SELECT conversation_id FROM conversation_links WHERE parent_id = ? AND kind IN ({kinds})
            ORDER BY rowid DESC LIMIT 1""",
        [conversation_id, *FORK_KINDS],
    ).fetchone()
    if row is not None:
        return conversation_id, row[0]
    row = store.db.execute(
        f"SELECT parent_id FROM conversation_links WHERE conversation_id = ? AND kind IN ({kinds})",
        [conversation_id, *FORK_KINDS],
    ).fetchone()
    return (row[0], conversation_id) if row is not None else None
