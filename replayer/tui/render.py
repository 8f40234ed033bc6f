"""What the screens draw, as Rich Text and strings: the turn list's rows and marks, a conversation's
title, a comparison's side-by-side words and request diff, and the small formatters they share
(a turn's detail tabs are in tabs.py). Pure functions of the store's models, with no widget or app
(testable on their own)."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any, NamedTuple

from rich.cells import cell_len
from rich.text import Text

from ..fmt import (
    attempt_status,
    connection_fault,
    error_status,
    local_time,
    money,
    ms,
    plural,
    spend,
)
from ..models import SectionDiff, TurnSummary
from ..wire import prompt_tokens, token_count


class WholeWords(Text):
    """Text that a column narrower than it cuts after the last whole word that fits, marked `…`
    (`529 Overloaded` in 10 cells: `529 …`), never mid-word: `529 Overl…` reads as a word of its
    own. A first word wider than the column is cut as any Text is."""

    @classmethod
    def of(cls, text: Text) -> WholeWords:
        words = cls(no_wrap=True, overflow="ellipsis")
        words.append_text(text)
        return words

    def __rich_console__(self, console: Any, options: Any) -> Any:
        width, plain = options.max_width, self.plain
        if cell_len(plain) > width:
            for space in reversed([m.start() for m in re.finditer(" ", plain)]):
                if cell_len(plain[:space].rstrip()) + 2 <= width:  # the words, a space and `…`
                    kept = self[: len(plain[:space].rstrip())]
                    kept.append(" …", style="dim")
                    yield from kept.__rich_console__(console, options)
                    return
        yield from super().__rich_console__(console, options)


MID_STREAM_NOTE = "cut"
"""A failed attempt's note (its turn's row, a retry's) for a stream that broke after its 200: an
error event, or the connection lost or timed out (what fmt calls `mid-stream`, as the Usage and
Response tabs, `show` and the rerun say it): a word that reads whole in the narrowest notes column
(7 cells beside the chart at 160 columns); the help says what it means."""


def error_note(error: Mapping[str, Any]) -> str:
    """A failed attempt's note in the turn list: its status (MID_STREAM_NOTE for a stream that
    broke after its 200: fmt.error_status) and message; for a connection that failed with no
    answer, what kind of failure, in a word the narrowest column holds (fmt.connection_fault:
    `refused`, `timeout`, `DNS`...; its message was `Connection to HOST failed: [Errno 111]
    Connection refused`, read `Conne…`), the message whole in the Response and Usage tabs."""
    fault = connection_fault(error)
    if fault is not None:
        return fault
    where = error_status(error)
    return f"{MID_STREAM_NOTE if where == 'mid-stream' else where} {error.get('message') or ''}".strip()


def tokens(n: int | None) -> str:
    return "" if n is None else f"{n:,}"


def signed(n: int | None) -> str:
    return "" if n is None else f"{n:+,}"


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def turn_marks(t: TurnSummary, cache_break: bool) -> list[str]:
    """What a turn's status column shows, most important first: error | abandoned, retried, break."""
    last = t.attempts[-1] if t.attempts else None
    marks = []
    if last is not None and last.error:
        marks.append("error")
    elif any(a.abandoned for a in t.attempts):
        marks.append("abandoned")
    if len(t.attempts) > 1:
        marks.append("retried")
    if cache_break:
        marks.append("break")
    return marks


class TurnRows(NamedTuple):
    rows: list[tuple[Text | str, ...]]
    """A row per turn, and under it a row per earlier attempt (its retries)."""
    row_turn: list[int]
    """The turn each row belongs to, by its place in the timeline (not its index: a conversation
    imported in part numbers its turns from past 0)."""
    turn_row: list[int]
    """The row of each turn's own line, by the turn's place in the timeline."""
    counts: dict[str, int]
    """How many turns carry each mark (turn_marks)."""


