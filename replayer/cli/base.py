"""What every command shares: bad input as one line (UserError), the options every command takes
(--db, --pricing, --config), opening the store, and reading ids the way they are typed."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .table import printable

if TYPE_CHECKING:
    from ..config import Settings


class UserError(click.ClickException):
    """Bad input: one line on stderr, exit 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"replayer: {self.message}", err=True)


class Group(click.Group):
    """The root group: it takes the root options (ROOT_OPTIONS) and gives them to every command
    added to it, and turns the errors of bad input into one line (UserError)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _take_root_options(self)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        _take_root_options(cmd)
        super().add_command(cmd, name)

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:  # fmt: skip
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as e:  # the root's own options (`replayer --bogus list`)
            raise one_line_usage(e, None) from None

    def invoke(self, ctx: click.Context) -> Any:
        from ..config import ConfigError
        from ..pricing import PricingError
        from ..store.schema import DBError

        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise  # the help itself, as asked for
        except click.UsageError as e:
            raise one_line_usage(e, ctx) from None
        except (DBError, PricingError, ConfigError) as e:
            raise UserError(str(e)) from None
        except sqlite3.Error as e:
            from ..store.faults import described

            # a damaged page found by a query, not when the file was opened: said as open_db says it
            raise UserError(described(e, db_path(ctx)) or f"database error: {e}") from None
        except PermissionError as e:
            # a path this user may not look at (a folder on its way it may not enter): said for
            # any file, wherever the command first touched it
            where = e.filename or "a file"
            why = "permission denied for this user; fix its permissions or choose another path"
            raise UserError(f"{where}: {why}") from None


def one_line_usage(e: click.UsageError, ctx: click.Context | None) -> UserError:
    """click's own usage errors (a value out of range, an option or command that doesn't exist, an
    argument missing) took four lines (usage, a hint, a blank, the error): one, saying what is
    wrong and where the command's options are listed."""
    where = e.ctx or ctx
    return UserError(f"{e.format_message()} (see {where.command_path if where else 'replayer'} --help)")


ROOT_OPTIONS: dict[str, tuple[str, str]] = {
    "db": ("PATH", "Database file (default: $REPLAYER_DB, else replayer.db in your data folder)."),
    "pricing": ("FILE", "A price file (TOML) that adds or overrides rows (also $REPLAYER_PRICING)."),
    "config": ("FILE", "Settings file: thresholds, budget, time zone (also $REPLAYER_CONFIG)."),
}
"""The options every command takes, before or after its name (`replayer --db X list` or
`replayer list --db X`): each value is kept on the root context, where the commands read it."""


def _root_option(name: str, command: bool) -> click.Option:
    def remember(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value:
            ctx.find_root().ensure_object(dict)[name] = value
        if name == "config" and command and not ctx.resilient_parsing:
            # every command takes --config, so every one refuses a file that is broken or not
            # there, before it does anything: not only those that read a setting today
            settings(ctx)

    metavar, help_text = ROOT_OPTIONS[name]
    return click.Option([f"--{name}"], metavar=metavar, expose_value=False, callback=remember, help=help_text)


def _take_root_options(cmd: click.Command) -> None:
    """Give `cmd` (and, a group, its commands) the root options it doesn't have, first in its
    options: Group.add_command does it for every command, so none is left out."""
    have = {p.name for p in cmd.params}
    command = not isinstance(cmd, click.Group)  # the command run: its options are read last
    cmd.params[:0] = [_root_option(name, command) for name in ROOT_OPTIONS if name not in have]
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            _take_root_options(sub)


AGENT_COMMANDS = frozenset({"record", "proxy", "replay", "fork"})
"""The commands an agent runs under or through: a broken default settings file (none named by
--config or $REPLAYER_CONFIG) must not keep the agent from running, and they use no setting it
holds, so they say what is wrong on one line and go on with the default settings."""


def settings(ctx: click.Context) -> Settings:
    """The settings (config.load: --config, else $REPLAYER_CONFIG, else the default file when
    there is one), read once a command; ConfigError when the file is broken or missing (but see
    AGENT_COMMANDS)."""
    from ..config import ConfigError, Settings, load

    obj = ctx.find_root().ensure_object(dict)
    if "settings" not in obj:
        try:
            obj["settings"] = load(obj.get("config"))
        except ConfigError as e:
            if not (e.default_file and ctx.command.name in AGENT_COMMANDS):
                raise
            click.echo(f"replayer: {e}; going on with the default settings until it is fixed", err=True)
            obj["settings"] = Settings()
    found: Settings = obj["settings"]
    return found


def interactive() -> bool:
    """Whether stdin is a terminal a question can be asked on: not for a pipe, a file, /dev/null,
    nor a closed stdin (`<&-`, a service with none: then sys.stdin is None)."""
    return _terminal(sys.stdin)


def _terminal(stream: Any) -> bool:
    try:
        return stream is not None and bool(stream.isatty())
    except ValueError:  # a stream closed by now
        return False


def stdin_closed() -> bool:
    """Whether there is no stdin to read at all (`<&-`): "-" then names nothing."""
    return sys.stdin is None or sys.stdin.closed


def terminal_session() -> bool:
    """Whether the terminal app can run here: it reads keys on stdin and draws on stderr (as
    Textual does). On a pipe, a file or a closed stdin (a script, cron, CI) it would wait forever,
    drawing escape codes into a log."""
    return interactive() and _terminal(sys.__stderr__)


def need_terminal(what: str, instead: str) -> None:
    """Bad input when this isn't a terminal session (terminal_session) for `what`, the browser."""
    if not terminal_session():
        raise UserError(f"{what} needs a terminal (stdin and stderr here are not both one): {instead}")


def db_path(ctx: click.Context) -> Path:
    from ..paths import default_db_path

    given = (ctx.find_root().obj or {}).get("db")
    return Path(given).expanduser() if given else default_db_path()


def open_store(ctx: click.Context) -> Any:
    from ..pricing import PriceTable
    from ..store.queries import Store
    from ..store.schema import open_db

    obj = ctx.find_root().obj or {}
    prices = PriceTable.load(obj.get("pricing"))
    store = Store(open_db(db_path(ctx), create=False), prices)
    _warn_unpriced_once(ctx, prices)
    return store


def usable(path: Path) -> None:
    """Bad input now, before the program runs (and its calls cost) or an import reads its input,
    when `path` can't hold the records: a file that isn't a replayer database, a folder, a place
    that can't be written. Nothing is created: a run that records nothing, or an import of input
    that holds nothing to import (or isn't what it should be), makes no database."""
    from ..store.schema import is_empty, open_db

    if path.exists() and not is_empty(path):  # (an empty file becomes the database)
        open_db(path, create=False).close()
        return
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"cannot create database {path}: {folder} is not a writable folder; choose another --db")


