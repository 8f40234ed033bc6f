"""Capture through the SDK middleware: every call path, exactly what went over the wire."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import threading

import anthropic
import pytest
from anthropic import beta_tool
from conftest import FAKE_KEY, VECTORS, exported, sent_bodies
from pydantic import BaseModel

from replayer import Recorder
from replayer.fakeapi import Reply, message_events

USER = [{"role": "user", "content": "Hello there"}]


def msg(text="Hi!", *, message_id="msg_01ABC", model="claude-sonnet-4-5", content=None, stop="end_turn", **extra):
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content if content is not None else [{"type": "text", "text": text}],
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {
            "input_tokens": 12, "output_tokens": 4, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0
        },
        **extra,
    }


ERR_529 = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
ERR_429 = {"type": "error", "error": {"type": "rate_limit_error", "message": "Too many requests"}}


def test_create_records_request_and_response_as_on_the_wire(api, rec, client, db_path):
    api.enqueue(Reply(body=msg("Hi! How can I help?")))
    out = client.messages.create(
        model="claude-sonnet-4-5", max_tokens=256, messages=USER, system="Be brief.", metadata={"user_id": "u1"}
    )
    assert out.content[0].text == "Hi! How can I help?"
    assert rec.flush(10)
    [line] = exported(db_path)
    assert line["request"] == sent_bodies(api)[0]
    assert line["response"] == msg("Hi! How can I help?")
    assert line["status"] == 200
    assert line["request_headers"]["anthropic-version"] == api.received[0]["headers"]["anthropic-version"]
    assert set(line["request_headers"]) <= {"anthropic-version", "anthropic-beta"}
    assert line["request_id"] == "req_fake0000000000000001"
    assert line["user_id"] == "u1"
    assert line["attempt"] == 0 and line["index"] == 0 and line["stream"] is False
    assert line["latency_ms"] > 0 and line["ttft_ms"] is None
    assert line["model"] == "claude-sonnet-4-5"
    assert line["cost_usd"] == pytest.approx((12 * 3 + 4 * 15) / 1e6)


def test_recorded_calls_are_marked_only_under_record(api, rec, client, db_path, monkeypatch):
    """The mark that keeps `record`'s proxy from recording a call twice is sent only under
    `record` (its run id in the environment): elsewhere the provider isn't told."""
    from replayer.autorecord import RUN_ENV
    from replayer.capture import RECORDED_HEADER

    monkeypatch.delenv(RUN_ENV, raising=False)
    client.messages.create(model="claude-sonnet-4-5", max_tokens=16, messages=USER)
    monkeypatch.setenv(RUN_ENV, "run_marked")
    client.messages.create(model="claude-sonnet-4-5", max_tokens=16, messages=USER)
    assert [RECORDED_HEADER in {k.lower() for k in r["headers"]} for r in api.received] == [False, True]
    assert rec.flush(10) and len(exported(db_path)) == 2


def test_stream_true_records_the_message_its_events_build(api, rec, client, db_path):
    m = msg(content=[{"type": "text", "text": "Streaming works fine."},
                     {"type": "tool_use", "id": "toolu_01X", "name": "grep",
                      "input": {"pattern": "def main", "path": "src"}}],
            stop="tool_use")
    api.enqueue(Reply(sse=message_events(m)))
    events = list(client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=USER, stream=True))
    assert events[-1].type == "message_stop"
    assert rec.flush(10)
    [line] = exported(db_path)
    assert line["stream"] is True and line["request"]["stream"] is True
    assert line["response"]["content"] == m["content"]
    assert line["response"]["stop_reason"] == "tool_use"
    assert line["usage"]["output_tokens"] == 4 and line["usage"]["input_tokens"] == 12
    assert line["ttft_ms"] is not None and 0 < line["ttft_ms"] <= line["latency_ms"]
    assert line["abandoned"] is False


def test_messages_stream_helper_and_final_message_match(api, rec, client, db_path):
    m = msg("The answer is 42.")
    api.enqueue(Reply(sse=message_events(m)))
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=100, messages=USER) as s:
        final = s.get_final_message()
    assert rec.flush(10)
    [line] = exported(db_path)
    assert line["response"]["content"] == [b.to_dict() for b in final.content]
    assert line["abandoned"] is False


def test_parse_is_recorded(api, rec, client, db_path):
    class Answer(BaseModel):
        city: str
        temp_c: int

    api.enqueue(Reply(body=msg('{"city": "Oslo", "temp_c": -3}')))
    parsed = client.messages.parse(model="claude-sonnet-4-5", max_tokens=100, messages=USER, output_format=Answer)
    assert parsed.parsed_output == Answer(city="Oslo", temp_c=-3)
    assert rec.flush(10)
    [line] = exported(db_path)
    assert line["request"] == sent_bodies(api)[0]
    assert "output_config" in line["request"] or "output_format" in line["request"]
    assert line["response"]["content"][0]["text"] == '{"city": "Oslo", "temp_c": -3}'


def test_beta_create_keeps_the_beta_header(api, rec, client, db_path):
    api.enqueue(Reply(body=msg()))
    client.beta.messages.create(
        model="claude-sonnet-4-5", max_tokens=10, messages=USER, betas=["context-1m-2025-08-07"]
    )
    assert rec.flush(10)
    [line] = exported(db_path)
    assert line["request_headers"]["anthropic-beta"] == "context-1m-2025-08-07"


def test_count_tokens_is_not_a_turn(api, rec, client, db_path):
    assert client.messages.count_tokens(model="claude-sonnet-4-5", messages=USER).input_tokens > 0
    client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER)
    assert rec.flush(10)
    lines = exported(db_path)
    assert len(lines) == 1 and lines[0]["endpoint"] == "/v1/messages"


