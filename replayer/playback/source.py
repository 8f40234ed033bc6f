"""Loading what `replayer replay SOURCE` answers from: a cassette file (JSON Lines of cassette
lines), a conversation id (a prefix of one will do), or a run id (every conversation one
`replayer record` run recorded: its "run" tag). Bad SOURCE: one line saying what to give.

A cassette line is an export line (store/export.py) plus `"events"`: a stream's SSE events, or
null when the stream was recorded before events were kept (answer.py synthesizes them then).
A cassette the pytest plugin wrote starts with one more line, `{"test": NODE_ID}`: the test it
belongs to, so that another test naming the file is refused even when it runs alone. A line of
its own rather than a key on each call's line: those stay export lines, and a test that made no
call still has its owner written.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from ..cli.base import UserError, resolve_id
from ..store.events import json_value

if TYPE_CHECKING:
    from ..store.queries import Store

HOW = ("give a conversation id (replayer list), a run id (printed by replayer record; replayer list --run ID) "
       "or a cassette file (replayer export --cassette)")


@dataclass
class Recording:
    lines: list[dict[str, Any]]
    what: str
    """What was loaded, for messages: `conversation ID`, `run ID (3 conversations)`, `FILE`."""
    conversations: list[str] = field(default_factory=list)
    test: str | None = None
    """The test that wrote the cassette (its first line); None for one no test wrote (`replayer
    export --cassette`, a cassette from before the line) and for a recording from the database."""


def load(source: str, open_store: Callable[[], Store], db: Path | None = None) -> Recording:
    """The recording SOURCE names. `open_store` opens the database (only called when SOURCE is
    not a file); `db` names it in messages."""
    path = Path(source).expanduser()
    if path.is_file():
        return _cassette(path)
    if path.suffix in (".jsonl", ".json") or "/" in source or path.is_dir():
        what = "a folder" if path.is_dir() else "no such file"
        raise UserError(f"SOURCE {source}: {what}; {HOW}")
    if db is not None and not db.exists():
        raise UserError(f"SOURCE {source}: not a file, and there is no database at {db} to look it up in; {HOW}")
    store = open_store()
    conversation = resolve_id(store, source)
    if store.conversation_exists(conversation):
        return Recording(_gathered(_from_store(store, conversation_id=conversation)), f"conversation {conversation}",
                         [conversation])
    conversations = store.run_conversations(source)
    if conversations:
        lines = _gathered(_from_store(store, run_id=source))
        return Recording(lines, f"run {source} ({len(conversations)} conversation{'s' * (len(conversations) != 1)})",
                         conversations)
    where = f" in {db}" if db is not None else ""
    raise UserError(f"SOURCE {source}: no conversation, run or cassette file by that name{where}; {HOW}")


def _from_store(store: Store, *, conversation_id: str | None = None, run_id: str | None = None
                ) -> Iterator[dict[str, Any]]:
    from ..store.export import cassette_lines

    return cassette_lines(store, conversation_id=conversation_id, run_id=run_id)


def _owner(line: Any) -> str | None:
    """The test a cassette's first line names, None when it is not that line."""
    if isinstance(line, dict) and "request" not in line and isinstance(line.get("test"), str):
        return str(line["test"])
    return None


def _file_lines(path: Path, f: BinaryIO) -> Iterator[dict[str, Any]]:
    """The file's lines; its first line may be the one naming the test it belongs to."""
    first = True
    for n, raw in enumerate(f, 1):
        if not raw.strip():
            continue
        try:
            line = json_value(raw.decode(json.detect_encoding(raw), "surrogatepass"))  # as json.loads(bytes)
        except ValueError as e:  # (a UnicodeDecodeError too)
            raise UserError(f"{path} line {n} is not JSON ({e}): a cassette is JSON Lines; {HOW}") from None
        if not (first and _owner(line) is not None) and (not isinstance(line, dict) or "request" not in line):
            raise UserError(f"{path} line {n} is not a cassette line (no request): {HOW}")
        first = False
        yield line


def cassette_test(path: Path) -> str | None:
    """The test that wrote the cassette at `path` (its first line names it), read alone; None when
    no test wrote it or the line can't be read (reading the whole file says what is wrong)."""
    try:
        with open(path, "rb") as f:
            for raw in f:
                if raw.strip():
                    return _owner(json_value(raw.decode(json.detect_encoding(raw), "surrogatepass")))
    except (OSError, ValueError):
        pass
    return None


def read_cassette(path: Path) -> Recording:
    """The cassette at `path`, which may hold no call (a test that made none); OSError when it
    can't be read, UserError when it isn't a cassette."""
    with open(path, "rb") as f:
        lines = _gathered(_file_lines(path, f))
    test = _owner(lines[0]) if lines else None
    if test is not None:
        del lines[0]
    conversations = list(dict.fromkeys(str(line.get("conversation_id")) for line in lines))
    return Recording(lines, str(path), conversations, test)


def _gathered(lines: Iterator[dict[str, Any]]) -> list[dict[str, Any]]:
    """`lines` in a list, the cyclic garbage collector paused meanwhile: JSON documents hold no
    cycles, and each of the collections that the millions of new dicts and lists of a long
    recording would set off walks all those already kept (it tripled the time of a load)."""
    was = gc.isenabled()
    gc.disable()
    try:
        return list(lines)
    finally:
        if was:
            gc.enable()


def _cassette(path: Path) -> Recording:
    try:
        recording = read_cassette(path)
    except OSError as e:
        raise UserError(f"SOURCE {path}: cannot read it ({e.strerror}); {HOW}") from None
    if not recording.lines:
        raise UserError(f"SOURCE {path}: the file holds no recorded call; {HOW}")
    return recording

