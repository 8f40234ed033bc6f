"""`replayer db`: where the database is, migrating it, backing it up."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import click

from ..fmt import plural
from .base import UserError, db_path, folder_notice, unwritable


@click.group()
def db() -> None:
    """Where the database is, migrating it, backing it up."""


@db.command("path")
@click.pass_context
def db_path_cmd(ctx: click.Context) -> None:
    """Print the database path in use."""
    click.echo(str(db_path(ctx)))


@db.command("migrate")
@click.pass_context
def db_migrate(ctx: click.Context) -> None:
    """Create the database or bring its schema up to date."""
    from ..store.schema import apply_migrations, is_empty, migrations, open_db

    path = db_path(ctx)
    # a 0-byte file is no database, but one to be made (as `record` makes it): said, not done silently
    empty = path.is_file() and is_empty(path)
    made_folder = folder_notice(path)
    database = open_db(path, migrate=False)
    made_folder()
    pending = [m.name for m in migrations.pending(database)]
    if pending:
        apply_migrations(database)
        made = f"made {path} (an empty file, 0 bytes) a replayer database: " if empty else ""
        click.echo(f"{made}applied {plural(len(pending), 'migration')}: {', '.join(pending)}", err=True)
    else:
        click.echo("up to date", err=True)


@db.command("backup")
@click.argument("dest", type=click.Path(dir_okay=False))
@click.pass_context
def db_backup(ctx: click.Context, dest: str) -> None:
    """Copy the database, consistently, while agents may be writing to it."""
    from ..store.schema import open_db

    database = open_db(db_path(ctx), create=False)
    if Path(dest).exists():
        raise UserError(f"{dest} exists: choose a new file")
    try:
        # created empty with owner-only permissions first, as the database itself is
        os.close(os.open(Path(dest).expanduser(), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as e:
        raise unwritable(dest, "choose another backup path", e) from None
    target = sqlite3.connect(Path(dest).expanduser())
    try:
        database.conn.backup(target)
    except sqlite3.Error as e:  # the disk filled up, say: leave no half-written copy
        target.close()
        Path(dest).expanduser().unlink(missing_ok=True)
        raise UserError(f"cannot write {dest}: {e}; choose another backup path") from None
    try:
        # the copy is page for page what could be read: a damaged database gives a damaged copy,
        # which must not pass for a good backup
        found = str(target.execute("PRAGMA quick_check(1)").fetchone()[0])
    except sqlite3.DatabaseError as e:
        found = str(e)
    target.close()
    if found != "ok":
        # SQLite's first finding, on one line ("*** in database main ***" is no news here)
        first = " ".join(found.replace("*** in database main ***", "").split())
        raise UserError(
            f"backed up to {dest}, but the copy is damaged ({first}): {db_path(ctx)} is corrupt; "
            "keep both files, and record into a new --db"
        )
    click.echo(f"backed up to {dest}", err=True)
