"""A stream's SSE events kept as they came (issue 16): through the SDK middleware and through the
proxy, with each event's arrival time; read back as cassette lines (`cassette_lines`, `replayer
export --cassette`), while the export lines stay as they were."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import anthropic
import httpx2
import pytest
import test_proxy
from anthropic._streaming import SSEDecoder
from click.testing import CliRunner
from conftest import FAKE_KEY, VECTORS, exported, wait_until
from proxy_upstream import MESSAGE, gated_parts
from test_record_any import replayer, run_of, summary, write

from replayer import Recorder
from replayer.cli import cli
from replayer.fakeapi import FakeAPI, Reply, message_events, split_sse, sse_text
from replayer.sse import delivered
from replayer.store.events import event_ms, events_of, pack_ms, unpack_ms
from replayer.store.export import cassette_lines
from replayer.store.queries import Store
from replayer.store.schema import open_db

USER = [{"role": "user", "content": "What is in README.md?"}]
proxy_db, writer, start, upstream = test_proxy.proxy_db, test_proxy.writer, test_proxy.start, test_proxy.upstream
"""The proxy tests' fixtures: a proxy in front of an upstream URL, its writer and database, and
an upstream that holds a stream at a gate."""


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


# -- through the proxy ---------------------------------------------------------------------------
def _cassette(path, n: int, flushed=None, **which) -> list[dict]:
    """The cassette lines of `path` once `n` attempts are written."""
    if flushed is not None:
        assert wait_until(lambda: flushed.flush(10) and path.exists() and len(exported(path)) >= n)
    store = Store(open_db(path, create=False))
    return list(cassette_lines(store, **which))


def test_proxied_streams_keep_their_events(start, writer, proxy_db):
    streamed = message_events(_message(5, "Through the proxy, " + "chunk by chunk " * 8, tool=True))
    streamed.insert(2, {"event": "server_whisper", "data": {"type": "server_whisper", "note": "kept"}})
    streamed.insert(3, {"event": "ping", "data": "not json, kept as text"})
    with FakeAPI() as api:
        api.enqueue(Reply(sse=streamed, chunk_delay=0.002), Reply(body=_message(6, "plain")))
        proxy = start(api.url, tags={"run": "run_proxy_1"})
        client = anthropic.Anthropic(base_url=proxy.url, api_key=FAKE_KEY)
        with client.messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=USER) as s:
            s.get_final_message()
        client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=USER)
    lines = _cassette(proxy_db, 2, writer, run_id="run_proxy_1")
    assert [line["stream"] for line in lines] == [True, False]
    assert _got(lines[0]) == _sent(streamed)
    _assert_times(lines[0])
    assert lines[1]["events"] is None


def test_a_compressed_stream_is_kept_decoded_with_each_events_time(start, writer, proxy_db, upstream):
    """Chunks decoded one by one: events sent before the upstream's gate opened come no later
    than those after it."""
    proxy = start(upstream.url, tags={"run": "run_gzip"})
    with httpx2.Client() as http, http.stream("POST", proxy.url + "/v1/messages?gzip",
                                               json={"stream": True, "messages": USER},
                                               headers={"accept-encoding": "gzip"}) as got:
        chunks = got.iter_bytes()
        next(chunks)
        upstream.gate.set()
        b"".join(chunks)
    [line] = _cassette(proxy_db, 1, writer, run_id="run_gzip")
    assert _got(line) == _sent(message_events(MESSAGE))
    _assert_times(line)


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_a_compressed_stream_through_the_middleware_is_kept_decoded_with_its_first_token(upstream, tmp_path, encoding):
    """The middleware keeps a stream's chunks as they came off the connection, compressed here in
    an encoding the SDK asks for (httpx2 asks for zstd where it can decode it, as with the backport
    in the test extras), and the writer decodes them: the events the SDK read, each timed, and the
    first token timed by the chunk that brought it, before the upstream's gate opened."""
    import time

    db = tmp_path / f"{encoding}.db"
    with Recorder(db) as rec, rec.conversation("conv_zipped"):
        client = rec.wrap(anthropic.Anthropic(base_url=upstream.url, api_key=FAKE_KEY, max_retries=0))
        with client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=USER, stream=True,
                                    extra_query={encoding: "1"}) as stream:
            events = iter(stream)
            seen = [next(events).type for _ in range(3)]
            time.sleep(0.2)
            upstream.gate.set()
            seen += [event.type for event in events]
    assert encoding in upstream.seen[0]["headers"].get("Accept-Encoding", "")
    [line] = _cassette(db, 1, conversation_id="conv_zipped")
    assert _got(line) == _sent(message_events(MESSAGE))
    assert [e for e, _ in _got(line) if e != "ping"] == seen  # (the SDK passes no ping on)
    _assert_times(line)
    assert line["error"] is None and not line["abandoned"]
    assert line["response"]["content"] == MESSAGE["content"]
    assert 0 < line["ttft_ms"] < line["latency_ms"] - 150  # the first delta came before the gate, the rest after


