"""When the database can't be written, the agent doesn't notice; secrets never reach the DB.

Requirement: if the DB can't be written (locked for long, read-only, disk full, corrupt, a folder
that can't be created) the API call still returns normally, the problem is logged once with the
path and the remedy, and records wait in a bounded buffer until the DB is writable again (what
overflows is counted and reported). The agent sees exactly the exceptions it would see without
replayer. No API key, Authorization, x-api-key or cookie value ever reaches the DB; new DB files
are readable by their owner only; `Recorder(redact=fn)` rewrites a record before it is stored.

Every test drives the real SDK over HTTP against the local FakeAPI. The tests run as root, which
ignores permission bits, so "can't be written" is produced without them: a path under a regular
file, an exclusive lock held by another connection, garbage bytes, SQLite's page limit.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import sqlite3
import stat
import threading
import time
from pathlib import Path

import anthropic
import pytest
from conftest import FAKE_KEY, exported, wait_until

from replayer import Recorder
from replayer.fakeapi import FakeAPI, Reply, message_events
from replayer.store import schema

pytestmark = pytest.mark.writer_process  # Recorders here write through a writer process, the default

MODEL = "claude-sonnet-4-5"


@pytest.fixture(scope="module")
def _server():
    with FakeAPI() as server:
        yield server


@pytest.fixture
def api(_server):
    """conftest's `api`, but one server for the module (stopping one costs up to 0.5 s)."""
    _server.script.clear()
    _server.received.clear()
    _server.count = 0
    _server.responder = None
    return _server


# -- helpers -----------------------------------------------------------------------------------


def ask(client, text: str, **kw):
    return client.messages.create(
        model=kw.pop("model", MODEL), max_tokens=16, messages=[{"role": "user", "content": text}], **kw
    )


def warnings_of(caplog, *needles: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "replayer" and r.levelno >= logging.WARNING and all(n in r.getMessage() for n in needles)
    ]


def last_user_texts(path) -> list[str]:
    out = []
    for row in exported(path):
        content = row["request"]["messages"][-1]["content"]
        out.append(content if isinstance(content, str) else content[0]["text"])
    return out


def db_bytes(path: Path) -> dict[str, bytes]:
    """The raw bytes of the DB and its WAL and shared-memory files (those that exist)."""
    out = {}
    for suffix in ("", "-wal", "-shm", "-journal"):
        p = Path(str(path) + suffix)
        if p.exists():
            out[p.name] = p.read_bytes()
    return out


@pytest.fixture
def recorders():
    """Recorders a test creates on broken paths; closed (briefly) so nothing waits at exit."""
    made: list[Recorder] = []

    def make(path, **kw) -> Recorder:
        r = Recorder(path, **kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close(timeout=0.1)


@pytest.fixture
def log_warnings(caplog):
    caplog.set_level(logging.WARNING, logger="replayer")
    return caplog


# -- a folder that can't be created ------------------------------------------------------------


def test_uncreatable_folder_calls_return_logged_once_then_recovered(api, tmp_path, recorders, log_warnings):
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file where the DB's folder should be")
    path = blocker / "rec.db"
    rec = recorders(path)
    client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))

    texts = [f"uncreatable {i}" for i in range(3)]
    for i, text in enumerate(texts):
        reply = ask(client, text)
        assert reply.content[0].text == f"reply {i + 1} to 1 messages"  # the call returned normally
        assert rec.flush(timeout=0.3) is False  # each flush makes the writer retry, and fail

    problems = warnings_of(log_warnings, "cannot write")
    assert len(problems) == 1, problems  # logged once, not once per call or retry
    assert str(path) in problems[0]
    assert "--db" in problems[0]  # the remedy
    assert not path.exists()

    # the obstacle goes away: everything waiting is written, once
    blocker.unlink()
    blocker.mkdir(exist_ok=True)  # the writer, retrying, may have made it already
    assert rec.flush(timeout=10) is True
    assert sorted(last_user_texts(path)) == sorted(texts)
    assert rec.dropped == 0
    assert warnings_of(log_warnings, "writable again")


def test_folder_blocked_deeper_in_the_path(api, tmp_path, recorders, log_warnings):
    (tmp_path / "f").write_text("x")
    path = tmp_path / "f" / "sub" / "deeper" / "rec.db"
    rec = recorders(path)
    client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
    assert ask(client, "deep").type == "message"
    assert rec.flush(timeout=10) is False  # False as soon as the writer has failed, not at the timeout
    problems = warnings_of(log_warnings, "cannot write", str(path))
    assert len(problems) == 1, warnings_of(log_warnings)


# -- locked by another connection --------------------------------------------------------------


def _lock(path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=0)
    conn.execute("BEGIN EXCLUSIVE")
    return conn


def test_briefly_locked_db_waits_and_loses_nothing(api, db_path, recorders, log_warnings):
    rec = recorders(db_path)
    client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
    ask(client, "before the lock")
    assert rec.flush(timeout=10) is True

    locker = _lock(db_path)
    try:
        for i in range(3):
            assert ask(client, f"while locked {i}").type == "message"
        assert rec.flush(timeout=0.3) is False  # the writer is waiting for the lock
    finally:
        locker.rollback()
        locker.close()
    # released well within the busy timeout: every record goes in, with nothing to complain about
    assert rec.flush(timeout=10) is True
    assert sorted(last_user_texts(db_path)) == sorted(["before the lock"] + [f"while locked {i}" for i in range(3)])
    assert warnings_of(log_warnings, "cannot write") == []


def test_db_locked_for_long(thread_writer, api, db_path, recorders, log_warnings, monkeypatch):
    # "long" = longer than the busy timeout; shortened so the test doesn't wait 5 s
    monkeypatch.setattr(schema, "BUSY_TIMEOUT_MS", 150)
    rec = recorders(db_path)
    client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
    ask(client, "first")
    assert rec.flush(timeout=10) is True

    locker = _lock(db_path)
    try:
        assert ask(client, "locked 0").type == "message"
        assert wait_until(lambda: warnings_of(log_warnings, "cannot write"))
        for i in range(1, 4):
            assert ask(client, f"locked {i}").type == "message"
            assert rec.flush(timeout=0.3) is False
        problems = warnings_of(log_warnings, "cannot write")
        assert len(problems) == 1, problems
        assert str(db_path) in problems[0] and "locked" in problems[0]
    finally:
        locker.rollback()
        locker.close()
    assert rec.flush(timeout=10) is True
    texts = last_user_texts(db_path)
    assert sorted(texts) == sorted(["first"] + [f"locked {i}" for i in range(4)])
    assert warnings_of(log_warnings, "writable again")


# -- corrupt, full, read-only ------------------------------------------------------------------


