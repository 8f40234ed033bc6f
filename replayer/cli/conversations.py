"""Browsing what was recorded: the terminal app, the conversation list, one conversation, the JSONL
export, and the demo database."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import click

from ..fmt import error_head, local_time, money, ms, plural, spend, users_label
from ..wire import prompt_tokens, token_count
from .base import (
    UserError,
    db_path,
    json_document,
    need_terminal,
    no_conversation,
    one_line,
    open_output,
    open_store,
    resolve_id,
    settings,
    terminal_session,
)
from .table import Column, Table, printable


@click.command()
@click.pass_context
def browse(ctx: click.Context) -> None:
    """The terminal app: conversations, turns, context, tools, costs."""
    _browse(ctx, db_path(ctx))


def _browse(ctx: click.Context, path: Path) -> None:
    from ..pricing import PriceTable
    from ..store.schema import open_db

    open_db(path, create=False)  # a missing or foreign file is reported before the app starts
    prices = PriceTable.load((ctx.find_root().obj or {}).get("pricing"))
    from ..tui.app import make_app

    given = settings(ctx)
    given.check()  # bad settings are one line here, not a dashboard that can't load
    need_terminal("the browser", "run it in one, or print its lists with replayer list and replayer show ID")
    make_app(path, prices, settings=given).run()


@click.command("list")
@click.option("--user", help="Only conversations with a call of this user's (shared ones too).")
@click.option("--no-user", is_flag=True, help="Only conversations with a call made for no user.")
@click.option(
    "--run",
    metavar="ID",
    help="Only the conversations of this `replayer record` run (its last line says); the same as --tag run=ID.",
)
@click.option(
    "--tag", "tags", metavar="KEY=VALUE", multiple=True, help="Only conversations with this tag (repeat: every one)."
)
@click.option("--model", help="Only conversations that used a model whose id contains this (any case).")
@click.option("--since", metavar="DATE",
              help="Only conversations active since DATE (YYYY-MM-DD or YYYY-MM-DDTHH:MM, in the zone times are "
                   "shown in: [stats] tz, else this machine's; or add one: +01:00, Z).")
@click.option("--until", metavar="DATE",
              help="Only conversations started by the end of DATE (YYYY-MM-DD, or by YYYY-MM-DDTHH:MM; the same zone).")
@click.option("-q", "query", metavar="TEXT",
              help="Only conversations whose messages, system prompt or tools contain TEXT (its words together in one "
                   "of them).")
@click.option("-n", "limit", type=click.IntRange(1), default=50, show_default=True,
              help="How many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def list_(
    ctx: click.Context,
    user: str | None,
    no_user: bool,
    run: str | None,
    tags: tuple[str, ...],
    model: str | None,
    since: str | None,
    until: str | None,
    query: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Recorded conversations, newest first."""
    from ..filters import FilterError, tag_pair, time_bound

    limit = min(limit, 2**62)  # more than any database holds; SQLite's integers are 64-bit
    tz = settings(ctx).shown_tz()  # dates are read in the zone the times are shown in

    try:  # the browser's filter rules (replayer.filters), said with the option's name
        for name, value in (("--since", since), ("--until", until)):
            if value:
                time_bound(value, name, end=name == "--until", tz=tz)
        pairs = [tag_pair(tag, "--tag ") for tag in tags]
    except FilterError as e:
        raise UserError(str(e)) from None
    store = open_store(ctx)
    if user and no_user:
        raise UserError("give --user ID or --no-user, not both")
    if user:
        user = resolve_id(store, user, kind="user")
    rows = store.conversations(
        user=user, no_user=no_user, run=run, tags=pairs, model=model, since=since, until=until, tz=tz,
        query=query, limit=limit,
    )
    if as_json:
        click.echo(json_document([r.model_dump() for r in rows]))
        return
    given = [
        f"--{k} {v}"
        for k, v in (("user", user), ("run", run), *(("tag", t) for t in tags), ("model", model), ("since", since),
                     ("until", until))
        if v
    ] + (["--no-user"] if no_user else [])  # fmt: skip
    if not rows and (given or query):
        click.echo(f"No conversation matches {' '.join(given + ([f'-q {query}'] if query else []))}.", err=True)
        return
    if not rows:
        click.echo(
            "No conversations recorded yet. Wrap your client: client = Recorder().wrap(anthropic.Anthropic()),"
            " or run: replayer record -- python agent.py",
            err=True,
        )
        return
    # ids whole (they are what show and export take), and never narrower than the heading
    width = max(len("CONVERSATION"), *(len(r.conversation_id) for r in rows))
    table = Table(
        Column("STARTED", 16),
        Column("CONVERSATION", width),
        Column("USER", 14),
        Column("TURNS", 5, right=True),
        Column("PROMPT", 9, right=True),
        Column("OUTPUT", 8, right=True),
        Column("COST", 10, right=True),
        Column("ERR", 3, right=True),
        Column("FIRST MESSAGE"),
    )
    click.echo(table.header())
    for r in rows:
        click.echo(
            table.row(
                local_time(r.started_at, tz=tz),
                r.conversation_id,
                users_label(printable(r.user_id or ""), len(r.other_users), 14),
                r.turns,
                f"{r.input_tokens:,}",
                f"{r.output_tokens:,}",
                spend(r.cost_usd, r.unpriced_attempts),  # `≥$…` when some attempt has no price
                r.errors,
                one_line(f"↳ {r.variant_of}", 90) if r.variant_of else one_line(r.first_message, 40),
            )
        )
    click.echo(f"times in {tz}", err=True)  # on stderr: the table stays the table


