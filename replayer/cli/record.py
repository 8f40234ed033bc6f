"""`replayer record`: run a program with recording switched on from outside (the _boot
sitecustomize), and say where its calls went."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import click

from .base import (
    UserError,
    db_option,
    db_path,
)


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
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

    from ..autorecord import summarize
    from ..paths import REPORT_ENV

    boot = str(Path(__file__).parent.parent / "_boot")  # holds the sitecustomize that starts recording
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