def test_retries_are_attempts_of_one_turn(api, rec, client, db_path):
    api.enqueue(
        Reply(status=429, body=ERR_429, headers={"retry-after-ms": "5"}),
        Reply(status=529, body=ERR_529, headers={"retry-after-ms": "5"}),
        Reply(body=msg("finally")),
    )
    out = client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER)
    assert out.content[0].text == "finally"
    assert rec.flush(10)
    lines = exported(db_path)
    assert [line["attempt"] for line in lines] == [0, 1, 2]
    assert len({line["turn_id"] for line in lines}) == 1
    assert [line["status"] for line in lines] == [429, 529, 200]
    assert lines[0]["error"] == {"type": "rate_limit_error", "message": "Too many requests", "status": 429}
    assert lines[1]["error"]["type"] == "overloaded_error"
    assert lines[1]["response"] == ERR_529  # the error body exactly as received
    assert lines[2]["error"] is None
    assert all(line["request"] == sent_bodies(api)[0] for line in lines)


def test_a_request_sent_again_after_its_call_failed_is_another_attempt_of_its_turn(api, rec, db_path):
    """A framework's own retry (inspect-ai, tenacity around create), or Claude Code's, sends the
    failed request again as a new call: a new idempotency key, no retry count. It is the next
    attempt of the failed turn, in the same conversation, not a turn or conversation of its own."""
    overloaded = Reply(status=529, body={"type": "error", "error": {"type": "overloaded_error", "message": "busy"}},
                       headers={"retry-after-ms": "1"})
    api.enqueue(overloaded, overloaded, Reply(body=msg("one")), overloaded, Reply(body=msg("two")))
    client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=1))

    def create_with_its_own_retry(messages):
        for _ in range(3):
            try:
                return client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=messages)
            except anthropic.InternalServerError:
                pass
        raise AssertionError("no answer")

    messages = [{"role": "user", "content": "hi"}]
    r = create_with_its_own_retry(messages)
    messages += [{"role": "assistant", "content": r.content}, {"role": "user", "content": "more"}]
    create_with_its_own_retry(messages)
    assert rec.flush(10)
    lines = exported(db_path)
    assert len({line["conversation_id"] for line in lines}) == 1
    assert [(line["index"], line["attempt"], line["status"]) for line in lines] == [
        (0, 0, 529), (0, 1, 529), (0, 2, 200), (1, 0, 529), (1, 1, 200)]  # fmt: skip


def test_a_request_sent_again_without_stream_after_its_stream_broke_is_the_next_attempt(api, rec, db_path):
    """Claude Code's fallback: a stream cut mid-answer, then the same request sent again with only
    `stream` left out. One turn, the cut stream its attempt 0 and the answer its attempt 1."""
    api.enqueue(Reply(sse=message_events(msg("x" * 200)), drop_after_events=6), Reply(body=msg("whole")))
    client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
    kw = dict(model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.APIConnectionError):
        for _event in client.messages.create(**kw, stream=True):
            pass
    client.messages.create(**kw)
    assert rec.flush(10)
    lines = exported(db_path)
    assert len({line["turn_id"] for line in lines}) == 1
    assert [(line["attempt"], (line["error"] or {}).get("type")) for line in lines] == [
        (0, "connection_error"), (1, None)]  # fmt: skip


def test_a_request_sent_again_after_a_400_is_a_turn_of_its_own(api, rec, db_path):
    """A 400 is no failure clients retry: the same request sent again after it is the agent's
    choice (after fixing something elsewhere, say), a turn of its own."""
    bad = Reply(status=400, body={"type": "error", "error": {"type": "invalid_request_error", "message": "no"}})
    api.enqueue(bad, Reply(body=msg("ok")))
    client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=messages)
    client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=messages)
    assert rec.flush(10)
    assert sorted((line["attempt"], line["status"]) for line in exported(db_path)) == [(0, 200), (0, 400)]
    assert len({line["turn_id"] for line in exported(db_path)}) == 2


def test_retries_of_a_stream_keep_their_error_bodies(api, rec, client, db_path):
    api.enqueue(Reply(status=529, body=ERR_529, headers={"retry-after-ms": "5"}), Reply(sse=message_events(msg("ok"))))
    list(client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER, stream=True))
    assert rec.flush(10)
    first, second = exported(db_path)
    assert first["error"]["type"] == "overloaded_error" and first["status"] == 529
    assert second["response"]["content"][0]["text"] == "ok"


def test_an_error_body_cut_off_raises_as_without_replayer_and_is_recorded(api, rec, db_path):
    """The SDK's own read of a stream's error body fails: the agent gets that failure, as without
    replayer (async here, with retries; sync is in test_failures), and every attempt is recorded
    with its status, the retried ones too (the SDK closes those unread)."""
    events = [{"event": "error", "data": ERR_529}] * 3

    async def call(client):
        try:
            await client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER, stream=True)
        except Exception as e:  # noqa: BLE001
            return e
        pytest.fail("no exception")

    cut = Reply(status=529, sse=events, drop_after_events=1, headers={"retry-after-ms": "5"})
    api.enqueue(*[cut] * 6)
    plain = anthropic.AsyncAnthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=2)
    expected, got = asyncio.run(call(plain)), asyncio.run(call(rec.wrap(plain)))
    assert type(got) is type(expected) and str(got) == str(expected)
    assert rec.flush(10)
    lines = exported(db_path)
    assert [(line["attempt"], line["status"], line["error"]["type"]) for line in lines] == [
        (0, 529, "connection_error"), (1, 529, "connection_error"), (2, 529, "connection_error")]


def test_timeout_is_recorded_and_raised_unchanged(api, rec, db_path):
    api.enqueue(Reply(hang=1.5))
    c = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0, timeout=0.3))
    with pytest.raises(anthropic.APITimeoutError):
        c.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER)
    assert rec.flush(10)
    [line] = exported(db_path)
    assert line["status"] is None and line["response"] is None
    assert line["error"]["type"] == "timeout_error"
    assert line["request"]["messages"] == USER


