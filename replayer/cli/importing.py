"""`replayer import`: records kept elsewhere into the database (replayer's own export, OTLP spans,
Claude Code's transcripts).

About 600 lines: its commands share helpers (a path or stdin as input, the batches that store what
was read, the reports of lines not stored or malformed), so they stay together; each command alone
is under 100 lines."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..fmt import plural
from .base import UserError, db_path, folder_notice, json_document, settings, stdin_closed, usable

OTLP_SOURCE = "otlp"
"""imported_from of turns rebuilt from other instrumentations' spans (otlp/reading.py's SOURCE)."""
MAX_REPORTED = 20
"""Malformed lines reported one by one; past that, only their count."""


class _ImportGroup(click.Group):
    """The `import` group: a file given where its command goes (`replayer import run.jsonl`) is
    told which command imports it, by what its first lines are, in one line (exit 2)."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        given = args[0] if args else None
        if given is not None and self.get_command(ctx, given) is None and not given.startswith("-"):
            raise UserError(_which_command(given, sorted(self.commands)))
        return super().resolve_command(ctx, args)


def _which_command(given: str, commands: list[str]) -> str:
    from ..imports.export import sniff

    p = Path(given).expanduser()
    names = ", ".join(commands)
    if p.is_dir():
        return f"{given} is a folder: `replayer import claude-code {given}` imports the Claude Code transcripts " \
            "under it"  # fmt: skip
    if not p.is_file():
        return f"no import command {given!r}: give one of {names}, then the file (`replayer import export run.jsonl`)"
    found = sniff(str(p))
    if found is None:
        return (
            f"no import command {given!r}, and that file is none of what replayer imports: give one of {names}, "
            "then the file"
        )
    what = {"export": "a replayer export", "otlp": "OTLP JSON (spans)", "claude-code": "a Claude Code transcript"}
    return f"{given} is {what[found]}: import it with `replayer import {found} {given}`"


@click.group("import", cls=_ImportGroup)
def import_() -> None:
    """Bring records into the database: replayer's own export, OpenTelemetry spans, Claude Code's
    transcripts."""


