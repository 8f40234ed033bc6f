"""`replayer record`: run any program with recording switched on from outside (a recording proxy
on a free loopback port that the program reaches through ANTHROPIC_BASE_URL; in Python programs
also the _boot sitecustomize's middleware), and say where its calls went.

Each call is recorded once: under `record` the middleware marks what it records
(wire.RECORDED_HEADER) and the proxy forwards those without recording them. Every call of one run
carries the run's id as the tag {"run": RUN_ID}, on its conversation or, when an earlier run
started that conversation, on its turn (`replayer list --run RUN_ID` finds both).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from ..otlp import CONTENT, names
from ..upstream import DEFAULT_UPSTREAM, PROXIED_ENV, UPSTREAM_ENV, shown, upstream_problem, with_proxy
from .base import UserError, db_path, folder_notice, usable
from .otlp import otlp_options, otlp_setting


def upstream_for(env: dict[str, str]) -> str:
    """Where the child's calls go on from the proxy: the base URL its environment names, else
    $REPLAYER_UPSTREAM, else the API. Refused (one line) when it is not an http(s) URL."""
    for name in ("ANTHROPIC_BASE_URL", UPSTREAM_ENV):
        url = (env.get(name) or "").strip()
        if url:
            problem = upstream_problem(url)
            if problem:
                raise UserError(f"{name}={shown(url)!r} {problem}: set it to e.g. {DEFAULT_UPSTREAM}, or unset it")
            return url.rstrip("/")
    return DEFAULT_UPSTREAM


class _Assigned:
    """A record the proxy made, put in the conversation and under the user `--conversation` /
    `--user` name (on the writer's side, when its `Captured` is made)."""

    __slots__ = ("item", "conversation_id", "user_id")

    def __init__(self, item: Any, conversation_id: str | None, user_id: str | None):
        self.item, self.conversation_id, self.user_id = item, conversation_id, user_id

    def captured(self) -> Any:
        from ..captured import Captured, Context

        cap = self.item if isinstance(self.item, Captured) else self.item.captured()
        ctx = cap.ctx or Context()
        cap.ctx = Context(
            self.conversation_id or ctx.conversation_id, self.user_id or ctx.user_id, ctx.tags, ctx.trace_id,
            ctx.parent,
        )
        return cap


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--conversation", "conversation_id", metavar="ID", help="Put every call in this conversation.")
@click.option("--user", "user_id", metavar="ID", help="Attribute every call to this user.")
@otlp_options
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
@click.pass_context
def record(ctx: click.Context, conversation_id: str | None, user_id: str | None, otlp: bool, otlp_content: bool,
           command: tuple[str, ...]) -> None:
    """Run a program and record its Claude API calls, with no code change, in any language.

    Example: replayer record -- python agent.py --task fix-bug   (or: -- node agent.mjs, -- claude -p "...")

    The program reaches the API through a recording proxy (ANTHROPIC_BASE_URL is set to it; the
    proxy goes on to the URL the variable held, else $REPLAYER_UPSTREAM, else the API). Ends with
    one line on stderr: how many calls went to which database under which run id (list them
    with: replayer list --run ID), or why none did. The exit code is the program's.

    --otlp also sends each call as an OpenTelemetry span to $OTEL_EXPORTER_OTLP_ENDPOINT.
    """
    import tempfile

    from ..autorecord import RUN_ENV, RUN_TAG, summarize
    from ..paths import DB_ENV, REPORT_ENV
    from ..store.codec import new_id
    from ..store.runs import Run

    boot = str(Path(__file__).parent.parent / "_boot")  # holds the sitecustomize that starts recording
    db = str(db_path(ctx).resolve())
    env = dict(os.environ)
    upstream = upstream_for(env)
    check_command(command)
    usable(Path(db))
    made_folder = folder_notice(Path(db))
    run = new_id("run_")
    started = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    env[DB_ENV] = db
    # inside another `record` (an eval script that records each case): this run's proxy forwards
    # to that one's, which must not record the calls again
    nested = bool(env.get(RUN_ENV))
    env[RUN_ENV] = run
    env["PYTHONPATH"] = os.pathsep.join(p for p in (boot, env.get("PYTHONPATH")) if p)
    if conversation_id:
        env["REPLAYER_CONVERSATION"] = conversation_id
    if user_id:
        env["REPLAYER_USER"] = user_id
    export = otlp_setting(otlp, otlp_content)
    if export:  # the child's own recorder exports too (autorecord reads these)
        env[names.ENV_OTLP] = "1"
        if export == CONTENT:
            env[names.ENV_OTLP_CONTENT] = "1"

    from ..proxy import start_background
    from ..store.process import make_writer

    writer = make_writer(db, otlp=export)  # no database is made until a record comes
    put = writer.put
    if conversation_id or user_id:
        def put(item: Any) -> None:
            writer.put(_Assigned(item, conversation_id, user_id))

    try:
        proxy = start_background(upstream, put, tags={RUN_TAG: run}, mark=nested)
    except OSError as e:
        raise UserError(f"cannot start the recording proxy on 127.0.0.1: {e.strerror or e}") from None
    env["ANTHROPIC_BASE_URL"] = proxy.url
    # the calls' server (OTLP's server.*) is where the proxy goes on to, not the proxy
    env[PROXIED_ENV], server = with_proxy(env.get(PROXIED_ENV), proxy.url, upstream)
    proxy.proxy.server = server
    reports = tempfile.mkdtemp(prefix="replayer-record-")  # each Python process says what it stored
    env[REPORT_ENV] = reports
    try:
        with ChildSignals() as signals:  # until the summary line: see ChildSignals
            code = signals.run(command, env)
            proxied = _finish(proxy, writer, db, run)
            _keep_run(db, Run(run, list(command), os.getcwd(), started, code))
            made_folder()
            click.echo(summarize(reports, db, list(command), run=run, proxied=proxied), err=True)
    finally:
        shutil.rmtree(reports, ignore_errors=True)
        proxy.stop(timeout=30)  # a second time is a no-op; here when the program could not start
    ctx.exit(code)


def check_command(command: tuple[str, ...]) -> None:
    if shutil.which(command[0]) is None and not _maybe_there(command[0]):
        raise UserError(f"command not found: {command[0]}")


def _maybe_there(path: str) -> bool:
    """Whether `path` exists, as far as this user can look (a folder on its way it may not enter:
    then running it says what is wrong, not a traceback here)."""
    try:
        return Path(path).exists()
    except OSError:
        return True


class ChildSignals:
    """Signals while a program runs under this command (`record`, `replay`).

    Ctrl-C in a terminal reaches the whole foreground group: the program gets it and ends as it
    chooses; here it must interrupt neither the wait nor what follows until the summary line (the
    proxy's open streams, the writer's last records). A KeyboardInterrupt raised inside
    Popen.wait() after waitpid() reaped the program loses its exit status (the next wait reads
    0), so SIGINT runs a handler that does nothing; exec resets it to the default in the program.
    SIGTERM to this command goes on to the program (one that comes before the program exists,
    once it does). A signal this command was started ignoring (a background job of a script)
    stays ignored, for the program too."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.early: list[int] = []
        self.before: dict[int, Any] = {}

    def _forward(self, signum: int, frame: Any) -> None:
        if self.proc is not None:
            self.proc.send_signal(signum)
        else:
            self.early.append(signum)

    def __enter__(self) -> ChildSignals:
        for signum, handler in ((signal.SIGINT, lambda signum, frame: None), (signal.SIGTERM, self._forward)):
            if signal.getsignal(signum) != signal.SIG_IGN:
                self.before[signum] = signal.signal(signum, handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.before.items():
            signal.signal(signum, handler)

    def run(self, command: tuple[str, ...], env: dict[str, str], cwd: str | None = None) -> int:
        """Run the program to its end; its exit code (killed by a signal: 128 + the signal, as a
        shell reports it)."""
        try:
            self.proc = subprocess.Popen(list(command), env=env, cwd=cwd)
        except OSError as e:
            raise UserError(f"cannot run {command[0]}: {e.strerror}") from None
        for pending in self.early:
            self.proc.send_signal(pending)
        code = self.proc.wait()
        return code if code >= 0 else 128 - code


def run_child(command: tuple[str, ...], env: dict[str, str], cwd: str | None = None) -> int:
    """Run the program (in `cwd`) to its end under `ChildSignals`; its exit code."""
    with ChildSignals() as signals:
        return signals.run(command, env, cwd)


def _keep_run(db: str, run: Any) -> None:
    """The runs row (argv, cwd; never the environment), so `replayer fork` can run it again;
    only for a run that recorded something: no database is made for a run that recorded nothing."""
    import sqlite3

    from ..store.queries import Store
    from ..store.schema import DBError, open_db

    if not Path(db).exists():
        return
    try:
        store = Store(open_db(Path(db), create=False))
        if store.run_conversations(run.run_id):
            store.add_run(run)
    except (DBError, sqlite3.Error):
        return  # the summary line says what became of the records


def _finish(proxy: Any, writer: Any, db: str, run: str) -> dict[str, Any]:
    """Stop the proxy (its open streams finish first) and write everything it recorded; what it
    recorded, for the summary: calls, attempts, the run's conversations, and the records not yet
    written (the writer keeps trying), saved beside the database, and lost."""
    proxy.stop(timeout=30)
    unwritten = 0 if writer.close(30) else writer.unwritten
    writer.end_export()  # what did not reach the OTLP collector is told before the summary
    conversations: list[str] = []
    if writer.attempts:
        from ..store.queries import Store
        from ..store.schema import open_db

        conversations = Store(open_db(Path(db), create=False)).run_conversations(run)
    return {
        "calls": writer.calls,
        "attempts": writer.attempts,
        "conversations": conversations,
        "unwritten": unwritten,
        "spilled": writer.spilled,
        "lost": writer.dropped + writer.failed,
        "passed": proxy.proxy.passed_recorded,
    }