def test_corrupt_db_file(api, db_path, recorders, log_warnings):
    garbage = b"this is not a SQLite database\x00\xff" * 512
    db_path.write_bytes(garbage)
    rec = recorders(db_path)
    client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
    assert ask(client, "into a corrupt file").content[0].type == "text"
    assert len(list(ask(client, "again", stream=True))) > 3  # a stream too
    assert rec.flush(timeout=10) is False  # False as soon as the writer has failed, not at the timeout
    problems = warnings_of(log_warnings, "cannot write")
    assert len(problems) == 1, problems
    assert str(db_path) in problems[0]
    assert "corrupt" in problems[0] and "move it aside" in problems[0]
    assert db_path.read_bytes() == garbage  # the user's file is left alone

    # moved aside: a new DB is created and the waiting records land in it
    db_path.rename(db_path.with_suffix(".bad"))
    assert rec.flush(timeout=10) is True
    assert len(exported(db_path)) == 2


def test_disk_full(thread_writer, api, db_path, recorders, log_warnings, monkeypatch):
    """SQLite's own "database or disk is full" (SQLITE_FULL), provoked by capping max_page_count
    on every connection the writer opens (the only way to fill the "disk" as root)."""
    from replayer.store import schema

    rec = recorders(db_path)
    client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
    ask(client, "small")
    assert rec.flush(timeout=10) is True
    real_connect = schema._connect
    full = {"on": True}

    def capped(path):
        conn = real_connect(path)
        if full["on"]:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count={pages}")
        return conn

    monkeypatch.setattr(schema, "_connect", capped)
    rec._writer._ingestor.db.conn.close()  # white box: make the writer reconnect through the cap
    rec._writer._ingestor = None

    big = [f"big {i} " + os.urandom(40_000).hex() for i in range(2)]
    for text in big:
        assert ask(client, text).type == "message"
    assert rec.flush(timeout=10) is False  # False as soon as the writer has failed, not at the timeout
    problems = warnings_of(log_warnings, "cannot write")
    assert len(problems) == 1, problems
    assert str(db_path) in problems[0] and "full" in problems[0]

    full["on"] = False  # space freed
    assert rec.flush(timeout=10) is True
    texts = last_user_texts(db_path)
    assert sorted(texts) == sorted(["small", *big])


def _make_read_only(path, on: bool) -> None:
    """chmod for a normal user; as root (who ignores permission bits) the immutable attribute."""
    import shutil
    import subprocess

    if hasattr(os, "geteuid") and os.geteuid() == 0:
        if shutil.which("chattr") is None:
            pytest.fail("running as root needs chattr (e2fsprogs) to make a file read-only")
        subprocess.run(["chattr", "+i" if on else "-i", str(path)], check=True)
    else:
        os.chmod(path, 0o444 if on else 0o600)


def test_read_only_db_file(api, db_path, recorders, log_warnings):
    rec0 = recorders(db_path)
    rec0.record({"model": MODEL, "max_tokens": 1, "messages": [{"role": "user", "content": "seed"}]})
    assert rec0.flush(timeout=10) is True
    rec0.close()
    _make_read_only(db_path, True)
    try:
        rec = recorders(db_path)
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
        assert ask(client, "read-only").type == "message"
        assert rec.flush(timeout=10) is False  # False as soon as the writer has failed, not at the timeout
        problems = warnings_of(log_warnings, "cannot write", str(db_path))
        assert len(problems) == 1, problems
        assert "read-only" in problems[0]
    finally:
        _make_read_only(db_path, False)
    assert rec.flush(timeout=10) is True
    assert "read-only" in last_user_texts(db_path)


# -- the bounded buffer ------------------------------------------------------------------------


def test_bounded_buffer_counts_and_reports_overflow(api, tmp_path, recorders, log_warnings):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    path = blocker / "rec.db"
    rec = recorders(path, max_pending=5)
    client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
    for i in range(8):
        assert ask(client, f"buffered {i}").type == "message"
    assert wait_until(lambda: rec.dropped >= 3)
    assert rec.flush(timeout=0.3) is False
    assert rec.dropped == 3  # 5 kept, the rest counted

    blocker.unlink()
    blocker.mkdir(exist_ok=True)  # the writer, retrying, may have made it already
    assert rec.flush(timeout=10) is True
    assert sorted(last_user_texts(path)) == [f"buffered {i}" for i in range(5)]  # the oldest are kept

    rec.close(timeout=5)
    dropped = warnings_of(log_warnings, "dropped")
    assert len(dropped) == 1, dropped
    assert "3 record(s)" in dropped[0] and str(path) in dropped[0]


def test_unwritable_at_close_is_reported(api, tmp_path, log_warnings):
    (tmp_path / "blocker").write_text("x")
    path = tmp_path / "blocker" / "rec.db"
    rec = Recorder(path)
    client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
    ask(client, "never written")
    assert rec.close(timeout=10) is False  # False as soon as the writer has failed, not at the timeout
    left = warnings_of(log_warnings, "not yet written", str(path))
    assert len(left) == 1 and "1 record(s)" in left[0]


# -- flush() and close() answer instead of waiting forever ------------------------------------


def _within(seconds: float, fn, *args):
    """fn(*args) on another thread; its result, or a failure if it is still running after
    `seconds` (a bound to tell "returns" from "hangs forever", not a timing)."""
    out: list = []
    t = threading.Thread(target=lambda: out.append(fn(*args)), daemon=True)
    t.start()
    t.join(seconds)
    assert out, f"{getattr(fn, '__name__', fn)}() was still waiting after {seconds} s"
    return out[0]


def _unwritable(tmp_path, how: str) -> Path:
    """A DB path the writer can't use: under a regular file, or a file of garbage."""
    if how == "under-a-file":
        (tmp_path / "blocker").write_text("a regular file where the DB's folder should be")
        return tmp_path / "blocker" / "replayer.db"
    path = tmp_path / "garbage.db"
    path.write_bytes(b"not SQLite at all\x00\xff" * 300)
    return path


def _make_writable(path: Path, how: str) -> None:
    if how == "under-a-file":
        path.parent.unlink()
        # the writer, retrying, may make the folder itself between these two lines
        path.parent.mkdir(exist_ok=True)
    else:
        path.rename(path.with_suffix(".bad"))


@pytest.mark.parametrize("how", ["under-a-file", "garbage-file"])
def test_flush_and_close_without_timeout_return_false_then_records_still_land(api, tmp_path, recorders, how):
    path = _unwritable(tmp_path, how)
    rec = recorders(path)
    client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
    texts = [f"unwritable {i}" for i in range(3)]
    for text in texts:
        assert ask(client, text).type == "message"  # the calls work
    assert _within(5, rec.flush) is False  # no timeout given: answered once the writer failed, not never
    assert _within(5, rec.flush) is False  # asked again: tried again, failed again
    assert _within(5, rec.close) is False
    assert rec.dropped == 0

    # the records stayed buffered: once the DB can be written, the writer's retries put them in
    _make_writable(path, how)
    assert wait_until(lambda: path.exists() and len(exported(path)) == 3, timeout=20)
    assert sorted(last_user_texts(path)) == sorted(texts)
    assert _within(5, rec.close) is True


