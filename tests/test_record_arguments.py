"""`rec.record(...)`: the hook for calls made some other way (a loop of its own, an import of
historical turns). `started_at` is epoch seconds or an aware datetime. An argument of the wrong
type raises TypeError at the call, on the caller's thread: a programming mistake fails where it is
made instead of being logged by the writer thread while the record is lost. Only the database's
own trouble is kept off the caller (test_failures.py).

The responses recorded here come from the real SDK talking to the local FakeAPI, as they would in
a loop that calls the API itself and records each call.
"""

from __future__ import annotations

import json
import logging
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import anthropic
import orjson
import pytest
from conftest import FAKE_KEY, exported

from replayer import Recorder

pytestmark = pytest.mark.writer_process  # Recorders here write through a writer process, the default

MODEL = "claude-haiku-4-5"


def request(text: str) -> dict:
    return {"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": text}]}


@pytest.fixture
def sdk(api):
    """A client that does not record: the caller records each call itself with rec.record()."""
    return anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0)


@pytest.fixture
def writer_warnings(caplog):
    caplog.set_level(logging.WARNING, logger="replayer")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "replayer" and r.levelno >= logging.WARNING]


def test_started_at_as_an_aware_datetime_is_stored_at_that_instant(sdk, rec, db_path, writer_warnings):
    """A scripted import of historical turns: each with the datetime it happened at, in whatever
    zone the source gives (all stored; before, every one was lost with a warning)."""
    paris = timezone(timedelta(hours=2))
    first = datetime(2026, 6, 1, 9, 30, 15, 250_000, tzinfo=paris)
    texts = [f"historical {i}" for i in range(20)]
    for i, text in enumerate(texts):
        reply = sdk.messages.create(**request(text))
        rec.record(request(text), reply, started_at=first + timedelta(minutes=i), latency_ms=420)
    rec.record(request("as epoch seconds"), {"type": "message", "content": []}, started_at=first.timestamp())
    assert rec.flush() is True
    assert writer_warnings() == []
    rows = {r["request"]["messages"][0]["content"]: r for r in exported(db_path)}
    assert sorted(rows) == sorted([*texts, "as epoch seconds"])
    assert rows["historical 0"]["started_at"] == "2026-06-01T07:30:15.250Z"  # the same instant, in UTC
    assert rows["historical 19"]["started_at"] == "2026-06-01T07:49:15.250Z"
    assert rows["as epoch seconds"]["started_at"] == "2026-06-01T07:30:15.250Z"
    assert rows["historical 3"]["response"]["content"][0]["text"] == "reply 4 to 1 messages"


def test_a_naive_datetime_is_refused_with_the_remedy(rec, db_path):
    with pytest.raises(TypeError, match="naive datetime.*aware"):
        rec.record(request("naive"), started_at=datetime(2026, 6, 1, 9, 30))
    with pytest.raises(ValueError, match="milliseconds"):
        rec.record(request("in ms"), started_at=datetime(2026, 6, 1, tzinfo=UTC).timestamp() * 1000)
    rec.record(request("fine"), started_at=datetime(2026, 6, 1, tzinfo=UTC))
    assert rec.flush() is True
    assert [r["request"]["messages"][0]["content"] for r in exported(db_path)] == ["fine"]


@pytest.mark.parametrize("latency", [-5, -0.5, float("nan"), float("inf")])
def test_a_latency_out_of_range_is_refused(rec, db_path, latency):
    with pytest.raises(ValueError, match="record\\(\\): latency_ms"):
        rec.record(request("slow"), latency_ms=latency)
    rec.record(request("fine"), latency_ms=0)
    assert rec.flush() is True
    assert [r["request"]["messages"][0]["content"] for r in exported(db_path)] == ["fine"]


WRONG = [
    ("request", ["not", "a", "dict"]),
    ("request", None),
    ("request", 42),
    ("response", ["a", "list"]),
    ("response", 3.5),
    ("error", "boom"),
    ("latency_ms", "120"),
    ("latency_ms", True),
    ("conversation_id", 42),
    ("user_id", ["u"]),
    ("started_at", "2026-06-01T09:30:00Z"),
    ("started_at", True),
    ("headers", [("anthropic-version", "2023-06-01")]),
    ("headers", {"anthropic-version": 20230601}),
    ("status", "200"),
]


@pytest.mark.parametrize(("name", "value"), WRONG, ids=[f"{n}={type(v).__name__}" for n, v in WRONG])
def test_an_argument_of_the_wrong_type_raises_at_the_call(sdk, rec, db_path, writer_warnings, name, value):
    reply = sdk.messages.create(**request("right"))
    args = {"request": request("wrong"), "response": reply}
    args[name] = value
    req = args.pop("request")
    with pytest.raises(TypeError, match=f"record\\(\\): {name}"):
        rec.record(req, **args)
    rec.record(request("right"), reply, latency_ms=12, status=200, started_at=datetime.now(UTC))  # still records
    assert rec.flush() is True
    assert writer_warnings() == []
    assert [r["request"]["messages"][0]["content"] for r in exported(db_path)] == ["right"]


