"""Build the demo database: the shipped fixtures, recorded through the real SDK.

Each fixture is a conversation in wire format. A local fake Messages API answers every request
with the fixture's recorded attempts (errors and retries included), and the official SDK, wrapped
by a Recorder, makes the calls. So the demo database comes from exactly the code path a user's
agent runs, not from rows written by hand.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
import warnings
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from .fakeapi import FakeAPI, Reply

SDK_KWARGS = ("model", "max_tokens", "messages", "stream")


def fixture_files() -> list[tuple[str, str]]:
    """(name, JSON text) of every shipped fixture, sorted by name."""
    folder = resources.files("replayer").joinpath("fixtures")
    out = []
    for entry in folder.iterdir():
        if entry.name.endswith(".json"):
            out.append((entry.name[:-5], entry.read_text("utf-8")))
    return sorted(out)


def load_fixtures() -> list[dict[str, Any]]:
    return [json.loads(text) for _, text in fixture_files()]


def _reply(attempt: dict[str, Any]) -> Reply:
    if "sse" in attempt:
        return Reply(status=attempt.get("status", 200), sse=attempt["sse"], headers=attempt.get("headers", {}))
    return Reply(status=attempt.get("status", 200), body=attempt.get("body"), headers=attempt.get("headers", {}))


def play(client: Any, api: FakeAPI, turn: dict[str, Any]) -> None:
    """Send one fixture turn through the SDK the way an agent would, swallowing API errors."""
    import anthropic

    api.script.clear()
    api.enqueue(*(_reply(a) for a in turn["attempts"]))
    body = dict(turn["request"])
    kwargs = {k: body.pop(k) for k in SDK_KWARGS if k in body}
    c = client.with_options(max_retries=turn["max_retries"]) if "max_retries" in turn else client
    try:
        result = c.messages.create(**kwargs, extra_body=body or None, extra_headers=turn.get("headers") or None)
        if kwargs.get("stream"):
            for _ in result:
                pass
    except anthropic.APIError:
        pass  # the agent would see it; the recorder has it


MARK = ("made_by", "replayer demo")
"""The meta row that says the demo made a database (so it may replace it)."""


def refusal(path: Path) -> str | None:
    """Why the demo must not write to `path`, None when it may: nothing is there (or an empty
    file), or a database the demo made. Anything else is someone's data, never replaced."""
    if not path.exists():
        folder = next(p for p in path.absolute().parents if p.exists())  # the one it would be made in
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            what = "not a folder" if not folder.is_dir() else "not writable"
            return f"cannot create {path}: {folder} is {what}; pass --db with a new file in a writable folder"
        return None
    if path.is_file() and path.stat().st_size == 0:
        return None
    if path.is_dir():
        return f"{path} is a folder: pass --db with a new file for the demo"
    try:
        # immutable: reading someone's file leaves no -wal/-shm beside it (the mark is written and
        # checkpointed into the file before the demo records anything)
        con = sqlite3.connect(f"{path.resolve().as_uri()}?immutable=1", uri=True)
        try:
            row = con.execute("SELECT value FROM meta WHERE key = ?", [MARK[0]]).fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        row = None
    if row is not None and row[0] == MARK[1]:
        return None
    return f"{path} exists and is not a demo database: the demo won't replace it; pass --db with a new file"


def _clock_from(start: float) -> Callable[[], float]:
    """A wall clock that reads `start` now and runs on from there (spreads fixtures over days)."""
    t0 = time.time()
    return lambda: start + (time.time() - t0)


def build_demo(path: str | os.PathLike[str], *, quiet: bool = True) -> int:
    """Record every fixture into `path`, replacing it: check `refusal` first. Returns the number
    of turns recorded (an application's retry of a failed call is an attempt of its turn, so
    fewer than the calls played). The database is marked as the demo's before anything is recorded."""
    import anthropic

    from .recorder import Recorder
    from .store.schema import DBError, open_db

    path = Path(path)
    for suffix in ("", "-wal", "-shm"):
        try:
            Path(str(path) + suffix).unlink(missing_ok=True)
        except OSError as e:  # a file where a folder should be, a folder we can't write
            raise DBError(f"cannot create database {path}: {e.strerror}; choose a writable path with --db") from None
    db = open_db(path)
    with db.conn:
        db.execute("INSERT INTO meta(key, value) VALUES (?, ?)", MARK)
    db.conn.close()
    logger = logging.getLogger("replayer")
    level = logger.level
    if quiet:
        logger.setLevel(logging.ERROR)  # unknown-model price warnings are part of the demo
    try:
        with FakeAPI() as api, Recorder(path) as rec, warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key="demo-key-not-a-real-key"))
            now = time.time()
            for fx in load_fixtures():
                offset = float(fx.get("day_offset", 0)) * 86400
                start = now + offset - 3600
                rec._clock = _clock_from(start)
                conv = fx.get("conversation_id")
                if conv:
                    with rec.conversation(conv, user_id=fx.get("user_id"), tags={"fixture": fx["name"]}):
                        for turn in fx["turns"]:
                            play(client, api, turn)
                else:
                    for turn in fx["turns"]:
                        play(client, api, turn)
            rec.flush()
    finally:
        logger.setLevel(level)
    db = open_db(path)
    try:
        return int(db.execute("SELECT COUNT(*) FROM turns").fetchone()[0])
    finally:
        db.conn.close()


def demo_db_path() -> Path:
    from .paths import data_dir

    return data_dir() / "demo.db"