@pytest.mark.parametrize("how", ["under-a-file", "garbage-file"])
def test_a_script_recording_into_an_unwritable_db_exits_normally(api, tmp_path, how):
    """flush() with no timeout, then the exit's own flush: the script ends by itself (the exit
    timeout is set far beyond the test's bound, so only an answer from the writer ends it)."""
    import subprocess
    import sys
    import textwrap

    path = _unwritable(tmp_path, how)
    script = textwrap.dedent(f"""
        import anthropic
        from replayer import Recorder
        rec = Recorder()
        client = rec.wrap(anthropic.Anthropic(base_url={api.url!r}, api_key={FAKE_KEY!r}, max_retries=0))
        for i in range(3):
            client.messages.create(model={MODEL!r}, max_tokens=5, messages=[{{"role": "user", "content": f"x{{i}}"}}])
        print("flushed", rec.flush())
        for i in range(2):  # more after the failed flush: the exit's flush has them to write
            client.messages.create(model={MODEL!r}, max_tokens=5, messages=[{{"role": "user", "content": f"y{{i}}"}}])
        print("done")
    """)
    env = dict(os.environ, REPLAYER_DB=str(path), REPLAYER_EXIT_TIMEOUT="600")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["flushed", "False", "done"]
    assert proc.stderr.count("cannot write") == 1, proc.stderr
    assert "5 record(s) could not be written" in proc.stderr  # what was lost is said at exit


# -- the agent sees the exceptions it would see without replayer -------------------------------

ERROR_400 = {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: too big"}}
ERROR_429 = {"type": "error", "error": {"type": "rate_limit_error", "message": "Slow down"}}


def _stream_events():
    msg = {
        "id": "msg_stream",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": "a fairly long answer that will be cut in the middle"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 9},
    }
    return message_events(msg)


def _call_plain(client):
    return ask(client, "x")


def _call_stream(client):
    with client.messages.stream(model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "s"}]) as s:
        return s.get_final_message()


def _call_raw_stream(client):
    return list(ask(client, "r", stream=True))


CASES = {
    "400": (lambda: Reply(status=400, body=ERROR_400), _call_plain, {}),
    "429-no-retries": (lambda: Reply(status=429, body=ERROR_429, headers={"retry-after": "0"}), _call_plain, {}),
    "timeout": (lambda: Reply(hang=1), _call_plain, {"timeout": 0.2}),
    "error-event-in-stream": (
        lambda: Reply(sse=_stream_events()[:3] + [
            {"event": "error", "data": ERROR_429 | {"error": {"type": "overloaded_error", "message": "Overloaded"}}}
        ]),
        _call_stream,
        {},
    ),
    "stream-dropped": (lambda: Reply(sse=_stream_events(), drop_after_events=4), _call_raw_stream, {}),
    # a stream's error body cut off: the SDK's own read of it fails (RemoteProtocolError)
    "error-body-cut": (
        lambda: Reply(status=529, sse=[{"event": "error", "data": ERROR_429}] * 3, drop_after_events=1),
        _call_raw_stream,
        {},
    ),
}


def _outcome(api, client, case):
    make_reply, call, _ = CASES[case]
    api.enqueue(make_reply())
    try:
        call(client)
    except Exception as e:  # noqa: BLE001
        return e
    pytest.fail(f"{case}: no exception raised")


def _one_id(message: str) -> str:
    return re.sub(r"req_fake\d+", "req_fake<n>", message)


@pytest.mark.parametrize("db_state", ["writable", "unwritable"])
@pytest.mark.parametrize("case", list(CASES))
def test_same_exceptions_with_and_without_replayer(api, tmp_path, recorders, case, db_state):
    if db_state == "writable":
        path = tmp_path / "rec.db"
    else:
        (tmp_path / "blocker").write_text("x")
        path = tmp_path / "blocker" / "rec.db"
    rec = recorders(path)
    kw = dict(base_url=api.url, api_key=FAKE_KEY, max_retries=0, **CASES[case][2])
    plain = anthropic.Anthropic(**kw)
    wrapped = rec.wrap(anthropic.Anthropic(**kw))

    expected = _outcome(api, plain, case)
    got = _outcome(api, wrapped, case)
    assert type(got) is type(expected)
    # the SDK (2.17 on) names the request's id in the message: each call has its own
    assert _one_id(str(got)) == _one_id(str(expected))
    assert getattr(got, "status_code", None) == getattr(expected, "status_code", None)
    assert getattr(got, "body", None) == getattr(expected, "body", None)
    if case in ("400", "429-no-retries"):
        assert got.status_code == int(case[:3])

    if db_state == "writable":
        assert rec.flush(timeout=10) is True
        rows = exported(path)
        assert len(rows) == 1
        row = rows[0]
        assert row["error"] is not None or row["abandoned"]  # what went wrong is recorded
        if case == "400":
            assert row["status"] == 400 and row["error"]["type"] == "invalid_request_error"
        if case == "429-no-retries":
            assert row["status"] == 429 and row["error"]["type"] == "rate_limit_error"
        if case == "timeout":
            assert row["status"] is None and row["error"]["type"] == "timeout_error"
    else:
        assert rec.flush(timeout=0.2) is False


def test_redact_that_raises_never_reaches_the_agent(api, db_path, recorders, log_warnings):
    def redact(record):
        if "boom" in json.dumps(record["request"]):
            raise ValueError("redact failed")
        return record

    rec = recorders(db_path, redact=redact)
    client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
    assert ask(client, "boom").type == "message"
    assert ask(client, "fine").type == "message"
    assert rec.flush(timeout=10) is True
    assert last_user_texts(db_path) == ["fine"]
    assert warnings_of(log_warnings, "ValueError")


