"""Where a fork leaves its source, and the copies of the turns before it.

`fork_point` finds the turn `--live-from` names among the source's cassette lines (a turn id,
or an index, CONV:N for a source of several conversations); `recorded_command` finds the command
`replayer record` ran for it (what `replayer fork` runs again); `original_of` is that turn as
`rerun` starts from one (validation and the estimate read it). `copied` makes each recorded
attempt of the turns before it a record of the fork's, at the times `copy_times` gives: the
fork's conversation holds them as they went, every attempt of each, and costs nothing for them.
Headless, and no server: the rerun screen asks here without loading aiohttp."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..captured import Captured, Context
from ..models import Original
from ..pricing import PriceTable
from ..store.runs import Run
from .answer import event_bytes, synthesize


class LiveError(Exception):
    """A --live-from that names no turn of the source; one line, what to do."""


@dataclass(slots=True)
class ForkPoint:
    """Where a fork leaves its source: conversation, turn index, and the recorded lines of it."""

    conversation_id: str
    index: int
    turn: dict[str, Any]
    """The recorded line (last attempt) of turn `index`: the request the fork starts from."""
    replayed: list[list[dict[str, Any]]]
    """Every recorded attempt of each turn 0..index-1 (failed ones too), turn by turn: copied
    into the fork as they were recorded."""


TurnKey = tuple[str, int]
"""(conversation, turn index)."""


def turn_attempts(lines: list[dict[str, Any]]) -> dict[TurnKey, list[dict[str, Any]]]:
    """(conversation, turn index) -> the turn's recorded attempts in order, among cassette lines."""
    turns: dict[TurnKey, list[dict[str, Any]]] = {}
    for line in lines:
        conv, idx = line.get("conversation_id"), line.get("index")
        if isinstance(conv, str) and isinstance(idx, int) and line.get("request") is not None:
            turns.setdefault((conv, idx), []).append(line)
    for attempts in turns.values():
        attempts.sort(key=lambda a: a.get("attempt") or 0)
    return turns


def fork_point(lines: list[dict[str, Any]], live_from: str) -> ForkPoint:
    """The turn `live_from` names among the source's cassette lines: a turn id, or a turn index
    of the source conversation (CONV:N too, for a source with several)."""
    every = turn_attempts(lines)
    turns = {key: attempts[-1] for key, attempts in every.items()}
    conversations = sorted({c for c, _ in turns}, key=lambda c: min(t.get("started_at") or "" for (cc, _), t in
                                                                    turns.items() if cc == c))
    by_turn_id = {str(line.get("turn_id")): k for k, line in turns.items() if line.get("turn_id")}
    turn_id = _one(live_from, by_turn_id, "turn", live_from)
    found = by_turn_id[turn_id] if turn_id is not None else None
    if found is None:
        conv, sep, n = live_from.rpartition(":")
        if not sep:
            if len(conversations) != 1:
                raise LiveError(
                    f"--live-from {live_from}: the source holds {len(conversations)} conversations; give a turn id"
                    " or CONVERSATION:N (replayer show CONVERSATION --json lists turn ids)"
                )
            conv = conversations[0]
        conv = _one(conv, conversations, "conversation", live_from) or conv
        if conv not in conversations:
            raise LiveError(f"--live-from {live_from}: no conversation {conv} in the source")
        count = 1 + max(i for c, i in turns if c == conv)
        try:
            index = int(n)
        except ValueError:
            raise LiveError(f"--live-from {live_from}: give a turn index (0..{count - 1}) or a turn id") from None
        if not 0 <= index < count:
            raise LiveError(f"--live-from {live_from}: {conv} has turns 0..{count - 1}")
        found = (conv, index)
    conv, index = found
    return ForkPoint(conv, index, turns[found], turns_before(every, conv, index))


def _one(text: str, ids: Iterable[str], kind: str, live_from: str) -> str | None:
    """The id `text` names among `ids`: itself, a prefix of exactly one, or one cut as displayed
    (…), as everywhere else ids are taken; None when it names none."""
    ids = list(ids)
    if text in ids:
        return text
    prefix = text.removesuffix("…")
    matches = [i for i in ids if i.startswith(prefix)] if prefix else []
    if len(matches) > 1:
        raise LiveError(f"--live-from {live_from}: {text!r} begins {len(matches)} {kind} ids: give more of it")
    return matches[0] if matches else None


def turns_before(turns: dict[TurnKey, list[dict[str, Any]]], conv: str, index: int) -> list[list[dict[str, Any]]]:
    return [turns[(conv, i)] for i in range(index) if (conv, i) in turns]


