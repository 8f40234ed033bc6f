"""`replayer fork TURN [edits]`: run again the command `replayer record` recorded for TURN's run
(its argv, in its working directory; the environment is this shell's, never a recorded one) under
`replayer replay RUN --live-from TURN`, so the run's other conversations replay whole too."""

from __future__ import annotations

import os
import shlex
from typing import Any

import click

from .base import UserError, open_store
from .edits import resolve_turn
from .replay import FORK_OPTIONS, IGNORE_HELP, Settings, check_ignore, run_replay


def fork_options(command: Any) -> Any:
    for option in reversed(FORK_OPTIONS):
        command = option(command)
    return command


@click.command()
@click.argument("turn", metavar="CONVERSATION:N|TURN_ID")
@fork_options
@click.option("--ignore", "ignore", multiple=True, metavar="PATH", help=IGNORE_HELP)
@click.option("--fork-id", hidden=True, help="The new conversation's id (the browser names it to follow it).")
@click.option("--edits-json", hidden=True, help="More edits, as Edits.to_json (the browser's editor).")
@click.pass_context
def fork(ctx: click.Context, turn: str, **options: Any) -> None:
    """Fork a recorded run at a turn: run its command again, answer the turns before TURN from
    the recording, and send TURN on live with the edits (replay --live-from).

    Example: replayer fork conv_01J...:7 --system @new-prompt.txt --max-turns 20

    Only a run recorded by `replayer record` can be forked this way (its command and working
    directory were kept); for any other, run the command yourself:
    replayer replay CONVERSATION --live-from N [edits] -- COMMAND.
    """
    from ..playback.fork_point import LiveError, recorded_command

    ignore = tuple(options.pop("ignore"))
    check_ignore(ignore)
    store = open_store(ctx)
    turn_id = resolve_turn(store, turn)
    try:
        run, _, _ = recorded_command(store, turn_id)
    except LiveError as e:
        raise UserError(str(e)) from None
    # quoted as a shell takes it: `agent.py 'weather loop please'` is one argument, not three
    click.echo(f"replayer fork: running again in {run.cwd}: {shlex.join(run.argv)}", err=True)
    argv = list(run.argv)
    if os.sep in argv[0] and not os.path.isabs(argv[0]):  # ./agent.sh: found from the recorded cwd
        argv[0] = os.path.join(run.cwd, argv[0])
    extra = {**options, "live_from": turn_id, "cwd": run.cwd}
    ctx.exit(run_replay(ctx, Settings(run.run_id, tuple(argv), ignore=ignore, extra=extra)))
