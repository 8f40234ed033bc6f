"""The writer in a process of its own (store/process.py): records parsed and written off the
agent's GIL, the same database and counters as a thread writer, and what happens when the child
can't do its part."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading

import anthropic
import pytest
from conftest import FAKE_KEY, exported, wait_until
from test_failures import ask, last_user_texts, warnings_of

from replayer import Recorder
from replayer.store.process import ProcessWriter
from replayer.store.writer import Writer

pytestmark = pytest.mark.writer_process  # Recorders here write through a writer process, the default


@pytest.fixture
def log_warnings(caplog):
    caplog.set_level(logging.WARNING, logger="replayer")
    return caplog


def test_records_are_written_by_another_process(api, db_path):
    rec = Recorder(db_path)
    client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
    assert isinstance(rec._writer, ProcessWriter)
    assert rec._writer._ready.wait(20)  # started when installed (records before this are written here)
    for i in range(3):
        ask(client, f"turn {i}")
    assert rec.flush(timeout=10) is True
    child = rec._writer._child
    assert child is not None and child.pid != os.getpid() and child.poll() is None
    # in a session of its own: Ctrl+C in the terminal reaches the agent, which flushes, not it
    assert os.getsid(child.pid) != os.getsid(0)
    assert rec._writer._local is None  # no thread writer in this process took part
    assert last_user_texts(db_path) == ["turn 0", "turn 1", "turn 2"]
    assert (rec._writer.calls, rec._writer.attempts, rec._writer.unwritten) == (3, 3, 0)
    assert rec.close(timeout=10) is True
    assert wait_until(lambda: child.poll() is not None)  # closed: the child ends (and is reaped)
    assert not os.path.exists(f"{db_path}-wal") or os.path.getsize(f"{db_path}-wal") == 0
    ask(client, "after close")  # a record after close() starts another child
    assert rec.close(timeout=10) is True
    assert last_user_texts(db_path)[-1] == "after close"


def _replayer_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("replayer-")}


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_a_recorder_per_job_leaves_no_thread_behind(api, tmp_path, monkeypatch, kind):
    """A program that makes a Recorder per job (a server, an eval harness) and closes it does not
    collect idle threads: a close that wrote everything ends the Recorder's threads. A record
    after close() starts them again, and a close that could not write keeps them (its records
    wait in memory, and flush() still answers False)."""
    if kind == "thread":
        monkeypatch.setenv("REPLAYER_WRITER", "thread")
    started: set[threading.Thread] = set()

    def job(i: int, db) -> Recorder:
        before = _replayer_threads()
        rec = Recorder(db)
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
        ask(client, f"job {i}")
        started.update(_replayer_threads() - before)
        return rec

    for i in range(4):
        assert job(i, tmp_path / f"job{i}.db").close(timeout=10) is True
        assert last_user_texts(tmp_path / f"job{i}.db") == [f"job {i}"]
    assert started, "the recorders started no thread: nothing was tested"
    assert wait_until(lambda: not any(t.is_alive() for t in started)), [t.name for t in started if t.is_alive()]

    started.clear()
    rec = job(4, tmp_path / "again.db")
    assert rec.close(timeout=10) is True
    before = _replayer_threads()
    client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
    ask(client, "after close")  # starts them again
    again = _replayer_threads() - before
    assert rec.flush(timeout=10) is True
    assert last_user_texts(tmp_path / "again.db") == ["job 4", "after close"]
    assert rec.close(timeout=10) is True
    assert again and wait_until(lambda: not any(t.is_alive() for t in again | started))

    (tmp_path / "blocker").write_text("a regular file where the DB's folder should be")
    started.clear()
    failing = job(5, tmp_path / "blocker" / "r.db")
    assert failing.close(timeout=5) is False
    assert failing.flush(timeout=1) is False  # its record waits in memory, not forgotten
    assert any(t.is_alive() for t in started)


def test_the_writer_process_yields_to_the_recording_process(api, db_path, monkeypatch):
    """The child runs under SCHED_BATCH, all its threads (its wake-ups don't preempt the agent or
    the proxy), at the same nice value; REPLAYER_WRITER_BATCH=0 turns that off."""
    for setting, policy in (("1", os.SCHED_BATCH), ("0", os.SCHED_OTHER)):
        monkeypatch.setenv("REPLAYER_WRITER_BATCH", setting)
        rec = Recorder(db_path)
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
        assert rec._writer._ready.wait(20)
        ask(client, f"batch {setting}")
        assert rec.flush(timeout=10) is True
        child = rec._writer._child
        assert child is not None
        threads = [int(t) for t in os.listdir(f"/proc/{child.pid}/task")]
        assert len(threads) > 1  # the writer thread and the counters' thread inherited it
        assert {os.sched_getscheduler(t) for t in threads} == {policy}
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == os.getpriority(os.PRIO_PROCESS, 0)
        assert rec.close(timeout=10) is True
    assert last_user_texts(db_path) == ["batch 1", "batch 0"]


def test_a_thread_writer_where_the_users_code_runs_here(db_path, monkeypatch):
    assert isinstance(Recorder(db_path, redact=lambda record: record)._writer, Writer)
    assert isinstance(Recorder(db_path, log_events=True)._writer, Writer)
    monkeypatch.setattr(sys, "executable", "/usr/bin/uwsgi")  # embedded in a server: not a Python to run
    assert isinstance(Recorder(db_path)._writer, Writer)
    monkeypatch.undo()
    monkeypatch.setenv("REPLAYER_WRITER", "thread")
    assert isinstance(Recorder(db_path)._writer, Writer)


def test_a_writer_process_that_dies_hands_over_to_a_thread(api, db_path, log_warnings):
    rec = Recorder(db_path)
    client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
    assert rec._writer._ready.wait(20)
    ask(client, "before")
    assert rec.flush(timeout=10) is True
    child = rec._writer._child
    child.send_signal(signal.SIGKILL)
    assert wait_until(lambda: rec._writer._child is None)
    for text in ("after 1", "after 2"):
        assert ask(client, text).type == "message"
    assert rec.flush(timeout=10) is True
    assert last_user_texts(db_path) == ["before", "after 1", "after 2"]
    ended = warnings_of(log_warnings, "writer process ended")
    assert len(ended) == 1 and f"exit code {-signal.SIGKILL}" in ended[0] and str(db_path) in ended[0], ended
    assert rec._writer.calls == 3
    rec.close()


def test_a_record_that_cannot_be_pickled_is_written_here(api, db_path):
    rec = Recorder(db_path)
    client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
    assert rec._writer._ready.wait(20)
    ask(client, "plain")
    with rec.conversation("conv-with-a-lock", tags={"lock": threading.Lock()}):
        ask(client, "tagged with a lock")
    assert rec.flush(timeout=10) is True
    assert sorted(last_user_texts(db_path)) == ["plain", "tagged with a lock"]
    assert {line["conversation_id"] for line in exported(db_path)} >= {"conv-with-a-lock"}
    rec.close()


def test_the_child_runs_this_replayer_not_one_in_the_current_folder(api, tmp_path, monkeypatch):
    """An agent run from a folder that holds another `replayer` (a checkout of another version)
    still gets a writer process running the replayer it imported."""
    other = tmp_path / "replayer"
    other.mkdir()
    (other / "__init__.py").write_text("raise SystemExit('the replayer in the current folder was imported')\n")
    monkeypatch.chdir(tmp_path)
    rec = Recorder(tmp_path / "here.db")
    client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
    writer = rec._writer
    assert wait_until(lambda: writer._ready.is_set() or writer._thread_only, 20)
    assert writer._ready.is_set() and not writer._thread_only  # the child started: it imported ours
    ask(client, "from here")
    assert rec.close(timeout=10) is True
    assert last_user_texts(tmp_path / "here.db") == ["from here"]


def test_what_reached_the_pipe_is_written_when_the_agent_is_killed(api, tmp_path):
    """SIGKILL skips every exit handler; the child still writes all it was sent, then closes the
    database whole (no WAL left)."""
    db = tmp_path / "killed.db"
    script = tmp_path / "agent.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal, time
        import anthropic
        from replayer import Recorder
        rec = Recorder({str(db)!r})
        client = rec.wrap(anthropic.Anthropic(base_url={api.url!r}, api_key={FAKE_KEY!r}, max_retries=0))
        assert rec._writer._ready.wait(20)
        for i in range(4):
            client.messages.create(model="m", max_tokens=5, messages=[{{"role": "user", "content": f"call {{i}}"}}])
        while rec._writer._sent < 4:  # handed to the child (the feeder lingers a moment first)
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGKILL)
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert wait_until(lambda: db.exists() and not os.path.exists(f"{db}-wal") and len(exported(db)) == 4, 20)
    assert last_user_texts(db) == [f"call {i}" for i in range(4)]


def test_a_burst_larger_than_a_frame_arrives_whole(db_path):
    """Records go over in frames of about FRAME_BYTES; a burst of bigger records spans several."""
    from replayer.store import process

    rec = Recorder(db_path)
    rec._writer.start()
    assert rec._writer._ready.wait(20)
    texts = [f"{i} " + "x" * (process.FRAME_BYTES // 2) for i in range(5)]
    for text in texts:
        rec.record({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": text}]})
    assert rec.flush(timeout=30) is True
    assert last_user_texts(db_path) == texts
    assert isinstance(rec._writer, ProcessWriter) and rec._writer._local is None
    rec.close()


def test_records_made_while_the_child_starts_are_written_here_first(db_path):
    """The child's start-up takes a few tenths of a second: records a flush waits for then (and a
    burst) are written by a thread writer at once, and the child takes over after them, so a
    conversation stays in order."""
    rec = Recorder(db_path)
    messages: list[dict] = []

    def turn(i: int) -> None:
        messages.append({"role": "user", "content": f"turn {i}"})
        rec.record({"model": "m", "max_tokens": 5, "messages": messages}, {
            "id": f"msg_{i}", "type": "message", "role": "assistant", "model": "m",
            "content": [{"type": "text", "text": f"reply {i}"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 3, "output_tokens": 2}})
        messages.append({"role": "assistant", "content": [{"type": "text", "text": f"reply {i}"}]})

    for i in range(3):
        turn(i)  # the child is not up yet
    assert rec.flush(timeout=20) is True
    writer = rec._writer
    assert writer._local is not None and writer._local.calls == 3 and writer._sent == 0  # written here
    assert writer._ready.wait(20)
    for i in range(3, 6):
        turn(i)
    assert rec.flush(timeout=20) is True
    assert writer._local.calls == 3 and writer._counts.calls == 3  # the later ones by the child
    lines = exported(db_path)
    assert len({line["conversation_id"] for line in lines}) == 1  # one conversation, in order
    assert last_user_texts(db_path) == [f"turn {i}" for i in range(6)]
    assert rec.close(timeout=10) is True


def test_an_agents_few_records_wait_for_the_child(db_path):
    """Without a flush or a burst, records made while the child starts wait for it: writing them
    here would take the agent's GIL, which the child is there to spare."""
    rec = Recorder(db_path)
    rec._writer.start()
    for i in range(3):
        rec.record({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": f"call {i}"}]})
    assert wait_until(lambda: rec._writer._sent == 3, 20)
    assert rec._writer._local is None
    assert rec.close(timeout=10) is True
    assert sorted(last_user_texts(db_path)) == [f"call {i}" for i in range(3)]


def test_a_flush_behind_records_waiting_for_a_slow_child_is_not_held_up(db_path, tmp_path, monkeypatch):
    """Records waiting for a child that is slow to start, and a flush (an exit's) queued behind
    them: the thread writer takes them at once instead of the flush waiting for the child."""
    from replayer.store import process

    slow = tmp_path / "python-slow"  # a Python that takes a minute to start
    slow.write_text(f"#!/bin/sh\nsleep 60\nexec {sys.executable} \"$@\"\n")
    slow.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(slow))
    rec = Recorder(db_path)
    writer = rec._writer
    try:
        rec.record({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "before the exit"}]})
        assert wait_until(lambda: writer.q.qsize() == 0 and writer._child is not None, 20)
        threading.Event().wait(process.FEED_LINGER_SECONDS * 4)  # the feeder now waits for the child
        assert rec.flush(timeout=10) is True
        assert last_user_texts(db_path) == ["before the exit"]
    finally:
        if writer._child is not None:
            os.killpg(writer._child.pid, signal.SIGKILL)



