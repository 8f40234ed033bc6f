"""The `replayer` command line.

Conventions (DESIGN.md): every command takes --db (else $REPLAYER_DB, else the user data
folder); `--json` prints exactly one JSON document on stdout; exit 0 on success, 1 when the work
ran but failed, 2 for bad input, always with a one-line message and never a traceback. Heavy
imports happen inside the commands that need them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from .fmt import describe_alert, fmt_metric, local_time, money, ms, plural


class UserError(click.ClickException):
    """Bad input: one line on stderr, exit 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"replayer: {self.message}", err=True)


class Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        from .config import ConfigError
        from .pricing import PricingError
        from .store.schema import DBError

        try:
            return super().invoke(ctx)
        except (DBError, PricingError, ConfigError) as e:
            raise UserError(str(e)) from None
        except sqlite3.Error as e:
            raise UserError(f"database error: {e}") from None


def _root_option(name: str, metavar: str, help_text: str) -> Any:
    """An option every command takes, before or after the command name, kept on the root context."""

    def remember(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value:
            ctx.find_root().ensure_object(dict)[name] = value

    return click.option(f"--{name}", metavar=metavar, expose_value=False, callback=remember, help=help_text)


db_option = _root_option("db", "PATH", "Database file (default: $REPLAYER_DB, else replayer.db in your data folder).")
pricing_option = _root_option(
    "pricing", "FILE", "A price file (TOML) that adds or overrides rows (also $REPLAYER_PRICING)."
)

config_option = _root_option("config", "FILE", "Settings file: thresholds, budget, time zone (also $REPLAYER_CONFIG).")


def db_path(ctx: click.Context) -> Path:
    from .paths import default_db_path

    given = (ctx.find_root().obj or {}).get("db")
    return Path(given).expanduser() if given else default_db_path()


def open_store(ctx: click.Context) -> Any:
    from .pricing import PriceTable
    from .store.queries import Store
    from .store.schema import open_db

    obj = ctx.find_root().obj or {}
    prices = PriceTable.load(obj.get("pricing"))
    store = Store(open_db(db_path(ctx), create=False), prices)
    _warn_unpriced_once(ctx, prices)
    return store


NOTICES = "notices.json"
"""In the user data folder: per database, the unpriced models the user has been told about."""


def _warn_unpriced_once(ctx: click.Context, prices: Any) -> None:
    """The no-price warning comes once per database, not on every command: the models it was
    given for are remembered, and only a model not told about before warns again. A model that
    has a price now is forgotten, so it warns again if it loses it."""
    from .paths import data_dir

    path = data_dir() / NOTICES
    key = str(db_path(ctx).resolve())
    try:
        state = json.loads(path.read_text("utf-8"))
        told = set(state["unpriced"][key]) if isinstance(state, dict) else set()
    except (OSError, ValueError, KeyError, TypeError):
        state, told = None, set()
    prices.mark_warned(told)

    def remember() -> None:
        now = {m for m in prices.warned if prices.row_for(m) is None}
        if now == told:
            return
        doc = state if isinstance(state, dict) else {}
        unpriced = doc.get("unpriced") if isinstance(doc.get("unpriced"), dict) else {}
        unpriced = {k: v for k, v in unpriced.items() if Path(k).exists()}  # forget deleted databases
        unpriced[key] = sorted(now)
        doc["unpriced"] = unpriced
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(doc), "utf-8")
            tmp.replace(path)
        except OSError:
            pass  # a read-only home: the warning just comes again next time

    ctx.call_on_close(remember)


def _unwritable(path: str, remedy: str, e: OSError) -> UserError:
    parent = Path(path).expanduser().parent
    if not parent.exists():
        hint = f"{parent} does not exist"
    elif not parent.is_dir():
        hint = f"{parent} is not a folder"
    else:
        hint = (e.strerror or str(e)).lower()
    return UserError(f"cannot write {path}: {hint}; {remedy}")


def _open_output(path: str, remedy: str) -> Any:
    """A file opened for writing text, or bad input (one line) when it can't be."""
    try:
        return open(Path(path).expanduser(), "w", encoding="utf-8")
    except OSError as e:
        raise _unwritable(path, remedy, e) from None


