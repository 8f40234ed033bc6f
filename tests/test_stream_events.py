"""A stream's SSE events kept as they came (issue 16): through the SDK middleware and through the
proxy, with each event's arrival time; read back as cassette lines (`cassette_lines`, `replayer
export --cassette`), while the export lines stay as they were."""

from __future__ import annotations

import json

from conftest import FAKE_KEY, exported

from replayer.fakeapi import Reply, message_events
from replayer.store.export import cassette_lines
from replayer.store.queries import Store
from replayer.store.schema import open_db


def _message(n: int, text: str, *, tool: bool = False) -> dict:
    content: list[dict] = [{"type": "text", "text": text}]
    if tool:
        content.append({"type": "tool_use", "id": f"toolu_{n:04d}", "name": "read_file",
                        "input": {"path": f"src/mod_{n}.py", "lines": [1, 40]}})
    return {"id": f"msg_ev{n:020d}", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": content, "stop_reason": "tool_use" if tool else "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 20 + n, "output_tokens": 7, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0}}


def _sent(events: list[dict]) -> list[tuple[str | None, object]]:
    """What the fake sends, as (event, data) pairs."""
    return [(e.get("event"), e["data"]) for e in events]


def _got(line: dict) -> list[tuple[str | None, object]]:
    return [(e["event"], e["data"]) for e in line["events"]]


def _assert_times(line: dict) -> None:
    ms = [e["ms"] for e in line["events"]]
    assert all(isinstance(v, float) for v in ms)
    assert ms == sorted(ms) and ms[0] >= 0
    assert ms[-1] <= line["latency_ms"]


def test_cassette_lines_of_a_conversation_and_of_a_run(api, rec, client, db_path):
    """Streams keep their events (in order, with non-decreasing times); a non-stream has none;
    the cassette line is the export line plus "events"."""
    streamed = [message_events(_message(1, "The answer is " + "forty-two " * 12, tool=True)),
                message_events(_message(3, "Done."))]
    unknown = {"event": "content_block_glimmer", "data": {"type": "content_block_glimmer", "index": 0,
                                                          "sparkle": {"level": 3}}}
    streamed[1].insert(3, unknown)
    api.enqueue(Reply(sse=streamed[0]), Reply(body=_message(2, "plain")), Reply(sse=streamed[1]))
    with rec.conversation("conv_events", tags={"run": "run_events_1"}):
        with client.messages.stream(model="claude-sonnet-4-5", max_tokens=64,
                                    messages=[{"role": "user", "content": "hi"}]) as s:
            s.get_final_message()
        client.messages.create(model="claude-sonnet-4-5", max_tokens=64,
                               messages=[{"role": "user", "content": "plain"}])
    with rec.conversation("conv_events_2", tags={"run": "run_events_1"}):
        for _ in client.messages.create(model="claude-sonnet-4-5", max_tokens=64, stream=True,
                                        messages=[{"role": "user", "content": "again"}]):
            pass
    with rec.conversation("conv_other"):
        client.messages.create(model="claude-sonnet-4-5", max_tokens=64,
                               messages=[{"role": "user", "content": "elsewhere"}])
    assert rec.flush()

    store = Store(open_db(db_path, create=False))
    lines = list(cassette_lines(store, conversation_id="conv_events"))
    assert [line["stream"] for line in lines] == [True, False]
    assert _got(lines[0]) == _sent(streamed[0])
    _assert_times(lines[0])
    assert lines[1]["events"] is None
    export = {line["turn_id"]: line for line in exported(db_path)}
    for line in lines:  # the export line, and "events"
        assert {k: v for k, v in line.items() if k != "events"} == export[line["turn_id"]]

    run = list(cassette_lines(store, run_id="run_events_1"))
    assert [line["conversation_id"] for line in run] == ["conv_events", "conv_events", "conv_events_2"]
    assert _got(run[2]) == _sent(streamed[1])  # the unknown event too, where it came
    assert run[2]["events"][3] == {**unknown, "ms": run[2]["events"][3]["ms"]}
    assert list(cassette_lines(store, run_id="run_nothing")) == []
    client.close()


def test_the_key_is_not_in_a_cassette(api, rec, client, db_path):
    api.enqueue(Reply(sse=message_events(_message(1, "hello"))))
    with rec.conversation("conv_key"):
        with client.messages.stream(model="claude-sonnet-4-5", max_tokens=8,
                                    messages=[{"role": "user", "content": "hi"}]) as s:
            s.get_final_message()
    assert rec.flush()
    text = json.dumps(list(cassette_lines(Store(open_db(db_path, create=False)), conversation_id="conv_key")))
    assert FAKE_KEY not in text and "x-api-key" not in text and '"events": [' in text