def test_connection_refused_is_a_connection_error(rec, db_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    c = rec.wrap(anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", api_key=FAKE_KEY, max_retries=1))
    with pytest.raises(anthropic.APIConnectionError):
        c.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER)
    assert rec.flush(10)
    lines = exported(db_path)
    assert [line["attempt"] for line in lines] == [0, 1]
    assert all(line["error"]["type"] == "connection_error" for line in lines)


def test_error_event_mid_stream(api, rec, client, db_path):
    events = message_events(msg("partial answer that goes on"))[:4]
    events.append({"event": "error", "data": ERR_529})
    api.enqueue(Reply(sse=events))
    with pytest.raises(anthropic.APIStatusError) as exc:
        for _ in client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER, stream=True):
            pass
    assert exc.value.type == "overloaded_error" if hasattr(exc.value, "type") else True
    assert rec.flush(10)
    [line] = exported(db_path)
    assert line["status"] == 200
    assert line["error"] == {"type": "overloaded_error", "message": "Overloaded", "status": 200}
    assert line["response"]["content"][0]["text"].startswith("partial")
    assert line["abandoned"] is False  # the server ended it (as the proxy records it): the reader gave nothing up


def test_a_stream_that_times_out_midway_is_a_timeout_error(api, rec, db_path):
    """As the SDK raises it (APITimeoutError), the middleware's non-stream path and the proxy
    record it: a timeout_error, not a connection_error."""
    api.enqueue(Reply(sse=message_events(msg("slow " * 10)), chunk_delay=1.0))
    client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0, timeout=0.3))
    with pytest.raises(anthropic.APITimeoutError):
        for _ in client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER, stream=True):
            pass
    assert rec.flush(10)
    [line] = exported(db_path)
    assert line["error"]["type"] == "timeout_error" and "ReadTimeout" in line["error"]["message"]


def test_dropped_stream_is_recorded_as_far_as_it_got(api, rec, client, db_path):
    api.enqueue(Reply(sse=message_events(msg("x" * 200)), drop_after_events=6))
    with pytest.raises(Exception) as exc:  # noqa: B017 - the HTTP library's own error, as without replayer
        for _ in client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER, stream=True):
            pass
    assert not isinstance(exc.value, anthropic.APIStatusError)
    assert rec.flush(10)
    [line] = exported(db_path)
    assert line["error"]["type"] == "connection_error"
    assert line["response"]["content"][0]["text"].startswith("x")
    assert len(line["response"]["content"][0]["text"]) < 200


def test_a_failed_stream_leaves_the_agents_frames_alone(api, db_path, monkeypatch):
    """What the agent's frames hold is freed when the agent is done with it, not when the writer
    gets to the record (held back here): the record keeps the error's text, not its traceback."""
    import gc
    import weakref

    from replayer.store import process, writer

    monkeypatch.setattr(writer, "LINGER_SECONDS", 30.0)
    monkeypatch.setattr(process, "FEED_LINGER_SECONDS", 30.0)
    rec = Recorder(db_path)
    client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
    rec.record({"model": "m", "messages": []})  # the writer is now lingering; flush() wakes it
    api.enqueue(Reply(sse=message_events(msg("x" * 200)), drop_after_events=6))

    class Big:
        pass

    def agent():
        big = Big()
        try:
            for _ in client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER, stream=True):
                pass
        except Exception:  # noqa: BLE001 - the HTTP library's own error
            pass
        return weakref.ref(big)

    ref = agent()
    gc.collect()
    assert ref() is None
    assert rec.flush(10)
    # the stream's line, not the record() before it: both can start within one millisecond, and
    # then their ids (time, then random bits) don't say which came first
    (line,) = [line for line in exported(db_path) if line["stream"]]
    assert line["error"]["type"] == "connection_error" and line["error"]["message"]
    rec.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_body_read_again_is_recorded_once(api, db_path, mode):
    """httpx keeps a body it has read; reading it again (iter_bytes after read) passes through the
    tee again, here after the writer has taken the record. The record is the body as it came,
    once, and the second read works as without replayer."""
    rec = Recorder(db_path)
    api.enqueue(Reply(body=msg("read twice")))
    if mode == "sync":
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
        with client.messages.with_streaming_response.create(
            model="claude-sonnet-4-5", max_tokens=10, messages=USER
        ) as r:
            assert r.parse().content[0].text == "read twice"
            assert rec.flush(10)
            again = b"".join(r.iter_bytes())
    else:
        aclient = rec.wrap(anthropic.AsyncAnthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))

        async def go():
            async with aclient.messages.with_streaming_response.create(
                model="claude-sonnet-4-5", max_tokens=10, messages=USER
            ) as r:
                assert (await r.parse()).content[0].text == "read twice"
                assert rec.flush(10)
                return b"".join([c async for c in r.iter_bytes()])

        again = asyncio.run(go())
    assert json.loads(again)["content"][0]["text"] == "read twice"
    assert rec.flush(10)
    [line] = exported(db_path)
    assert line["response"]["content"][0]["text"] == "read twice" and line["error"] is None
    rec.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_written_stream_leaves_its_response_to_the_agent(api, rec, mode):
    """Once the writer has the record, nothing of replayer's keeps the HTTP response (the request
    as sent, the whole history, and its Authorization header) alive: it goes when the agent drops
    it, as soon as it would without replayer (the tee is taken off at the stream's end; it would
    otherwise form a cycle with the response that only the garbage collector frees)."""
    import gc
    import weakref

    def stream_and_drop(client) -> weakref.ref:
        api.enqueue(Reply(sse=message_events(msg("streamed"))))
        if mode == "sync":
            stream = client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER, stream=True)
            for _ev in stream:
                pass
            return weakref.ref(stream.response)

        async def go():
            stream = await client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER, stream=True)
            async for _ev in stream:
                pass
            return weakref.ref(stream.response)

        return asyncio.run(go())

    def client():  # one each: an async client's connections belong to one event loop
        make = anthropic.Anthropic if mode == "sync" else anthropic.AsyncAnthropic
        return make(base_url=api.url, api_key=FAKE_KEY, max_retries=0)

    gc.collect()
    gc.disable()
    try:
        bare_ref = stream_and_drop(client())
        rec_ref = stream_and_drop(rec.wrap(client()))
        assert rec.flush(10)
        alive = (bare_ref() is not None, rec_ref() is not None)
    finally:
        gc.enable()
    assert alive == (False, False)
    gc.collect()
    assert rec_ref() is None


