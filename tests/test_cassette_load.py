"""Loading a recording fast gives what the plain way gives: `cassette_lines` (parts read in
batches, orjson where it reads JSON as json does) against each export line parsed by json and each
stream's events decoded one by one; and `replay`'s loader over a DB and over a cassette file."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import anthropic
import pytest
from conftest import FAKE_KEY
from proxy_upstream import MESSAGE
from test_import_claude_code import LOOP, PROJECT, imported

from replayer.cli.base import UserError
from replayer.fakeapi import Reply, message_events
from replayer.playback.source import load
from replayer.sse import delivered
from replayer.store.codec import dumps
from replayer.store.events import json_value, unpack_ms
from replayer.store.export import cassette_lines
from replayer.store.queries import Store
from replayer.store.schema import open_db

HUGE = 123456789012345678901234567890
"""An integer beyond 64 bits: orjson would read it as a float."""


def _plain(db: Path, **which: str) -> list[dict]:
    """The cassette lines the straightforward way: json.loads of each export line, and each
    stream's events from its stored bytes, one json.loads per event."""
    store = Store(open_db(db, create=False))
    conn = sqlite3.connect(db)
    out = []
    for text in store.export_lines(which.get("conversation_id"), run_id=which.get("run_id")):
        line = json.loads(text)
        got = conn.execute("SELECT s.body, s.event_ms FROM stream_events s JOIN attempts a ON a.id = s.attempt_id "
                           "WHERE a.request_id IS ? AND a.turn_id = ? AND a.attempt = ?",
                           (line["request_id"], line["turn_id"], line["attempt"])).fetchone()
        events = None
        if got is not None:
            times = unpack_ms(got[1]) if got[1] is not None else []
            events = []
            for i, ev in enumerate(delivered(store.stream_body(got[0]))):
                try:
                    data = json.loads(ev.data)
                except ValueError:
                    data = ev.data
                events.append({"event": ev.event, "data": data, "ms": times[i] if i < len(times) else None})
        line["events"] = events
        out.append(line)
    return out


def _same(fast: list[dict], plain: list[dict]) -> None:
    assert fast == plain
    # equal and of the same types (1 == 1.0 == True in Python; not in JSON)
    assert [json.dumps(x) for x in fast] == [json.dumps(x) for x in plain]


def _record(api, db: Path) -> None:
    from replayer import Recorder

    tool = {"type": "tool_use", "id": "toolu_0000000000000000000007", "name": "count",
            "input": {"n": HUGE, "low": -HUGE, "ok": 9223372036854775807, "f": 1.5e300, "s": "x \ud800 y"}}
    said = {**MESSAGE, "content": [{"type": "text", "text": "Counting."}, tool], "stop_reason": "tool_use"}
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    api.enqueue(
        Reply(body=said),  # (the SDK's stream parser refuses the lone surrogate)
        Reply(status=529, body=error), Reply(body={**MESSAGE, "id": "msg_after_retry"}),
        Reply(sse=message_events(MESSAGE)[:4] + [{"event": "error", "data": error}]),
        Reply(sse=[{"event": "ping", "data": "not json {"}, *message_events({**MESSAGE, "id": "msg_3"})]),
        Reply(body={**MESSAGE, "id": "msg_4"}),
    )
    history: list[dict] = [{"role": "user", "content": "Count the rows, then say 😀."}]
    with Recorder(db) as rec:
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=2))
        with rec.conversation("conv_load_1", tags={"run": "run_load"}):
            client.messages.create(model="claude-sonnet-4-5", max_tokens=64, system="Be brief.", messages=history)
            sent = {**tool, "input": {k: v for k, v in tool["input"].items() if k != "s"}}  # (the SDK can't)
            history += [{"role": "assistant", "content": [said["content"][0], sent]},
                        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool["id"],
                                                      "content": str(HUGE)}]}]
            client.messages.create(model="claude-sonnet-4-5", max_tokens=64, system="Be brief.", messages=history)
            with pytest.raises(anthropic.APIStatusError):
                for _ in client.messages.create(model="claude-sonnet-4-5", max_tokens=64, system="Be brief.",
                                                messages=history, stream=True):
                    pass
        with rec.conversation("conv_load_2", tags={"run": "run_load"}):
            for _ in client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=history,
                                            stream=True):
                pass
            client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=history[:1])
        assert rec.flush(10)


