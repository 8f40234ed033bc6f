"""Records a writer could not get into its database before its process ended, kept in a file
beside the database (`X.unwritten-<pid>-<ms>.jsonl`) until the next writer that opens X writes
them in (store/writer.py).

One `Captured` a line, as JSON (bytes as base64): not pickle, since a file lying beside the
database must not be able to run code when it is read. A file is held under an exclusive
`flock` while it is taken: it is written, flushed to disk, under a name no reader looks at
(`.X.unwritten-….jsonl.part`) and only then renamed to its own, so a reader never takes a file
still being written, and a write that fails leaves nothing (a file cut off all the same, by a
crash of the machine, is read up to its last whole line). A reader that gets
the lock checks that the name still names the file it locked (another reader may have taken it
in and deleted it meanwhile): each file is written in once. Where there is no `flock` (not
POSIX) files are still saved and taken, without that guard against two writers at once."""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from typing import IO, Any

from ..captured import Captured, Context
from .attempt import read_headers

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

_BYTES = ("request_bytes", "response_bytes", "sse")
_FIELDS = {f.name for f in fields(Captured)} - {"raw_request_headers", "raw_response_headers", "chunk_clock"}
_CTX_FIELDS = {f.name for f in fields(Context)}
_NAME = re.compile(r"\.unwritten-(\d+)-(\d+)\.jsonl$")


def _lock(f: IO[Any], wait: bool) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError:
        return False
    return True


def dumps(captured: Captured) -> str:
    """One record as a JSON line (raises TypeError/ValueError for what JSON can't hold)."""
    read_headers(captured)  # the protocol headers kept, the raw ones (credentials) dropped
    doc: dict[str, Any] = {}
    for name in _FIELDS:
        value = getattr(captured, name)
        if value is None:
            continue
        if name in _BYTES:
            value = base64.b64encode(value).decode("ascii")
        elif name == "sse_chunks":
            value = captured.event_clock()
        elif name == "ctx":
            value = {k: getattr(value, k) for k in _CTX_FIELDS if getattr(value, k) is not None}
        doc[name] = value
    if captured.chunk_clock is not None and "sse_chunks" not in doc:
        doc["sse_chunks"] = captured.event_clock()
    return json.dumps(doc, separators=(",", ":"))


def loads(line: str) -> Captured:
    """A record `dumps` wrote (raises ValueError, TypeError or KeyError for a line that isn't one)."""
    doc = json.loads(line)
    if not isinstance(doc, dict):
        raise ValueError("not a record")
    kw = {k: v for k, v in doc.items() if k in _FIELDS}
    for name in _BYTES:
        if kw.get(name) is not None:
            kw[name] = base64.b64decode(kw[name], validate=True)
    if kw.get("sse_chunks") is not None:
        kw["sse_chunks"] = [(int(end), float(ms)) for end, ms in kw["sse_chunks"]]
    if kw.get("server") is not None:
        kw["server"] = tuple(kw["server"])
    ctx = kw.get("ctx")
    if ctx is not None:
        ctx = {k: v for k, v in ctx.items() if k in _CTX_FIELDS}
        if ctx.get("parent") is not None:
            ctx["parent"] = tuple(ctx["parent"])
        kw["ctx"] = Context(**ctx)
    return Captured(**kw)


def save(path: str, records: list[Captured]) -> tuple[str, int]:
    """Write `records` to a new file beside the database at `path`: (its path, how many records
    JSON could not hold and were left out). Raises OSError when the file can't be written."""
    lines, left_out = [], 0
    for captured in records:
        try:
            lines.append(dumps(captured) + "\n")
        except (TypeError, ValueError):
            left_out += 1
    final = f"{path}.unwritten-{os.getpid()}-{int(time.time() * 1000)}.jsonl"
    _write(final, lines)
    return final, left_out


def _write(final: str, lines: list[str]) -> None:
    """Write `lines` to a file made under a name no reader looks at, flushed to disk, then renamed
    to `final` (replacing what is there): no reader ever takes it part-written. On any error the
    part-made file is deleted and the error raised: nothing is left under `final`."""
    folder, name = os.path.split(final)
    making = os.path.join(folder, f".{name}.part")
    fd = os.open(making, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # as the database: its owner's
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(lines)
            f.flush()
            os.fsync(f.fileno())
        os.rename(making, final)
    except OSError:
        try:
            os.unlink(making)
        except OSError:
            pass
        raise


def rewrite(file: str, records: list[Captured]) -> None:
    """Replace `file` (held by `taken`) with only `records`, those not yet written in: the
    others were committed. Raises OSError when it can't."""
    _write(file, [dumps(captured) + "\n" for captured in records])


def waiting(path: str) -> list[str]:
    """The files of records saved beside the database at `path`, oldest first."""
    folder, base = os.path.split(os.path.abspath(path))
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    found = []
    for name in names:
        m = _NAME.search(name)
        if m and name[: m.start()] == base:
            found.append((int(m.group(2)), int(m.group(1)), os.path.join(folder, name)))
    return [p for *_, p in sorted(found)]


@contextmanager
def taken(file: str) -> Iterator[tuple[list[Captured], int] | None]:
    """The records in `file` and how many of its lines could not be read, held locked; None when
    another writer holds it or has taken it already. The caller deletes it once they are committed."""
    try:
        f = open(file, encoding="utf-8", errors="surrogateescape")  # noqa: SIM115 - held across the yield
    except OSError:
        yield None
        return
    with f:
        if not _lock(f, wait=False):
            yield None
            return
        try:
            same = os.path.samestat(os.fstat(f.fileno()), os.stat(file))
        except OSError:
            same = False
        if not same:  # taken in and deleted by another writer after we opened it
            yield None
            return
        records, bad = [], 0
        for line in f.read().splitlines(keepends=True):
            if not line.endswith("\n"):
                break  # the end of a file whose writer was cut off
            try:
                records.append(loads(line))
            except (ValueError, TypeError, KeyError):
                bad += 1
        yield records, bad