def test_abandoned_stream(api, rec, client, db_path):
    api.enqueue(Reply(sse=message_events(msg("a long answer " * 20))))
    stream = client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER, stream=True)
    for i, _ev in enumerate(stream):
        if i == 3:
            break
    stream.close()
    assert rec.flush(10)
    [line] = exported(db_path)
    assert line["abandoned"] is True and line["error"] is None
    assert line["response"]["id"] == "msg_01ABC"


def test_a_stream_let_go_of_before_it_is_read_is_recorded_abandoned(api, rec, client, aclient, db_path):
    """The agent raises between create(stream=True) and reading it, and the stream object goes:
    the attempt (which the API received, and which may cost) is recorded, abandoned."""

    def turn():
        client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER, stream=True)
        raise RuntimeError("an agent bug before the stream is read")

    async def aturn():
        await aclient.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER, stream=True)
        raise RuntimeError("the same, in an async agent")

    for call in (turn, lambda: asyncio.run(aturn())):
        with pytest.raises(RuntimeError):
            call()
    gc.collect()
    assert rec.flush(10)
    lines = exported(db_path)
    assert len(api.received) == 2 and len(lines) == 2
    assert all(x["abandoned"] is True and x["error"] is None and x["status"] == 200 for x in lines)


def test_a_stream_never_read_at_module_level_does_not_hold_up_the_exit(api, tmp_path):
    """A script that leaves a stream unread to its end: the interpreter's shutdown frees it, when
    the writer is closed already. With the thread writer, recording it then started a thread that
    never returned: the script hung at exit."""
    import subprocess
    import sys

    script = tmp_path / "leave.py"
    script.write_text(
        "import anthropic, sys\n"
        "from replayer import Recorder\n"
        f"rec = Recorder({str(tmp_path / 'l.db')!r})\n"
        f"client = rec.wrap(anthropic.Anthropic(base_url={api.url!r}, api_key={FAKE_KEY!r}))\n"
        "client.messages.create(model='claude-sonnet-4-5', max_tokens=8, messages=[{'role': 'user', 'content': 'a'}])\n"
        "stream = client.messages.create(model='claude-sonnet-4-5', max_tokens=8, stream=True,\n"
        "                                messages=[{'role': 'user', 'content': 'b'}])\n"
    )
    for writer in ("thread", "process"):
        env = {**os.environ, "REPLAYER_WRITER": writer}
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 0, (writer, done.stderr)


def test_an_abandoned_answer_that_is_no_stream_is_not_an_invalid_response():
    """A 2xx body the reader cut short or never read (a proxy's client that left, a streaming
    response closed unread) is an abandoned attempt, not a body that failed to be JSON."""
    from replayer.captured import Captured
    from replayer.store.attempt import read
    from replayer.store.codec import Decoder

    cut = Captured(call_key="k", attempt=0, t_start=0.0, status=200, response_bytes=b'{"id": "msg_', abandoned=True)
    assert read(cut, Decoder(), None).error is None


def test_an_async_stream_whose_task_is_cancelled_is_abandoned(api, rec, aclient, db_path):
    """A timeout cancelling the task that reads a stream: the agent sees its TimeoutError, and the
    record is the stream as far as it got, abandoned (the reader gave up; the stream didn't fail)."""
    api.enqueue(Reply(sse=message_events(msg("word " * 40)), chunk_delay=0.05))

    async def read():
        async with await aclient.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER,
                                                 stream=True) as stream:
            async for _ev in stream:
                pass

    async def main():
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(read(), 0.2)

    asyncio.run(main())
    assert rec.flush(10)
    [line] = exported(db_path)
    assert line["abandoned"] is True and line["error"] is None
    assert line["response"]["id"] == "msg_01ABC"


def test_a_call_cancelled_before_its_answer_is_abandoned_not_an_error(api, rec, aclient, db_path):
    """asyncio.wait_for's timeout (or a cancelled task) before any answer came: the agent gave up,
    as when it gives up on a stream's body; no API error (it counted in the list's ERR and the
    error rates)."""
    api.enqueue(Reply(delay=1.0))

    async def main():
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(aclient.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER),
                                   0.2)

    asyncio.run(main())
    assert rec.flush(10)
    [line] = exported(db_path)
    assert line["abandoned"] is True and line["error"] is None and line["response"] is None


def test_unknown_blocks_fields_and_events_survive(api, rec, client, db_path):
    odd = msg(
        content=[{"type": "hologram", "frames": [1, 2, 3], "fps": 24},
                 {"type": "text", "text": "see above", "glow": True}],
        diagnostics={"shard": "eu-7"},
    )
    odd["usage"]["inference_geo"] = "eu"
    api.enqueue(Reply(body=odd))
    client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER)
    events = message_events(msg("streamed"))
    events.insert(2, {"event": "content_block_annotation", "data": {"type": "content_block_annotation", "index": 0,
                                                                    "note": "n"}})
    events.insert(3, {"event": "content_block_start", "data": {"type": "content_block_start", "index": 1,
                                                               "content_block": {"type": "sparkle", "level": ""}}})
    events.insert(4, {"event": "content_block_delta", "data": {"type": "content_block_delta", "index": 1,
                                                               "delta": {"type": "sparkle_delta", "level": "++"}}})
    api.enqueue(Reply(sse=events))
    list(client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER, stream=True))
    assert rec.flush(10)
    first, second = exported(db_path)
    assert first["response"] == odd
    assert second["response"]["content"][1] == {"type": "sparkle", "level": "++"}
    assert second["unknown_events"] == [
        {"event": "content_block_annotation", "data": {"type": "content_block_annotation", "index": 0, "note": "n"}}
    ]


def test_async_client_create_and_stream(api, rec, aclient, db_path):
    api.enqueue(Reply(body=msg("async plain")), Reply(sse=message_events(msg("async stream"))))

    async def go():
        a = await aclient.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER)
        async with aclient.messages.stream(model="claude-sonnet-4-5", max_tokens=10, messages=USER) as s:
            b = await s.get_final_message()
        return a, b

    a, b = asyncio.run(go())
    assert a.content[0].text == "async plain" and b.content[0].text == "async stream"
    assert rec.flush(10)
    first, second = exported(db_path)
    assert first["response"]["content"][0]["text"] == "async plain"
    assert second["stream"] is True and second["response"]["content"][0]["text"] == "async stream"
    assert second["ttft_ms"] is not None


