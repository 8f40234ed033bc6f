"""After `rec.close()`, or once the recording process has exited, the `.db` file alone holds
every record: users copy or upload just that file (a CI artifact, a bug report), not its `-wal`.

Each test records through the real SDK against the local FakeAPI, copies only the `.db` file
somewhere else, and reads the copy.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import anthropic
import pytest
from conftest import FAKE_KEY, exported

from replayer import Recorder

pytestmark = pytest.mark.writer_process  # Recorders here write through a writer process, the default

MODEL = "claude-haiku-4-5"


def copy_db_alone(db: Path, folder: Path) -> Path:
    """Copy the `.db` file only (no -wal, no -shm), as a user attaching it to a bug report would."""
    folder.mkdir()
    copy = folder / "copy.db"
    shutil.copyfile(db, copy)
    return copy


def user_texts(rows: list[dict]) -> list[str]:
    return sorted(r["request"]["messages"][-1]["content"] for r in rows)


def ask(client, text: str):
    return client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": text}])


def test_after_close_the_db_file_alone_holds_every_record(api, tmp_path):
    db = tmp_path / "w.db"
    rec = Recorder(db)
    client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
    ask(client, "first")
    list(client.messages.create(
        model=MODEL, max_tokens=8, stream=True, messages=[{"role": "user", "content": "streamed"}]
    ))
    assert rec.close() is True
    assert user_texts(exported(copy_db_alone(db, tmp_path / "a"))) == ["first", "streamed"]

    # recording again after close() opens the file again; closing again leaves it whole again
    ask(client, "after close")
    assert rec.close() is True
    assert user_texts(exported(copy_db_alone(db, tmp_path / "b"))) == ["after close", "first", "streamed"]


def test_close_while_a_reader_has_the_file_open(api, tmp_path):
    """A browser left open on the DB keeps SQLite from folding the WAL in when the writer's
    connection closes; close() checkpoints it explicitly."""
    db = tmp_path / "w.db"
    rec = Recorder(db)
    client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
    ask(client, "seen by a reader")
    assert rec.flush() is True
    reader = sqlite3.connect(db)
    try:
        assert reader.execute("SELECT count(*) FROM turns").fetchone() == (1,)
        ask(client, "while the reader is open")
        assert rec.close() is True
        copy = copy_db_alone(db, tmp_path / "copy")
    finally:
        reader.close()
    assert user_texts(exported(copy)) == ["seen by a reader", "while the reader is open"]


def test_a_script_that_exits_without_closing_leaves_the_db_file_whole(api, tmp_path):
    db = tmp_path / "w.db"
    script = textwrap.dedent(f"""
        import anthropic
        from replayer import Recorder
        rec = Recorder({str(db)!r})
        client = rec.wrap(anthropic.Anthropic(base_url={api.url!r}, api_key={FAKE_KEY!r}, max_retries=0))
        for text in ("one", "two", "three"):
            client.messages.create(model={MODEL!r}, max_tokens=8, messages=[{{"role": "user", "content": text}}])
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert user_texts(exported(copy_db_alone(db, tmp_path / "copy"))) == ["one", "three", "two"]


def test_replayer_record_leaves_the_db_file_whole(api, tmp_path):
    """`replayer record --db w.db -- python agent.py; cp w.db c.db; replayer export --db c.db`."""
    agent = tmp_path / "agent.py"
    agent.write_text(textwrap.dedent(f"""
        import anthropic
        client = anthropic.Anthropic(base_url={api.url!r}, api_key={FAKE_KEY!r}, max_retries=0)
        messages = [{{"role": "user", "content": "zero code"}}]
        reply = client.messages.create(model={MODEL!r}, max_tokens=8, messages=messages)
        messages += [{{"role": "assistant", "content": reply.content}}, {{"role": "user", "content": "and more"}}]
        client.messages.create(model={MODEL!r}, max_tokens=8, messages=messages)
    """))
    db = tmp_path / "w.db"
    cli = [sys.executable, "-m", "replayer.cli"]
    proc = subprocess.run(
        [*cli, "--db", str(db), "record", "--", sys.executable, str(agent)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    copy = copy_db_alone(db, tmp_path / "copy")
    out = subprocess.run([*cli, "--db", str(copy), "export"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert user_texts(rows) == ["and more", "zero code"]
    assert len({r["conversation_id"] for r in rows}) == 1