def test_fast_cassette_lines_equal_the_plain_ones(api, db_path):
    _record(api, db_path)
    imported(db_path, PROJECT / f"{LOOP}.jsonl")
    store = Store(open_db(db_path, create=False))
    conversations = [r[0] for r in store.db.execute("SELECT id FROM conversations ORDER BY started_at")]
    assert len(conversations) >= 3
    kinds = set()
    for conversation in conversations:
        fast = list(cassette_lines(Store(open_db(db_path, create=False)), conversation_id=conversation))
        _same(fast, _plain(db_path, conversation_id=conversation))
        for line in fast:
            kinds.add("stream" if line["events"] else "plain")
            kinds |= {k for k in ("reconstructed", "error") if line.get(k)}
            kinds |= {"retry"} if line["attempt"] else set()
    assert kinds == {"stream", "plain", "reconstructed", "error", "retry"}
    run = list(cassette_lines(store, run_id="run_load"))
    _same(run, _plain(db_path, run_id="run_load"))
    assert len(run) == 6
    first = run[0]["response"]["content"][1]["input"]
    assert first["n"] == HUGE and isinstance(first["n"], int) and first["low"] == -HUGE
    assert first["s"] == "x \ud800 y"  # a lone surrogate, read back by json
    assert run[4]["events"][0] == {"event": "ping", "data": "not json {", "ms": run[4]["events"][0]["ms"]}


def test_replays_loader_gives_the_same_lines_from_the_db_and_from_a_cassette_file(api, db_path, tmp_path):
    _record(api, db_path)
    plain = _plain(db_path, run_id="run_load")
    loaded = load("run_load", lambda: Store(open_db(db_path, create=False)), db_path)
    _same(loaded.lines, plain)
    cassette = tmp_path / "run.jsonl"
    cassette.write_text("".join(dumps(line) + "\n" for line in plain), encoding="utf-8")
    _same(load(str(cassette), lambda: pytest.fail("a file needs no database")).lines, plain)

    # the pytest plugin's cassettes start with a line naming their test: not a call
    owned = tmp_path / "owned.jsonl"
    owned.write_text('{"test": "tests/test_x.py::test_a"}\n' + cassette.read_text("utf-8"), encoding="utf-8")
    recording = load(str(owned), lambda: pytest.fail("a file needs no database"))
    _same(recording.lines, plain)
    assert recording.test == "tests/test_x.py::test_a" and load(str(cassette), lambda: None).test is None
    late = tmp_path / "late.jsonl"  # only as the first line
    late.write_text(cassette.read_text("utf-8") + '{"test": "tests/test_x.py::test_a"}\n', encoding="utf-8")
    with pytest.raises(UserError, match=f"line {len(plain) + 1} is not a cassette line"):
        load(str(late), lambda: None)
    alone = tmp_path / "alone.jsonl"
    alone.write_text('{"test": "tests/test_x.py::test_a"}\n', encoding="utf-8")
    with pytest.raises(UserError, match="the file holds no recorded call"):
        load(str(alone), lambda: None)


@pytest.mark.parametrize("text", [
    '{"a": -9223372036854775809}', "[1,\n 18446744073709551616]", "12345678901234567890", '{"a":[-0, 0.1, 1E2]}',
    '{"id": "toolu_0000000000000000000000", "n": 9223372036854775807}', '"\\ud800"', "[NaN, Infinity]",
    "[1e400]", '{"a": 1, "a": 2}', '" 1234567890123456789012"',
])
def test_json_value_reads_as_json_does(text):
    got, want = json_value(text), json.loads(text)
    assert json.dumps(got) == json.dumps(want)
    assert type(got) is type(want)


def test_json_value_refuses_what_json_refuses():
    for text in ["", "[1,]", '{"a": "\x00"}', "\ufeff{}", "{"]:
        with pytest.raises(ValueError):
            json_value(text)
    assert math.isnan(json_value("NaN"))