def test_async_retries(api, rec, aclient, db_path):
    api.enqueue(Reply(status=529, body=ERR_529, headers={"retry-after-ms": "5"}), Reply(body=msg()))
    asyncio.run(aclient.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER))
    assert rec.flush(10)
    assert [line["status"] for line in exported(db_path)] == [529, 200]


def test_conversation_context_reaches_threads_and_tasks(api, rec, client, aclient, db_path):
    with rec.conversation("conv_ctx", user_id="user_789", tags={"env": "prod"}, trace_id="trace-1"):
        client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER)
        t = threading.Thread(
            target=lambda: client.messages.create(
                model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "from a thread"}]
            )
        )
        t.start()
        t.join()

        async def task():
            await aclient.messages.create(
                model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "from a task"}]
            )

        async def main():
            await asyncio.gather(asyncio.create_task(task()))

        asyncio.run(main())
    client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "outside"}])
    assert rec.flush(10)
    lines = exported(db_path)
    inside = [line for line in lines if line["conversation_id"] == "conv_ctx"]
    assert len(inside) == 3
    assert {line["user_id"] for line in inside} == {"user_789"}
    assert {line["trace_id"] for line in inside} == {"trace-1"}
    assert sorted(line["index"] for line in inside) == [0, 1, 2]
    outside = [line for line in lines if line["conversation_id"] != "conv_ctx"]
    assert len(outside) == 1 and outside[0]["user_id"] is None


def test_an_opentelemetry_span_in_force_gives_the_trace_id(api, rec, client, db_path):
    """Without a trace_id of the caller's, the current OpenTelemetry span's trace id is kept (in
    a conversation or not); with no span in force, none. The SDK depends on opentelemetry-api."""
    from opentelemetry import trace

    span = trace.NonRecordingSpan(
        trace.SpanContext(trace_id=0xABC, span_id=0x1, is_remote=False, trace_flags=trace.TraceFlags(1))
    )
    with trace.use_span(span):
        client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "a"}])
        with rec.conversation("conv_otel", user_id="u"):
            client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER)
        with rec.conversation("conv_own", trace_id="mine"):
            client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER)
    client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "b"}])
    assert rec.flush(10)
    got = [(line["conversation_id"] in ("conv_otel", "conv_own"), line["user_id"], line["trace_id"])
           for line in exported(db_path)]
    assert got == [(False, None, f"{0xABC:032x}"), (True, "u", f"{0xABC:032x}"), (True, None, "mine"),
                   (False, None, None)]


def test_calls_thread_automatically_without_conversation(api, rec, client, db_path):
    def loop(first: str, turns: int, user: str) -> None:
        messages = [{"role": "user", "content": first}]
        for i in range(turns):
            r = client.messages.create(
                model="claude-sonnet-4-5", max_tokens=10, messages=messages, metadata={"user_id": user}
            )
            messages = [*messages, {"role": "assistant", "content": r.content},
                        {"role": "user", "content": f"next {i}"}]

    loop("task A", 4, "alice")
    loop("task B", 3, "bob")
    loop("task A", 2, "carol")  # same opening, different conversation: replies differ
    assert rec.flush(10)
    lines = exported(db_path)
    convs: dict[str, list] = {}
    for line in lines:
        convs.setdefault(line["conversation_id"], []).append(line)
    assert sorted(len(v) for v in convs.values()) == [2, 3, 4]
    for v in convs.values():
        assert [line["index"] for line in v] == list(range(len(v)))
        assert len({line["user_id"] for line in v}) == 1