def _conversation(rec: Recorder):
    """`turns(first, n)`: n more turns of one growing conversation, through `rec.record()`."""
    history: list[dict] = []

    def turns(first: int, n: int) -> None:
        for i in range(first, first + n):
            history.append({"role": "user", "content": f"turn {i}"})
            reply = [{"type": "text", "text": f"reply {i}"}]
            rec.record({"model": "m", "max_tokens": 5, "messages": list(history)}, {
                "id": f"msg_{i}", "type": "message", "role": "assistant", "model": "m", "content": reply,
                "stop_reason": "end_turn", "usage": {"input_tokens": 3, "output_tokens": 2}})
            history.append({"role": "assistant", "content": reply})

    return turns


def test_a_burst_begun_here_stays_here_until_it_ends(db_path, tmp_path, monkeypatch):
    """A burst of `record()` calls begun while the child started stays with the thread writer
    while it lasts, even once the child is up: a writer taking a conversation over midway parses
    its whole history again. The first round that is no burst goes to the child, in order."""
    from replayer.store import writer as writer_module

    monkeypatch.setattr(writer_module, "MAX_BATCH", 4)  # a burst: a full batch within one linger
    slow = tmp_path / "python-slow"  # a child that is surely not up during the first burst
    slow.write_text(f"#!/bin/sh\nsleep 2\nexec {sys.executable} \"$@\"\n")
    slow.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(slow))
    rec = Recorder(db_path)
    writer = rec._writer
    assert isinstance(writer, ProcessWriter)
    writer.start()
    turns = _conversation(rec)
    turns(0, 4)  # the child is not up yet
    assert rec.flush(timeout=20) is True
    assert writer._local is not None and writer._local.calls == 4
    assert writer._ready.wait(20)
    turns(4, 4)  # the burst goes on with the child up: still written here
    assert rec.flush(timeout=20) is True
    assert writer._local.calls == 8 and writer._sent == 0
    turns(8, 2)  # no burst: the child takes over
    assert rec.flush(timeout=20) is True
    assert writer._local.calls == 8 and writer._counts.calls == 2
    assert len({line["conversation_id"] for line in exported(db_path)}) == 1
    assert last_user_texts(db_path) == [f"turn {i}" for i in range(10)]
    assert rec.close(timeout=10) is True


