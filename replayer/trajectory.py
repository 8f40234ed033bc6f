"""Two trajectories (conversations) side by side: their turns aligned on turn index, what differs
in each pair (tool calls and their inputs, text, stop reason, tokens, cost, latency), the first
turn where what the model did diverges, the totals and the final answers. Headless and pure: it
takes the recorded steps (store/trajectories.py reads them) and never touches the store.

Alignment is on turn index, not on content: a fork holds the replayed turns 0..N-1 too, so its
turn i is the original's turn i, and a trajectory that went another way is shown as such rather
than re-paired by similarity. Divergence means the model's output differs (text, tool calls,
stop reason, an error): a prompt edited at turn N costs other tokens while the model may still
answer the same, and that is not yet another trajectory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from .diffing import compare_tools, unified, words
from .fmt import delta_money, money, ms
from .models import Document, ToolDiff, ToolUse

PairStatus = Literal["same", "differs", "added", "missing"]
"""same | differs | added (only in B, the longer) | missing (only in A: B stopped earlier)"""


@dataclass
class Step:
    """One turn of a trajectory as the comparison reads it (its last answered attempt)."""

    index: int
    turn_id: str
    started_at: str
    model: str | None
    stop_reason: str | None
    prompt_tokens: int | None
    """The whole prompt: uncached input + cache writes + cache reads (None: no usage came)."""
    output_tokens: int | None
    cost_usd: float | None
    latency_ms: float | None
    """Every attempt's latency added up (retries took time too)."""
    attempts: int
    errors: int
    """Attempts that ended in an error."""
    error: dict[str, Any] | None
    """The last attempt's error (None when it was answered)."""
    text: str
    tool_calls: list[ToolUse]
    ended_at: str | None = None
    """When its last attempt ended (its start plus its latency): after the waits between retries."""


@dataclass
class Trajectory:
    """A conversation's steps in turn order."""

    conversation_id: str
    steps: list[Step]


@dataclass
class Totals:
    """One trajectory summed up."""

    conversation_id: str
    turns: int
    cost_usd: float | None
    """None when a turn's model has no price."""
    model_ms: float
    """Time spent waiting on the model: every attempt's latency."""
    wall_s: float
    """From the first turn's start to the last turn's end (tools and the agent's own work included)."""
    errors: int
    prompt_tokens: int
    output_tokens: int
    tool_calls: int


@dataclass
class TurnPair:
    """Turn `index` of A beside turn `index` of B."""

    index: int
    status: PairStatus
    differences: list[str]
    """What differs: among model, stop_reason, tools, text, error, attempts (failed attempts before
    the answer); empty when same, added or missing."""
    a: Step | None
    b: Step | None
    tool_diff: list[ToolDiff]
    text_diff: str
    """Unified diff of the two texts ("" when they are the same or one side is absent)."""
    prompt_delta_tokens: int | None
    cost_delta_usd: float | None
    latency_delta_ms: float | None


@dataclass
class FinalAnswers:
    """The text each trajectory ended with (its last answered turn), diffed."""

    same: bool
    a: str
    b: str
    diff: str


@dataclass
class TrajectoryComparison(Document):
    """`replayer compare A B --json`: two conversations aligned turn by turn."""

    a: Totals
    b: Totals
    diverged_at: int | None
    """The first turn whose output differs, or where one trajectory has no turn (None: never)."""
    pairs: list[TurnPair]
    final: FinalAnswers


OUTPUT_FIELDS = ("stop_reason", "tools", "text", "error")
"""The differences that make a turn diverge (model and the numbers don't)."""


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def pair(index: int, a: Step | None, b: Step | None) -> TurnPair:
    """The differences between turn `index` of A and of B (either may be absent)."""
    if a is None or b is None:
        status: PairStatus = "added" if a is None else "missing"
        return TurnPair(index, status, [], a, b, [], "", None, None, None)
    tools = compare_tools([(t.name, t.input) for t in a.tool_calls], [(t.name, t.input) for t in b.tool_calls])
    differences = []
    if a.model != b.model:
        differences.append("model")
    if a.stop_reason != b.stop_reason:
        differences.append("stop_reason")
    if any(t.status != "same" for t in tools):
        differences.append("tools")
    if a.text != b.text:
        differences.append("text")
    if (a.error or {}).get("type") != (b.error or {}).get("type"):
        differences.append("error")
    if a.errors != b.errors:
        differences.append("attempts")  # retried on one side: time and errors, not another path
    prompt_delta = None if a.prompt_tokens is None or b.prompt_tokens is None else b.prompt_tokens - a.prompt_tokens
    return TurnPair(
        index=index,
        status="differs" if differences else "same",
        differences=differences,
        a=a,
        b=b,
        tool_diff=tools if "tools" in differences else [],
        text_diff=unified(a.text, b.text, "A", "B") if a.text != b.text else "",
        prompt_delta_tokens=prompt_delta,
        cost_delta_usd=_delta(a.cost_usd, b.cost_usd),
        latency_delta_ms=_delta(a.latency_ms, b.latency_ms),
    )