def test_values_sqlite_cant_take_cost_nothing(db_path, recorders, log_warnings):
    """A metadata.user_id that isn't a string (the API refuses it, the agent may still send it)
    is kept in the request, not as the user. A model, reply id or stop reason that is a list, a
    lone surrogate in one, ids that are numbers or lists, tags JSON can't hold: each record is
    stored whole, its columns get text (or nothing), the request and response stay as sent.
    Before, a list user_id stalled the writer (every later record retried with it, forever), and
    then each such value cost its record. (`record()` itself refuses ids that aren't strings:
    test_record_arguments.py; `conversation()` still takes them, as text.)"""
    req = {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    resp = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
            "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 3, "output_tokens": 2}}  # fmt: skip
    odd = ["not", "a", "string"]
    rec = recorders(db_path)
    rec.record(dict(req, metadata={"user_id": odd}), resp)
    rec.record(dict(req, messages=[{"role": "user", "content": "odd model"}]), dict(resp, model=odd, id=odd))
    rec.record(dict(req, messages=[{"role": "user", "content": "odd stop"}]), dict(resp, stop_reason="end\ud800"))
    with rec.conversation(["conv", "as", "list"], user_id="u\udc80", tags={"when": datetime.date(2026, 1, 2)}):
        rec.record(dict(req, messages=[{"role": "user", "content": "odd ids"}]), resp)
    assert rec.flush(timeout=10) is True
    assert warnings_of(log_warnings, "could not store") == []
    lines = {line["request"]["messages"][0]["content"]: line for line in exported(db_path)}
    assert sorted(lines) == ["hi", "odd ids", "odd model", "odd stop"]
    assert lines["hi"]["request"]["metadata"] == {"user_id": odd} and lines["hi"]["user_id"] is None
    assert lines["odd model"]["response"]["model"] == odd and lines["odd model"]["response"]["id"] == odd
    assert lines["odd stop"]["response"]["stop_reason"] == "end\ud800"
    assert lines["odd ids"]["conversation_id"] == "['conv', 'as', 'list']" and lines["odd ids"]["user_id"] == "u\ufffd"
    with sqlite3.connect(db_path) as conn:
        assert conn.execute(
            "SELECT tags_json FROM conversations WHERE id = ?", ["['conv', 'as', 'list']"]
        ).fetchone() == ('{"when": "2026-01-02"}',)
        stops = [r[0] for r in conn.execute("SELECT stop_reason FROM attempts")]
    assert sorted(stops) == ["end_turn"] * 3 + ["end\ufffd"]


def test_a_call_the_writer_cannot_read_costs_that_record_only(api, db_path, recorders, log_warnings):
    """The middleware leaves reading a call to the writer (`capture._Attempt`). One that can't be
    read (here, an HTTP response with nothing in it) is skipped with a warning; the writer goes on."""
    from types import SimpleNamespace

    from replayer.capture import _Attempt

    rec = recorders(db_path)
    client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
    assert ask(client, "before").type == "message"
    sdk_request = SimpleNamespace(options=SimpleNamespace(idempotency_key="k"), retries_taken=0, stream=False)
    rec._writer.put(_Attempt(sdk_request, object(), None, 0.0, 0.0, "/v1/messages", 0))
    assert ask(client, "after").type == "message"
    assert rec.flush(timeout=10) is True
    assert last_user_texts(db_path) == ["before", "after"]
    assert len(warnings_of(log_warnings, "could not read a captured call")) == 1
    assert rec._writer.failed == 1


# -- secrets, file modes, redaction ------------------------------------------------------------

SECRETS = (FAKE_KEY, "COOKIESECRET", "XAPIKEYSECRET", "AUTHTOKENSECRET", "Bearer")


def test_no_credentials_reach_the_db(api, db_path, rec):
    headers = {"Cookie": "session=COOKIESECRET", "x-api-key": "XAPIKEYSECRET"}
    with_headers = rec.wrap(
        anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0, default_headers=headers)
    )
    plain = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
    bearer = rec.wrap(anthropic.Anthropic(base_url=api.url, auth_token="AUTHTOKENSECRET", max_retries=0))
    unreachable = rec.wrap(
        anthropic.Anthropic(base_url="http://127.0.0.1:1", api_key=FAKE_KEY, max_retries=0, default_headers=headers)
    )

    ask(with_headers, "MARKER plain")
    list(ask(with_headers, "MARKER streamed", stream=True))
    with plain.messages.stream(
        model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "MARKER helper"}]
    ) as s:
        s.get_final_message()
    ask(bearer, "MARKER token auth")
    api.enqueue(Reply(status=401, body={"type": "error",
                                        "error": {"type": "authentication_error", "message": "invalid x-api-key"}}))
    with pytest.raises(anthropic.AuthenticationError):
        ask(with_headers, "MARKER error")
    with pytest.raises(anthropic.APIConnectionError):
        ask(unreachable, "MARKER unreachable")
    rec.record(
        {"model": MODEL, "max_tokens": 1, "messages": [{"role": "user", "content": "MARKER record"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "text", "text": "ok"}]},
        headers={"Authorization": "Bearer AUTHTOKENSECRET", "X-Api-Key": FAKE_KEY, "Cookie": "COOKIESECRET",
                 "anthropic-version": "2023-06-01"},
    )

    # the secrets really were on the wire
    wire = json.dumps([r["headers"] for r in api.received])
    for secret in SECRETS:
        assert secret in wire, secret

    assert rec.flush(timeout=10) is True
    files = db_bytes(db_path)
    assert db_path.name in files and f"{db_path.name}-wal" in files
    assert any(b"MARKER plain" in data for data in files.values())  # the search does find stored text
    for name, data in files.items():
        for secret in SECRETS:
            assert secret.encode() not in data, f"{secret!r} found in {name}"
            assert secret.lower().encode() not in data.lower(), f"{secret!r} found in {name}"

    rows = exported(db_path)
    assert len(rows) == 7
    for row in rows:
        assert set(row["request_headers"]) <= {"anthropic-version", "anthropic-beta"}, row["request_headers"]
    assert all("anthropic-version" in r["request_headers"] for r in rows)
    export_text = json.dumps(rows)
    for secret in SECRETS:
        assert secret not in export_text

    rec.close()  # checkpointed into the main file: still clean
    for name, data in db_bytes(db_path).items():
        for secret in SECRETS:
            assert secret.encode() not in data, f"{secret!r} found in {name} after close"


def test_new_db_files_are_owner_only(api, tmp_path, recorders):
    path = tmp_path / "new-folder" / "rec.db"
    old = os.umask(0)  # even with a permissive umask
    try:
        rec = recorders(path)
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
        ask(client, "mode")
        assert rec.flush(timeout=10) is True
        names = db_bytes(path)
        assert f"{path.name}-wal" in names
        for name in names:
            mode = stat.S_IMODE(os.stat(path.parent / name).st_mode)
            assert mode == 0o600, f"{name}: {oct(mode)}"
        assert stat.S_IMODE(os.stat(path.parent).st_mode) & 0o077 == 0  # the folder it made, too
    finally:
        os.umask(old)


EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


def test_redact_rewrites_and_drops_records(api, db_path, recorders):
    seen = []

    def redact(record):
        seen.append(record)
        req = record["request"]
        if req.get("model") == "drop-me":
            return None
        for m in req["messages"]:
            if isinstance(m["content"], str):
                m["content"] = EMAIL.sub("<email>", m["content"])
            else:
                for block in m["content"]:
                    if block.get("type") == "text":
                        block["text"] = EMAIL.sub("<email>", block["text"])
        return record

    rec = recorders(db_path, redact=redact)
    client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
    ask(client, "mail alice@example.com please")
    list(ask(client, "or bob.smith+x@example.org", stream=True))
    ask(client, "secret plan carol@example.net", model="drop-me")
    rec.record(
        {"model": MODEL, "max_tokens": 1,
         "messages": [{"role": "user", "content": [{"type": "text", "text": "dave@example.com"}]}]},
        {"type": "message", "role": "assistant", "content": [{"type": "text", "text": "ok"}]},
    )
    assert rec.flush(timeout=10) is True

    assert len(seen) == 4
    for record in seen:  # what redact gets holds no credentials either
        assert set(record["request_headers"]) <= {"anthropic-version", "anthropic-beta"}

    rows = exported(db_path)
    assert len(rows) == 3
    assert all(r["request"]["model"] != "drop-me" and r["model"] != "drop-me" for r in rows)
    assert sorted(last_user_texts(db_path)) == sorted(["mail <email> please", "or <email>", "<email>"])
    for name, data in db_bytes(db_path).items():
        for address in (b"alice@", b"bob.smith", b"carol@", b"dave@", b"secret plan"):
            assert address not in data, f"{address!r} in {name}"


