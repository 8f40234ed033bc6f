"""`replayer replay SOURCE -- COMMAND`: run a program with its Messages calls answered from a
recording (playback/): a replay server on a free loopback port that the program reaches through
ANTHROPIC_BASE_URL, and, in Python programs, through the boot's redirecting middleware (so a
client given a base URL of its own is answered too).

The options are a list (`REPLAY_OPTIONS`) and the settings one object (`Settings`), so a live
part (`--live-from`, the edits) adds options and a player (`make_player`) without touching the
rest. Exit code: the program's; but 1 when strict mismatches were refused and the program still
exited 0 (a replay that could not answer the agent as recorded has failed, as a test would).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from ..fmt import plural
from .base import UserError, db_path, open_store
from .edits import edit_options
from .record import check_command, run_child, upstream_for

IGNORE_HELP = (
    "Leave this field out when comparing requests (repeatable). Keys separated by dots; * is every "
    "key or list item; a number is one list item: metadata.user_id, system.0.text, "
    "messages.*.content.*.cache_control."
)


def _speed(_ctx: click.Context, _param: click.Parameter, value: float | None) -> float | None:
    if value is not None and value <= 0:
        raise UserError(f"--speed {value:g} is not a speed: give a number above 0 (1 = as recorded, 2 = twice as fast)")
    return value


def _url(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None and (urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc):
        raise click.BadParameter(f"{value!r} is not an http(s) URL: give e.g. https://api.anthropic.com")
    return value.rstrip("/") if value else None


REPLAY_OPTIONS: list[Callable[[Any], Any]] = [
    click.option("--strict/--loose", "strict", default=True,
                 help="A request that matches no recording: refused with a 400 (strict, the default), or answered "
                      "with the recorded answer at the same place in its conversation and reported as drift (loose)."),
    click.option("--ignore", "ignore", multiple=True, metavar="PATH", help=IGNORE_HELP),
    click.option("--with-errors", is_flag=True,
                 help="Replay recorded failed attempts (429, 529, 5xx, dropped connections) before the answer "
                      "that followed, to exercise the agent's retry handling (default: skipped)."),
    click.option("--speed", type=float, metavar="X", callback=_speed,
                 help="Keep the recorded timing, X times faster (1 = as recorded). Default: as fast as possible."),
]
"""The command's options, in --help order; a live part appends its own."""

FORK_OPTIONS: list[Callable[[Any], Any]] = [
    edit_options(tool_results=True),
    click.option("--budget", type=click.FloatRange(min=0, min_open=True), metavar="USD",
                 help="Stop the live part (an API error to the agent) once its calls have cost this much."),
    click.option("--max-turns", type=click.IntRange(min=1), metavar="K",
                 help="Stop the live part (an API error to the agent) after K live turns (a retry is its turn's)."),
    click.option("--upstream", metavar="URL", callback=_url,
                 help="Where live calls go (default $ANTHROPIC_BASE_URL, else $REPLAYER_UPSTREAM, else the API)."),
    click.option("--yes", "-y", is_flag=True, help="Go live without asking (the estimate is still printed)."),
]
"""The options of a live part, `replayer fork`'s too."""

REPLAY_OPTIONS += [
    click.option("--live-from", "live_from", metavar="N|TURN_ID",
                 help="Fork: answer turns before N (a turn index of the source conversation, CONVERSATION:N, or a "
                      "turn id) from the recording, and send turn N on upstream with the edits, recorded as a new "
                      "conversation linked to the source."),
    *FORK_OPTIONS,
]
LIVE_OPTIONS = {"system": "--system", "model": "--model", "messages": "--message", "sets": "--set",
                "tool_results": "--tool-result", "budget": "--budget", "max_turns": "--max-turns",
                "upstream": "--upstream", "yes": "--yes"}
"""What only a live part takes (parameter -> flag): refused without --live-from."""


def replay_options(command: Any) -> Any:
    for option in reversed(REPLAY_OPTIONS):
        command = option(command)
    return command