def test_a_client_that_leaves_keeps_the_events_that_came(start, writer, proxy_db, upstream):
    upstream.pings_after_gate = 400
    proxy = start(upstream.url, tags={"run": "run_left"})
    with httpx2.Client() as http, http.stream("POST", proxy.url + "/v1/messages",
                                               json={"stream": True, "messages": USER}) as got:
        assert b"content_block_delta" in next(got.iter_bytes())
    upstream.gate.set()
    assert upstream.left.wait(20)
    [line] = _cassette(proxy_db, 1, writer, run_id="run_left")
    before = _sent(message_events(MESSAGE))[: len(_events_before_gate())]
    got_events = _got(line)
    assert line["abandoned"] and got_events[: len(before)] == before
    assert {e for e, _ in got_events[len(before):]} <= {"ping"}  # pings that came before the proxy saw it leave


def _events_before_gate() -> list:
    return delivered(gated_parts()[0])


# -- through the middleware: a stream cut short --------------------------------------------------
def test_an_abandoned_stream_keeps_what_came(upstream, rec, db_path):
    client = rec.wrap(anthropic.Anthropic(base_url=upstream.url, api_key=FAKE_KEY, max_retries=0))
    with rec.conversation("conv_left"):
        stream = client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=USER, stream=True)
        for event in stream:
            if event.type == "content_block_delta":
                break
        stream.close()
    upstream.gate.set()
    assert rec.flush(10)
    [line] = _cassette(db_path, 1, conversation_id="conv_left")
    assert line["abandoned"]
    assert _got(line) == _sent(message_events(MESSAGE))[: len(_events_before_gate())]
    _assert_times(line)


def test_an_error_event_and_a_dropped_connection_are_kept(api, rec, client, db_path):
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    failing = message_events(MESSAGE)[:4] + [{"event": "error", "data": error}]
    cut = message_events(_message(7, "never finished, " * 4))
    api.enqueue(Reply(sse=failing), Reply(sse=cut, drop_after_events=5))
    with rec.conversation("conv_failed"):
        with pytest.raises(anthropic.APIStatusError):
            for _ in client.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=USER, stream=True):
                pass
        with pytest.raises(Exception):  # noqa: B017 - the HTTP library's own error
            for _ in client.with_options(max_retries=0).messages.create(
                    model="claude-sonnet-4-5", max_tokens=8, messages=USER + [{"role": "user", "content": "2"}],
                    stream=True):
                pass
    assert rec.flush(10)
    lines = _cassette(db_path, 2, conversation_id="conv_failed")
    assert _got(lines[0]) == _sent(failing) and lines[0]["error"]["type"] == "overloaded_error"
    assert _got(lines[1]) == _sent(cut)[:5] and lines[1]["error"]["type"] == "connection_error"
    for line in lines:
        _assert_times(line)


# -- the SDK's own transcripts ---------------------------------------------------------------------
def _vectors() -> list[Path]:
    assert VECTORS.is_dir(), f"the shared SSE vectors are expected at {VECTORS}"
    return sorted(p for p in VECTORS.iterdir() if p.suffix in (".txt", ".sse"))