def folder_notice(path: Path) -> Callable[[], None]:
    """For a command that records into the database `path`: a call that says, once, on stderr,
    that the database's folder was created, when it did not exist now and does when called (made
    by this command's open_db, or by a writer process with its first record). A recorder must not
    fail for a missing folder, but a mistyped --db must not make a folder unseen either."""
    folder = path.expanduser().parent
    missing = not folder.exists()

    def say() -> None:
        nonlocal missing
        if missing and folder.is_dir():
            missing = False
            click.echo(f"replayer: created folder {folder} for the database", err=True)

    return say


NOTICES = "notices.json"
"""In the user data folder: per database, the unpriced models the user has been told about."""


def _warn_unpriced_once(ctx: click.Context, prices: Any) -> None:
    """The no-price warning comes once per database, not on every command: the models it was
    given for are remembered, and only a model not told about before warns again. A model that
    has a price now is forgotten, so it warns again if it loses it."""
    from ..paths import data_dir

    path = data_dir() / NOTICES
    key = str(db_path(ctx).resolve())

    def read() -> tuple[dict[str, Any], dict[str, Any]]:
        """The file's document and its `unpriced` map ({} for a missing or unreadable file)."""
        try:
            doc = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            doc = None
        doc = doc if isinstance(doc, dict) else {}
        unpriced = doc.get("unpriced")
        return doc, unpriced if isinstance(unpriced, dict) else {}

    models = read()[1].get(key)
    told = {m for m in models if isinstance(m, str)} if isinstance(models, list) else set()
    prices.mark_warned(told)

    def remember() -> None:
        now = {m for m in prices.warned if prices.row_for(m) is None}
        if now == told:
            return
        doc, known = read()  # again: another command may have written it meanwhile
        # the other databases' entries stay; deleted databases are forgotten
        unpriced = {k: v for k, v in known.items() if k == key or Path(k).exists()}
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


def unwritable(path: str, remedy: str, e: OSError) -> UserError:
    parent = Path(path).expanduser().parent
    if not parent.exists():
        hint = f"{parent} does not exist"
    elif not parent.is_dir():
        hint = f"{parent} is not a folder"
    else:
        hint = (e.strerror or str(e)).lower()
    return UserError(f"cannot write {path}: {hint}; {remedy}")


def open_output(path: str, remedy: str, database: str | Path | None = None) -> Any:
    """A file opened for writing text, or bad input (one line) when it can't be, or when it is
    `database` or one of its own files (opening it would empty the records being read)."""
    target = Path(path).expanduser()
    if database is not None and target.exists():
        db = Path(database).expanduser()
        for own in (db, *(db.with_name(db.name + end) for end in ("-wal", "-shm", "-journal"))):
            try:
                same = own.exists() and os.path.samefile(target, own)
            except OSError:
                same = False
            if same:
                raise UserError(f"{path} is the database being read ({own}): {remedy}")
    try:
        return open(target, "w", encoding="utf-8")
    except OSError as e:
        raise unwritable(path, remedy, e) from None


def resolve_id(store: Any, text: str, kind: str = "conversation") -> str:
    """The whole id `text` names (Store.whole_id): an id, a prefix of exactly one, or one cut as
    displayed (…). The text itself when it names none (the caller says it is unknown); bad input
    when several."""
    from ..store.queries import AmbiguousId

    try:
        return str(store.whole_id(text, kind))
    except AmbiguousId as e:
        raise UserError(str(e)) from None


def no_conversation(store: Any, given: str, where: Any) -> UserError:
    """`given` names no conversation (in the database `where`): said so, or, when it names a turn
    (a turn id from `show --json` or `rerun`, given where a conversation goes), which turn of
    which conversation it is and how to name that."""
    turns = store.turns_starting(given.removesuffix("…"), limit=2)
    if len(turns) == 1:
        _, conv, idx = turns[0]
        return UserError(f"{given!r} is a turn's id, not a conversation's: turn {idx} of {conv} "
                         f"(replayer show {conv}; that turn is {conv}:{idx})")  # fmt: skip
    return UserError(f"no conversation {given!r} in {where}: see 'replayer list'")


def one_line(text: str | None, n: int) -> str:
    """`text` on one line (whitespace folded, control characters written out: `printable`), cut
    to `n` characters."""
    text = printable(" ".join((text or "").split()))
    return text if len(text) <= n else text[: n - 1] + "…"


def json_document(doc: Any) -> str:
    """The one JSON document a `--json` prints: a lone surrogate in a recorded string (see
    `shown` in __init__.py) as its JSON escape, as export writes it, the same JSON."""
    from ..store.codec import dumps

    return dumps(doc)
