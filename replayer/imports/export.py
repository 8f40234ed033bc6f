"""Reading replayer's own export back (`replayer import export`): each line of `replayer export`
(store/export.py) becomes the attempt it was, with every id and value the exporting database had,
as replayer's own OTLP spans do (otlp/reading.own_record makes the record of both, and the
import otlp writer, store/imported_spans.SpanWriter, stores them): export of the database it
went into writes the same lines again.

A generator of picklable batches as otlp/batches.read is, so the import runs it the same way
(in a reader process for a big file, readahead.py). The input proves to be an export (a line
holding an export line's keys) before anything is yielded: one that isn't (OTLP JSON, a Claude
Code transcript, no JSON at all) raises NotExport, saying what it is instead, and no database is
made. A line that isn't an export line after that is malformed: reported, skipped.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Generator
from typing import Any

import orjson

from ..otlp import reading
from ..otlp.batches import BATCH, FIRST_BATCH, Batch, CannotRead, Tally
from ..otlp.prescan import PreScanner, Share
from ..otlp.reading import EXPORT_KEYS, NOT_OTLP_AFTER, Malformed
from ..store.codec import split

EXPORT = "export"
OTLP = "otlp"
CLAUDE_CODE = "claude-code"
"""What a JSON line is (`kind`): the name of the `replayer import` command that takes it."""
NOT_EXPORT_AFTER = NOT_OTLP_AFTER
"""Lines read without an export line among them: the input is not an export (bad input)."""


class NotExport(Exception):
    """The input is not replayer's export (bad input: one line, exit 2). `kind`: what it is
    instead when known (OTLP, CLAUDE_CODE); the message says why, to follow "X is not ...: "."""

    def __init__(self, why: str, kind: str | None = None) -> None:
        super().__init__(why)
        self.kind = kind


def kind(doc: Any) -> str | None:
    """Which import command takes a line holding `doc` (its top-level keys suffice): EXPORT,
    OTLP, CLAUDE_CODE, else None."""
    if not isinstance(doc, dict):
        return None
    if all(k in doc for k in EXPORT_KEYS):
        return EXPORT
    if isinstance(doc.get("resourceSpans"), list):
        return OTLP
    from .claude_code import _is_entry

    return CLAUDE_CODE if _is_entry(doc) else None


def sniff(path: str, probe: int = 20) -> str | None:
    """What the file at `path` holds, by its first JSON lines (EXPORT, OTLP, CLAUDE_CODE, or None:
    none of those, or it can't be read). Gzip is read as it is."""
    try:
        lines, _ = reading.open_input(path)
    except OSError:
        return None
    seen = 0
    try:
        with lines:
            for raw in lines:
                if not raw or raw.isspace():
                    continue
                seen += 1
                try:
                    found = kind(orjson.loads(raw))
                except orjson.JSONDecodeError:
                    found = None
                if found is not None or seen >= probe:
                    return found
    except (OSError, EOFError, gzip.BadGzipFile):
        return None
    return None


def read(path: str) -> Generator[Batch, float | None, None]:
    """The batches of the export at `path` ("-": stdin); sent after each, how long it waited to
    be taken (readahead.py). Raises CannotRead, or NotExport for an input that is no export."""
    try:
        lines, position = reading.open_input(path)
    except OSError as e:
        raise CannotRead(e.strerror or str(e)) from None
    tally = Tally()
    batch: list[Any] = []
    prescan, share = PreScanner(), Share()
    started = time.perf_counter()
    sent = found = False
    seen = number = 0
    first: tuple[int, str, str | None] | None = None  # the first line that is no export line: what it is
    with lines:
        try:
            for number, raw in enumerate(lines, 1):  # noqa: B007 (read after the loop)
                if not raw or raw.isspace():
                    continue
                seen += 1
                got = _record(number, raw)
                if isinstance(got, reading.Record):
                    found = True
                    tally.lines += 1
                    ctx = got.captured.ctx
                    if share.takes((ctx.conversation_id if ctx else None) or got.key):
                        got.scanned = prescan.scan(got.captured)
                    batch.append(got.wire())
                else:
                    what, is_kind = got
                    if not found and seen == 1 and b"\x00" in raw[:64]:
                        raise NotExport("it is binary data")
                    tally.malformed.append(Malformed(number, what))
                    first = first or (number, what, is_kind)
                if not found and seen >= NOT_EXPORT_AFTER:
                    break
                if found and len(batch) >= (BATCH if sent else min(BATCH, FIRST_BATCH)):
                    busy = time.perf_counter() - started
                    waited = yield Batch(batch, position(), defined=prescan.take())
                    started = time.perf_counter()
                    if sent or waited is None:  # (the first batch waited for the writer to start)
                        share.adjust(waited, busy)
                    sent = True
                    batch = []
        except (OSError, EOFError, gzip.BadGzipFile) as e:  # a cut or corrupt gzip stream
            if not found:
                raise NotExport(f"cannot read it: {e}") from None
            tally.malformed.append(Malformed(number + 1, f"the input ends early: {e}"))
        if not found and seen:
            line, what, is_kind = first or (1, "holds nothing", None)
            if is_kind is not None:
                raise NotExport(f"its lines are {is_kind} lines", is_kind)
            raise NotExport(f"line {line}: {what}" if seen == 1 else
                            f"none of its {'first ' if seen >= NOT_EXPORT_AFTER else ''}{seen} lines is an export "
                            f"line (line {line}: {what})")  # fmt: skip
        yield Batch(batch, position(), tally, prescan.take())


def _record(number: int, raw: bytes) -> reading.Record | tuple[str, str | None]:
    """The line's record, else (what is wrong with it, which import command takes it if another)."""
    try:
        text = raw.decode("utf-8")
        if not text.lstrip().startswith("{"):
            try:
                orjson.loads(raw)
            except orjson.JSONDecodeError:
                return "not JSON", None
            return "not an export line (JSON, not an object)", None
        values, texts = split(text)
    except (ValueError, IndexError) as e:
        if not raw.endswith(b"\n"):
            # the input's last line, cut off: an export cut short, or one still being written
            return "cut off at the end of the input (still being written? import again once it is whole)", None
        if isinstance(e, UnicodeDecodeError):
            return "not UTF-8 text", None
        return f"not JSON ({str(e).split(':')[0]})", None
    found = kind(values)
    if found != EXPORT:
        missing = ", ".join(k for k in EXPORT_KEYS if k not in values)
        return f"not an export line (no {missing})", found
    try:
        response = values.get("response")
        return reading.own_record(
            number, values, {"request": texts.get("request"), "response": texts.get("response")},
            session=session(values),
            tags=_tags(values.get("tags")),
            response_id=_response_id(response),
        )  # fmt: skip
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        return f"an export line that can't be read ({e})", None


def _tags(tags: Any) -> dict[str, Any] | None:
    """The call's tags as its line holds them (lines written before tags were exported have none)."""
    return tags if isinstance(tags, dict) and tags else None


def _response_id(response: Any) -> str | None:
    """The response's id, as replayer's own span carries it (gen_ai.response.id): what finds
    the same call imported from elsewhere before (store/imported_spans.py)."""
    got = response.get("id") if isinstance(response, dict) else None
    return got if isinstance(got, str) else None


def session(values: dict[str, Any]) -> str:
    """imported_turns.session_id of an imported turn's line (its imported_from set), which the
    line doesn't hold: a Claude Code session's, from its conversation id (`cc_<session id>`,
    `cc_<session id>_<agent or branch>`: store/imported.conversation_id_for), which is what
    `import claude-code` of the same transcripts later looks turns up by; else the user's trace
    id, else the conversation id."""
    conversation = str(values.get("conversation_id"))
    if values.get("imported_from") == CLAUDE_CODE and conversation.startswith("cc_"):
        return conversation[3:].split("_")[0]
    return str(values.get("trace_id") or conversation)