def resolve_id(store: Any, text: str, kind: str = "conversation") -> str:
    """The whole id `text` names: an id, a prefix of exactly one, or one cut as displayed (…).
    The text itself when it names none (the caller says it is unknown); bad input when several."""
    prefix = text.removesuffix("…")
    count, ids = store.ids_starting(prefix, kind=kind)
    if count == 1:
        return str(ids[0])
    if count > 1:
        listed = ", ".join(ids) + (", …" if count > len(ids) else "")
        raise UserError(f"{text!r} begins {count} {kind} ids ({listed}): give more of it")
    return text


def cut(text: str | None, n: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


@click.group(cls=Group, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@db_option
@pricing_option
@config_option
@click.version_option(package_name="replayer")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Record, browse, rerun and cost every Claude API call your agent makes.

    With no command, opens the browser (replayer browse).
    """
    ctx.ensure_object(dict)
    if ctx.invoked_subcommand is None:
        ctx.invoke(browse)


@cli.command()
@db_option
@click.pass_context
def browse(ctx: click.Context) -> None:
    """The terminal app: conversations, turns, context, tools, costs."""
    _browse(ctx, db_path(ctx))


def _browse(ctx: click.Context, path: Path) -> None:
    from .pricing import PriceTable
    from .store.schema import open_db

    open_db(path, create=False)  # a missing or foreign file is reported before the app starts
    prices = PriceTable.load((ctx.find_root().obj or {}).get("pricing"))
    from .config import load
    from .tui.app import make_app

    settings = load((ctx.find_root().obj or {}).get("config"))
    make_app(path, prices, settings=settings).run()


@cli.command("list")
@db_option
@pricing_option
@click.option("--user", help="Only this user's conversations.")
@click.option("--model", help="Only conversations that used a model whose id contains this (any case).")
@click.option("--since", metavar="DATE", help="Only conversations active since DATE (YYYY-MM-DD, UTC).")
@click.option("--until", metavar="DATE", help="Only conversations started by the end of DATE (YYYY-MM-DD, UTC).")
@click.option("-q", "query", metavar="TEXT", help="Only conversations whose messages contain TEXT.")
@click.option("-n", "limit", type=click.IntRange(1), default=50, show_default=True, help="How many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def list_(
    ctx: click.Context,
    user: str | None,
    model: str | None,
    since: str | None,
    until: str | None,
    query: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Recorded conversations, newest first."""
    from .filters import FilterError, time_bound

    try:  # the browser's filter rules (replayer.filters), said with the option's name
        for name, value in (("--since", since), ("--until", until)):
            if value:
                time_bound(value, name)
    except FilterError as e:
        raise UserError(str(e)) from None
    store = open_store(ctx)
    rows = store.conversations(user=user, model=model, since=since, until=until, query=query, limit=limit)
    if as_json:
        click.echo(json.dumps([r.model_dump() for r in rows], ensure_ascii=False))
        return
    given = [f"--{k} {v}" for k, v in (("user", user), ("model", model), ("since", since), ("until", until)) if v]
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
    width = max(len(r.conversation_id) for r in rows)  # ids whole: they are what show and export take
    click.echo(
        f"{'STARTED':16}  {'CONVERSATION':{width}}  {'USER':14}  {'TURNS':>5}  {'PROMPT':>9}  {'OUTPUT':>8}  "
        f"{'COST':>10}  {'ERR':>3}  FIRST MESSAGE"
    )
    for r in rows:
        click.echo(
            f"{local_time(r.started_at):16}  {r.conversation_id:{width}}  {cut(r.user_id, 14):14}  {r.turns:>5}  "
            f"{r.input_tokens:>9,}  {r.output_tokens:>8,}  {money(r.cost_usd):>10}  {r.errors:>3}  "
            f"{cut(r.first_message, 40)}"
        )


@cli.command()
@db_option
@pricing_option
@click.argument("conversation_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def show(ctx: click.Context, conversation_id: str, as_json: bool) -> None:
    """One conversation, turn by turn."""
    store = open_store(ctx)
    conversation_id = resolve_id(store, conversation_id)
    if not store.conversation_exists(conversation_id):
        raise UserError(f"no conversation {conversation_id!r} in {db_path(ctx)}: see 'replayer list'")
    turns = store.turns(conversation_id)
    if as_json:
        click.echo(
            json.dumps(
                {"conversation_id": conversation_id, "turns": [t.model_dump() for t in turns]}, ensure_ascii=False
            )
        )
        return
    total = 0.0
    unknown = False
    click.echo(
        f"{'#':>3}  {'STARTED':16}  {'MODEL':28}  {'STOP':10}  {'CTX':>4}  {'PROMPT':>8}  {'OUTPUT':>6}  "
        f"{'COST':>10}  {'MS':>7}  TOOLS / ERRORS"
    )
    from .store.queries import prompt_tokens

    for t in turns:
        u = t.usage or {}
        last = t.attempts[-1] if t.attempts else None
        notes = ", ".join(t.tool_calls)
        for a in t.attempts:
            if a.error:
                notes += f" [{a.attempt}:{a.error.get('status') or ''} {a.error.get('type')}]"
            if a.abandoned:
                notes += " [abandoned]"
        if t.cost_usd is None:
            unknown = unknown or bool(t.usage)
        else:
            total += t.cost_usd
        click.echo(
            f"{t.index:>3}  {local_time(t.started_at):16}  {cut(t.model, 28):28}  {cut(t.stop_reason, 10):10}  "
            f"{t.context_messages or 0:>4}  {prompt_tokens(u):>8,}  {int(u.get('output_tokens') or 0):>6,}  "
            f"{money(t.cost_usd):>10}  {(last.latency_ms or 0) if last else 0:>7.0f}  {notes.strip()}"
        )
    click.echo(f"total {money(total)}" + (" (plus turns whose model has no price)" if unknown else ""))
    click.echo(f"rerun a turn: replayer rerun {conversation_id}:N  (or its turn id: show --json)", err=True)


@cli.command()
@db_option
@pricing_option
@click.option("--conversation", "conversation_id", metavar="ID", help="Only this conversation.")
@click.option("-o", "output", type=click.Path(dir_okay=False, writable=True), help="Write to FILE instead of stdout.")
@click.pass_context
def export(ctx: click.Context, conversation_id: str | None, output: str | None) -> None:
    """JSON Lines: one line per recorded API attempt, request and response as on the wire."""
    store = open_store(ctx)
    if conversation_id:
        conversation_id = resolve_id(store, conversation_id)
    if conversation_id and not store.conversation_exists(conversation_id):
        raise UserError(f"no conversation {conversation_id!r}: see 'replayer list'")
    out = _open_output(output, "choose another -o FILE") if output else sys.stdout
    try:
        n = 0
        with out if output else contextlib.nullcontext():
            for line in store.export_lines(conversation_id):
                out.write(line + "\n")
                n += 1
    except BrokenPipeError:
        if not output:
            raise  # `export | head`: click ends quietly (exit 1, as for any command piped to head)
        raise UserError(f"cannot write {output}: the pipe was closed") from None
    except OSError as e:  # the disk filled up, say
        raise UserError(f"cannot write {output or 'to stdout'}: {e.strerror or e}") from None
    if output:
        click.echo(f"wrote {plural(n, 'line')} to {output}", err=True)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@db_option
@click.option("--conversation", "conversation_id", metavar="ID", help="Put every call in this conversation.")
@click.option("--user", "user_id", metavar="ID", help="Attribute every call to this user.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
@click.pass_context
def record(ctx: click.Context, conversation_id: str | None, user_id: str | None, command: tuple[str, ...]) -> None:
    """Run a Python program and record its Claude API calls, with no code change.

    Example: replayer record -- python agent.py --task fix-bug

    Ends with one line on stderr: how many calls went to which database, or why none did. The
    exit code is the program's.
    """
    import tempfile

    from .autorecord import summarize
    from .paths import REPORT_ENV

    boot = str(Path(__file__).parent / "_boot")  # holds the sitecustomize that starts recording
    db = str(db_path(ctx).resolve())
    env = dict(os.environ)
    env["REPLAYER_DB"] = db
    env["PYTHONPATH"] = os.pathsep.join(p for p in (boot, env.get("PYTHONPATH")) if p)
    if conversation_id:
        env["REPLAYER_CONVERSATION"] = conversation_id
    if user_id:
        env["REPLAYER_USER"] = user_id
    if shutil.which(command[0]) is None and not Path(command[0]).exists():
        raise UserError(f"command not found: {command[0]}")
    reports = tempfile.mkdtemp(prefix="replayer-record-")  # each Python process says what it stored
    env[REPORT_ENV] = reports
    try:
        try:
            proc = subprocess.Popen(list(command), env=env)
        except OSError as e:
            raise UserError(f"cannot run {command[0]}: {e.strerror}") from None
        while True:
            try:
                code = proc.wait()
                break
            except KeyboardInterrupt:
                continue  # the program got the Ctrl-C too: let it end, and save its records
        click.echo(summarize(reports, db, list(command)), err=True)
    finally:
        shutil.rmtree(reports, ignore_errors=True)
    ctx.exit(code if code >= 0 else 128 - code)  # killed by a signal: as a shell reports it


@cli.group()
def db() -> None:
    """Where the database is, migrating it, backing it up."""


@db.command("path")
@db_option
@click.pass_context
def db_path_cmd(ctx: click.Context) -> None:
    """Print the database path in use."""
    click.echo(str(db_path(ctx)))


@db.command("migrate")
@db_option
@click.pass_context
def db_migrate(ctx: click.Context) -> None:
    """Create the database or bring its schema up to date."""
    from .store.schema import apply_migrations, migrations, open_db

    database = open_db(db_path(ctx), migrate=False)
    pending = [m.name for m in migrations.pending(database)]
    if pending:
        apply_migrations(database)
        click.echo(f"applied {plural(len(pending), 'migration')}: {', '.join(pending)}", err=True)
    else:
        click.echo("up to date", err=True)


@db.command("backup")
@db_option
@click.argument("dest", type=click.Path(dir_okay=False))
@click.pass_context
def db_backup(ctx: click.Context, dest: str) -> None:
    """Copy the database, consistently, while agents may be writing to it."""
    from .store.schema import open_db

    database = open_db(db_path(ctx), create=False)
    if Path(dest).exists():
        raise UserError(f"{dest} exists: choose a new file")
    try:
        # created empty with owner-only permissions first, as the database itself is
        os.close(os.open(Path(dest).expanduser(), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as e:
        raise _unwritable(dest, "choose another backup path", e) from None
    target = sqlite3.connect(Path(dest).expanduser())
    try:
        database.conn.backup(target)
    except sqlite3.Error as e:  # the disk filled up, say: leave no half-written copy
        target.close()
        Path(dest).expanduser().unlink(missing_ok=True)
        raise UserError(f"cannot write {dest}: {e}; choose another backup path") from None
    target.close()
    click.echo(f"backed up to {dest}", err=True)


@cli.command()
@db_option
@click.option("--no-open", is_flag=True, help="Only build the demo database.")
@click.pass_context
def demo(ctx: click.Context, no_open: bool) -> None:
    """Record the shipped example conversations through the real SDK, then open them.

    Into --db (or $REPLAYER_DB) when that is a new file or a database the demo made (it never
    replaces another), else into demo.db in your data folder, rebuilt each time."""
    from .demo import build_demo, demo_db_path, refusal

    given = (ctx.find_root().obj or {}).get("db") or os.environ.get("REPLAYER_DB")
    path = Path(given).expanduser() if given else demo_db_path()
    problem = refusal(path) if given else None
    if problem:
        raise UserError(problem)
    click.echo(f"recording the demo conversations into {path} …", err=True)
    turns = build_demo(path)
    click.echo(f"recorded {plural(turns, 'turn')}", err=True)
    ctx.find_root().obj["db"] = str(path)
    if no_open or not sys.stdout.isatty():
        ctx.invoke(list_, user=None, model=None, since=None, until=None, query=None, limit=50, as_json=False)
        click.echo(
            f"\nnext: replayer --db {path} browse   ·   replayer --db {path} show <CONVERSATION>"
            f"   ·   replayer --db {path} stats --days 30",
            err=True,
        )
        return
    _browse(ctx, path)


def _settings(
    ctx: click.Context, tz: str | None, thresholds: tuple[str, ...], budget: float | None, days: int | None
) -> Any:
    from .config import load, set_threshold
    from .metrics import zone

    settings = load((ctx.find_root().obj or {}).get("config"))
    for spec in thresholds:
        set_threshold(settings, spec)
    if budget is not None:
        settings.daily_budget_usd = budget
    if tz:
        settings.tz = tz
    if days:
        settings.days = days
    zone(settings.tz)  # an unknown zone is bad input, said before any work
    return settings


def _health_options(f: Any) -> Any:
    for option in reversed(
        [
            db_option,
            pricing_option,
            config_option,
            click.option("--days", type=click.IntRange(1), help="The last N days (default 7, or [stats] days)."),
            click.option("--tz", metavar="ZONE", help="Days in this time zone (default UTC, or [stats] tz)."),
            click.option(
                "--threshold",
                "thresholds",
                metavar="NAME=VALUE",
                multiple=True,
                help="Override a metric's threshold (repeatable).",
            ),
            click.option("--daily-budget", "budget", type=float, metavar="USD", help="Per-user daily budget."),
            click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout."),
        ]
    ):
        f = option(f)
    return f


@cli.command()
@_health_options
@click.option(
    "--by",
    type=click.Choice(["user", "model", "day", "conversation"]),
    default="user",
    show_default=True,
    help="The breakdown to print.",
)
@click.option("--user", help="Only this user.")
@click.pass_context
def stats(
    ctx: click.Context,
    days: int | None,
    tz: str | None,
    thresholds: tuple[str, ...],
    budget: float | None,
    as_json: bool,
    by: str,
    user: str | None,
) -> None:
    """Spend per user, model and day, cost per conversation, and the health metrics."""
    from .metrics import stats as compute

    settings = _settings(ctx, tz, thresholds, budget, days)
    store = open_store(ctx)
    doc = compute(store.db, store.prices, settings, user=user)
    if as_json:
        click.echo(json.dumps(doc, ensure_ascii=False))
        return
    click.echo(f"{doc['since']} .. {doc['until']} ({doc['tz']})" + (f", user {user}" if user else ""))
    click.echo("")
    if by == "user":
        dates = [d["date"] for d in doc["days"]]
        show_days = dates if len(dates) <= 7 else []
        click.echo(
            f"{'USER':24}  {'COST':>10}  {'CONV':>5}  {'TURNS':>6}" + "".join(f"  {d[5:]:>9}" for d in show_days)
        )
        for u in doc["users"]:
            per_day = {d["date"]: d["cost_usd"] for d in u["days"]}
            click.echo(
                f"{cut(u['user_id'] or '(no user)', 24):24}  {money(u['cost_usd']):>10}  {u['conversations']:>5}  "
                f"{u['turns']:>6}" + "".join(f"  {money(per_day[d]):>9}" for d in show_days)
            )
        if doc["top_users_today"]:
            click.echo(
                "\ntop users today: "
                + ", ".join(f"{t['user_id'] or '(no user)'} {money(t['cost_usd'])}" for t in doc["top_users_today"])
            )
    elif by == "model":
        click.echo(f"{'MODEL':32}  {'COST':>10}  {'TURNS':>6}")
        for m in doc["models"]:
            click.echo(f"{cut(m['model'] or '(none)', 32):32}  {money(m['cost_usd']):>10}  {m['turns']:>6}")
    elif by == "day":
        click.echo(f"{'DAY':10}  {'COST':>10}")
        for d in doc["days"]:
            click.echo(f"{d['date']:10}  {money(d['cost_usd']):>10}")
    else:
        click.echo(f"{'CONVERSATION':32}  {'USER':16}  {'TURNS':>6}  {'COST':>10}")
        for c in doc["top_conversations"]:
            click.echo(
                f"{c['conversation_id']:32}  {cut(c['user_id'], 16):16}  {c['turns']:>6}  {money(c['cost_usd']):>10}"
            )
    conv = doc["conversations"]
    click.echo(
        f"\nconversations: {conv['count']}, cost mean {money(conv['mean_cost_usd'])}, "
        f"p50 {money(conv['p50_cost_usd'])}, p95 {money(conv['p95_cost_usd'])}"
    )
    click.echo(f"\n{'HEALTH':32}  {'VALUE':>10}  {'THRESHOLD':>10}")
    for name, m in doc["metrics"].items():
        flag = "ALERT" if m["alert"] else ("" if m["value"] is None else "ok")
        click.echo(f"{name:32}  {fmt_metric(name, m['value']):>10}  {fmt_metric(name, m['threshold']):>10}  {flag}")
    for a in doc["alerts"]:
        if a["kind"] == "cache":
            click.echo("\n" + describe_alert(a))
    if doc["reruns"]["variants"]:
        r = doc["reruns"]
        click.echo(
            f"\nreruns: {plural(r['variants'], 'variant')}, {plural(r['turns'], 'sample')}, "
            f"{money(r['cost_usd'])} (not counted above)"
        )
    for u in doc["unpriced"]:
        click.echo(
            f"note: {plural(u['attempts'], 'attempt')} of {u['model']} {'has' if u['attempts'] == 1 else 'have'} "
            "no price and count as $0",
            err=True,
        )


@cli.command()
@_health_options
@click.pass_context
def alerts(
    ctx: click.Context,
    days: int | None,
    tz: str | None,
    thresholds: tuple[str, ...],
    budget: float | None,
    as_json: bool,
) -> None:
    """Users over the daily budget today, metrics past their thresholds, broken caches.

    Exits 1 when any alert fires, so cron or CI can act on it.
    """
    from .metrics import stats as compute

    settings = _settings(ctx, tz, thresholds, budget, days)
    store = open_store(ctx)
    found = compute(store.db, store.prices, settings)["alerts"]
    if as_json:
        click.echo(json.dumps(found, ensure_ascii=False))
    elif not found:
        click.echo(
            "no alerts" + ("" if settings.daily_budget_usd is not None else " (no daily budget set: --daily-budget)")
        )
    else:
        for a in found:
            click.echo(describe_alert(a))
    if found:
        ctx.exit(1)


@cli.command()
@pricing_option
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def pricing(ctx: click.Context, as_json: bool) -> None:
    """The price table in use (USD per million tokens) and where each row came from."""
    from .pricing import KINDS, PriceTable

    table = PriceTable.load((ctx.find_root().obj or {}).get("pricing"))
    rows = []
    for row in table.effective_rows():
        rows.append(
            {
                "ids": list(row.ids),
                **{k: row.rates.get(k) for k in KINDS},
                "above_prompt_tokens": row.above_tokens,
                "above": {k: row.above.get(k) for k in KINDS} if row.above else None,
                "source": row.source,
                "date": row.date,
                "origin": row.origin,
            }
        )
    if as_json:
        click.echo(
            json.dumps(
                {"models": rows, "batch_factor": table.batch_factor, "web_search_per_1k": table.web_search_per_1k}
            )
        )
        return
    width = max(len(i) for r in rows for i in r["ids"])

    def rates(r: dict[str, Any]) -> str:
        return "  ".join(f"{r[k]:>8g}" for k in KINDS)

    click.echo(
        f"{'MODEL':{width}}  " + "  ".join(f"{h:>8}" for h in ("INPUT", "OUTPUT", "WRITE 5M", "WRITE 1H", "READ"))
    )
    for r in rows:
        click.echo(f"{r['ids'][0]:{width}}  {rates(r)}   {r['origin']}: {r['source']} ({r['date']})")
        for alias in r["ids"][1:]:
            click.echo(f"{alias:{width}}  (as above)")
        if r["above"]:
            label = f"  above {r['above_prompt_tokens']:,}"
            click.echo(f"{label:{width}}  {rates(r['above'])}   (prompt tokens: every token at these rates)")
    click.echo(
        f"\nUSD per million tokens; batch requests at {table.batch_factor:g}x; web search "
        f"${table.web_search_per_1k:g} per 1,000; dated ids (model-YYYYMMDD) price as their alias."
    )


def _text_or_file(value: str, what: str) -> str:
    if value.startswith("@"):
        try:
            return Path(value[1:]).expanduser().read_text("utf-8")
        except OSError as e:
            raise UserError(f"{what} {value}: cannot read {value[1:]} ({e.strerror})") from None
    return value


def _describe_sample(i: int, v: dict[str, Any]) -> str:
    if v["error"]:
        e = v["error"]
        return f"sample {i}: ERROR {e.get('status') or ''} {e.get('type')}: {e.get('message')}".replace("  ", " ")
    usage = v["usage"] or {}
    lat = "" if v["latency_ms"] is None else f" · {v['latency_ms']:,.0f} ms"
    if v["latency_delta_ms"] is not None:
        lat += f" ({ms(v['latency_delta_ms'], signed=True)})"
    cost = money(v["cost_usd"])
    if v["cost_delta_usd"] is not None:
        cost += f" ({'+' if v['cost_delta_usd'] >= 0 else '-'}{money(abs(v['cost_delta_usd']))})"
    tokens = _prompt_words(v) + f" / {usage.get('output_tokens', 0):,} output"
    return f"sample {i}: {v['stop_reason'] or '—'} · {v['model']}{lat} · {cost} · {tokens}"


def _prompt_words(v: dict[str, Any]) -> str:
    """`3,502 prompt (+12, 97% cache hit)`: the whole prompt, never the uncached part alone."""
    if v.get("prompt_tokens") is None:
        return "no usage"
    notes = [f"{v['prompt_delta_tokens']:+,}"] if v.get("prompt_delta_tokens") is not None else []
    if v.get("cache_hit_rate") is not None:
        notes.append(f"{v['cache_hit_rate']:.0%} cache hit")
    return f"{v['prompt_tokens']:,} prompt" + (f" ({', '.join(notes)})" if notes else "")


def _describe_tools(diff: list[dict[str, Any]]) -> str:
    parts = []
    for t in diff:
        if t["status"] == "changed":
            changes = "; ".join(f"{d['path']}: {json.dumps(d['old'])} -> {json.dumps(d['new'])}" for d in t["diff"][:5])
            parts.append(f"{t['name']} input changed ({changes})")
        else:
            parts.append(f"{t['name']} {t['status']}")
    return ", ".join(parts) if parts else "none on either side"


@cli.command()
@db_option
@pricing_option
@click.argument("turn_id", metavar="TURN_ID|CONVERSATION:N")
@click.option("--system", "system", metavar="TEXT|@FILE", help="A new system prompt.")
@click.option("--model", help="Another model.")
@click.option(
    "--message", "messages", metavar="N=TEXT|@FILE", multiple=True, help="New text for message N (0-based; -1 = last)."
)
@click.option(
    "--set",
    "sets",
    metavar="PATH=JSON",
    multiple=True,
    help="Set any field, e.g. max_tokens=512, thinking.budget_tokens=2048; null removes it.",
)
@click.option(
    "--header", "headers", metavar="NAME=VALUE", multiple=True, help="Change anthropic-version or anthropic-beta."
)
@click.option("--samples", type=click.IntRange(1, 10), default=1, show_default=True, help="How many to send at once.")
@click.option("--base-url", metavar="URL", help="API base URL (default $ANTHROPIC_BASE_URL, else Anthropic's).")
@click.option("--yes", "-y", is_flag=True, help="Send without asking (the estimate is still printed).")
@click.option("--force", is_flag=True, help="Send even when validation finds problems.")
@click.option("--list", "list_only", is_flag=True, help="List earlier variants of the turn and send nothing.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def rerun(
    ctx: click.Context,
    turn_id: str,
    system: str | None,
    model: str | None,
    messages: tuple[str, ...],
    sets: tuple[str, ...],
    headers: tuple[str, ...],
    samples: int,
    base_url: str | None,
    yes: bool,
    force: bool,
    list_only: bool,
    as_json: bool,
) -> None:
    """Re-send a recorded turn with edits, N times, and compare the outputs with the original.

    The recorded anthropic-version and anthropic-beta headers are sent unless --header changes
    them; the key comes from $ANTHROPIC_API_KEY. Each sample is stored beside the turn.
    """
    from . import replay

    store = open_store(ctx)
    conv, sep, n = turn_id.rpartition(":")
    conv = resolve_id(store, conv) if sep else conv
    if sep and store.conversation_exists(conv):  # CONVERSATION:N, N from 0 (negative from the end)
        turns = store.turns(conv)
        try:
            turn_id = turns[int(n)].turn_id
        except (ValueError, IndexError):
            raise UserError(f"{conv} has turns 0..{len(turns) - 1}, not {n!r}") from None
    else:
        turn_id = resolve_id(store, turn_id, "turn")
    try:
        orig = replay.original(store, turn_id)
    except replay.ReplayError as e:
        raise UserError(str(e)) from None
    if list_only:
        found = replay.variants_of(store, turn_id)
        if as_json:
            click.echo(json.dumps(found, ensure_ascii=False))
        for v in [] if as_json else found:
            names = replay.Edits.from_json(v["edits"]).names()
            samples = plural(v["samples"], "sample")
            click.echo(f"{v['variant']}  {local_time(v['created_at'])}  {samples}  {', '.join(names)}")
        if not found and not as_json:
            click.echo("no variants of this turn yet", err=True)
        return
    edits = replay.Edits(model=model, system=_text_or_file(system, "--system") if system is not None else None)
    for spec in messages:
        n, sep, text = spec.partition("=")
        try:
            edits.messages[int(n)] = _text_or_file(text, f"--message {n}")
        except ValueError:
            raise UserError(f"--message wants N=TEXT with N a message number, not {spec!r}") from None
        if not sep:
            raise UserError(f"--message wants N=TEXT, not {spec!r}")
    for spec in sets:
        path, sep, value = spec.partition("=")
        if not sep or not path:
            raise UserError(f"--set wants PATH=JSON, not {spec!r}")
        try:
            edits.set[path] = json.loads(value)
        except ValueError:
            raise UserError(f"--set {path}: {value!r} is not JSON (quote strings: {path}='\"text\"')") from None
    for spec in headers:
        name, sep, value = spec.partition("=")
        if not sep or name.lower() not in ("anthropic-version", "anthropic-beta"):
            raise UserError("--header wants anthropic-version=VALUE or anthropic-beta=VALUE")
        edits.headers[name.lower()] = value
    try:
        req = replay.apply(orig, edits)
        sent_headers = {**orig.headers, **edits.headers}
        problems = replay.validate(req, sent_headers, orig)
        for p in problems:
            click.echo(f"{'problem' if p.blocking else 'warning'}: {p.message}", err=True)
        blocking = [p for p in problems if p.blocking]
        if blocking and not force:
            raise UserError(f"{plural(len(blocking), 'problem')} above: fix the edits, or pass --force to send anyway")
        sdk = replay.client(sent_headers, base_url, max_retries=0)
        est = replay.estimate(orig, req, store.prices, samples, replay.counter(sdk))
    except replay.ReplayError as e:
        raise UserError(str(e)) from None
    where = f"turn {orig.index} of {orig.conversation_id}" + (
        " (history rebuilt from its thread)" if orig.rebuilt else ""
    )
    click.echo(f"rerun {turn_id} ({where}); edits: {', '.join(edits.names())}", err=True)
    click.echo(
        f"estimate: {est.input_tokens:,} prompt tokens ({est.source}) + ~{est.output_tokens:,} output per sample "
        f"x {samples} = {money(est.cost_usd)} (at most {money(est.max_cost_usd)} if every sample writes "
        f"max_tokens {est.max_output_tokens:,}); original cost {money(orig.cost_usd)}",
        err=True,
    )
    if not yes:
        if not sys.stdin.isatty():
            raise UserError("not sending without confirmation: add --yes")
        if not click.confirm(f"send {plural(samples, 'sample')}?", err=True):
            click.echo("nothing sent", err=True)
            ctx.exit(0)

    def progress(i: int, error: BaseException | None) -> None:
        click.echo(f"  sample {i + 1}/{samples} {'failed: ' + type(error).__name__ if error else 'done'}", err=True)

    variant = replay.send(db_path(ctx), orig, req, edits, samples=samples, base_url=base_url, on_done=progress)
    result = replay.compare(store, orig, variant)
    result["estimate"] = dataclasses.asdict(est)
    failed = [v for v in result["samples"] if v["error"]]
    if as_json:
        for v in [result["original"], *result["samples"]]:
            v.pop("response", None)
            v.pop("request", None)  # the request_diff says how it differs from the original's
            v.pop("words", None)
        click.echo(json.dumps(result, ensure_ascii=False))
    else:
        base = result["original"]
        stop = base["stop_reason"] or "—"
        click.echo(f"original: {stop} · {base['model']} · {money(base['cost_usd'])} · {_prompt_words(base)}")
        changed = [
            f"{d['section']} (-{d['removed']} +{d['added']} lines)" for d in result["request_diff"] if d["changed"]
        ]
        click.echo("sent: " + ("changed " + ", ".join(changed) if changed else "the original request, unchanged"))
        for i, v in enumerate(result["samples"], 1):
            click.echo("\n" + _describe_sample(i, v))
            if v["error"]:
                continue
            click.echo(v["diff"].rstrip("\n") or "  (text identical)")
            click.echo(f"  tools: {_describe_tools(v['tool_diff'])}")
        s = result["spread"]
        calls = ", ".join(f"{k} {n}/{s['answered']}" for k, n in s["tool_calls"].items()) or "none"
        click.echo(
            f"\n{plural(s['distinct_outputs'], 'distinct output')} in {plural(s['answered'], 'answered sample')}; "
            f"tool calls: {calls}"
        )
        click.echo(f"variant {variant} (replayer rerun {turn_id} --list)", err=True)
    if failed:
        ctx.exit(1)


def main() -> None:
    # A recorded string can hold a lone surrogate (the JSON escape \\ud800 alone is valid
    # JSON); a terminal or pipe can't take one as it is: print its escape instead of failing.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    cli(prog_name="replayer")


if __name__ == "__main__":
    main()