def test_exit_closes_what_close_could_not_write_as_it_closes_everything_else(tmp_path, recorders, monkeypatch):
    """close() answered False (records left unwritten, and said so): the exit handler closes that
    writer once more as it closes any, with the exit timeout as its final wait (`final`), which
    only a lock makes it wait out (the README: retried while the database is locked; a file that
    can't be written for another reason has them saved beside it at once). It gave them one try
    and no wait (`final=0`), so an agent ending with its own close() lost the wait for a lock
    (test_records_an_agents_own_close_could_not_write_for_a_lock_...). A record put after close()
    is closed the same way."""
    from replayer.store import writer as writer_module

    monkeypatch.setenv("REPLAYER_WRITER", "thread")
    monkeypatch.setenv("REPLAYER_EXIT_TIMEOUT", "3")
    rec = recorders(_unwritable(tmp_path, "under-a-file"))
    rec.record({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]})
    assert rec.close() is False
    closed_at_exit: list = []
    monkeypatch.setattr(type(rec._writer), "close",
                        lambda self, timeout=None, **kw: closed_at_exit.append((self, kw.get("final"))))  # fmt: skip
    writer_module._flush_at_exit()
    assert [final for w, final in closed_at_exit if w is rec._writer] == [3.0]
    closed_at_exit.clear()
    rec._writer._put_after_close = True  # as a record put after close() leaves it
    writer_module._flush_at_exit()
    assert [final for w, final in closed_at_exit if w is rec._writer] == [3.0]


def test_sqlite_faults_are_read_from_result_codes(tmp_path):
    """The writer and open_db tell locked, read-only and corrupt files apart by SQLite's result
    code (`schema.fault_of`), whatever the message's wording."""
    from replayer.store.schema import Fault, fault_of

    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database " * 200)
    with pytest.raises(sqlite3.DatabaseError) as corrupt:
        sqlite3.connect(junk).execute("SELECT * FROM sqlite_master").fetchall()
    assert fault_of(corrupt.value) is Fault.CORRUPT

    path = tmp_path / "ok.db"
    holder = sqlite3.connect(path, timeout=0, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError) as locked:
        other.execute("BEGIN IMMEDIATE")
    assert fault_of(locked.value) is Fault.LOCKED
    holder.execute("ROLLBACK")

    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError) as read_only:
        reader.execute("INSERT INTO t VALUES (1)")
    assert fault_of(read_only.value) is Fault.READ_ONLY

    assert fault_of(sqlite3.ProgrammingError("Cannot operate on a closed database.")) is None
    assert fault_of(ValueError("database is locked")) is None  # the words alone are not a fault
    for conn in (holder, other, reader):
        conn.close()


# -- a loop of record() calls keeps near the writer -----------------------------------------------


def _turn(i: int) -> tuple[dict, dict]:
    request = {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": f"q{i}"}]}
    response = {"id": f"msg_{i}", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                "content": [{"type": "text", "text": f"a{i}"}], "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": 10, "output_tokens": 2}}  # fmt: skip
    return request, response


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_a_loop_of_record_calls_never_runs_far_ahead_of_the_writer(tmp_path, monkeypatch, writer):
    """An import of history calls record() faster than records are stored: it waits for the
    writer every BEHIND records (the flush it started the time before), so what is held in memory
    stays bounded (it grew with the whole import, then the exit waited for all of it)."""
    from replayer import recorder

    monkeypatch.setattr(recorder, "BEHIND", 20)
    monkeypatch.setenv("REPLAYER_WRITER", writer)
    path = tmp_path / "import.db"
    rec = Recorder(path)
    held = []
    for i in range(600):
        rec.record(*_turn(i), conversation_id=f"c{i % 7}", started_at=1.7e9 + i)
        held.append(rec._writer.unwritten)
    assert max(held) <= 2 * 20 + 1, max(held)
    assert rec.close(timeout=30) is True
    assert len(exported(path)) == 600