def test_a_burst_of_record_calls_starts_no_child(db_path, monkeypatch):
    """An import of many turns at once is written here and starts no writer process; the first
    record that is no burst starts one."""
    from replayer.store import writer as writer_module

    monkeypatch.setattr(writer_module, "MAX_BATCH", 4)
    rec = Recorder(db_path)
    writer = rec._writer
    assert isinstance(writer, ProcessWriter)
    turns = _conversation(rec)
    turns(0, 4)
    assert rec.flush(timeout=20) is True
    assert writer._child is None and writer._local is not None and writer._local.calls == 4
    turns(4, 1)
    assert rec.flush(timeout=20) is True
    assert writer._child is not None
    assert last_user_texts(db_path) == [f"turn {i}" for i in range(5)]
    assert rec.close(timeout=10) is True


def test_frames_carry_bodies_as_they_are_and_a_cut_off_frame_ends_the_pipe():
    """A record's big bodies go over the pipe beside its pickle (store/frames.py), and arrive
    equal; a frame cut off (the agent killed mid-write) reads as the pipe's end."""
    import io

    from replayer.captured import Captured, Context
    from replayer.store.frames import BLOB_BYTES, encode, read_frame

    big = ("x" * BLOB_BYTES).encode() + b"\xff"
    records = [Captured(call_key="k", attempt=i, t_start=1.5, request_bytes=big, response_bytes=b"{}",
                        sse=big + b"!", ctx=Context("conv", tags={"n": i})) for i in range(3)]
    parts = encode(("put", records)) + encode(("flush", 1, False))
    assert sum(part is big for part in parts) == 3  # written as they are, not copied into a pickle
    assert sum(len(part) for part in parts) < 6 * len(big) + 2_000
    pipe = io.BytesIO(b"".join(parts))
    assert read_frame(pipe) == ("put", records)
    assert read_frame(pipe) == ("flush", 1, False)
    assert read_frame(pipe) is None
    whole = b"".join(encode(("put", records)))
    for cut in (3, len(whole) // 2, len(whole) - 1):
        assert read_frame(io.BytesIO(whole[:cut])) is None


def test_a_request_that_repeats_its_callers_last_goes_over_as_what_differs_and_arrives_whole():
    """An agent's next request resends its history: over the pipe it goes as the bytes that differ
    from its caller's last request (store/frames.py, `Bodies`), and arrives byte for byte. Checked
    over random edits (appended, inserted, cut, replaced, nothing shared, nothing changed), three
    callers interleaved, more bodies than either end keeps, and a message that could not be
    pickled (nothing of it counts at either end)."""
    import io
    import random
    import threading as threading_module

    from replayer.captured import Captured
    from replayer.store.frames import BLOB_BYTES, Bodies, encode, read_frame, shared_head, shared_tail

    rng = random.Random(7)

    def noise(n: int) -> bytes:
        return bytes(rng.choice(b'{}[]",:abcxyz0123\\\xc3\xa9 ') for _ in range(n))

    def edited(body: bytes) -> bytes:
        at = rng.randrange(len(body) + 1)
        kind = rng.choice(["append", "insert", "cut", "replace", "fresh", "same", "grow-middle"])
        if kind == "append":
            return body[:-2] + noise(rng.randrange(1, 3000)) + body[-2:]
        if kind == "insert":
            return body[:at] + noise(rng.randrange(1, 300)) + body[at:]
        if kind == "cut":
            return body[:at] + body[at + rng.randrange(1, 500):]
        if kind == "replace":
            return body[:at] + noise(1) + body[at + 1:]
        if kind == "fresh":
            return noise(rng.randrange(BLOB_BYTES, 3 * BLOB_BYTES))
        if kind == "grow-middle":
            return body[:at] + noise(2 * BLOB_BYTES) + body[at:]
        return body

    def record(body: bytes, caller: int | None) -> Captured:
        return Captured(call_key="k", attempt=0, t_start=1.0, request_bytes=body, response_bytes=b"{}", caller=caller)

    sending, receiving = Bodies(), Bodies()
    last = {c: noise(BLOB_BYTES + 100) for c in (1, 2, None)}
    pipe = io.BytesIO()
    sent: list[list[Captured]] = []
    written = 0
    for _ in range(120):
        batch = []
        for _ in range(rng.randrange(1, 5)):
            caller = rng.choice([1, 2, None])
            last[caller] = edited(last[caller])
            batch.append(record(last[caller], caller))
        if rng.random() < 0.1:  # a record that can't be pickled: the whole message is not sent
            bad = record(last[1], 1)
            bad.ctx = threading_module.Lock()  # type: ignore[assignment]
            with pytest.raises(TypeError):
                encode(("put", [*batch, bad]), sending)
        parts = encode(("put", batch), sending)
        written += sum(len(p) for p in parts)
        pipe.write(b"".join(parts))
        sent.append(batch)
    pipe.seek(0)
    for batch in sent:
        got = read_frame(pipe, receiving)
        assert got[0] == "put" and [r.request_bytes for r in got[1]] == [r.request_bytes for r in batch]
        assert {type(r.request_bytes) for r in got[1]} == {bytes}  # a memoryview would compare equal too
    assert read_frame(pipe, receiving) is None
    whole = sum(len(r.request_bytes or b"") for batch in sent for r in batch)
    assert written < whole / 3, (written, whole)  # most of it went as deltas
    assert receiving.count == sending.count and list(receiving.kept) == list(sending.kept)
    assert len(receiving.kept) <= Bodies.KEEP

    # the shared head and tail, against the plain definition
    for _ in range(300):
        a = noise(rng.randrange(0, 60))
        b = edited(a) if a and rng.random() < 0.8 else noise(rng.randrange(0, 60))
        head = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        assert shared_head(a, b) == head
        most = min(len(a), len(b)) - head
        tail = next((i for i in range(most) if a[len(a) - 1 - i] != b[len(b) - 1 - i]), most)
        assert shared_tail(a, b, most) == tail


def test_a_growing_history_reaches_the_child_as_deltas_and_is_stored_as_sent(api, db_path, monkeypatch):
    """Through the real SDK and the writer process: a 30-turn loop whose history grows by ~2 KB a
    turn goes over the pipe mostly as deltas, and every request is stored as the API received it."""
    import json

    from replayer.store import process

    through_pipe = []
    encode = process.encode

    def counted(msg, bodies=None):
        parts = encode(msg) if bodies is None else encode(msg, bodies)
        through_pipe.append(sum(len(p) for p in parts))
        return parts

    monkeypatch.setattr(process, "encode", counted)
    rec = Recorder(db_path)
    client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
    assert rec._writer._ready.wait(20)
    messages: list = [{"role": "user", "content": "start"}]
    for i in range(30):
        reply = client.messages.create(model="m", max_tokens=5, messages=messages)
        messages = [*messages, {"role": "assistant", "content": [b.to_dict() for b in reply.content]},
                    {"role": "user", "content": f"result {i}: " + "é" * 1000}]
    assert rec.close(timeout=10) is True
    assert not rec._writer._bodies.kept  # a closed Recorder holds none of them
    sent = [r["body"] for r in api.received]
    assert len(sent) == 30 and sum(len(b) for b in sent) > 800_000
    assert sum(through_pipe) < sum(len(b) for b in sent) / 5, (sum(through_pipe), sum(len(b) for b in sent))
    stored = sorted(exported(db_path), key=lambda line: len(line["request"]["messages"]))
    assert [line["request"] for line in stored] == [json.loads(b) for b in sent]