def test_a_reply_sent_back_without_its_response_only_fields_continues_its_conversation(api, rec, client, db_path):
    """The API's tool_use blocks carry `caller`, its text blocks `citations`; frameworks (pydantic-ai,
    inspect-ai) rebuild the reply from the fields they know and send it back without them. The
    next call is still the conversation's next turn."""
    api.enqueue(Reply(body=msg("", content=[
        {"type": "text", "text": "checking", "citations": [{"type": "char_location", "cited_text": "x"}]},
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"},
         "caller": {"type": "direct"}}], stop="tool_use")))  # fmt: skip
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=messages)
    messages += [{"role": "assistant", "content": [
        {"type": "text", "text": "checking"},
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sun"}]}]  # fmt: skip
    client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=messages)
    assert rec.flush(10)
    lines = exported(db_path)
    assert len({line["conversation_id"] for line in lines}) == 1 and [line["index"] for line in lines] == [0, 1]
    assert lines[0]["response"]["content"][1]["caller"] == {"type": "direct"}  # stored as received


def _answer_by_content(api) -> None:
    """The fake answers like a model at temperature 0: the same messages, the same reply."""
    ids = iter(range(10**6))
    api.responder = lambda body: Reply(
        body=msg(f"step {len(body['messages'])} done", message_id=f"msg_{next(ids):04d}")
    )


def _chat(client, messages: list, turn: int) -> list:
    r = client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=messages)
    return [*messages, {"role": "assistant", "content": r.content}, {"role": "user", "content": f"go on {turn}"}]


def _in_call_order(db_path) -> list[dict]:
    """Every attempt in the order the fake answered it (its reply ids count up; two calls can
    start within the same millisecond, so started_at can't order them)."""
    return sorted(exported(db_path), key=lambda line: line["response"]["id"])


def _threads(db_path) -> list[list[int]]:
    """Per conversation, in the order the calls were made: how many messages each turn sent."""
    lines = _in_call_order(db_path)
    convs: dict[str, list] = {}
    for line in lines:
        convs.setdefault(line["conversation_id"], []).append(line)
    for v in convs.values():
        assert [line["index"] for line in v] == list(range(len(v)))
    return [[len(line["request"]["messages"]) for line in v] for v in convs.values()]


@pytest.mark.parametrize("remembered", [None, 2])
def test_identical_conversations_run_at_once_stay_apart(
    thread_writer, api, rec, client, db_path, monkeypatch, remembered
):
    """Three identical 3-turn chats, interleaved turn by turn: three conversations whose contexts
    grow, each call in the conversation of the chat that made it (first come, first served).
    Also when the writer can remember only two keys' open conversations (it asks the table)."""
    if remembered:
        monkeypatch.setattr("replayer.store.threads.MAX_OPEN_KEYS", remembered)
    _answer_by_content(api)
    chats = [[{"role": "user", "content": "Summarise the report"}] for _ in range(3)]
    for turn in range(3):
        for c in range(3):
            chats[c] = _chat(client, chats[c], turn)
    assert rec.flush(10)
    assert _threads(db_path) == [[1, 3, 5]] * 3
    calls = _in_call_order(db_path)
    assert [calls[k]["conversation_id"] for k in range(9)] == [calls[k % 3]["conversation_id"] for k in range(9)]


def test_identical_conversations_at_once_from_threads_each_grow(api, rec, client, db_path):
    """The same with real concurrency: whatever order the records arrive in, no conversation's
    context goes back, and none is left a stub."""
    _answer_by_content(api)

    def chat() -> None:
        messages = [{"role": "user", "content": "Summarise the report"}]
        for turn in range(3):
            messages = _chat(client, messages, turn)

    threads = [threading.Thread(target=chat) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert rec.flush(10)
    assert _threads(db_path) == [[1, 3, 5]] * 4


def _late(calls: list[tuple[str, int | None, int, float, float]], db_path) -> dict[str, list[str]]:
    """Write identical chats' calls straight to a writer, in the order given (the order records
    reached it, not the order they were made in): (reply id, caller, turn, started, ended) each.
    Per conversation, its calls' reply ids in turn order."""
    from replayer.captured import Captured
    from replayer.store.writer import Writer

    history = [{"role": "user", "content": "Summarise the report"}]
    for turn in range(3):
        history += [{"role": "assistant", "content": [{"type": "text", "text": f"step {2 * turn + 1} done"}]},
                    {"role": "user", "content": f"go on {turn}"}]
    writer = Writer(str(db_path))
    for reply_id, caller, turn, started, ended in calls:
        body = {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": history[: 2 * turn + 1]}
        writer.put(Captured(
            call_key=reply_id, attempt=0, t_start=1_700_000_000 + started, caller=caller, status=200,
            latency_ms=(ended - started) * 1000, request_bytes=json.dumps(body).encode(),
            response_bytes=json.dumps(msg(f"step {2 * turn + 1} done", message_id=reply_id)).encode(),
        ))
    assert writer.close(10)
    convs: dict[str, list[str]] = {}
    for line in sorted(exported(db_path), key=lambda line: line["index"]):
        convs.setdefault(line["conversation_id"], []).append(line["response"]["id"])
    return convs


# Three threads T, U, V run the same 3-turn chat. T's last call (T2) is made early but its thread
# is held up before it hands its record over; meanwhile V's second call, U's second and U's
# third are recorded. First come, first served, U2 took T's conversation and T2 took V's, whose
# reply T2 could not have had when it was sent: a turn that started before the one before it ended.
HELD_UP = [
    ("T0", 1, 0, 0.00, 0.05), ("U0", 2, 0, 0.00, 0.05), ("V0", 3, 0, 0.00, 0.05),
    ("T1", 1, 1, 0.10, 0.15),
    ("V1", 3, 1, 0.10, 0.30), ("U1", 2, 1, 0.31, 0.35), ("U2", 2, 2, 0.40, 0.45),
    ("T2", 1, 2, 0.20, 0.25),
]


def test_identical_conversations_recorded_out_of_order_stay_with_the_thread_that_made_them(db_path):
    assert sorted(_late(HELD_UP, db_path).values()) == [["T0", "T1", "T2"], ["U0", "U1", "U2"], ["V0", "V1"]]


def test_identical_conversations_recorded_out_of_order_never_continue_a_reply_not_yet_had(db_path):
    """With no caller known (a proxy's, an import's): a request continues a conversation whose
    latest reply had ended when it was sent, when there is one."""
    calls = [
        ("A0", None, 0, 0.00, 0.05), ("B0", None, 0, 0.00, 0.05),
        ("A1", None, 1, 0.10, 0.30),  # slow
        ("B1", None, 1, 0.06, 0.10),  # ended first, recorded second
        ("B2", None, 2, 0.20, 0.25),  # sent before A1's reply came: it continues B1
    ]
    assert sorted(_late(calls, db_path).values()) == [["A0", "A1"], ["B0", "B1", "B2"]]


def test_an_identical_conversation_run_again_is_its_own(api, rec, client, db_path):
    """A second identical run after the first finished is a second conversation: the first one's
    replies already have their continuations, so it is open for none of them."""
    _answer_by_content(api)
    for _run in range(2):
        messages = [{"role": "user", "content": "Summarise the report"}]
        for turn in range(3):
            messages = _chat(client, messages, turn)
    assert rec.flush(10)
    assert _threads(db_path) == [[1, 3, 5], [1, 3, 5]]


def test_tool_runner_thread_mode_reconstructs_full_context(api, rec, client, db_path):
    from replayer.store.queries import Store
    from replayer.store.schema import open_db

    @beta_tool
    def get_weather(city: str) -> str:
        """Weather for a city."""
        return f"sunny in {city}"

    api.enqueue(
        Reply(body=msg(message_id="msg_t1",
                       content=[{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                 "input": {"city": "Paris"}}],
                       stop="tool_use")),
        Reply(body=msg("It is sunny in Paris.", message_id="msg_t2")),
    )
    runner = client.beta.messages.tool_runner(
        model="claude-sonnet-4-5", max_tokens=100, tools=[get_weather],
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    final = list(runner)[-1]
    assert final.content[0].text == "It is sunny in Paris."
    assert rec.flush(10)
    lines = exported(db_path)
    assert lines[1]["request"]["thread"]["type"] == "continue"
    assert len(lines[1]["request"]["messages"]) == 1  # only the new message was sent
    assert lines[0]["conversation_id"] == lines[1]["conversation_id"]
    store = Store(open_db(db_path))
    node = store.db.execute("SELECT context_node FROM turns WHERE id = ?", [lines[1]["turn_id"]]).fetchone()[0]
    context = store.messages(node)
    assert [m["role"] for m in context] == ["user", "assistant", "user"]
    assert context[1]["content"][0]["id"] == "toolu_1"
    assert context[2]["content"][0]["tool_use_id"] == "toolu_1"


def test_record_hook(rec, db_path):
    req = {"model": "claude-haiku-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": "via another path"}]}
    rec.record(req, msg("recorded by hand", model="claude-haiku-4-5"), latency_ms=120.5,
               conversation_id="c-hook", user_id="u-hook")
    req["messages"].append({"role": "user", "content": "appended later"})  # must not change the record
    rec.record({"model": "claude-haiku-4-5", "max_tokens": 5, "messages": []},
               error={"type": "overloaded_error", "message": "Overloaded", "status": 529})
    assert rec.flush(10)
    first, second = exported(db_path)
    assert first["request"]["messages"] == [{"role": "user", "content": "via another path"}]
    assert first["conversation_id"] == "c-hook" and first["user_id"] == "u-hook" and first["latency_ms"] == 120.5
    assert first["response"]["content"][0]["text"] == "recorded by hand"
    assert second["error"]["status"] == 529 and second["status"] == 529


def test_structured_log_line(api, caplog, db_path):
    import logging

    rec = Recorder(db_path, log_events=True)
    c = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY))
    api.enqueue(Reply(body=msg(content=[{"type": "tool_use", "id": "toolu_9", "name": "grep",
                                         "input": {"pattern": "x", "path": "."}}],
                               stop="tool_use")))
    with caplog.at_level(logging.INFO, logger="replayer"), rec.conversation("c-log", user_id="u-log", trace_id="tr"):
        c.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER)
        assert rec.flush(10)
    rec.close()
    lines = [json.loads(r.getMessage()) for r in caplog.records
             if r.name == "replayer" and r.getMessage().startswith("{")]
    assert len(lines) == 1
    ev = lines[0]
    assert ev["event_type"] == "replayer.call"
    assert (ev["conversation_id"], ev["user_id"], ev["trace_id"], ev["model"]) == (
        "c-log", "u-log", "tr", "claude-sonnet-4-5"
    )
    assert (ev["input_tokens"], ev["output_tokens"], ev["cache_read_tokens"], ev["cache_write_tokens"]) == (
        12, 4, 0, 0
    )
    assert ev["stop_reason"] == "tool_use"
    assert ev["tool_calls"] == [{"name": "grep", "input_keys": ["path", "pattern"]}]
    assert ev["cost_usd"] == pytest.approx((12 * 3 + 4 * 15) / 1e6)
    assert ev["error"] is None and ev["latency_ms"] > 0


