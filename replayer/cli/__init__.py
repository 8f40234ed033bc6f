"""The `replayer` command line.

Conventions (DESIGN.md): every command takes --db (else $REPLAYER_DB, else the user data
folder); `--json` prints exactly one JSON document on stdout; exit 0 on success, 1 when the work
ran but failed, 2 for bad input, always with a one-line message and never a traceback. Heavy
imports happen inside the commands that need them.

One module per family of commands (conversations, record, database, health, rerun); base.py
holds what they share and table.py prints their tables. This file is the root group.
"""

from __future__ import annotations

import codecs
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


SHOWN = "replayer-shown"
"""The error handler of the CLI's output streams (`shown`)."""


def main() -> None:
    # the browser (Textual writes to sys.__stderr__) and every table and message print through
    # these: what the output can't take is written as `shown` says, never a failure
    codecs.register_error(SHOWN, shown)
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors=SHOWN)
    cli(prog_name="replayer")


def shown(error: UnicodeError) -> tuple[bytes, int]:
    """How a character an output can't take is written. A lone surrogate is what a byte that
    was no UTF-8 in a recorded body became (a client that sent `\\xff`), or a lone `\\ud800`
    escape in its JSON: no character, written as U+FFFD (what a UTF-8 decoder shows for such a
    byte; "?" where even that can't go). The stored text keeps it, and `--json` and `export` write
    it as its JSON escape. Anything else (a terminal that isn't UTF-8) as its backslash escape.
    (Bytes: the UTF-8 encoder takes no text but ASCII back from a handler.)"""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    try:
        mark = "\ufffd".encode(error.encoding)
    except (UnicodeError, LookupError):
        mark = b"?"
    out = []
    for ch in error.object[error.start : error.end]:
        code = ord(ch)
        if 0xD800 <= code <= 0xDFFF:
            out.append(mark)
        else:
            out.append(ch.encode("ascii", "backslashreplace"))
    return b"".join(out), error.end