def _sdk_events(served: bytes) -> list[tuple[str | None, object]]:
    """What the SDK's own SSE decoder makes of the bytes (events with a name or data)."""
    out = []
    for sse in SSEDecoder().iter_bytes(iter([served])):
        try:
            data: object = json.loads(sse.data)
        except ValueError:
            data = sse.data
        out.append((sse.event, data))
    return out


def _sdk_stream(client) -> None:
    try:
        with client.beta.messages.stream(model="claude-opus-4-7", max_tokens=100, messages=USER) as s:
            s.get_final_message()
    except anthropic.APIError:
        pass  # a vector that ends in an error: its events are kept all the same


@pytest.mark.parametrize("path", ["middleware", "proxy"])
def test_the_sdks_transcripts_are_kept_event_for_event(path, tmp_path, start, writer, proxy_db):
    vectors = _vectors()
    served = ["".join(split_sse(v.read_text())).encode() for v in vectors]
    db = proxy_db if path == "proxy" else tmp_path / "direct.db"
    with FakeAPI() as api, Recorder(tmp_path / "direct.db") as rec:
        api.enqueue(*(Reply(sse=v.read_text()) for v in vectors))
        if path == "proxy":
            client = anthropic.Anthropic(base_url=start(api.url, tags={"run": "run_vectors"}).url,
                                         api_key=FAKE_KEY, max_retries=0)
        else:
            client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
        with rec.conversation("conv_vectors", tags={"run": "run_vectors"}):  # (the proxy tags its calls itself)
            for _ in vectors:
                _sdk_stream(client)
        assert len(api.received) == len(vectors)
    lines = _cassette(db, len(vectors), writer if path == "proxy" else None, run_id="run_vectors")
    assert len(lines) == len(vectors)
    for vector, line, sent in zip(vectors, lines, served, strict=True):
        assert _got(line) == _sdk_events(sent), vector.name
        _assert_times(line)


# -- what the export and older databases see ------------------------------------------------------
def test_export_lines_are_unchanged_and_older_streams_have_no_events(api, rec, client, db_path):
    api.enqueue(Reply(sse=message_events(_message(1, "kept"))), Reply(sse=message_events(_message(2, "kept too"))))
    with rec.conversation("conv_old"):
        for n in range(2):
            with client.messages.stream(model="claude-sonnet-4-5", max_tokens=8,
                                        messages=[{"role": "user", "content": f"q{n}"}]) as s:
                s.get_final_message()
    assert rec.close()
    with_events = [line for line in Store(open_db(db_path)).export_lines()]
    con = sqlite3.connect(db_path)
    assert con.execute("SELECT COUNT(*) FROM stream_events").fetchone()[0] == 2
    # as a database written before events were kept: no rows, no tables, the migration not applied
    con.executescript("""DROP TABLE stream_events; DROP TABLE stream_bodies;
                         DELETE FROM _sqlite_migrations WHERE name = 'm007_stream_events';""")
    con.close()
    store = Store(open_db(db_path))  # migrated again
    assert list(store.export_lines()) == with_events
    assert [line["events"] for line in cassette_lines(store, conversation_id="conv_old")] == [None, None]
    assert list(json.loads(with_events[0])) == [
        "turn_id", "conversation_id", "index", "user_id", "trace_id", "started_at", "latency_ms", "ttft_ms",
        "attempt", "stream", "endpoint", "model", "request", "request_headers", "status", "response", "error",
        "request_id", "usage", "cost_usd", "abandoned", "unknown_events", "response_headers", "tags"]


def test_identical_streams_are_stored_once(api, rec, client, db_path):
    events = message_events(_message(9, "the same answer, every time " * 10))
    api.enqueue(*(Reply(sse=events) for _ in range(4)))
    with rec.conversation("conv_same"):
        for _ in range(4):
            with client.messages.stream(model="claude-sonnet-4-5", max_tokens=8, messages=USER) as s:
                s.get_final_message()
    assert rec.close()
    con = sqlite3.connect(db_path)
    assert con.execute("SELECT COUNT(*), COUNT(DISTINCT body) FROM stream_events").fetchone() == (4, 1)
    [(stored,)] = con.execute("SELECT length(sse) FROM stream_bodies").fetchall()
    assert stored < len(sse_text(events).encode()) / 3  # deflated


