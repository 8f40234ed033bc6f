"""`replayer import`: other tools' records into the database (Claude Code's transcripts)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import click

from ..fmt import plural
from .base import UserError, db_path, folder_notice, json_document, settings, usable

BIG_IMPORT = 20
"""Files past which the progress bar shows even when stderr isn't a terminal."""
OTLP_SOURCE = "otlp"
"""imported_from of turns rebuilt from other instrumentations' spans (otlp/reading.py's SOURCE)."""
MAX_REPORTED = 20
"""Malformed lines reported one by one; past that, only their count."""


@click.group("import")
def import_() -> None:
    """Bring records other tools kept into the database."""


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
    skipped: list[str] = []
    unreadable: list[str] = []
    bar = sys.stderr.isatty() or len(files) > BIG_IMPORT
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
            for turn, why in writer.write(t.chains, counts):  # never fatal: reported as a malformed line
                malformed.append(cc.Malformed(f, turn.line, f"could not be imported ({why})"))

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
            "matched_recorded": counts.merged,
            "unfinished": counts.unfinished,
            "conversations": sorted(counts.conversations),
            "subagents_linked": sorted(counts.subagents),
            "malformed": [{"file": str(m.path), "line": m.line, "what": m.what} for m in malformed],
            "not_transcripts": skipped,
            "unreadable": len(unreadable),
        }
        click.echo(json_document(doc))
    click.echo(_summary(counts, len(files) - len(skipped) - len(unreadable), len(malformed), len(skipped)), err=True)


@import_.command("otlp", short_help="OTLP JSON (a Collector's file exporter) back into the database.")
@click.argument("path", metavar="PATH|-")
@click.option("--since", metavar="DATE",
              help="Only spans started since DATE (YYYY-MM-DD or YYYY-MM-DDTHH:MM, in [stats] tz, else this "
                   "machine's zone; or add one: +01:00, Z).")
@click.option("--user", metavar="ID", help="Only spans of this user (user.id).")
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
    from ..otlp import batches, reading
    from ..readahead import batches as read_ahead
    from ..store.imported_spans import SpanCounts, SpanWriter
    from ..store.schema import open_db

    try:
        bound = time_bound(since, "--since", tz=settings(ctx).shown_tz()) if since else None
    except FilterError as e:
        raise UserError(str(e)) from None
    if path != "-":
        p = Path(path).expanduser()
        if not p.exists():
            raise UserError(f"no such file: {p}; check the path (or give - to read stdin)")
        if p.is_dir():
            raise UserError(f"{p} is a folder: give a file the Collector's file exporter wrote")
        path = str(p)
    size = _size(path)
    name = "stdin" if path == "-" else path
    # a big file is read and parsed by a reader process while this one writes (readahead.py)
    reader = read_ahead(
        "replayer.otlp.batches:read", [path, bound, user, conversation], inline=size is None or size < READ_AHEAD_BYTES
    )
    db = db_path(ctx)
    usable(db)
    made_folder = folder_notice(db)
    # made with the first records to write, once the input has shown it is OTLP: an input that
    # can't be read, isn't OTLP or holds nothing to import makes no database
    writer: SpanWriter | None = None
    counts = SpanCounts()
    failed: list[reading.Malformed] = []
    tally = batches.Tally()
    bar = size is not None and (sys.stderr.isatty() or size > BIG_OTLP_BYTES)
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
                    for r, why in writer.write(records, counts, batch.defined):  # never fatal: reported as malformed
                        failed.append(reading.Malformed(r.line, f"a chat span that could not be imported ({why})"))
                if batch.tally is not None:
                    tally = batch.tally
                if shown is not None:
                    shown.update(batch.position - done)
                    done = batch.position
        except batches.CannotRead as e:
            raise UserError(f"cannot read {path}: {e}") from None
        except reading.ReplayerExport:
            again = path if path != "-" else "FILE"
            raise UserError(
                f"{name} is a replayer export (`replayer export`), not OTLP: replay it as it is with "
                f"`replayer replay {again} -- COMMAND`, or import the JSON lines a Collector's file exporter "
                "writes with format: json"
            ) from None
        except reading.NotOtlp as e:
            raise UserError(
                f"{name} is not OTLP JSON: {e}; "
                "give the JSON lines a Collector's file exporter writes with format: json"
            ) from None

    made_folder()
    malformed = sorted(tally.malformed + failed, key=lambda m: m.line)
    for m in malformed[:MAX_REPORTED]:
        click.echo(f"replayer: {name}: {m} (skipped)", err=True)
    if len(malformed) > MAX_REPORTED:
        click.echo(f"replayer: … and {plural(len(malformed) - MAX_REPORTED, 'more malformed line')}", err=True)
    if as_json:
        doc = {
            "lines": tally.lines,
            "attempts": counts.exact,
            "reconstructed": counts.reconstructed,
            "already_imported": counts.known,
            "matched_recorded": counts.merged,
            "matched_imported": counts.twinned,
            "conversations": sorted(counts.conversations),
            "skipped": tally.skipped,
            "filtered_out": tally.filtered,
            "other_spans": tally.others,
            "malformed": [{"line": m.line, "what": m.what} for m in malformed],
        }
        click.echo(json_document(doc))
    click.echo(_otlp_summary(counts, tally, len(malformed)), err=True)


BIG_OTLP_BYTES = 8 << 20
"""A file past which the progress bar shows even when stderr isn't a terminal."""
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


def _otlp_summary(counts: Any, tally: Any, malformed: int) -> str:
    parts = []
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

    for why, k in sorted(tally.skipped.items()):
        parts.append(f"{plural(k, 'chat span')} skipped: {WHY.get(why, why)}")
    if tally.filtered:
        parts.append(f"{plural(tally.filtered, 'span')} left out by the filters")
    if malformed:
        parts.append(f"{plural(malformed, 'malformed line')} skipped")
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