def test_a_loop_of_record_calls_goes_on_while_the_database_cannot_be_written(tmp_path, monkeypatch):
    """The writer is not waited for while it can't write (each wait would be answered "no"):
    record() goes on, its records buffered as ever, and they land once the database can be
    written."""
    from replayer import recorder

    monkeypatch.setattr(recorder, "BEHIND", 20)
    path = _unwritable(tmp_path, "under-a-file")
    rec = Recorder(path)

    def loop() -> bool:
        for i in range(400):
            rec.record(*_turn(i), conversation_id="c", started_at=1.7e9 + i)
        return True

    assert _within(20, loop)  # a bound for "doesn't wait for a writer that can't write", not a timing
    assert rec.dropped == 0
    _make_writable(path, "under-a-file")
    assert rec.close(timeout=30) is True
    assert len(exported(path)) == 400


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_a_stream_still_held_unread_at_exit_is_recorded_and_the_program_ends(api, tmp_path, writer):
    """A module-level `for event in stream: break`: the stream's generator is finalized only while
    the interpreter shuts down, after the writers' exit flush; its record started the writer's
    thread again then, which never returned (the program hung). It is finished at exit instead,
    abandoned as far as it got, and written with the rest."""
    import subprocess
    import sys
    import textwrap

    path = tmp_path / "exit.db"
    script = textwrap.dedent(f"""
        import anthropic
        from replayer import Recorder
        rec = Recorder({str(path)!r})
        client = rec.wrap(anthropic.Anthropic(base_url={api.url!r}, api_key={FAKE_KEY!r}, max_retries=0))
        client.messages.create(model={MODEL!r}, max_tokens=5, messages=[{{"role": "user", "content": "first"}}])
        stream = client.messages.create(model={MODEL!r}, max_tokens=5, stream=True,
                                        messages=[{{"role": "user", "content": "held"}}])
        for event in stream:
            break
        print("done")
    """)
    env = dict(os.environ, REPLAYER_WRITER=writer)
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.split() == ["done"], proc.stderr
    lines = {line["request"]["messages"][0]["content"]: line for line in exported(path)}
    assert sorted(lines) == ["first", "held"]
    assert lines["held"]["abandoned"] is True and lines["held"]["error"] is None


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_a_module_level_recorder_in_a_multiprocessing_child_is_flushed_at_its_exit(api, tmp_path, method):
    """A Recorder made where the module is imported: a spawned or forkserver child makes it while
    importing the main module, then clears the exit hooks registered so far; a forkserver child
    ends with os._exit, so its calls were never written (forkserver is Python 3.14's default)."""
    import multiprocessing
    import subprocess
    import sys
    import textwrap

    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} start method on this platform")
    path = tmp_path / "children.db"
    agent = tmp_path / "agent.py"
    agent.write_text(textwrap.dedent(f"""
        import multiprocessing, os
        import anthropic
        from replayer import Recorder
        rec = Recorder({str(path)!r})
        client = rec.wrap(anthropic.Anthropic(base_url={api.url!r}, api_key={FAKE_KEY!r}, max_retries=0))

        def work(tag):
            client.messages.create(model={MODEL!r}, max_tokens=5, messages=[{{"role": "user", "content": tag}}])

        if __name__ == "__main__":
            ctx = multiprocessing.get_context({method!r})
            p = ctx.Process(target=work, args=("child",))
            p.start()
            p.join()
            with ctx.Pool(2) as pool:
                pool.map(work, ["pool 0", "pool 1"])
                pool.close()
                pool.join()
            print("exit codes", p.exitcode)
    """))
    proc = subprocess.run([sys.executable, str(agent)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0 and "exit codes 0" in proc.stdout, proc.stderr
    assert sorted(line["request"]["messages"][0]["content"] for line in exported(path)) == ["child", "pool 0", "pool 1"]


def test_the_writer_process_leaves_no_unclosed_pipe_behind(api, tmp_path):
    """Its reports' pipe, read to its end, is closed: a ResourceWarning would reach the agent
    (an error under filterwarnings=error)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import gc, warnings
        warnings.simplefilter("error", ResourceWarning)
        import anthropic
        from replayer import Recorder
        rec = Recorder({str(tmp_path / "w.db")!r})
        client = rec.wrap(anthropic.Anthropic(base_url={api.url!r}, api_key={FAKE_KEY!r}, max_retries=0))
        client.messages.create(model={MODEL!r}, max_tokens=5, messages=[{{"role": "user", "content": "x"}}])
        rec.close()
        rec.record({{"model": {MODEL!r}, "max_tokens": 5, "messages": [{{"role": "user", "content": "y"}}]}})
        rec.close()
        gc.collect()
        print("done")
    """)
    env = dict(os.environ, REPLAYER_WRITER="process")
    proc = subprocess.run([sys.executable, "-X", "dev", "-c", script], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout.split() == ["done"], proc.stderr
    assert "ResourceWarning" not in proc.stderr, proc.stderr


# -- records a lock keeps out past the exit: written late, or saved beside the database ------------

_AGENT = """
import json, sys
import anthropic
from replayer import Recorder
rec = Recorder(sys.argv[1])
client = rec.wrap(anthropic.Anthropic(base_url=sys.argv[2], api_key=sys.argv[3], max_retries=0))
# the records go to the writer process once it is up; an exit while it is still starting gives them
# to a thread writer here instead (which saves them itself: the other test's "thread" case)
ready = getattr(rec._writer, "_ready", None)
assert ready is None or ready.wait(60)
with client.messages.stream(model="m", max_tokens=5, messages=[{"role": "user", "content": "streamed"}]) as s:
    streamed = s.get_final_message().content[0].text
recorded = []
for i in range(3):
    request = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": f"recorded {i} \\u00e9"}]}
    response = {"id": f"msg_{i}", "type": "message", "role": "assistant", "model": "m",
                "content": [{"type": "text", "text": f"reply {i}"}], "stop_reason": "end_turn",
                "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 2}}
    rec.record(request, response, latency_ms=1.5)
    recorded.append([request, response])
print(json.dumps({"streamed": streamed, "recorded": recorded}), flush=True)
"""


def _held_under_lock(tmp_path, writer: str, exit_timeout: str) -> tuple[Path, sqlite3.Connection, dict[str, str]]:
    """A replayer database another connection holds under BEGIN EXCLUSIVE, and the environment of
    a program recording into it: its writer (`process` or `thread`), exit timeout, and a lock wait
    cut to 0.2 s (a sitecustomize on the PYTHONPATH, which the writer process inherits) so the
    test is quick. Returns (path, the lock's connection, the environment)."""
    path = tmp_path / "locked.db"
    schema.open_db(path).close()
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import replayer.store.schema as s\ns.BUSY_TIMEOUT_MS = 200\n")
    lock = sqlite3.connect(path, timeout=0, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    lock.execute("DELETE FROM meta WHERE 0")
    env = dict(os.environ, REPLAYER_EXIT_TIMEOUT=exit_timeout, REPLAYER_WRITER=writer,
               PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))  # fmt: skip
    return path, lock, env


def _locked_agent(tmp_path, api, writer: str, exit_timeout: str):
    """Run _AGENT recording into a database held under a lock (_held_under_lock); the agent's
    process (and its writer process's) stderr goes to a file. Returns (path, the lock's
    connection, the agent's Popen, the stderr file)."""
    import subprocess
    import sys

    path, lock, env = _held_under_lock(tmp_path, writer, exit_timeout)
    err = tmp_path / "stderr.txt"
    with open(err, "w") as f:
        proc = subprocess.Popen([sys.executable, "-c", _AGENT, str(path), api.url, FAKE_KEY],
                                stdout=subprocess.PIPE, stderr=f, text=True, env=env)  # fmt: skip
    return path, lock, proc, err


def _spilled(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".unwritten-*.jsonl"))


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_records_a_lock_keeps_out_past_the_exit_are_saved_beside_the_db_and_written_in_later(
    api, tmp_path, writer, log_warnings
):
    """The database stays locked through the agent's exit and its exit timeout (1 s): the records
    are saved to a file beside it, which stderr names; they were lost (the writer process, or the
    exit's thread writer, gave up with "could not be written"). A later Recorder writes the file
    in first, deletes it and says so; each record is in the database once."""
    path, lock, proc, err = _locked_agent(tmp_path, api, writer, "1")
    try:
        out = json.loads(proc.communicate(timeout=60)[0])
        assert proc.returncode == 0
        # the writer process says how it ended on the same stderr, once it has
        assert wait_until(lambda: "saved to" in err.read_text(), timeout=30), err.read_text()
    finally:
        lock.rollback()
        lock.close()
    stderr = err.read_text()
    files = _spilled(path)
    assert len(files) == 1, (files, stderr)
    assert f"4 record(s) could not be written to {path} (locked); saved to {files[0]}" in stderr, stderr
    if writer == "process":  # the agent's own exit said that the writer process goes on trying
        assert "4 record(s) not yet written" in stderr and "keeps trying" in stderr, stderr
    assert exported(path) == []
    lines = files[0].read_text().splitlines()
    assert len(lines) == 4 and all(isinstance(json.loads(line), dict) for line in lines)  # JSON lines, no pickle

    rec = Recorder(path)
    rec.record({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "later"}]})
    assert rec.close() is True
    assert _spilled(path) == []
    told = warnings_of(log_warnings, "wrote 4 record(s)", str(files[0]))
    assert len(told) == 1, told
    rows = exported(path)
    assert [r["request"]["messages"][-1]["content"] for r in rows].count("later") == 1
    later = [r for r in rows if r["request"]["messages"][-1]["content"] != "later"]
    assert len(later) == 4
    Recorder(path).close()  # another writer: nothing is written in again
    assert len(exported(path)) == 5
    _check_recorded_once(later, out)