def test_event_times_from_chunk_times():
    raw = b'event: a\ndata: {"n":1}\n\nevent: b\ndata: {"n"' + b':2}\n\n: comment\n\nevent: c\ndata: 3\n\nevent: d\nda'
    chunks = [(38, 1.5), (55, 2.25), (80, 7.0), (len(raw), 9.125)]  # the second event ends in chunk 2
    assert event_ms(raw, chunks) == [1.5, 2.25, 7.0]  # the cut-off last event was never delivered
    assert unpack_ms(pack_ms([0.0, 0.0, 1.001, 1.001, 90_000.5, 4_000_000.25])) == [
        0.0, 0.0, 1.001, 1.001, 90_000.5, 4_000_000.25]
    assert [(e["event"], e["data"]) for e in events_of(raw, pack_ms([1.5, 2.25, 7.0]))] == [
        ("a", {"n": 1}), ("b", {"n": 2}), ("c", 3)]


# -- redaction ------------------------------------------------------------------------------------
def test_a_redacted_response_keeps_no_events_that_would_show_it(api, tmp_path):
    """Recorder(redact=...) that rewrites the response: the events (which hold the text) are not
    kept; one that touches only the request keeps them. cassette_lines(redact=...) does the same."""
    def hide_answer(record):
        if isinstance(record.get("response"), dict):
            for block in record["response"]["content"]:
                if block.get("type") == "text":
                    block["text"] = "[redacted]"
        return record

    def hide_question(record):
        record["request"]["messages"] = [{"role": "user", "content": "[redacted]"}]
        return record

    secret = _message(1, "the secret answer is 1234")
    for hook, kept in ((hide_answer, False), (hide_question, True)):
        db = tmp_path / f"{hook.__name__}.db"
        api.enqueue(Reply(sse=message_events(secret)))
        with Recorder(db, redact=hook) as rec:
            client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY))
            with rec.conversation("conv_r"), client.messages.stream(
                    model="claude-sonnet-4-5", max_tokens=8, messages=USER) as s:
                s.get_final_message()
        [line] = _cassette(db, 1, conversation_id="conv_r")
        assert (line["events"] is not None) is kept
        assert ("1234" in json.dumps(line)) is kept
        assert b"1234" not in db.read_bytes() or kept

    store = Store(open_db(tmp_path / "hide_question.db", create=False))
    [line] = cassette_lines(store, conversation_id="conv_r", redact=hide_answer)
    assert line["events"] is None and "1234" not in json.dumps(line)
    assert list(cassette_lines(store, conversation_id="conv_r", redact=lambda record: None)) == []

    def hide_everywhere(record):  # a hook that rewrites the events itself keeps them
        hide_answer(record)
        for event in record["events"] or ():
            if event["event"] == "content_block_delta":
                event["data"]["delta"]["text"] = "*"
        return record

    [line] = cassette_lines(store, conversation_id="conv_r", redact=hide_everywhere)
    assert line["events"] and "1234" not in json.dumps(line)