def test_wrap_twice_records_once(api, rec, client, db_path):
    again = rec.wrap(client)
    again.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER)
    assert rec.flush(10)
    assert len(exported(db_path)) == 1


def _vector_files():
    if not VECTORS.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{VECTORS} is absent (shared vectors not laid out)"))]
    return sorted(p for p in VECTORS.iterdir() if p.suffix in (".txt", ".sse"))


@pytest.mark.parametrize("vector", _vector_files(), ids=lambda p: p.name if p else "absent")
def test_stream_assembly_matches_the_sdk(vector, api, rec, client, db_path):
    raw = vector.read_text()
    api.enqueue(Reply(sse=raw))
    sdk_final = None
    sdk_error = None
    try:
        with client.beta.messages.stream(model="claude-opus-4-7", max_tokens=100, messages=USER) as s:
            sdk_final = s.get_final_message()
    except Exception as e:  # noqa: BLE001 - some vectors end in errors; the recorder must still have them
        sdk_error = e
    assert rec.flush(10)
    [line] = exported(db_path)
    got = line["response"]
    if sdk_final is None:
        assert sdk_error is not None and got is not None
        return
    want = sdk_final.to_dict()
    assert got["id"] == want["id"]
    assert got["stop_reason"] == want.get("stop_reason")
    assert len(got["content"]) == len(want["content"])
    for mine, theirs in zip(got["content"], want["content"], strict=True):
        for key, value in theirs.items():
            if key == "parsed_output":
                continue
            assert mine.get(key) == value, (vector.name, key)
    for key, value in want["usage"].items():
        if value is not None:
            assert got["usage"].get(key) == value, (vector.name, key)


