"""The `replayer` command line.

Conventions (DESIGN.md): every command takes --db (else $REPLAYER_DB, else the user data
folder); `--json` prints exactly one JSON document on stdout; exit 0 on success, 1 when the work
ran but failed, 2 for bad input, always with a one-line message and never a traceback. Heavy
imports happen inside the commands that need them.

One module per family of commands (conversations, record, database, health, rerun); base.py
holds what they share and table.py prints their tables. This file is the root group.
"""

from __future__ import annotations

import sys

import click

from .base import Group, UserError
from .compare import compare
from .conversations import browse, demo, export, list_, show
from .database import db
from .fork import fork
from .health import alerts, pricing, stats
from .importing import import_
from .proxy import proxy
from .record import record
from .replay import replay
from .rerun import rerun


@click.group(cls=Group, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="replayer")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Record, browse, rerun and cost every Claude API call your agent makes.

    With no command, opens the browser (replayer browse).
    """
    ctx.ensure_object(dict)
    from ..environment import problems

    for problem in problems():  # before anything runs: a bad value would be taken as the default
        raise UserError(problem)
    if ctx.invoked_subcommand is None:
        ctx.invoke(browse)


for command in (
    browse, list_, show, export, record, replay, fork, proxy, import_, db, demo, stats, alerts, pricing, rerun, compare
):
    cli.add_command(command)


def main() -> None:
    # A recorded string can hold a lone surrogate (the JSON escape \\ud800 alone is valid
    # JSON); a terminal or pipe can't take one as it is: print its escape instead of failing.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    cli(prog_name="replayer")