# -- the command line -----------------------------------------------------------------------------
def test_export_cassette_of_a_recorded_run_and_of_a_conversation(api, tmp_path):
    """`replayer record` a Python agent (two conversations, streamed), then `export --cassette
    --run`: a self-contained file, events and all, no key; `--conversation` gives one of them."""
    replies = [_message(1, "first answer, streamed " * 3), _message(2, "second answer")]
    api.enqueue(*(Reply(sse=message_events(m)) for m in replies))
    script = write(tmp_path / "agent.py", """
        import anthropic

        client = anthropic.Anthropic()
        for text in ("one", "two"):
            with client.messages.stream(model="claude-sonnet-4-5", max_tokens=50,
                                        messages=[{"role": "user", "content": text}]) as s:
                s.get_final_message()
        """)
    db = tmp_path.resolve() / "run.db"
    proc = replayer(db, "record", "--", sys.executable, str(script),
                    env={"ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": FAKE_KEY})
    assert proc.returncode == 0, proc.stderr
    run = run_of(summary(proc))

    out = tmp_path / "run.cassette.jsonl"
    proc = replayer(db, "export", "--cassette", "--run", run, "-o", str(out))
    assert proc.returncode == 0 and proc.stderr.strip() == f"wrote 2 lines to {out} (a cassette)", proc.stderr
    text = out.read_text("utf-8")
    assert FAKE_KEY not in text and "x-api-key" not in text.lower() and "authorization" not in text.lower()
    lines = [json.loads(x) for x in text.splitlines()]
    assert [line["response"] for line in lines] == replies
    assert [_got(line) for line in lines] == [_sent(message_events(m)) for m in replies]
    assert len({line["conversation_id"] for line in lines}) == 2
    assert lines == _cassette(db, 2, run_id=run)  # the file is cassette_lines, line for line

    one = tmp_path / "one.jsonl"
    conv = lines[1]["conversation_id"]
    got = CliRunner().invoke(cli, ["--db", str(db), "export", "--cassette", "--conversation", conv[:-4],
                                   "-o", str(one)])  # a prefix names it
    assert got.exit_code == 0, got.output
    assert [json.loads(x) for x in one.read_text("utf-8").splitlines()] == lines[1:]
    plain = CliRunner().invoke(cli, ["--db", str(db), "export", "--run", run])  # the export lines of a run
    assert [json.loads(x) for x in plain.stdout.splitlines()] == [
        {k: v for k, v in line.items() if k != "events"} for line in lines]


def test_export_cassette_bad_input_is_one_line_and_exit_2(api, rec, client, db_path, tmp_path):
    with rec.conversation("conv_bad"):
        client.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=USER)
    assert rec.close()
    cases = [
        (["--cassette"], "--cassette records one conversation or one run"),
        (["--cassette", "--conversation", "conv_bad", "--run", "run_x"], "not both"),
        (["--cassette", "--conversation", "conv_nope"], "no conversation 'conv_nope'"),
        (["--cassette", "--run", "run_nope"], "no conversation recorded by run 'run_nope'"),
        (["--cassette", "--conversation", "conv_bad", "-o", str(tmp_path / "missing" / "c.jsonl")],
         "does not exist"),
    ]
    for args, says in cases:
        result = CliRunner().invoke(cli, ["--db", str(db_path), "export", *args])
        assert result.exit_code == 2, (args, result.output)
        [line] = result.output.splitlines()
        assert line.startswith("replayer: ") and says in line, (args, line)


def test_the_events_delivered_are_the_ones_the_sdks_decoder_dispatches():
    """Random streams of event, data, comment and other lines, ended by LF, CR or CRLF."""
    import random

    rnd = random.Random(16)
    pieces = [b"event: x", b"data: 1", b"data: {\"a\": [1]}", b"data", b"data:", b": comment", b"id: 4",
              b"eventful: 1", b"\n", b"\n", b"\r", b"\r\n"]
    for _ in range(3000):
        raw = b"".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 14)))
        sdk = [(e.event, e.data) for e in SSEDecoder().iter_bytes(iter([raw])) if e.event is not None or e.data]
        ours = [(e.event, e.data) for e in delivered(raw) if e.event is not None or e.data]
        assert ours == sdk, raw
        crlf = raw.replace(b"\r", b"").replace(b"\n", b"\r\n")  # the same stream by the other path
        assert [(e.event, e.data) for e in delivered(crlf)] == [(e.event, e.data) for e in delivered(
            raw.replace(b"\r", b""))]


async def test_an_async_clients_stream_keeps_its_events(api, rec, aclient, db_path):
    streamed = message_events(_message(11, "asynchronously, " * 6, tool=True))
    api.enqueue(Reply(sse=streamed))
    with rec.conversation("conv_async"):
        async with aclient.messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=USER) as s:
            await s.get_final_message()
    assert rec.flush(10)
    [line] = _cassette(db_path, 1, conversation_id="conv_async")
    assert _got(line) == _sent(streamed)
    _assert_times(line)