def test_a_stream_builds_the_message_the_sdks_accumulator_builds(api, rec, client, db_path):
    """What message_delta carries beside delta and usage replaces message_start's (the SDK's
    context_management, input_transformations); a `fallback` block relabels the message with the
    model that served it (and the cost is that model's); an event with no `event:` line is one
    the SDK skips, kept aside as an unknown event, never in the message."""
    start = {"id": "msg_fb", "type": "message", "role": "assistant", "model": "claude-opus-4-1", "content": [],
             "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 1000, "output_tokens": 1},
             "context_management": None, "input_transformations": [{"type": "thinking_mismatch_allowed"}]}
    fallback = {"type": "fallback", "from": {"model": "claude-opus-4-1"}, "to": {"model": "claude-haiku-4-5"},
                "trigger": {"type": "refusal", "category": None}}
    text = {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "ok"}}
    hidden = {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": " NOT SEEN"}}
    applied = {"applied_edits": [{"type": "clear_tool_uses_20250919", "cleared_tool_uses": 2}]}
    events = [
        {"event": "message_start", "data": {"type": "message_start", "message": start}},
        {"event": "content_block_start",
         "data": {"type": "content_block_start", "index": 0, "content_block": fallback}},
        {"event": "content_block_stop", "data": {"type": "content_block_stop", "index": 0}},
        {"event": "content_block_start",
         "data": {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}},
        {"event": "content_block_delta", "data": text},
        {"event": None, "data": hidden},
        {"event": "content_block_stop", "data": {"type": "content_block_stop", "index": 1}},
        {"event": "message_delta", "data": {"type": "message_delta", "delta": {"stop_reason": "end_turn",
         "stop_sequence": None}, "usage": {"output_tokens": 500}, "context_management": applied,
         "input_transformations": [{"type": "thinking_dropped"}]}},
        {"event": "message_stop", "data": {"type": "message_stop"}},
    ]  # fmt: skip
    api.enqueue(Reply(sse=events))
    with client.beta.messages.stream(model="claude-opus-4-1", max_tokens=1000, messages=USER) as s:
        want = s.get_final_message().to_dict()
    assert rec.flush(10)
    [line] = exported(db_path)
    got = line["response"]
    for key in ("model", "context_management", "input_transformations", "content", "stop_reason", "usage"):
        assert got.get(key) == want.get(key), key
    assert line["model"] == "claude-haiku-4-5"
    assert line["cost_usd"] == pytest.approx((1000 * 1.0 + 500 * 5.0) / 1e6)  # haiku's prices
    assert {"event": None, "data": hidden} in line["unknown_events"]


def test_a_success_whose_body_is_not_json_is_recorded_as_an_error_with_its_text(api, rec, client, db_path):
    """A gateway's HTML page, or a body cut short, under a 200: the agent got no message (a str,
    a decode error), so the record is no clean turn: an invalid_response error holding the text."""
    api.enqueue(
        Reply(status=200, body=b"<html>Sign in to the corporate gateway</html>", headers={"content-type": "text/html"}),
        Reply(status=200, body=b'{"id":"msg_1","type":"message","content":[{"type":"te'),
    )
    for _ in range(2):
        try:
            client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER)
        except ValueError:
            pass  # the cut body: the SDK's own decode error
    assert rec.flush(10)
    lines = exported(db_path)
    assert [(x["status"], x["response"], x["error"]["type"]) for x in lines] == [(200, None, "invalid_response")] * 2
    assert "<html>Sign in to the corporate gateway</html>" in lines[0]["error"]["message"]
    assert lines[1]["error"]["message"].endswith('"content":[{"type":"te')


def test_record_snapshots_a_request_as_json_writes_it(db_path):
    """record() serialises on the caller's thread (orjson, falling back to json): the stored
    request is what json would have written, odd values included."""
    import math

    from replayer import Recorder

    odd = [
        {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "héllo ✓ \u2028"}], "n": 1e16},
        {"model": "m", "max_tokens": 5, "messages": [], "temperature": math.nan, "stop_sequences": None},
        {"model": "m", "max_tokens": 5, "messages": [], "big": 2**70, "metadata": {1: "int key"}},
    ]
    with Recorder(db_path) as rec:
        for req in odd:
            rec.record(req, None, conversation_id="conv_odd")
    got = [line["request"] for line in exported(db_path)]
    assert got[0] == odd[0] and isinstance(got[0]["n"], float)
    assert math.isnan(got[1]["temperature"]) and got[1]["stop_sequences"] is None
    assert got[2]["big"] == 2**70 and got[2]["metadata"] == {"1": "int key"}


@pytest.mark.parametrize("cut", [0, 5, 10, 19])
def test_stream_tee_times_the_first_delta_even_when_a_chunk_boundary_cuts_its_marker(cut):
    """The tee replaces the response's byte stream: the SDK reads every chunk unchanged, in order,
    each as it comes off the connection (the tee reads no further ahead), and the record times
    the first token by when the chunk completing the first `content_block_delta` came (wherever
    the chunks were cut)."""
    import asyncio
    import time

    import httpx2

    from replayer.capture import _StreamCapture

    head = b'event: message_start\ndata: {}\n\nevent: content_block_start\ndata: {}\n\nevent: '
    marker = b"content_block_delta"
    rest = b'\ndata: {"delta": 1}\n\nevent: message_stop\ndata: {}\n\n'
    chunks = [head[:30], head[30:] + marker[:cut], marker[cut:] + rest[:10], rest[10:]]
    if cut == 0:
        chunks = [head[:30], head[30:], marker + rest[:10], rest[10:]]
    completing = 1 if cut == len(marker) else 2  # the chunk in which the marker is whole

    class Connection(httpx2.SyncByteStream):  # what the HTTP library reads off the socket, a chunk at a time
        def __init__(self):
            self.taken = 0

        def __iter__(self):
            for c in chunks:
                time.sleep(0.002)  # (so that each chunk's time differs from the others' by milliseconds)
                self.taken += 1
                yield c

    class AsyncConnection(httpx2.AsyncByteStream):
        def __init__(self):
            self.taken = 0

        async def __aiter__(self):
            for c in chunks:
                time.sleep(0.002)
                self.taken += 1
                yield c

    class Request:  # the SDK's request, as the middleware sees it
        options = type("Options", (), {"idempotency_key": "k"})()
        retries_taken = 0
        stream = True

    for mode in ("sync", "async"):
        put = []
        connection = Connection() if mode == "sync" else AsyncConnection()
        http = httpx2.Response(200, headers={"content-type": "text/event-stream"}, stream=connection,
                               request=httpx2.Request("POST", "http://fake/v1/messages", content=b"{}"))
        sc = _StreamCapture(Request(), http, None, 0.0, 0.0, "/v1/messages", 0, put.append, mode == "async")
        taken = []  # how many chunks the connection had given when the SDK got each one
        if mode == "sync":
            got = []
            for c in http.iter_bytes():
                got.append(c)
                taken.append(connection.taken)
        else:

            async def run(http, connection, taken):
                out = []
                async for c in http.aiter_bytes():
                    out.append(c)
                    taken.append(connection.taken)
                return out

            got = asyncio.run(run(http, connection, taken))
        assert got == chunks and taken == [1, 2, 3, 4] and put == [sc], mode
        times = list(sc.times)
        cap = sc.captured()
        assert cap.sse == b"".join(chunks) and not cap.abandoned and cap.error is None, mode
        assert cap.ttft_ms == round(times[completing] * 1000, 3), (mode, cut)
        assert cap.chunk_clock == ([len(c) for c in chunks], times, 0.0)