def test_the_accepted_forms_all_record(sdk, rec, db_path, writer_warnings):
    """What the signature promises: request as dict, str or bytes; response as an SDK object, a
    dict, JSON text or bytes; error as an exception or a dict; numbers as int or float."""
    reply = sdk.messages.create(**request("sdk object"))
    as_json = reply.to_json()
    rec.record(request("sdk object"), reply, latency_ms=12, status=200, conversation_id="c1", user_id="u1")
    rec.record(request("dict"), reply.to_dict(), latency_ms=12.5, started_at=1_780_000_000)
    rec.record(f'{{"model": "{MODEL}", "max_tokens": 8, "messages": [{{"role": "user", "content": "text"}}]}}', as_json)
    rec.record(b'{"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "bytes"}]}', as_json.encode())
    rec.record(request("exception"), error=TimeoutError("read timed out"), latency_ms=3)
    rec.record(request("error dict"), error={"type": "overloaded_error", "message": "busy", "status": 529},
               headers={"anthropic-version": "2023-06-01"})  # fmt: skip
    assert rec.flush() is True
    assert writer_warnings() == []
    rows = {r["request"]["messages"][0]["content"]: r for r in exported(db_path)}
    assert sorted(rows) == sorted(["sdk object", "dict", "text", "bytes", "exception", "error dict"])
    assert rows["sdk object"]["response"] == reply.to_dict() and rows["sdk object"]["user_id"] == "u1"
    assert rows["dict"]["latency_ms"] == 12.5
    assert rows["error dict"]["status"] == 529 and rows["error dict"]["request_headers"] == {
        "anthropic-version": "2023-06-01"
    }
    assert rows["exception"]["error"] == {"type": "TimeoutError", "message": "read timed out", "status": None}


def test_a_nan_or_a_null_in_a_long_growing_history_is_recorded_as_written(rec, db_path):
    """record() serialises a dict with orjson, which writes NaN and infinities as null: a document
    whose output holds a null is searched for such a float and written by json then. A long
    request is searched only where it differs from the last one that held no null (recorder.py's
    `_has_null`): a NaN or a null among the new messages is still seen, and so is one in the reply."""
    system = "You are a careful agent. " * 800  # ~20 KB: long enough for the shared-bytes search
    messages: list[dict] = [{"role": "user", "content": "start"}]
    sent = []
    for i, value in enumerate([1.5, None, 2.5, float("nan"), 3.5, float("-inf"), 4.5]):
        req = {"model": MODEL, "max_tokens": 8, "system": system, "messages": messages}
        call = {"type": "tool_use", "id": f"tu{i}", "name": "f", "input": {"x": value}}
        reply = {"role": "assistant", "content": [call]}
        rec.record(req, {"id": f"m{i}", "type": "message", "role": "assistant", "model": MODEL, "stop_sequence": None,
                         "content": reply["content"], "stop_reason": "tool_use",
                         "usage": {"input_tokens": 1, "output_tokens": 1}}, conversation_id="c")
        sent.append(json.dumps(req, sort_keys=True))
        messages = [*messages, reply, {"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"tu{i}"}]}]
    assert rec.flush()
    rows = exported(db_path)
    assert [json.dumps(r["request"], sort_keys=True) for r in rows] == sent
    replies = [r["response"]["content"][0]["input"]["x"] for r in rows]
    assert json.dumps(replies) == "[1.5, null, 2.5, NaN, 3.5, -Infinity, 4.5]"


def test_a_document_with_a_null_is_written_as_json_writes_it():
    """`_dumps` of a document whose orjson text holds a null: a NaN or an infinity anywhere in it
    (orjson's null there), in a tuple too, gives json's text; nulls alone keep orjson's (the same
    text)."""
    from replayer.recorder import _dumps

    def as_json(doc: object) -> bytes:
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()

    nested = {"a": [1, {"b": [None, {"c": [0.5, float("nan")]}]}], "d": None}
    for doc in [nested, {"x": None, "y": float("inf")}, [None, -float("inf")], {"t": (1, None), "z": -0.0}]:
        assert _dumps(doc) == (as_json(doc), False), doc
    plain = {"stop_sequence": None, "content": [{"type": "text", "text": "hi"}], "n": 1.25, "z": -0.0}
    assert _dumps(plain) == (orjson.dumps(plain), False) and orjson.dumps(plain) == as_json(plain)


def test_the_null_search_of_a_request_like_the_last_one_agrees_with_a_whole_search():
    """`_has_null(out, clean)` looks only where `out` differs from `clean` (which holds no null):
    edits of every size at every place, nulls made across an edit's edges and across 4 KB
    boundaries, all give what searching the whole of `out` gives."""
    from replayer.recorder import _has_null

    _BLOCK = 4096  # sizes and places around 4 KB boundaries (the search once went 4 KB at a time)

    rng = random.Random(7)
    alphabet = bytes(b"nul\"ab,"[i % 7] for i in range(256))  # random bytes -> these, by translate

    def text(size: int) -> bytes:
        return rng.randbytes(size).translate(alphabet)

    cases = 0
    for _ in range(3000):
        size = rng.choice([_BLOCK * 4, _BLOCK * 4 + 1, _BLOCK * 6 - 2, rng.randrange(_BLOCK * 4, _BLOCK * 10)])
        clean = text(size).replace(b"null", b"nulL")
        assert b"null" not in clean
        at = rng.choice([0, 1, size - 1, size, rng.randrange(size), _BLOCK * rng.randrange(1, 4) - rng.randrange(4)])
        cut = rng.choice([0, 0, 1, 3, 4, rng.randrange(_BLOCK * 2)])
        new = rng.choice([b"", b"null", b"ll", b"nu", b"l", b"n", b"u", text(rng.randrange(1, 9000))])
        out = clean[:at] + new + clean[at + cut :]
        assert _has_null(out, clean) == (b"null" in out), (size, at, cut, new[:20])
        cases += b"null" in out
    assert 300 < cases < 2700  # both answers were asked for often


def test_a_snapshot_holds_as_much_memory_as_its_length():
    """orjson hands back its whole write buffer (64 KiB or more) for any output; a record's
    snapshot is kept (the writer's queue, its candidate for the next request), so it is copied to
    its length. 100 snapshots of a ~7 KB request: under 2 MB traced (6 MB and more uncopied)."""
    import tracemalloc

    from replayer.recorder import _dumps

    doc = {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "x" * 7000}]}
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [_dumps(doc)[0] for _ in range(100)]
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert all(len(k) > 7000 for k in kept)
    assert grown < 2_000_000, f"{grown:,} bytes traced for {sum(map(len, kept)):,} bytes of snapshots"


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_a_relative_database_path_is_where_the_recorder_was_made(tmp_path, monkeypatch, writer):
    """An agent that changes its working folder after making its Recorder (or with a relative
    $REPLAYER_DB) still records into the one file beside where it started."""
    monkeypatch.setenv("REPLAYER_WRITER", writer)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REPLAYER_DB", "env.db")
    request = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    recorders = [Recorder("agent.db"), Recorder()]
    monkeypatch.chdir(tmp_path / "work")
    for rec in recorders:
        rec.record(request, error={"type": "api_error", "message": "x"}, status=500)
        assert rec.close()
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["agent.db", "env.db"]
    assert not list((tmp_path / "work").glob("*.db"))