def diverges(p: TurnPair) -> bool:
    """The pair is where the trajectories went different ways (not just priced differently)."""
    return p.status in ("added", "missing") or any(d in OUTPUT_FIELDS for d in p.differences)


def _at(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def totals(t: Trajectory) -> Totals:
    cost: float | None = 0.0
    for s in t.steps:
        if s.cost_usd is None and s.prompt_tokens is not None:
            cost = None  # priced turns and an unpriced one: a sum would understate
        elif cost is not None and s.cost_usd is not None:
            cost += s.cost_usd
    wall = 0.0
    if t.steps:
        last = t.steps[-1]
        end = (
            _at(last.ended_at) if last.ended_at else _at(last.started_at) + timedelta(milliseconds=last.latency_ms or 0)
        )
        wall = max(0.0, (end - _at(t.steps[0].started_at)).total_seconds())
    return Totals(
        conversation_id=t.conversation_id,
        turns=len(t.steps),
        cost_usd=cost,
        model_ms=sum(s.latency_ms or 0 for s in t.steps),
        wall_s=wall,
        errors=sum(s.errors for s in t.steps),
        prompt_tokens=sum(s.prompt_tokens or 0 for s in t.steps),
        output_tokens=sum(s.output_tokens or 0 for s in t.steps),
        tool_calls=sum(len(s.tool_calls) for s in t.steps),
    )


def final_text(t: Trajectory) -> str:
    """The text of the last turn that was answered ("" when none was)."""
    return next((s.text for s in reversed(t.steps) if s.error is None and s.stop_reason is not None), "")


def compare(a: Trajectory, b: Trajectory) -> TrajectoryComparison:
    """A and B aligned on turn index; B's extra turns are `added`, A's extra ones `missing`."""
    pairs = [
        pair(i, a.steps[i] if i < len(a.steps) else None, b.steps[i] if i < len(b.steps) else None)
        for i in range(max(len(a.steps), len(b.steps)))
    ]
    fa, fb = final_text(a), final_text(b)
    return TrajectoryComparison(
        a=totals(a),
        b=totals(b),
        diverged_at=next((p.index for p in pairs if diverges(p)), None),
        pairs=pairs,
        final=FinalAnswers(same=fa == fb, a=fa, b=fb, diff="" if fa == fb else unified(fa, fb, "A", "B")),
    )


def final_words(c: TrajectoryComparison) -> list[tuple[str, str]]:
    """The final answers word by word (diffing.words), for side-by-side display."""
    return words(c.final.a, c.final.b)


# -- how the CLI and the browser both say it ------------------------------------------------------


def both(a: str | None, b: str | None, sep: str = "|") -> str:
    """One value when the two sides say the same, `a|b` when not; only the side that has the
    turn when the other has none (None: the pair's status says which)."""
    if a is None or b is None:
        return a or b or ""
    return a if a == b else f"{a}{sep}{b}"


def stop_word(s: Step) -> str:
    """How a turn ended: its stop reason, else `error` (no answer), else `-`."""
    return s.stop_reason or ("error" if s.error else "-")


def prompt_word(s: Step) -> str:
    """The whole prompt's tokens, `-` when no usage came (an error)."""
    return "-" if s.prompt_tokens is None else f"{s.prompt_tokens:,}"


def tool_names(s: Step) -> str:
    return ",".join(t.name for t in s.tool_calls) or "-"


def _count(v: float) -> str:
    return f"{v:,.0f}"


def _seconds(v: float) -> str:
    return ms(v * 1000)


def _count_delta(v: float) -> str:
    return f"{v:+,.0f}" if v else "0"


def _ms_delta(v: float) -> str:
    return ms(v, signed=True)


def _seconds_delta(v: float) -> str:
    return ms(v * 1000, signed=True)


def totals_rows(a: Totals, b: Totals) -> list[tuple[str, str, str, str]]:
    """(what, A, B, B - A) for each total, formatted: `?` where a cost is unknown. A difference
    is never a signed zero (fmt.delta_money, fmt.ms): none is `0`, `$0`, `0 ms`."""
    rows: list[tuple[str, float | None, float | None, Callable[[float], str], Callable[[float], str]]] = [
        ("turns", a.turns, b.turns, _count, _count_delta),
        ("cost", a.cost_usd, b.cost_usd, money, delta_money),
        ("model time", a.model_ms, b.model_ms, ms, _ms_delta),
        ("wall time", a.wall_s, b.wall_s, _seconds, _seconds_delta),
        ("errors", a.errors, b.errors, _count, _count_delta),
        ("prompt tok", a.prompt_tokens, b.prompt_tokens, _count, _count_delta),
        ("output tok", a.output_tokens, b.output_tokens, _count, _count_delta),
        ("tool calls", a.tool_calls, b.tool_calls, _count, _count_delta),
    ]
    out = []
    for name, x, y, fmt, fmt_delta in rows:
        delta = "?" if x is None or y is None else fmt_delta(y - x)
        out.append((name, "?" if x is None else fmt(x), "?" if y is None else fmt(y), delta))
    return out