def conversation_title(
    conversation_id: str,
    timeline: list[TurnSummary],
    legend: tuple[tuple[str, str, str], ...],
    counts: dict[str, int],
    colour: dict[str, str],
    reconstructed: dict[int, str],
) -> Text:
    """The conversation's title line: its id, turns and cost, the status column's legend with
    the count of each mark (`legend`: symbol, word, kind), and a badge when some of its turns
    were imported (`reconstructed`: their indexes -> their source, which the Context tab names)."""
    live = [t for t in timeline if not t.copied]  # a fork's copies cost nothing now (as list and show add them)
    total = sum(t.cost_usd or 0 for t in live)
    unpriced = sum(1 for t in live if t.cost_usd is None and t.usage)  # (as the list counts them)
    cost = spend(total, unpriced) + (f" ({len(live)} live)" if len(live) < len(timeline) else "")
    title = Text.assemble((conversation_id, "bold"), f"  {plural(len(timeline), 'turn')}  {cost}")
    for symbol, word, kind in legend:
        if counts.get(kind):
            # `2 failed`, `2 retried`, but `2 cache breaks`: a noun takes its plural
            counted = plural(counts[kind], word, word if word.endswith("ed") else None)
            title.append(f"   {symbol} {counted}", style=colour[kind])
    if reconstructed:  # short: a subagent's id is long, and the title must fit 100 columns
        title.append("   ")
        title.append("reconstructed", style="reverse")
        if len(reconstructed) < len(timeline):
            title.append(f" {len(reconstructed)} of {len(timeline)} turns")
    return title


def turn_rows(
    timeline: list[TurnSummary],
    breaks: set[int],
    colour: dict[str, str],
    symbols: dict[str, str],
    reconstructed: Collection[int] = (),
    tz: str | None = None,
) -> TurnRows:
    """The turn list's cells: for each turn its marks (symbols, in their outcome's colour), time
    (in the zone `tz`, else the machine's), stop reason, tools, the prompt's growth, cost,
    latency, cache hit and notes (`reconstructed`: the indexes of imported turns, noted as such
    where the conversation mixes them with turns recorded on the wire; the title says when every
    turn is)."""
    prev_prompt = None
    mixed = 0 < len(reconstructed) < len(timeline)
    rows: list[tuple[Text | str, ...]] = []
    row_turn: list[int] = []
    turn_row: list[int] = []
    counts: dict[str, int] = {}
    for position, t in enumerate(timeline):
        u = t.usage or {}
        prompt = prompt_tokens(u) if t.usage else None
        delta = prompt - prev_prompt if prompt is not None and prev_prompt is not None else prompt
        prev_prompt = prompt if prompt is not None else prev_prompt
        hit = (token_count(u, "cache_read_input_tokens") / prompt) if prompt else None
        last = t.attempts[-1] if t.attempts else None
        marks = turn_marks(t, position in breaks)
        for m in marks:
            counts[m] = counts.get(m, 0) + 1
        outcome = next((m for m in marks if m != "break"), None)
        style = colour.get(outcome or "", "")
        status = Text()
        for m in marks[:2]:
            status.append(symbols[m], style=f"bold {colour[m]}")
        stop = t.stop_reason or ""
        notes = [Text("reconstructed", style="italic")] if t.index in reconstructed and mixed else []
        if t.copied:  # a word the narrowest notes column holds; the Usage tab says what it costs
            notes.append(Text("copy", style="dim"))
        if last is not None and last.error:
            stop = str(last.error.get("type") or "error")
            # beside the type in the stop column, as the rerun says it (fmt.error_head): an error
            # event, or a lost connection, in a stream answered 200 came mid-stream (`cut`:
            # MID_STREAM_NOTE), never a `200` that reads as a success. First in the note (after a
            # copy's one word), the column being cut at the screen's edge (after a whole word:
            # WholeWords)
            notes.append(Text(error_note(last.error), style=style))
        if len(t.attempts) > 1:
            notes.append(Text(f"↻{len(t.attempts) - 1}", style=colour["retried"]))
        if "abandoned" in marks:
            notes.append(Text("abandoned", style=colour["abandoned"]))
        if "break" in marks:
            notes.append(Text("cache⚠", style=f"bold {colour['break']}"))
        turn_row.append(len(rows))
        row_turn.append(position)
        rows.append(
            (
                Text(str(t.index), style=style, justify="right"),
                status,
                Text(local_time(t.started_at, with_date=False, tz=tz), style=style),
                Text(stop, style=style),
                Text(", ".join(t.tool_calls), style=style, no_wrap=True, overflow="ellipsis"),
                Text(signed(delta), style=style, justify="right"),
                Text(money(t.cost_usd), style=style, justify="right"),
                # the call's latency, every attempt's (as show and compare say it); each
                # earlier attempt's own on its row below, the last's on the Response tab
                Text(ms(t.latency_ms), style=style, justify="right"),
                Text("" if hit is None else f"{hit:.0%}", style=style, justify="right"),
                WholeWords.of(Text(" ").join(notes)),
            )
        )
        for a in t.attempts[:-1]:  # earlier attempts of this turn (retries), under it
            row_turn.append(position)
            rows.append(
                (
                    Text(f"↳{a.attempt}", style="dim", justify="right"),
                    "",
                    Text(local_time(a.started_at, with_date=False, tz=tz), style="dim"),
                    # as a failed turn's row says it: the type in the stop column (whole: the
                    # tools column, where it was, is cut to the room left), the status in the notes
                    Text(str(a.error.get("type") or "error") if a.error else attempt_status(a.status, a.error) or "—",
                         style=colour["error"]),
                    "",
                    "",
                    "",
                    Text(ms(a.latency_ms), style="dim", justify="right"),
                    "",
                    WholeWords.of(Text(error_note(a.error), style="dim")) if a.error else "",
                )
            )
    return TurnRows(rows, row_turn, turn_row, counts)