@click.command()
@click.argument("conversation_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def show(ctx: click.Context, conversation_id: str, as_json: bool) -> None:
    """One conversation, turn by turn."""
    tz = settings(ctx).shown_tz()
    store = open_store(ctx)
    conversation_id = resolve_id(store, conversation_id)
    if not store.conversation_exists(conversation_id):
        raise no_conversation(store, conversation_id, db_path(ctx))
    turns = store.turns(conversation_id)
    runs = store.conversation_runs(conversation_id)
    from ..store.imported import provenance
    from ..store.runs import fork_lines
    from .importing import provenance_doc, provenance_lines

    prov = provenance(store.db, conversation_id)  # imported turns, subagent links: None for most
    forks, fork_doc = fork_lines(store.db, conversation_id)
    if as_json:
        doc = {"conversation_id": conversation_id, "turns": [t.model_dump() for t in turns], **fork_doc}
        click.echo(json_document({**doc, **provenance_doc(prov)} if prov else doc))
        return
    for line in [*(provenance_lines(prov, len(turns)) if prov else ()), *forks]:
        click.echo(line)
    total = 0.0
    unknown = copies = 0
    table = Table(
        Column("#", 3, right=True),
        Column("STARTED", 16),
        Column("MODEL", 28),
        Column("STOP", 10),
        Column("CTX", 4, right=True),
        Column("PROMPT", 8, right=True),
        Column("OUTPUT", 6, right=True),
        Column("COST", 10, right=True),
        Column("LATENCY", 7, right=True),
        Column("TOOLS / ERRORS"),
    )
    click.echo(table.header())
    for t in turns:
        u = t.usage or {}
        notes = ", ".join(t.tool_calls)
        if prov and t.index in prov.resets:
            notes = "[context reset: compaction summary] " + notes
        for a in t.attempts:
            if a.error:
                notes += f" [{a.attempt}:{error_head(a.error)}]"
            if a.abandoned:
                notes += " [abandoned]"
        if t.copied:
            copies += 1
            notes = "[copy: costs nothing now] " + notes
        elif t.cost_usd is None:
            unknown += 1 if t.usage else 0
        else:
            total += t.cost_usd
        click.echo(
            table.row(
                t.index,
                local_time(t.started_at, tz=tz),
                one_line(t.model, 28),
                one_line(t.stop_reason, 10),
                t.context_messages or 0,
                f"{prompt_tokens(u):,}",
                f"{token_count(u, 'output_tokens'):,}",
                money(t.cost_usd),
                # the call's: every attempt's, retries included (as compare and rerun count it)
                ms(t.latency_ms) if t.latency_ms is not None else "–",  # (a transcript's: none)
                notes.strip(),
            )
        )
    # ? when no turn has a price, ≥ when some haven't (fmt.spend): never $0.0000 for unpriced turns
    note = f" ({plural(unknown, 'turn')} whose model has no price)" if unknown else ""
    if copies:
        note += f" (the live turns; {plural(copies, 'copied turn')} cost nothing now)"
    click.echo(f"total {spend(total, unknown)}{note}")
    for run in runs:  # a conversation continued by later runs was part of each
        click.echo(f"recorded by run {run} (its other conversations: replayer list --run {run})")
    click.echo(f"times in {tz}", err=True)
    if not prov or len(prov.reconstructed) < len(turns):
        click.echo(f"rerun a turn: replayer rerun {conversation_id}:N  (or its turn id: show --json)", err=True)


@click.command()
@click.option("--conversation", "conversation_id", metavar="ID", help="Only this conversation.")
@click.option("--run", "run_id", metavar="ID", help="Only the conversations of this `replayer record` run.")
@click.option("--cassette", is_flag=True,
              help="A cassette to replay: each line also holds the stream's events (needs --conversation or --run).")
@click.option("-o", "output", type=click.Path(dir_okay=False, writable=True), help="Write to FILE instead of stdout.")
@click.pass_context
def export(ctx: click.Context, conversation_id: str | None, run_id: str | None, cassette: bool,
           output: str | None) -> None:
    """JSON Lines: one line per recorded API attempt, request and response as on the wire."""
    if conversation_id and run_id:
        raise UserError("give --conversation or --run, not both")
    if cassette and not (conversation_id or run_id):
        raise UserError("--cassette records one conversation or one run: add --conversation ID or --run ID")
    store = open_store(ctx)
    if conversation_id:
        conversation_id = resolve_id(store, conversation_id)
    if conversation_id and not store.conversation_exists(conversation_id):
        raise no_conversation(store, conversation_id, db_path(ctx))
    if run_id and not store.run_conversations(run_id):
        raise UserError(f"no conversation recorded by run {run_id!r}: see 'replayer list' (record prints its run id)")
    if cassette:
        from ..store.codec import dumps
        from ..store.export import cassette_lines

        lines = (dumps(line) for line in cassette_lines(store, conversation_id=conversation_id, run_id=run_id))
    else:
        lines = store.export_lines(conversation_id, run_id=run_id)
    out = open_output(output, "choose another -o FILE", database=db_path(ctx)) if output else sys.stdout
    try:
        n = 0
        with out if output else contextlib.nullcontext():
            for line in lines:
                out.write(line + "\n")
                n += 1
    except BrokenPipeError:
        if not output:
            raise  # `export | head`: click ends quietly (exit 1, as for any command piped to head)
        raise UserError(f"cannot write {output}: the pipe was closed") from None
    except OSError as e:  # the disk filled up, say
        raise UserError(f"cannot write {output or 'to stdout'}: {e.strerror or e}") from None
    if output:
        click.echo(f"wrote {plural(n, 'line')} to {output}" + (" (a cassette)" if cassette else ""), err=True)


@click.command()
@click.option("--no-open", is_flag=True, help="Only build the demo database.")
@click.pass_context
def demo(ctx: click.Context, no_open: bool) -> None:
    """Record the shipped example conversations through the real SDK, then open them.

    Into --db (or $REPLAYER_DB) when that is a new file or a database the demo made; any other
    database is refused (the demo never replaces one). Without --db or $REPLAYER_DB, into demo.db
    in your data folder, rebuilt each time."""
    from ..demo import build_demo, demo_db_path, refusal
    from ..paths import DB_ENV

    given = (ctx.find_root().obj or {}).get("db") or os.environ.get(DB_ENV)
    path = Path(given).expanduser() if given else demo_db_path()
    problem = refusal(path) if given else None
    if problem:
        raise UserError(problem)
    click.echo(f"recording the demo conversations into {path} …", err=True)
    turns = build_demo(path)
    click.echo(f"recorded {plural(turns, 'turn')}", err=True)
    ctx.find_root().obj["db"] = str(path)
    if no_open or not sys.stdout.isatty() or not terminal_session():  # (no terminal for the browser: the list)
        ctx.invoke(
            list_, user=None, run=None, tags=(), model=None, since=None, until=None, query=None, limit=50, as_json=False
        )
        click.echo(
            f"\nnext: replayer --db {path} browse   ·   replayer --db {path} show <CONVERSATION>"
            f"   ·   replayer --db {path} stats --days 30",
            err=True,
        )
        return
    _browse(ctx, path)
