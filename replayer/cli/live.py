"""The live part of `replayer replay --live-from N` (and so of `replayer fork`): before going
live, the same checks as `rerun` (the key, validation of the edited turn N, the cost estimate, a
confirmation unless --yes); then the fork's player (playback/live.py) with a writer of its own;
at the end, the link that makes the new conversation a fork of the source, and one line on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..fmt import money, plural, spend
from .base import UserError, db_path, folder_notice, interactive
from .edits import edits_from
from .replay import Playing


def fork_player(ctx: click.Context, settings: Any, recording: Any, matcher: Any) -> Playing:
    """The fork's player, the put the replay server records live calls with, and its finish."""
    from .. import replay
    from ..playback.fork_point import LiveError, fork_point, original_of
    from ..playback.live import Limits
    from ..pricing import PriceTable

    extra = settings.extra
    edits = edits_from(extra.get("system"), extra.get("model"), tuple(extra.get("messages") or ()),
                       tuple(extra.get("sets") or ()), tuple(extra.get("tool_results") or ()))
    if extra.get("edits_json"):  # the browser's editor hands its edits over whole
        edits = _merged(edits, extra["edits_json"])
    try:
        point = fork_point(recording.lines, str(extra["live_from"]))
    except LiveError as e:
        raise UserError(str(e)) from None
    prices = PriceTable.load((ctx.find_root().obj or {}).get("pricing"))
    upstream = extra.get("upstream")
    try:
        replay.api_key(gateway="--upstream")  # the agent's own key goes upstream: without one no live part
        orig = original_of(point, prices)
        request = replay.apply(orig, edits)
        problems = replay.validate(request, orig.headers, orig)
        for p in problems:
            click.echo(f"{'problem' if p.blocking else 'warning'}: {p.message}", err=True)
        blocking = [p for p in problems if p.blocking]
        if blocking:
            raise UserError(f"{plural(len(blocking), 'problem')} above in turn {point.index} as edited: fix the edits")
        sdk = replay.client(orig.headers, upstream, max_retries=0)
        est = replay.estimate(orig, request, prices, 1, replay.counter(sdk))
    except replay.ReplayError as e:
        raise UserError(str(e)) from None
    limits = Limits(max_turns=extra.get("max_turns"), budget_usd=extra.get("budget"))
    click.echo(
        f"fork {point.conversation_id} from turn {point.index} ({plural(point.index, 'turn')} answered from the "
        f"recording, then live); edits: {', '.join(edits.names())}",
        err=True,
    )
    stops = [f"--max-turns {limits.max_turns}"] if limits.max_turns else []
    stops += [f"--budget {money(limits.budget_usd)}"] if limits.budget_usd else []
    click.echo(
        f"estimate for turn {point.index}: {est.input_tokens:,} prompt tokens ({est.source}) + ~{est.output_tokens:,}"
        f" output = {money(est.cost_usd)} (at most {money(est.max_cost_usd)} if it writes max_tokens "
        f"{est.max_output_tokens:,}); each later turn costs about as much again plus its growth; "
        + (f"the live part stops at {' or '.join(stops)}" if stops else "no --budget or --max-turns: no limit"),
        err=True,
    )
    if not extra.get("yes"):
        if not interactive():
            raise UserError("not going live without confirmation: add --yes")
        if not click.confirm("go live?", err=True):
            click.echo("nothing sent", err=True)
            ctx.exit(0)
    return _start(ctx, matcher, point, edits, prices, limits, extra.get("fork_id"), recording.lines)


def _remedy(matcher: Any) -> str:
    """What to do when the agent never reached the fork's turn: a request the recording refused
    differed in a field that may change from run to run (a timestamp in the prompt): --ignore it."""
    if not matcher.refusals:
        return "the program stopped before sending it: see its output above"
    field = matcher.refusals[0].field
    if field is None:
        return "if a field of the request changes from run to run (a timestamp), fork with --ignore PATH"
    return (f"the request differed from the recording at {field}: if it changes from run to run (a timestamp), "
            f"fork with --ignore {field}")


def _merged(edits: Any, text: str) -> Any:
    import json

    from ..replay import Edits

    try:
        more = Edits.from_json(json.loads(text))
    except (ValueError, TypeError, AttributeError):
        raise UserError("--edits-json: not the JSON of a set of edits") from None
    for name in ("system", "model"):
        if getattr(more, name) is not None:
            setattr(edits, name, getattr(more, name))
    for name in ("messages", "set", "headers", "tool_results"):
        getattr(edits, name).update(getattr(more, name))
    return edits


def _start(ctx: click.Context, matcher: Any, point: Any, edits: Any, prices: Any, limits: Any,
           fork_id: str | None, recorded: list[dict[str, Any]]) -> Playing:
    from ..playback.live import ForkPlayer
    from ..store.process import make_writer

    db = str(db_path(ctx).resolve())
    made_folder = folder_notice(Path(db))
    writer = make_writer(db)
    player = ForkPlayer(matcher, point, edits, put=writer.put, prices=prices, limits=limits, fork_id=fork_id,
                        recorded=recorded)

    def finish() -> list[str]:
        from ..autorecord import unwritten_notes

        unwritten = 0 if writer.close(30) else writer.unwritten  # a writer process keeps trying
        not_written = unwritten_notes(db, unwritten, writer.spilled, writer.dropped + writer.failed)
        made_folder()
        state = player.state
        if not state.started:
            return [f"replayer replay: the agent never reached turn {point.index} of {point.conversation_id}: "
                    f"nothing went live, no fork was recorded; {_remedy(matcher)}"]
        import sqlite3

        from ..store.runs import ForkLink, add_fork_link
        from ..store.schema import DBError, open_db

        here = None
        try:
            store = open_db(Path(db))
            add_fork_link(store, ForkLink(player.fork_id, point.conversation_id, point.index, edits.to_json()))
            for branch in state.branches:  # a subagent that went on differently: a fork of its own, unedited
                add_fork_link(store, ForkLink(branch.conversation_id, branch.source, branch.index, {}))
            # the original is in this database unless the fork came from a cassette file
            here = store.execute("SELECT 1 FROM conversations WHERE id = ?", [point.conversation_id]).fetchone()
        except (DBError, sqlite3.Error):
            # locked, say (the records' own tags link the fork once they are written in: ingest.py);
            # the summary says what became of them, and offers no compare of what isn't written
            pass
        # ? when no live call had a price, ≥ when some had none (fmt.spend)
        spent = spend(state.spent_usd, state.unpriced) + (
            f" ({plural(state.unpriced, 'call')} with no price)" if state.unpriced else ""
        )
        stopped = f"; the live part was stopped: {state.stopped}" if state.stopped else ""
        lost_line = "".join(f"; {note}" for note in not_written)
        compare = f"; replayer compare {point.conversation_id} {player.fork_id}" if here else ""
        return [
            f"replayer replay: fork {player.fork_id} of {point.conversation_id} at turn {point.index}: "
            f"{state.sent()}, {spent}{stopped}{lost_line} "
            f"(replayer show {player.fork_id}{compare})"
        ] + [
            f"replayer replay: {b.source} went on differently from its turn {b.index}: continued live as "
            f"{b.conversation_id} (replayer {'compare ' + b.source if here else 'show'} {b.conversation_id})"
            for b in state.branches
        ]

    return Playing(player, player.put, finish, lambda: (player.state.live_turns, player.state.live_calls))