def _check_recorded_once(rows: list[dict], out: dict) -> None:
    assert len(rows) == 4, rows
    streams = [r for r in rows if r["stream"]]
    assert len(streams) == 1 and streams[0]["response"]["content"][0]["text"] == out["streamed"]
    got = sorted(([r["request"], r["response"]] for r in rows if not r["stream"]), key=json.dumps)
    assert got == sorted(out["recorded"], key=json.dumps)  # each once, JSON-equal to what was recorded


def test_records_a_lock_keeps_out_until_just_after_the_exit_are_written_by_the_writer_process(api, tmp_path):
    """The lock is released after the agent has exited: the writer process, still trying, writes
    the records and says so on the agent's stderr; nothing is saved beside the database. (Before,
    the agent said they "could not be written", and they were written a moment later.)"""
    path, lock, proc, err = _locked_agent(tmp_path, api, "process", "30")
    try:
        out = json.loads(proc.communicate(timeout=60)[0])
        assert proc.returncode == 0
        assert "4 record(s) not yet written" in err.read_text() and "keeps trying" in err.read_text()
    finally:
        lock.rollback()
        lock.close()
    assert wait_until(lambda: "wrote the 4 waiting record(s)" in err.read_text(), timeout=30), err.read_text()
    stderr = err.read_text()
    assert f"wrote the 4 waiting record(s) to {path}" in stderr and "could not be written" not in stderr, stderr
    assert _spilled(path) == []
    _check_recorded_once(exported(path), out)


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_records_an_agents_own_close_could_not_write_for_a_lock_are_written_when_it_lifts_after_the_exit(
        api, tmp_path, writer):  # fmt: skip
    """The agent ends with its own `rec.close()`, which returns False while another program holds
    the database; the lock lifts a moment after the agent has printed its last line. What close()
    could not write is still written: the exit waits out a lock for REPLAYER_EXIT_TIMEOUT, as the
    README says, whether or not the program closed the recorder itself. (With the thread writer
    the exit gave such records one more try, no wait, and saved them beside the database at once.)"""
    import subprocess
    import sys

    path, lock, env = _held_under_lock(tmp_path, writer, "30")
    err = tmp_path / "stderr.txt"
    agent = _AGENT + "print(json.dumps({'closed': rec.close(timeout=1)}), flush=True)\n"
    with open(err, "w") as f:
        proc = subprocess.Popen([sys.executable, "-c", agent, str(path), api.url, FAKE_KEY],
                                stdout=subprocess.PIPE, stderr=f, text=True, env=env)  # fmt: skip
    try:
        assert proc.stdout is not None
        out = json.loads(proc.stdout.readline())
        assert json.loads(proc.stdout.readline()) == {"closed": False}
        time.sleep(0.5)  # the agent is at its exit now, waiting (thread) or gone (process)
    finally:
        lock.rollback()
        lock.close()
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    if writer == "process":
        assert wait_until(lambda: "wrote the 4 waiting record(s)" in err.read_text(), timeout=30), err.read_text()
    stderr = err.read_text()
    assert "saved to" not in stderr and "could not be written" not in stderr, stderr
    assert _spilled(path) == []
    _check_recorded_once(exported(path), out)


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_an_exit_with_records_still_queued_says_nothing_when_they_are_written(api, tmp_path, writer):
    """The agent exits right after its calls, records still on their way: they are written at the
    exit and nothing is said about them (the exit's "wrote the N waiting record(s)" is for records
    that had waited for a locked database, not for every exit)."""
    import subprocess
    import sys

    path = tmp_path / "free.db"
    env = dict(os.environ, REPLAYER_WRITER=writer)
    proc = subprocess.run([sys.executable, "-c", _AGENT, str(path), api.url, FAKE_KEY],
                          capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "replayer:" not in proc.stderr, proc.stderr
    _check_recorded_once(exported(path), json.loads(proc.stdout))
    assert _spilled(path) == []


def test_saved_files_are_written_in_oldest_first_up_to_a_cut_off_last_line(tmp_path, log_warnings):
    """Two files saved beside the database (the newer one cut off mid-line, as by a crash while it
    was written): the next writer writes the older file's records first, then the newer one's
    whole lines, and deletes both; the cut-off line is not a record."""
    from replayer.captured import Captured
    from replayer.store import spill

    path = tmp_path / "r.db"
    schema.open_db(path).close()

    def captured(text: str) -> Captured:
        body = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": text}]}
        return Captured(call_key=text, attempt=0, t_start=1_700_000_000.0, request_bytes=json.dumps(body).encode(),
                        status=200, response_bytes=b'{"type": "message", "content": []}')  # fmt: skip

    older, _ = spill.save(str(path), [captured("older 0"), captured("older 1")])
    newer = Path(older.rsplit("-", 1)[0] + "-99999999999999.jsonl")  # a later time in its name
    whole = spill.dumps(captured("newer 0")) + "\n"
    newer.write_text(whole + spill.dumps(captured("newer 1"))[:40])
    rec = Recorder(path)
    rec.record({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "own"}]})
    assert rec.close() is True
    assert last_user_texts(path) == ["older 0", "older 1", "newer 0", "own"]
    assert _spilled(path) == []
    assert len(warnings_of(log_warnings, "by an earlier recorder")) == 2


def _saved_captured(text: str):
    from replayer.captured import Captured

    body = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": text}]}
    return Captured(call_key=text, attempt=0, t_start=1_700_000_000.0, request_bytes=json.dumps(body).encode(),
                    status=200, response_bytes=b'{"type": "message", "content": []}')  # fmt: skip


def test_a_save_beside_the_db_that_fails_to_write_leaves_no_file(tmp_path, monkeypatch):
    """The disk fills while the records are saved: save raises (the writer says they are lost) and
    leaves nothing, neither under the name the next writer takes in nor the part-made file. Before,
    the file was renamed to its own name first, and a part of the records it held was written in
    by the next writer though the message had said they were lost."""
    import errno

    from replayer.store import spill

    path = tmp_path / "r.db"

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spill.os, "fsync", full)
    with pytest.raises(OSError):
        spill.save(str(path), [_saved_captured("a"), _saved_captured("b")])
    monkeypatch.undo()
    assert _spilled(path) == [] and spill.waiting(str(path)) == []
    assert list(tmp_path.iterdir()) == []