def side_by_side(words: list[tuple[str, str]]) -> tuple[Text, Text]:
    """The original with what the sample removed struck red, and the sample with what it added green."""
    left, right = Text(), Text()
    for op, chunk in words:
        if op == "=":
            left.append(chunk)
            right.append(chunk)
        elif op == "-":
            left.append(chunk, style="bold red strike")
        else:
            right.append(chunk, style="bold green")
    return left, right


LINE_CUT = 2_000
"""Characters of one diff line shown (a recorded megabyte tool result is one line)."""


def request_diff_text(sections: list[SectionDiff]) -> Text:
    """diffing.request_diff as coloured text: each section with what changed, or that it is
    the same as the original's."""
    out = Text()
    if not sections:
        return Text("no sample was recorded: nothing to compare", style="dim")
    for d in sections:
        if not d.changed:
            out.append(f"{d.section}", style="bold")
            out.append("  same as the original\n\n", style="dim")
            continue
        out.append(f"{d.section}", style="bold")
        out.append(f"  -{d.removed} +{d.added} lines\n", style="yellow")
        for op, line in d.lines:
            more = len(line) - LINE_CUT
            shown = line if more <= 0 else line[:LINE_CUT] + f" … ({plural(more, 'more character')})"
            if op == "@":
                out.append(f"  {shown}\n", style="cyan")
            elif op == "-":
                out.append(f"- {shown}\n", style="red")
            elif op == "+":
                out.append(f"+ {shown}\n", style="green")
            else:
                out.append(f"  {shown}\n", style="dim")
        out.append("\n")
    return out


def middle_cut(text: str, width: int) -> str:
    """`text` in `width` characters: whole when it fits, else its start, "…" and its end. The end
    keeps a last `_` part whole when it fits beside a start of 8 (the agent id of Claude Code's
    cc_<session>_<agent id>), else takes half: two ids that differ at either end never read alike,
    and the start shown is a prefix of the id, as commands take one."""
    if len(text) <= width:
        return text
    room = width - 1
    last = text[text.rfind("_") :] if "_" in text else ""
    tail = len(last) if 0 < len(last) <= room - 8 and len(last) > room // 2 else room // 2
    return text[: room - tail] + "…" + (text[-tail:] if tail else "")


class IdText(Text):
    """An id in a table cell: cut in its middle to the width it is drawn in (middle_cut), which
    changes as the columns are fitted; its plain text stays the whole id."""

    def __rich_console__(self, console: Any, options: Any) -> Any:
        width = options.max_width
        if self.cell_len <= width or cell_len(self.plain) != len(self.plain):
            yield from super().__rich_console__(console, options)
            return
        cut = Text(middle_cut(self.plain, width), style=self.style, no_wrap=True, end=self.end)
        yield from cut.__rich_console__(console, options)