@pytest.mark.parametrize("writer", ["thread", "process"])
@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_database_deleted_or_replaced_while_recording_gets_the_later_records(tmp_path, monkeypatch,
                                                                              writer_warnings, writer, how):
    """`rm replayer.db` (or another file moved over it) while an agent records: the records after
    it go to the file the path names now, said once; before, SQLite wrote them into the
    unlinked file unseen and close() said all was well."""
    from replayer.store.schema import open_db

    monkeypatch.setenv("REPLAYER_WRITER", writer)
    path = tmp_path / "live.db"
    request = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    rec = Recorder(path)
    if writer == "process":
        # the writer process up first (under load a record() made while it starts is written
        # here instead, and a writer that never had the old file open has nothing to notice)
        rec._writer.start()
        assert rec._writer._ready.wait(30)
    for _ in range(3):
        rec.record(request, error={"type": "api_error", "message": "before"}, status=500)
    assert rec.flush(10)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    if how == "replaced":
        open_db(tmp_path / "other.db").close()
        (tmp_path / "other.db").rename(path)
    for _ in range(2):
        rec.record(request, error={"type": "api_error", "message": "after"}, status=500)
    assert rec.close()
    assert len(exported(path)) == 2
    assert any(f"{path} was {how} while recording" in w for w in writer_warnings())


def test_nothing_is_recorded_while_calls_are_answered_from_a_recording(sdk, rec, db_path):
    """Under `replayer replay`, `fork` or a replaying cassette the answers are the recording's: a
    script's own record() calls add nothing to it, as its Recorder's middleware doesn't; a wrong
    argument still fails at the call."""
    from replayer.capture import replaying

    reply = sdk.messages.create(**request("replayed"))
    before = replaying(True)
    try:
        rec.record(request("replayed"), reply, latency_ms=3)
        with pytest.raises(TypeError):
            rec.record(request("replayed"), 42)
    finally:
        replaying(before)
    rec.record(request("live"), reply, latency_ms=3)
    assert rec.flush() is True
    assert [r["request"]["messages"][0]["content"] for r in exported(db_path)] == ["live"]