def test_records_taken_in_from_beside_the_db_are_not_counted_as_this_writers_and_their_events_logged(
    tmp_path, monkeypatch, caplog
):
    """A writer takes in two records an earlier run saved beside the database, then stores one of
    its own: it counts one call (what `replayer record` reports as this run's), and with
    log_events each of the three has its log line. Before, the earlier run's records were counted
    as this writer's calls and conversations, and their events were dropped."""
    import logging

    from replayer.paths import REPORT_ENV
    from replayer.store import spill

    monkeypatch.setenv(REPORT_ENV, str(tmp_path / "reports"))  # as under `replayer record`: conversations kept
    path = tmp_path / "r.db"
    schema.open_db(path).close()
    spill.save(str(path), [_saved_captured("older 0"), _saved_captured("older 1")])
    rec = Recorder(path, log_events=True)
    with caplog.at_level(logging.INFO, logger="replayer"):
        rec.record({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "own"}]})
        assert rec.close() is True
    assert last_user_texts(path) == ["older 0", "older 1", "own"]
    w = rec._writer
    assert (w.calls, w.attempts, len(w.conversations)) == (1, 1, 1)
    events = [json.loads(r.getMessage()) for r in caplog.records if r.getMessage().startswith("{")]
    assert len(events) == 3 and all(ev["event_type"] == "replayer.call" for ev in events)


def test_a_saved_file_taken_in_partway_keeps_only_what_was_not_stored_and_counts_what_was(
    tmp_path, monkeypatch, log_warnings
):
    """A saved file whose batch fails on a record that can't be stored is taken in one by one; the
    disk fails partway (a fault injected into Ingestor.store): the file is rewritten with only the
    records not yet handled. The next writer stores those, skips the other bad one and says how many
    it wrote. Before, the file was kept whole (its first record was stored twice) and the message
    counted every line as written."""
    from replayer.store import spill
    from replayer.store.ingest import Ingestor
    from replayer.store.writer import Writer

    path = tmp_path / "r.db"
    schema.open_db(path).close()
    texts = ["a", "bad", "fault", "c", "bad 2"]
    file, _ = spill.save(str(path), [_saved_captured(t) for t in texts])
    store, full = Ingestor.store, [True]

    def failing(self, captured, *args, **kw):
        if captured.call_key.startswith("bad"):
            raise ValueError("a record that can't be stored")
        if captured.call_key == "fault" and full[0]:
            raise sqlite3.OperationalError("database or disk is full")
        return store(self, captured, *args, **kw)

    monkeypatch.setattr(Ingestor, "store", failing)
    writer = Writer(str(path))
    ingestor = Ingestor(schema.open_db(path))
    assert writer._take_spilled(ingestor) is False
    assert last_user_texts(path) == ["a"]
    assert [spill.loads(line).call_key for line in Path(file).read_text().splitlines()] == ["fault", "c", "bad 2"]
    assert len(warnings_of(log_warnings, "wrote 1 record(s)", file, "the other 3 stay there")) == 1

    full[0] = False
    rec = Recorder(path)
    rec.record({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "own"}]})
    assert rec.close() is True
    assert last_user_texts(path) == ["a", "fault", "c", "own"]
    assert _spilled(path) == []
    told = warnings_of(log_warnings, "wrote 2 record(s)", file, "1 record(s) that could not be stored skipped")
    assert len(told) == 1, told


_RECORDING_AGENT = """
import sys
from replayer import Recorder
rec = Recorder(sys.argv[1])
rec._writer.start()
ready = getattr(rec._writer, "_ready", None)  # records go to the writer process once it is up (see _AGENT)
assert ready is None or ready.wait(60)
for i in range(2):
    rec.record({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": f"run {i}"}]},
               {"id": f"msg_{i}", "type": "message", "role": "assistant", "model": "m", "content": [],
                "stop_reason": "end_turn", "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1}})
"""


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_record_summary_says_records_still_retried_or_saved_beside_the_db_not_lost(tmp_path, writer):
    """`replayer record` of a program whose database stays locked through its exit. The writer
    process keeps trying after it (exit timeout 30 s): the summary says the 2 records are not yet
    written and the writer keeps trying; once the lock goes they are written. A thread writer saves
    them beside the database at the exit (exit timeout 1 s): the summary says so. Before, the first
    said they "could not be written" (and they were, a moment later), the second said nothing."""
    import subprocess
    import sys

    path, lock, env = _held_under_lock(tmp_path, writer, "30" if writer == "process" else "1")
    err = tmp_path / "stderr.txt"
    try:
        with open(err, "w") as f:
            proc = subprocess.Popen([sys.executable, "-m", "replayer.cli", "--db", str(path), "record", "--",
                                     sys.executable, "-c", _RECORDING_AGENT, str(path)],
                                    stdout=subprocess.DEVNULL, stderr=f, env=env)  # fmt: skip
            assert proc.wait(timeout=90) == 0, err.read_text()
        summary = [line for line in err.read_text().splitlines() if line.startswith("replayer: nothing")]
        assert len(summary) == 1, err.read_text()
        if writer == "process":
            assert summary[0] == (
                f"replayer: nothing was written yet: 2 records not yet written to {path}: the writer keeps "
                "trying, then saves them in a file beside it (see the warnings above)"
            )
        else:
            assert summary[0] == (
                f"replayer: nothing was written yet: 2 records could not be written to {path}; saved in a file "
                "beside it: the next recorder that opens it writes them in (see the warnings above)"
            )
            assert len(_spilled(path)) == 1
    finally:
        lock.rollback()
        lock.close()
    if writer == "process":
        assert wait_until(lambda: "wrote the 2 waiting record(s)" in err.read_text(), timeout=30), err.read_text()
        assert last_user_texts(path) == ["run 0", "run 1"]


def test_a_final_flush_gives_the_writer_that_goes_on_its_busy_timeout_back(tmp_path):
    """A final flush (or close) lowers SQLite's busy timeout to what is left of its deadline while
    it waits; when it does not close the connection, the writer goes on with the connection's own
    timeout again. Before, the short timeout stayed: every later write gave up on a lock at once."""
    from replayer.store.writer import Writer

    path = tmp_path / "r.db"
    writer = Writer(str(path))
    writer.put(_saved_captured("a"))
    assert writer.flush(30, final=1.0) is True
    assert writer._ingestor is not None  # not closed: the writer goes on with this connection
    (timeout,) = writer._ingestor.db.conn.execute("PRAGMA busy_timeout").fetchone()
    assert timeout == schema.BUSY_TIMEOUT_MS
    writer.put(_saved_captured("b"))
    assert writer.close(30) is True
    assert last_user_texts(path) == ["a", "b"]
