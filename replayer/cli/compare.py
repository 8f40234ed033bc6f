"""`replayer compare A B`: two conversations' trajectories turn by turn (replayer/trajectory.py),
as a table that fits 100 columns, the turns that differ in detail, the totals and the final
answers; `--json` prints the comparison document."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import click

from ..fmt import attempts_note, error_head, money, ms
from ..trajectory import (
    Step,
    Totals,
    TrajectoryComparison,
    TurnPair,
    both,
    prompt_word,
    stop_word,
    tool_names,
    totals_rows,
)
from .base import db_path, json_document, no_conversation, one_line, open_store, resolve_id
from .rerun import _describe_tools
from .table import Column, Table

TURNS = Table(
    Column("#", 4, right=True),
    Column("CMP", 7),
    Column("STOP A|B", 17),
    Column("TOOLS A|B", 17),
    Column("PROMPT A|B", 13, right=True),
    Column("COST A|B", 17, right=True),  # <$0.0001|<$0.0001
    Column("TIME A|B", 13, right=True),
)
"""One row per turn index: a value shown once when both sides have it, else `a|b`."""

TOTALS = Table(
    Column("", 10), Column("A", 22, right=True), Column("B", 22, right=True), Column("B - A", 14, right=True)
)


def turn_row(p: TurnPair, diverged_at: int | None) -> str:
    a, b = p.a, p.b

    def each(get: Callable[[Step], str | None]) -> str:
        return both(get(a) if a is not None else None, get(b) if b is not None else None)

    return TURNS.row(
        (">" if p.index == diverged_at else "") + str(p.index),
        p.status,
        one_line(each(stop_word), 17),
        one_line(each(tool_names), 17),
        one_line(each(prompt_word), 13),
        each(lambda s: money(s.cost_usd)),  # a number is never cut (a wider one pushes the row)
        one_line(each(lambda s: ms(s.latency_ms)), 13),
    )


def _side(s: Step) -> str:
    if s.error:
        return f"error {error_head(s.error)}: {s.error.get('message')}"
    return f"{stop_word(s)}, tools: {tool_names(s)}, text: {json.dumps(s.text, ensure_ascii=False)}"


def pair_lines(p: TurnPair, diverged_at: int | None) -> Iterator[str]:
    """What differs at one turn, a few lines each (nothing for a turn that is the same)."""
    if p.status == "same":
        return
    mark = " (first divergence)" if p.index == diverged_at else ""
    if p.a is None or p.b is None:
        only, side = ("B", p.b) if p.a is None else ("A", p.a)
        assert side is not None
        head = f"turn {p.index}{mark}: only in {only}: "
        yield head + one_line(_side(side), 100 - len(head))
        return
    yield f"turn {p.index}{mark}: {', '.join(p.differences)} differ"
    if "model" in p.differences:
        yield f"  model: {p.a.model} -> {p.b.model}"
    if "attempts" in p.differences:
        yield f"  attempts: A {_attempts(p.a)}, B {_attempts(p.b)}"
    if "error" in p.differences:  # one side got no answer: what each side got says it all
        yield "  A: " + one_line(_side(p.a), 94)
        yield "  B: " + one_line(_side(p.b), 94)
        return
    if "stop_reason" in p.differences:
        yield f"  stop: {stop_word(p.a)} -> {stop_word(p.b)}"
    if p.tool_diff:
        yield "  tools: " + _describe_tools(p.tool_diff)
    if p.text_diff:
        yield "  text:"
        yield from diff_lines(p.text_diff)


def _attempts(s: Step) -> str:
    return attempts_note(s.attempts, s.errors)


def diff_lines(diff: str, limit: int = 12) -> Iterator[str]:
    """A unified diff's lines, cut to a line each and to `limit` lines in all; hunk headers (line
    numbers of a reply's text) become a `...` between hunks."""
    lines = [line for line in diff.splitlines() if not line.startswith(("---", "+++"))]
    lines = ["..." if line.startswith("@@") else line for line in lines]
    if lines[:1] == ["..."]:
        lines.pop(0)
    for line in lines[:limit]:
        yield "    " + one_line(line, 96)
    if len(lines) > limit:
        yield f"    ... {len(lines) - limit} more lines (--json has the whole diff)"


def totals_lines(a: Totals, b: Totals) -> Iterator[str]:
    """The two trajectories' totals side by side, with B's difference from A."""
    yield TOTALS.header()
    yield TOTALS.row("id", one_line(a.conversation_id, 22), one_line(b.conversation_id, 22))
    for row in totals_rows(a, b):
        yield TOTALS.row(*row)


def report_lines(c: TrajectoryComparison) -> Iterator[str]:
    """The whole text report, every line at most 100 columns."""
    yield f"A {c.a.conversation_id}  ({c.a.turns} turns)"
    yield f"B {c.b.conversation_id}  ({c.b.turns} turns)"
    if c.diverged_at is None:
        yield "the trajectories do not diverge: every turn did the same"
    else:
        yield f"first divergence: turn {c.diverged_at} (marked >)"
    yield ""
    yield TURNS.header()
    for p in c.pairs:
        yield turn_row(p, c.diverged_at).rstrip()
    details = [line for p in c.pairs for line in pair_lines(p, c.diverged_at)]
    if details:
        yield ""
        yield from details
    yield ""
    yield from totals_lines(c.a, c.b)
    yield ""
    if c.final.same:
        yield "final answers: the same" + ("" if c.final.a else " (neither has text)")
    else:
        yield "final answers differ:"
        yield from diff_lines(c.final.diff, limit=30)


@click.command()
@click.argument("conversation_a", metavar="CONVERSATION_A")
@click.argument("conversation_b", metavar="CONVERSATION_B")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def compare(ctx: click.Context, conversation_a: str, conversation_b: str, as_json: bool) -> None:
    """Two conversations' trajectories, turn by turn: where they diverge, what each did, totals."""
    from ..store.trajectories import trajectory
    from ..trajectory import compare as compare_trajectories

    store = open_store(ctx)
    sides = []
    for given in (conversation_a, conversation_b):
        cid = resolve_id(store, given)
        try:
            sides.append(trajectory(store, cid))
        except KeyError:
            raise no_conversation(store, given, db_path(ctx)) from None
    result = compare_trajectories(*sides)
    if as_json:
        click.echo(json_document(result.document()))
        return
    for line in report_lines(result):
        click.echo(line)