@import_.command("claude-code", short_help="Claude Code's session transcripts (default ~/.claude/projects).")
@click.argument("paths", nargs=-1, metavar="[PATH]...", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout: what was imported.")
@click.pass_context
def claude_code(ctx: click.Context, paths: tuple[Path, ...], as_json: bool) -> None:
    """Claude Code's own session transcripts (default: every *.jsonl under ~/.claude/projects,
    or under $CLAUDE_CONFIG_DIR/projects when that is set, as Claude Code keeps them).

    Each session becomes a conversation tagged claude_code_session, each subagent a conversation
    linked to it. Turns are marked reconstructed (a transcript keeps no system prompt or tools)
    and can't be rerun. Importing again adds only what is new; calls recorded on the wire too
    (proxy, middleware) are matched by message id and kept once, as recorded.
    """
    from ..imports import claude_code as cc
    from ..store.imported import Counts, ImportWriter
    from ..store.schema import open_db

    roots = [p.expanduser() for p in paths] or [cc.default_root()]
    for p in roots:
        if not p.exists():
            hint = "check the path" if paths else "Claude Code has saved no session here: give a PATH"
            raise UserError(f"no such file or folder: {p}; {hint}")
        if p.is_file():
            try:
                ok = cc.looks_like_transcript(p)
            except OSError as e:
                raise UserError(f"cannot read {p}: {e.strerror or e}") from None
            if not ok:
                raise UserError(
                    f"{p} is not a Claude Code transcript (none of its lines is Claude Code's):"
                    " give a session's .jsonl file or a folder of them"
                )
    files = cc.transcript_files(roots)
    path = db_path(ctx)
    usable(path)
    made_folder = folder_notice(path)
    writer: ImportWriter | None = None  # made with the first turns to write: none, no database
    counts = Counts()
    malformed: list[Any] = []
    unstored: list[Any] = []
    skipped: list[str] = []
    unreadable: list[str] = []
    # on a terminal only: on a log file or a pipe the bar's label is a stray line before the
    # summary (as for import otlp and import export, _import_batches)
    bar = sys.stderr.isatty()
    progress = (
        click.progressbar(files, label="importing", file=sys.stderr, show_pos=True)
        if bar
        else contextlib.nullcontext(files)
    )
    with progress as items:
        for f in items:
            try:
                t = cc.read(f)
            except OSError as e:
                unreadable.append(f"cannot read {f}: {e.strerror or e}")
                continue
            if not t.is_transcript:
                skipped.append(str(f))
                continue
            malformed += t.malformed
            counts.unfinished += t.unfinished
            if not t.chains:
                continue
            writer = writer or ImportWriter(open_db(path))
            for turn, why in writer.write(t.chains, counts):  # the rest is written: said at the end, exit 1
                unstored.append(cc.Malformed(f, turn.line, why))

    made_folder()
    for m in malformed[:MAX_REPORTED]:
        click.echo(f"replayer: {m} (line skipped)", err=True)
    if len(malformed) > MAX_REPORTED:
        click.echo(f"replayer: … and {plural(len(malformed) - MAX_REPORTED, 'more malformed line')}", err=True)
    for line in unreadable:
        click.echo(f"replayer: {line}", err=True)
    if as_json:
        doc = {
            "files": len(files) - len(skipped) - len(unreadable),
            "turns": counts.new,
            "already_imported": counts.known,
            "copied_from_other_sessions": counts.copies,
            "matched_recorded": counts.merged,
            "unfinished": counts.unfinished,
            "conversations": sorted(counts.conversations),
            "subagents_linked": sorted(counts.subagents),
            "malformed": [{"file": str(m.path), "line": m.line, "what": m.what} for m in malformed],
            "not_imported": [{"file": str(m.path), "line": m.line, "what": m.what} for m in unstored],
            "not_transcripts": skipped,
            "unreadable": len(unreadable),
        }
        click.echo(json_document(doc))
    summary = _summary(counts, len(files) - len(skipped) - len(unreadable), len(malformed), len(skipped))
    click.echo(_with_unstored(summary, unstored, "turn"), err=True)
    _fail_unstored(ctx, unstored, "turn", "the transcripts")


@import_.command("otlp", short_help="OTLP JSON (a Collector's file exporter) back into the database.")
@click.argument("path", metavar="PATH|-")
@click.option("--since", metavar="DATE",
              help="Only spans started since DATE (YYYY-MM-DD or YYYY-MM-DDTHH:MM, in [stats] tz, else this "
                   "machine's zone; or add one: +01:00, Z).")
@click.option("--user", metavar="ID",
              help="Only spans of this user (user.id): the id, as list shows it cut, or any prefix naming one user "
                   "of the spans or the database.")
@click.option("--conversation", metavar="ID", help="Only spans of this conversation (gen_ai.conversation.id).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout: what was imported.")
@click.pass_context
def otlp(
    ctx: click.Context, path: str, since: str | None, user: str | None, conversation: str | None, as_json: bool
) -> None:
    """OpenTelemetry spans as a Collector's file exporter writes them (OTLP JSON, one export
    request per line, gzip or not; PATH - reads stdin): every GenAI chat span that carries
    content becomes a recorded attempt.

    replayer's own spans (exported with --otlp-content) come back exactly: the same ids, and
    `replayer export` writes the same lines the exporting database wrote. Other
    instrumentations' spans (the GenAI convention's content attributes, OpenLLMetry's) are rebuilt
    as far as their attributes go and marked reconstructed (not rerunnable). Spans without
    content are counted and skipped. Importing again adds only what is new.
    """
    from ..filters import FilterError, time_bound
    from ..otlp import reading

    try:
        bound = time_bound(since, "--since", tz=settings(ctx).shown_tz()) if since else None
    except FilterError as e:
        raise UserError(str(e)) from None

    def refused(e: Exception) -> str | None:
        if isinstance(e, reading.ReplayerExport):
            again = path if path != "-" else "FILE"
            return (
                f"{name(path)} is a replayer export (`replayer export`), not OTLP: import it with "
                f"`replayer import export {again}`, or replay it as it is with `replayer replay {again} -- COMMAND`"
            )
        if isinstance(e, reading.NotOtlp):
            return (
                f"{name(path)} is not OTLP JSON: {e}; "
                "give the JSON lines a Collector's file exporter writes with format: json"
            )
        return None

    path = _input_path(path, "a file the Collector's file exporter wrote")
    with contextlib.ExitStack() as stack:
        source = path  # what is read: stdin, kept in a file when --user must read it twice
        if user:
            user, source = _user_named(ctx, stack, user, path)
        counts, tally, unstored = _import_batches(
            ctx, path, "replayer.otlp.batches:read", [source, bound, user, conversation], refused
        )
    malformed = _report_malformed(path, tally.malformed)
    if as_json:
        doc = {
            "lines": tally.lines,
            "attempts": counts.exact,
            "reconstructed": counts.reconstructed,
            "already_imported": counts.known,
            "matched_recorded": counts.merged,
            "matched_imported": counts.twinned,
            "conversations": sorted(counts.conversations),
            "continued_conversations": sorted(counts.continued_conversations),
            "skipped": tally.skipped,
            "filtered_out": tally.filtered,
            "other_spans": tally.others,
            "cut_spans": tally.cut,
            "malformed": [{"line": m.line, "what": m.what} for m in malformed],
            "not_imported": [{"line": m.line, "what": m.what} for m in unstored],
        }
        click.echo(json_document(doc))
    click.echo(_with_unstored(_otlp_summary(counts, tally, malformed), unstored, "chat span"), err=True)
    _fail_unstored(ctx, unstored, "chat span", name(path), lines=True)


@import_.command("export", short_help="replayer's own export (`replayer export`) back into a database.")
@click.argument("path", metavar="PATH|-")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout: what was imported.")
@click.pass_context
def export(ctx: click.Context, path: str, as_json: bool) -> None:
    """The JSON lines `replayer export` writes (one attempt a line, gzip or not; PATH - reads
    stdin), each stored as the attempt it was: the same conversation and turn ids, indexes,
    users, times, retries, request and response, so `replayer export` of this database writes
    the same lines again. A bug report's run.jsonl, a CI artifact or a colleague's run can then
    be listed, shown, browsed, rerun and counted in stats. Importing again adds only what is new.
    """
    from ..imports.export import CLAUDE_CODE, OTLP, NotExport

    def refused(e: Exception) -> str | None:
        if not isinstance(e, NotExport):
            return None
        again = path if path != "-" else "FILE"
        if e.kind == OTLP:
            return (
                f"{name(path)} is OTLP JSON (spans), not a replayer export: import it with "
                f"`replayer import otlp {again}`"
            )
        if e.kind == CLAUDE_CODE:
            return (
                f"{name(path)} is a Claude Code transcript, not a replayer export: import it with "
                f"`replayer import claude-code {again}`"
            )
        return f"{name(path)} is not a replayer export: {e}; give the JSON lines `replayer export` writes"

    path = _input_path(path, "a file `replayer export` wrote")
    counts, tally, unstored = _import_batches(ctx, path, "replayer.imports.export:read", [path], refused)
    malformed = _report_malformed(path, tally.malformed)
    if as_json:
        doc = {
            "lines": tally.lines,
            "attempts": counts.exact,
            "already_imported": counts.known,
            "matched_recorded": counts.merged,
            "matched_imported": counts.twinned,
            "conversations": sorted(counts.conversations),
            "continued_conversations": sorted(counts.continued_conversations),
            "malformed": [{"line": m.line, "what": m.what} for m in malformed],
            "not_imported": [{"line": m.line, "what": m.what} for m in unstored],
        }
        click.echo(json_document(doc))
    click.echo(_with_unstored(_export_summary(counts, tally, len(malformed)), unstored, "export line"), err=True)
    _fail_unstored(ctx, unstored, "export line", name(path), lines=True)


def _user_named(ctx: click.Context, stack: contextlib.ExitStack, given: str, path: str) -> tuple[str, str]:
    """The user `import otlp --user GIVEN` names, as list and stats take it (Store.whole_id): an
    id, one cut as list shows it (…) or any prefix of one user's; only, the users it may name
    are the spans' (those of the input's chat spans) and the database's. An exact id of either
    names that user alone; a part beginning several is bad input (AmbiguousId's line, exit 2)
    before anything is imported. Returns (the user, the input to read then): a part that names
    no user of the database exactly has the input read a first time for its spans' users
    (otlp/batches.users_starting), stdin kept in a temporary file for that, removed with `stack`."""
    from ..otlp.batches import CannotRead, users_starting
    from ..store.queries import AmbiguousId, Store, one_named
    from ..store.schema import is_empty, open_db

    prefix = given.removesuffix("…")
    db = db_path(ctx)
    usable(db)
    with contextlib.ExitStack() as opened:
        store = Store(opened.enter_context(contextlib.closing(open_db(db, create=False)))) \
            if db.exists() and not is_empty(db) else None  # fmt: skip
        count, ids = store.ids_starting(prefix, kind="user") if store else (0, [])
        if ids == [prefix]:
            return prefix, path  # a user of the database, named whole
        source = _spooled(stack) if path == "-" else path
        try:
            found = users_starting(source, prefix)
        except CannotRead as e:
            raise UserError(f"cannot read {path}: {e}") from None
        if prefix in found:
            return prefix, source
        new = [u for u in found if store is None or store.ids_starting(u, kind="user") != (1, [u])]
    try:
        return one_named(given, "user", count + len(new), sorted({*ids, *new})[:3]), source
    except AmbiguousId as e:
        raise UserError(str(e)) from None


def _spooled(stack: contextlib.ExitStack) -> str:
    """stdin copied into a temporary file (removed when `stack` closes), to be read twice."""
    import shutil
    import tempfile

    with tempfile.NamedTemporaryFile(prefix="replayer-import-", suffix=".otlp", delete=False) as f:
        stack.callback(Path(f.name).unlink, missing_ok=True)
        shutil.copyfileobj(sys.stdin.buffer, f, 1 << 20)
    return f.name


def name(path: str) -> str:
    """How an import's input is named in its messages."""
    return "stdin" if path == "-" else path


def _input_path(path: str, wanted: str) -> str:
    """The input of an import that reads one file (`import otlp`, `import export`): "-" (stdin)
    as it is, else the file's path; bad input when there is no such file, or it is a folder
    (`wanted`: what to give instead), or "-" when there is no stdin (closed: `<&-`)."""
    if path == "-":
        if stdin_closed():
            raise UserError(f"stdin is closed, so - has nothing to read: pipe the input in, or give {wanted}")
        return path
    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(f"no such file: {p}; check the path (or give - to read stdin)")
    if p.is_dir():
        raise UserError(f"{p} is a folder: give {wanted}")
    return str(p)


def _import_batches(
    ctx: click.Context, path: str, target: str, args: list[Any], refused: Callable[[Exception], str | None]
) -> tuple[Any, Any, list[Any]]:
    """Store what the reader `target(*args)` yields (batches of replayer records, as
    otlp/batches.read makes them) through the SpanWriter: (its counts, the reader's tally, the
    records read that could not be stored, as Malformed: their line and the writer's error). A
    big file is read and parsed by a reader process while this one writes (readahead.py); a
    progress bar shows when stderr is a terminal (never on stdin, whose size is unknown). The
    database is made with the first records to write, once the input has shown it is what the
    command reads: an input that can't be read, is refused (`refused` gives the one line saying
    so for what the reader raised, None for what isn't bad input) or holds nothing to import
    makes no database."""
    from ..otlp import reading
    from ..otlp.batches import CannotRead, Tally
    from ..readahead import batches as read_ahead
    from ..store.imported_spans import SpanCounts, SpanWriter
    from ..store.schema import open_db

    size = _size(path)
    reader = read_ahead(target, args, inline=size is None or size < READ_AHEAD_BYTES)
    db = db_path(ctx)
    usable(db)
    made_folder = folder_notice(db)
    writer: SpanWriter | None = None
    counts = SpanCounts()
    failed: list[reading.Malformed] = []
    tally = Tally()
    # on a terminal only: on a log file or a pipe the bar's label is a stray line before the summary
    bar = size is not None and sys.stderr.isatty()
    progress: Any = (
        click.progressbar(length=size, label="importing", file=sys.stderr) if bar else contextlib.nullcontext(None)
    )
    with contextlib.closing(reader), progress as shown:  # (closed: a reader process still running is ended)
        done = 0
        try:
            for batch in reader:
                records = [reading.Record.from_wire(r) for r in batch.records]
                if records:  # (the last batch may have none)
                    writer = writer or SpanWriter(open_db(db))
                    for r, why in writer.write(records, counts, batch.defined):  # the rest is written
                        failed.append(reading.Malformed(r.line, why))
                if batch.tally is not None:
                    tally = batch.tally
                if shown is not None:
                    shown.update(batch.position - done)
                    done = batch.position
        except CannotRead as e:
            raise UserError(f"cannot read {path}: {e}") from None
        except Exception as e:
            said = refused(e)
            if said is None:
                raise
            raise UserError(said) from None
    made_folder()
    return counts, tally, failed


def _with_unstored(summary: str, unstored: list[Any], one: str) -> str:
    """An import's closing line, saying how many of what it read it could not store."""
    if not unstored:
        return summary
    said = f"{plural(len(unstored), one)} not imported: see below"
    return summary[:-1] + f"; {said})" if summary.endswith(")") else f"{summary} ({said})"


def _fail_unstored(ctx: click.Context, unstored: list[Any], one: str, where: str, lines: bool = False) -> None:
    """Records that were read fine but that the database would not take (a constraint, a bug
    in replayer): never called malformed, since the input is not at fault. One line saying so and
    what to do, then exit 1 (the work ran but failed). `lines`: the records are lines of `where`
    (import otlp, import export), else they name their files themselves (Claude Code's)."""
    if not unstored:
        return
    first = min(unstored, key=lambda m: (str(getattr(m, "path", "")), m.line))
    at = f"{where} line {first.line}: {first.what}" if lines else str(first)
    more = f", and {len(unstored) - 1} more" if len(unstored) > 1 else ""
    them, they, lines_ = ("it", "it is", "that line") if len(unstored) == 1 else ("them", "they are", "those lines")
    click.echo(
        f"replayer: {plural(len(unstored), one)} read fine but could not be stored in {db_path(ctx)} ({at}{more}): "
        f"not a fault of {where}, but of replayer or the database; import again to retry {them} (what came in is "
        f"kept, once), and if {they} refused again, report it with {lines_}",
        err=True,
    )
    ctx.exit(1)


def _report_malformed(path: str, malformed: list[Any]) -> list[Any]:
    """Say on stderr which lines were skipped and why (the first MAX_REPORTED), in line order."""
    malformed = sorted(malformed, key=lambda m: m.line)
    for m in malformed[:MAX_REPORTED]:
        click.echo(f"replayer: {name(path)}: {m} (skipped)", err=True)
    if len(malformed) > MAX_REPORTED:
        click.echo(f"replayer: … and {plural(len(malformed) - MAX_REPORTED, 'more malformed line')}", err=True)
    return malformed


def _export_summary(counts: Any, tally: Any, malformed: int) -> str:
    parts = []
    if counts.known:
        parts.append(f"{plural(counts.known, 'attempt')} already in the database")
    if counts.merged:
        parts.append(f"{plural(counts.merged, 'attempt')} recorded in this database in the first place, kept")
    if counts.twinned:
        parts.append(
            f"{plural(counts.twinned, 'attempt')} of calls already imported from elsewhere (matched by response id), "
            "kept as first imported"
        )
    parts += _continued(counts)
    if malformed:
        parts.append(f"{plural(malformed, 'malformed line')} skipped")
    head = (
        f"imported {plural(counts.exact, 'attempt')} ({plural(len(counts.conversations), 'new conversation')})"
        f" from {plural(tally.lines, 'export line')}"
    )
    return head + (f" ({'; '.join(parts)})" if parts else "")


def _continued(counts: Any) -> list[str]:
    """The part of an import's closing line about turns put after a conversation's turns here
    (the same conversation id recorded in this database too)."""
    if not counts.continued:
        return []
    ids = sorted(counts.continued_conversations)
    shown = ", ".join(ids[:MAX_NAMED]) + (f", … ({len(ids) - MAX_NAMED} more)" if len(ids) > MAX_NAMED else "")
    return [
        f"{plural(counts.continued, 'turn')} added after the turns already here in "
        f"{plural(len(ids), 'conversation')} of the same id: {shown}"
    ]


MAX_NAMED = 5
"""Conversations a closing line names; past that, their count."""
READ_AHEAD_BYTES = 16 << 20
"""A file past which a reader process parses it while this one writes (about 800 spans with
content: starting the process costs about a tenth of a second)."""


def _size(path: str) -> int | None:
    if path == "-":
        return None
    try:
        return Path(path).stat().st_size
    except OSError:
        return None


def _otlp_summary(counts: Any, tally: Any, malformed: list[Any]) -> str:
    parts = []
    if tally.cut:
        parts.append(
            f"{plural(tally.cut, 'span')} with content cut short by an attribute length limit, rebuilt from "
            "their other attributes and marked reconstructed: for whole spans, raise or unset "
            "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT (and OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT) on the recording host"
        )
    if counts.known:
        parts.append(f"{plural(counts.known, 'span')} imported before")
    if counts.merged:
        parts.append(f"{plural(counts.merged, 'span')} of calls already recorded, kept as recorded")
    if counts.twinned:
        parts.append(
            f"{plural(counts.twinned, 'span')} of calls already imported from elsewhere (matched by response id), "
            "kept as first imported"
        )
    from ..otlp.reading import WHY

    parts += _continued(counts)
    for why, k in sorted(tally.skipped.items()):
        parts.append(f"{plural(k, 'chat span')} skipped: {WHY.get(why, why)}")
    if tally.filtered:
        parts.append(f"{plural(tally.filtered, 'span')} left out by the filters")
    spans = sum(1 for m in malformed if m.span)
    if len(malformed) > spans:
        parts.append(f"{plural(len(malformed) - spans, 'malformed line')} skipped")
    if spans:
        parts.append(f"{plural(spans, 'malformed span')} skipped")
    what = []
    if counts.exact or not counts.reconstructed:
        what.append(plural(counts.exact, "attempt"))
    if counts.reconstructed:
        what.append(f"{plural(counts.reconstructed, 'reconstructed turn')}")
    head = (
        f"imported {' and '.join(what)} ({plural(len(counts.conversations), 'new conversation')})"
        f" from {plural(tally.lines, 'line')} of spans"
    )
    return head + (f" ({'; '.join(parts)})" if parts else "")


def _summary(counts: Any, files: int, malformed: int, skipped: int) -> str:
    parts = []
    if counts.subagents:
        parts.append(f"{plural(len(counts.subagents), 'subagent')} linked to its session")
    if counts.known:
        parts.append(f"{plural(counts.known, 'turn')} imported before")
    if counts.copies:
        parts.append(f"{plural(counts.copies, 'turn')} a fork copied into another session's file, kept once")
    if counts.merged:
        parts.append(f"{plural(counts.merged, 'turn')} already recorded on the wire, kept as recorded")
    if counts.unfinished:
        parts.append(
            f"{plural(counts.unfinished, 'response')} still being written by a session in progress,"
            " left for the next import"
        )
    if malformed:
        parts.append(f"{plural(malformed, 'malformed line')} skipped")
    if skipped:
        parts.append(f"{plural(skipped, 'file')} not a transcript, skipped")
    head = (
        f"imported {plural(counts.new, 'turn')} ({plural(len(counts.conversations), 'new conversation')})"
        f" from {plural(files, 'transcript file')}"
    )
    return head + (f" ({'; '.join(parts)})" if parts else "")


def provenance_lines(prov: Any, turns: int) -> list[str]:
    """What `show` prints above a conversation's turns about where they came from."""
    out = []
    if prov.source:
        n = len(prov.reconstructed)
        which = "all turns" if n == turns else f"{plural(n, 'turn')} of {turns}"
        if prov.source == OTLP_SOURCE:
            out.append(
                f"imported from OpenTelemetry spans (trace {prov.session_id}): {which} reconstructed from the"
                " spans' attributes (not rerunnable)"
            )
        else:
            out.append(
                f"imported from {prov.source} session {prov.session_id}: {which} reconstructed from the transcript"
                " (no system prompt or tools; not rerunnable)"
            )
    if prov.parent:
        via = f" (its tool call {prov.tool_use_id})" if prov.tool_use_id else ""
        out.append(f"subagent of conversation {prov.parent}{via}")
    if prov.children:
        out.append(f"subagents: {', '.join(prov.children)}")
    return out


def provenance_doc(prov: Any) -> dict[str, Any]:
    """The keys `show --json` adds for a conversation with imported turns or links."""
    doc: dict[str, Any] = {}
    if prov.source:
        doc["imported_from"] = prov.source
        doc["otlp_trace_id" if prov.source == OTLP_SOURCE else "claude_code_session"] = prov.session_id
        doc["reconstructed_turns"] = sorted(prov.reconstructed)
        doc["context_resets"] = sorted(prov.resets)
    if prov.parent:
        doc["parent_conversation_id"] = prov.parent
        doc["parent_tool_use_id"] = prov.tool_use_id
    if prov.children:
        doc["subagents"] = prov.children
    return doc