def recorded_command(store: Any, turn_id: str) -> tuple[Run, str, int]:
    """The run `replayer record` kept for a turn's conversation (argv, cwd), the conversation and
    the turn's index: what `replayer fork` runs again. LiveError (one line, saying to use
    `replay --live-from` instead) for a conversation no `record` run made, or a cwd that is gone."""
    from pathlib import Path

    turn = store.turn_detail(turn_id).turn
    conversation, index = turn.conversation_id, turn.index
    run_id = store.conversation_tags(conversation).get("run")
    run = store.run(run_id) if isinstance(run_id, str) else None
    if run is None:
        raise LiveError(
            f"{conversation} was not recorded by `replayer record`, so no command was kept to run again: "
            f"run it yourself: replayer replay {conversation} --live-from {index} [edits] -- COMMAND"
        )
    if not Path(run.cwd).is_dir():
        raise LiveError(
            f"run {run.run_id} ran in {run.cwd}, which is gone: run it yourself from elsewhere: "
            f"replayer replay {run.run_id} --live-from {turn_id} [edits] -- COMMAND"
        )
    return run, conversation, index


def original_of(point: ForkPoint, prices: PriceTable) -> Original:
    """Turn N as `rerun` starts from a turn: what validation and the estimate read."""
    line = point.turn
    usage = line.get("usage") if isinstance(line.get("usage"), dict) else None
    model = line.get("model") or (line["request"].get("model") if isinstance(line["request"], dict) else None)
    return Original(
        turn_id=str(line.get("turn_id") or f"{point.conversation_id}:{point.index}"),
        conversation_id=point.conversation_id,
        index=point.index,
        request=line["request"],
        headers=dict(line.get("request_headers") or {}),
        response=line.get("response"),
        usage=usage,
        model=model,
        cost_usd=prices.cost(usage, model) if usage else None,
        latency_ms=line.get("latency_ms"),
    )


def _started(line: dict[str, Any]) -> float | None:
    """When a recorded attempt started (its `started_at`), in epoch seconds; None when unknown."""
    text = line.get("started_at")
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def copy_times(lines: list[dict[str, Any]], end: float) -> list[float]:
    """When each copy of the recorded attempts `lines` starts: its recorded start, shifted so
    the last of them ends (start plus latency) at `end`, where the live part begins. The copies
    keep their recorded spacing and latency, so a fork's trajectory lasts what its copied turns
    took in the original plus its live part, and `compare` sets wall times side by side. (Their
    usage counts on no day: a copy is kept out of spend.) An attempt with no recorded start
    follows the one before it by a millisecond."""
    starts = [_started(line) for line in lines]
    ends = [t + (line.get("latency_ms") or 0.0) / 1000 for t, line in zip(starts, lines, strict=True) if t is not None]
    shift = end - max(ends) if ends else 0.0
    times: list[float] = []
    for t in starts:
        if t is not None:
            times.append(t + shift)
        else:
            times.append(times[-1] + 1e-3 if times else end - 1e-3 * len(lines))
    return times


def copied(line: dict[str, Any], ctx: Context, t_start: float, call_key: str | None = None) -> Captured:
    """A recorded attempt (a cassette line) as a new record in `ctx`'s conversation: the same
    attempt number, request, headers, status and answer (a stream's recorded events, or ones
    made from its message). The attempts of one turn share a `call_key`: they join one turn."""
    request = line.get("request")
    captured = Captured(
        call_key=call_key or uuid.uuid4().hex,
        attempt=int(line.get("attempt") or 0),
        t_start=t_start,
        endpoint=line.get("endpoint") or "/v1/messages",
        stream=bool(line.get("stream")),
        request_bytes=json.dumps(request, ensure_ascii=False).encode(),
        headers=dict(line.get("request_headers") or {}),
        status=line.get("status"),
        latency_ms=line.get("latency_ms"),
        ttft_ms=line.get("ttft_ms"),
        error=line.get("error"),
        request_id=line.get("request_id"),
        abandoned=bool(line.get("abandoned")),
        ctx=ctx,
        copied_from=line.get("turn_id"),
    )
    response = line.get("response")
    if captured.stream and captured.status is not None and 200 <= captured.status < 300:
        events = line.get("events") or synthesize(response, line.get("error"))
        parts = [event_bytes(e) for e in events]
        captured.sse = b"".join(parts)
        if all(e.get("ms") is not None for e in events):  # recorded times: the copy keeps them
            ends = [len(p) for p in parts]
            for i in range(1, len(ends)):
                ends[i] += ends[i - 1]
            captured.sse_chunks = [(end, float(e["ms"])) for end, e in zip(ends, events, strict=True)]
    elif response is not None:
        captured.response_bytes = json.dumps(response, ensure_ascii=False).encode()
    return captured