@dataclass
class Settings:
    source: str
    command: tuple[str, ...]
    strict: bool = True
    ignore: tuple[str, ...] = ()
    with_errors: bool = False
    speed: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Options a live part added (`--live-from` ...), by parameter name."""


@dataclass
class Playing:
    """What answers the program: the player that decides each call; `put`, the writer's, for
    what goes live (None when nothing does); `finish`, run once the server has stopped (closing
    that writer), returning lines to print before the last one."""

    player: Any
    put: Any = None
    finish: Callable[[], list[str]] | None = None
    live_sent: Callable[[], tuple[int, int]] | None = None
    """The calls sent live and their attempts (a call's retries are attempts, not calls); None
    when nothing goes live."""


def make_player(ctx: click.Context, settings: Settings, recording: Any, matcher: Any) -> Playing:
    """Offline: the recording alone answers; with --live-from, a fork (cli/live.py)."""
    from ..playback.server import RecordingPlayer

    extra = settings.extra
    if extra.get("live_from") is None:
        given = [name for name in LIVE_OPTIONS if extra.get(name)]
        if given:
            raise UserError(f"{LIVE_OPTIONS[given[0]]} is for a fork: add --live-from N (the turn to go live from)")
        return Playing(RecordingPlayer(matcher))
    from .live import fork_player

    return fork_player(ctx, settings, recording, matcher)


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("source")
@replay_options
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
@click.pass_context
def replay(ctx: click.Context, source: str, command: tuple[str, ...], **options: Any) -> None:
    """Run a program with its Claude API calls answered from a recording, offline.

    Example: replayer replay run_01J... -- python agent.py "refund order 1234"

    SOURCE: a conversation id, a run id (every conversation of one `replayer record` run), or a
    cassette file. Each request is answered by the earliest unused recorded attempt whose request
    is JSON-equal to it (after --ignore), streams event for event. Put -- before the command.
    Ends with one line on stderr: calls answered, mismatches, drift. Exit code: the program's, or
    1 when a strict mismatch was refused and the program still exited 0.
    """
    known = {"strict", "ignore", "with_errors", "speed"}
    settings = Settings(source, command, options["strict"], tuple(options["ignore"]), options["with_errors"],
                        options["speed"], {k: v for k, v in options.items() if k not in known})
    ctx.exit(run_replay(ctx, settings))


def check_ignore(paths: tuple[str, ...]) -> None:
    """Each --ignore PATH is a field path; else one line saying what to give."""
    from ..playback.matching import parse_path

    for path in paths:
        try:
            parse_path(path)
        except ValueError as e:
            raise UserError(f"--ignore {e}") from None


def run_replay(ctx: click.Context, settings: Settings) -> int:
    from ..autorecord import REPLAY_ENV
    from ..playback import OFFLINE_KEY
    from ..playback.matching import Matcher
    from ..playback.server import ReplayServer
    from ..playback.source import load
    from ..proxy.run import run_in_background

    check_ignore(settings.ignore)
    check_command(settings.command)
    env = dict(os.environ)
    upstream = settings.extra.get("upstream") or upstream_for(env)
    recording = load(settings.source, lambda: open_store(ctx), db_path(ctx))
    matcher = Matcher(recording.lines, ignore=settings.ignore, loose=not settings.strict,
                      with_errors=settings.with_errors)
    playing = make_player(ctx, settings, recording, matcher)
    player = playing.player

    def refused(message: str) -> None:
        click.echo(message, err=True)

    server = ReplayServer(player, upstream, playing.put, speed=settings.speed, on_refusal=refused)
    try:
        running = run_in_background(server)
    except OSError as e:
        raise UserError(f"cannot start the replay server on 127.0.0.1: {e.strerror or e}") from None
    boot = str(Path(__file__).parent.parent / "_boot")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (boot, env.get("PYTHONPATH")) if p)
    env["ANTHROPIC_BASE_URL"] = env[REPLAY_ENV] = running.url
    for name in ("REPLAYER_CONVERSATION", "REPLAYER_USER", "REPLAYER_RUN", "REPLAYER_REPORT_DIR"):
        env.pop(name, None)  # a replay inside a `record` run records nothing of its own
    if not player.live and not (env.get("ANTHROPIC_API_KEY") or env.get("ANTHROPIC_AUTH_TOKEN")):
        # nothing leaves this machine, but an SDK refuses to start without a key
        env["ANTHROPIC_API_KEY"] = OFFLINE_KEY
    try:
        code = run_child(settings.command, env, cwd=settings.extra.get("cwd"))
    finally:
        running.stop(timeout=30)
        notes = playing.finish() if playing.finish is not None else []
    for note in notes:
        click.echo(note, err=True)
    for drift in matcher.drift():
        click.echo(f"replayer replay: drift: conversation {drift.conversation_id} turn {drift.index} was answered "
                   f"though the request differs: {drift.difference}" + (f" ({drift.kind})" if drift.kind else ""),
                   err=True)
    mismatches = len(matcher.refusals)
    failed = bool(mismatches) and code == 0 and settings.strict
    live = playing.live_sent() if playing.live_sent is not None else (0, 0)
    click.echo(summary(matcher, recording.what, live, code, failed, player.replaced), err=True)
    sys.stderr.flush()
    return 1 if failed else code


def summary(matcher: Any, what: str, live: tuple[int, int], code: int, failed: bool,
            replaced: Callable[[dict[str, Any]], bool] | None = None) -> str:
    """The last line: `replayer replay: answered 20 calls (12 streams) from run R (1 conversation);
    no mismatch; no drift; the command exited 0`. Calls are counted as `record` counts them (a
    call's retries are its attempts), attempts said beside them where they differ; `live`: the
    calls sent live and their attempts (`2 calls (3 attempts) sent live`)."""
    calls = len(matcher.calls)
    said = [plural(matcher.answered, "attempt")] if matcher.answered != calls else []
    if matcher.streams:
        said.append(plural(matcher.streams, "stream"))
    if matcher.synthesized:
        said[-1] += f", {matcher.synthesized} from the recorded message (no events kept)"
    parts = [f"answered {plural(calls, 'call')}" + (f" ({', '.join(said)})" if said else "") + f" from {what}"]
    live_calls, live_attempts = live
    if live_attempts:
        also = f" ({plural(live_attempts, 'attempt')})" if live_attempts != live_calls else ""
        parts.append(f"{plural(live_calls, 'call')}{also} sent live")
    mismatches = len(matcher.refusals)
    parts.append(f"{plural(mismatches, 'mismatch', 'mismatches')} refused" if mismatches else "no mismatch")
    drift = len(matcher.drift())
    parts.append(f"{plural(drift, 'call')} drifted (loose)" if drift else "no drift")
    # a fork's live turns took the place of the recorded ones: not counted here
    left, attempts, retries = matcher.not_asked(replaced)
    if left:
        parts.append(f"{plural(left, 'recorded call')}"
                     + (f" ({plural(attempts, 'attempt')})" if attempts != left else "") + " not asked for")
    if retries:
        parts.append(f"{plural(retries, 'recorded retry', 'recorded retries')} not asked for")
    end = f"the command exited {code}"
    if failed:
        end += "; exit 1: a strict mismatch fails the replay"
    return "replayer replay: " + "; ".join([*parts, end])
