"""The recording proxy: real clients (the SDK, raw httpx) through it to a local upstream; what it
forwards, what it records (compared with what the in-process middleware records for the same
calls), and the server's life (the CLI, a stop that lets streams finish)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import anthropic
import httpx2
import pytest
from conftest import FAKE_KEY, exported, sent_bodies, stop_behind, wait_until
from proxy_upstream import MESSAGE, Upstream, zstd_module

from replayer import Recorder
from replayer.bodies import decodable, decode, decoder_for
from replayer.fakeapi import FakeAPI, Reply, message_events
from replayer.proxy import RECORDED_HEADER, start_background
from replayer.proxy.tee import ProxiedCall, Retries
from replayer.store.process import make_writer

pytestmark = pytest.mark.writer_process  # Recorders here write through a writer process, the default

USER = [{"role": "user", "content": "What is in README.md?"}]
TOOLS = [{"name": "read_file", "description": "Read a file", "input_schema": {
    "type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}]
ERR_529 = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
VOLATILE = ("turn_id", "conversation_id", "started_at", "latency_ms", "ttft_ms")


def agent_reply(body):
    """The fake's model: asks for a tool until it has a tool result, then answers."""
    last = (body or {}).get("messages", [{}])[-1]
    content = last.get("content")
    done = isinstance(content, list) and any(b.get("type") == "tool_result" for b in content)
    n = len(body.get("messages", []))
    msg = {
        "id": f"msg_agent{n:04d}", "type": "message", "role": "assistant", "model": body.get("model"),
        "content": [{"type": "text", "text": "README says hello."}] if done else [
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": f"toolu_{n:04d}", "name": "read_file", "input": {"path": "README.md"}}],
        "stop_reason": "end_turn" if done else "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 20 * n, "output_tokens": 7, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 0},
    }
    return Reply(sse=message_events(msg)) if body.get("stream") else Reply(body=msg)


def scenario(client, api):
    """The same calls, whichever way they are recorded."""
    client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "Hi"}],
                           metadata={"user_id": "u1"})
    for _event in client.messages.create(model="claude-sonnet-4-5", max_tokens=64, stream=True,
                                         messages=[{"role": "user", "content": "Stream me"}]):
        pass
    messages = list(USER)
    while True:  # a tool loop on messages.stream
        with client.messages.stream(model="claude-sonnet-4-5", max_tokens=256, tools=TOOLS, messages=messages,
                                    extra_headers={"anthropic-beta": "tools-2099-01-01"}) as stream:
            final = stream.get_final_message()
        if final.stop_reason != "tool_use":
            break
        tool = next(b for b in final.content if b.type == "tool_use")
        messages += [{"role": "assistant", "content": [b.to_dict() for b in final.content]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool.id, "content": "hello"}]}]
    api.enqueue(Reply(status=529, body=ERR_529, headers={"retry-after-ms": "10"}))
    client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "Retry"}])
    events = message_events(MESSAGE)[:4] + [{"event": "error", "data": ERR_529}]
    api.enqueue(Reply(sse=events))
    with pytest.raises(anthropic.APIStatusError):
        for _event in client.messages.create(model="claude-sonnet-4-5", max_tokens=64, stream=True,
                                             messages=[{"role": "user", "content": "Fail mid-way"}]):
            pass


def stable(lines):
    return [{k: v for k, v in line.items() if k not in VOLATILE} | {"timed": line["ttft_ms"] is not None}
            for line in lines]


@pytest.fixture
def proxy_db(tmp_path):
    return tmp_path / "proxy.db"


@pytest.fixture
def writer(proxy_db):
    w = make_writer(str(proxy_db))
    yield w
    w.close()


@pytest.fixture
def start(writer):
    started = []

    def start(upstream, **options):
        proxy = start_background(upstream, writer.put, **options)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop(5)


@pytest.fixture
def upstream():
    up = Upstream().start()
    try:
        yield up
    finally:
        up.gate.set()  # what it holds back goes now, for the proxy's stop that follows
        stop_behind(up)


def records(writer, path, n):
    """The proxy's records once `n` are written (a record is put as its response ends)."""
    assert wait_until(lambda: writer.flush(10) and path.exists() and len(exported(path)) >= n)
    return exported(path)


def test_sdk_calls_are_recorded_as_the_middleware_records_them(tmp_path, start, writer, proxy_db):
    direct_db = tmp_path / "direct.db"
    with FakeAPI(agent_reply) as api, Recorder(direct_db) as rec:
        scenario(rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY)), api)
        rec.flush(10)
        direct_sent = api.received
    with FakeAPI(agent_reply) as api:
        proxy = start(api.url)
        scenario(anthropic.Anthropic(base_url=proxy.url, api_key=FAKE_KEY), api)
        proxied_sent = api.received
        lines = records(writer, proxy_db, len(exported(direct_db)))
    direct = exported(direct_db)
    # after an error event the SDK raises and closes the stream: the server ended it, so neither
    # the middleware (which sees the close) nor the proxy calls it abandoned
    assert [line["abandoned"] for line in direct] == [False] * 7
    assert stable(lines) == stable(direct)
    # the upstream got what the SDK sent, body for body
    assert [r["body"] for r in proxied_sent] == [r["body"] for r in direct_sent]
    assert [r["path"] for r in proxied_sent] == [r["path"] for r in direct_sent]
    assert len(lines) == 7
    kinds = [(line["stream"], line["attempt"], (line["error"] or {}).get("type")) for line in lines]
    assert (False, 1, None) in kinds and (False, 0, "overloaded_error") in kinds  # the retried 529: one turn
    retried = [line for line in lines if line["request"]["messages"][0]["content"] == "Retry"]
    assert len({line["turn_id"] for line in retried}) == 1 and [r["attempt"] for r in retried] == [0, 1]
    assert (True, 0, "overloaded_error") in kinds  # the error event mid-stream
    tool_loop = [line for line in lines if line["request"].get("tools")]
    assert len({line["conversation_id"] for line in tool_loop}) == 1 and len(tool_loop) == 2
    assert all(line["ttft_ms"] is not None for line in tool_loop)
    assert tool_loop[0]["request_headers"]["anthropic-beta"] == "tools-2099-01-01"
    assert tool_loop[1]["response"]["content"][0]["text"] == "README says hello."
    assert lines[0]["user_id"] == "u1" and lines[0]["request_id"] == "req_fake0000000000000001"


async def test_async_client_and_many_concurrent_streams(start, writer, proxy_db):
    with FakeAPI() as api:
        proxy = start(api.url)
        client = anthropic.AsyncAnthropic(base_url=proxy.url, api_key=FAKE_KEY)

        async def one(i):
            async with client.messages.stream(model="claude-sonnet-4-5", max_tokens=32,
                                              messages=[{"role": "user", "content": f"task {i}"}]) as s:
                return (await s.get_final_message()).content[0].text

        texts = await asyncio.gather(*(one(i) for i in range(60)))
        await client.close()
    assert all(t.startswith("reply ") for t in texts) and len(set(texts)) == 60
    lines = records(writer, proxy_db, 60)
    assert sorted(line["request"]["messages"][0]["content"] for line in lines) == sorted(
        f"task {i}" for i in range(60))
    assert sorted(line["response"]["content"][0]["text"] for line in lines) == sorted(texts)
    assert all(line["stream"] and line["ttft_ms"] is not None and line["error"] is None for line in lines)


def test_other_endpoints_are_forwarded_and_not_recorded(start, writer, proxy_db, upstream):
    proxy = start(upstream.url)
    with httpx2.Client(base_url=proxy.url) as http:
        head = http.head("/")
        models = http.get("/v1/models?limit=2&after_id=a%2Fb", headers={"x-api-key": FAKE_KEY, "x-custom": "kept"})
    assert head.status_code == 200 and head.headers["content-length"] == "12" and head.content == b""
    assert models.status_code == 200 and models.json()["path"] == "/v1/models?limit=2&after_id=a%2Fb"
    assert models.headers["request-id"] == "req_models"
    sent = upstream.seen[1]["headers"]
    assert sent["x-api-key"] == FAKE_KEY and sent["x-custom"] == "kept"
    assert sent["Host"] == upstream.url.removeprefix("http://")
    assert [s["method"] for s in upstream.seen] == ["HEAD", "GET"]
    with FakeAPI() as api:
        proxy = start(api.url)
        client = anthropic.Anthropic(base_url=proxy.url, api_key=FAKE_KEY)
        counted = client.messages.count_tokens(model="claude-sonnet-4-5", messages=USER)
        with httpx2.Client() as http:  # as Claude Code sends its calls
            http.post(f"{proxy.url}/v1/messages?beta=true", headers={"anthropic-beta": "b-1", "x-api-key": FAKE_KEY},
                      json={"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": USER})
        assert [r["path"] for r in api.received] == ["/v1/messages/count_tokens", "/v1/messages?beta=true"]
    assert counted.input_tokens == len(api.received[0]["body"]) // 4
    [line] = records(writer, proxy_db, 1)
    assert line["endpoint"] == "/v1/messages" and line["request_headers"]["anthropic-beta"] == "b-1"


def test_a_header_sent_as_several_lines_is_recorded_whole(start, writer, proxy_db):
    """Go's Header.Add sends one `anthropic-beta` line per beta: the record holds them all, as
    the one comma-joined value HTTP says they are (a rerun then sends every beta again)."""
    with FakeAPI() as api:
        proxy = start(api.url)
        headers = [("anthropic-beta", "interleaved-thinking-2025-05-14"), ("anthropic-beta", "context-1m-2025-08-07"),
                   ("anthropic-version", "2023-06-01"), ("x-api-key", FAKE_KEY)]  # fmt: skip
        with httpx2.Client() as http:
            r = http.post(f"{proxy.url}/v1/messages", headers=headers,
                          json={"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": USER})  # fmt: skip
        assert r.status_code == 200
    [line] = records(writer, proxy_db, 1)
    assert line["request_headers"] == {
        "anthropic-beta": "interleaved-thinking-2025-05-14, context-1m-2025-08-07",
        "anthropic-version": "2023-06-01",
    }


def post_encoded(start, body: bytes, encoding: str, accept: str) -> tuple[httpx2.Response, bytes, str]:
    """A Messages call through the proxy answered with `body` labelled `encoding`: the client's
    answer, its body as it came (not decoded) and the accept-encoding the upstream was sent."""
    with FakeAPI() as api:
        api.enqueue(Reply(body=body, headers={"content-encoding": encoding}))
        proxy = start(api.url)
        with httpx2.Client() as http, http.stream(
                "POST", f"{proxy.url}/v1/messages", json={"model": "m", "max_tokens": 5, "messages": USER},
                headers={"accept-encoding": accept}) as got:
            raw = b"".join(got.iter_raw())
        return got, raw, api.received[0]["headers"]["accept-encoding"]


def test_gzip_response_reaches_the_client_intact_and_is_recorded_decoded(start, writer, proxy_db):
    message = dict(MESSAGE, id="msg_zipped")
    zipped = gzip.compress(json.dumps(message).encode())
    got, raw, asked = post_encoded(start, zipped, "gzip", "gzip, br, zstd")
    assert "gzip" in asked
    assert got.headers["content-encoding"] == "gzip" and got.headers["content-length"] == str(len(zipped))
    assert raw == zipped
    [line] = records(writer, proxy_db, 1)
    assert line["response"] == message and line["status"] == 200


def test_gzip_stream_passes_through_as_it_arrives(start, writer, proxy_db, upstream):
    """The client reads the first event while the upstream still holds the rest at its gate:
    nothing is buffered to the end (else this read would wait for the gate, which it opens)."""
    proxy = start(upstream.url)
    for path, accept in (("/v1/messages", "gzip"), ("/v1/messages?gzip", "gzip"), ("/v1/messages?zstd", "zstd")):
        upstream.gate.clear()
        with httpx2.Client() as http, http.stream("POST", proxy.url + path, json={"stream": True, "messages": USER},
                                                   headers={"accept-encoding": accept}) as got:
            chunks = got.iter_bytes()
            first = next(chunks)
            assert b"content_block_delta" in first and b"message_stop" not in first
            upstream.gate.set()
            rest = b"".join(chunks)
        assert b"message_stop" in rest
    lines = records(writer, proxy_db, 3)
    assert [line["response"] for line in lines] == [MESSAGE, MESSAGE, MESSAGE]
    assert all(line["stream"] and line["ttft_ms"] is not None and not line["abandoned"] for line in lines)


@pytest.fixture
def stand_in_brotli(monkeypatch, tmp_path):
    """A `brotli` module with google Brotli's API (Decompressor.process, no .decompress) that
    decodes nothing: a body labelled br but sent plain reads as itself."""
    from replayer import bodies

    (tmp_path / "brotli.py").write_text(
        "class Decompressor:\n"
        "    def process(self, data):\n        return data\n"
        "    def is_finished(self):\n        return True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "brotli", raising=False)
    monkeypatch.setattr(bodies, "_decodable", {})  # what this Python can decode is found again


def test_brotli_answers_are_recorded_decoded_with_its_process_method(start, writer, proxy_db, upstream,
                                                                     stand_in_brotli):
    message = dict(MESSAGE, id="msg_brotli")
    got, raw, asked = post_encoded(start, json.dumps(message).encode(), "br", "br")
    assert asked == "br"
    assert got.status_code == 200 and json.loads(raw) == message
    upstream.gate.set()
    proxy = start(upstream.url)
    with httpx2.Client() as http, http.stream("POST", proxy.url + "/v1/messages?br",
                                               json={"stream": True, "messages": USER}) as got:
        assert b"".join(got.iter_raw()) == upstream.sent[0]  # the whole stream reached the client
    lines = records(writer, proxy_db, 2)
    assert [line["response"] for line in lines] == [message, MESSAGE]
    assert [line["error"] for line in lines] == [None, None] and lines[1]["ttft_ms"] is not None


def test_a_corrupt_gzip_stream_reaches_the_client_and_its_record_says_it_could_not_be_decoded(
        start, writer, proxy_db, upstream):
    upstream.gate.set()
    proxy = start(upstream.url)
    with httpx2.Client() as http, http.stream("POST", proxy.url + "/v1/messages?corrupt",
                                               json={"stream": True, "messages": USER},
                                               headers={"accept-encoding": "gzip"}) as got:
        assert got.status_code == 200 and b"".join(got.iter_raw()) == upstream.sent[0]
    [line] = records(writer, proxy_db, 1)
    assert line["status"] == 200 and line["error"]["type"] == "decode_error"
    assert "gzip body could not be decoded" in line["error"]["message"]
    assert line["request"] == {"stream": True, "messages": USER}


def test_client_that_leaves_mid_stream_closes_the_upstream_and_is_recorded_abandoned(start, writer, proxy_db,
                                                                                   upstream):
    upstream.pings_after_gate = 400
    proxy = start(upstream.url)
    with httpx2.Client() as http, http.stream("POST", proxy.url + "/v1/messages",
                                               json={"stream": True, "messages": USER}) as got:
        assert b"content_block_delta" in next(got.iter_bytes())
    upstream.gate.set()
    assert upstream.left.wait(20) and not upstream.finished.is_set()
    [line] = records(writer, proxy_db, 1)
    assert line["abandoned"] and line["error"] is None and line["status"] == 200
    assert line["response"]["content"] == [{"type": "text", "text": "first part, then"}]  # as far as it got


def test_an_upstream_whose_tls_fails_says_tls_failed(start, writer, proxy_db):
    """https:// to a server that speaks plain HTTP (or has a certificate that doesn't verify):
    the 502 names TLS and why; it said "operation not permitted" (the SSL error's errno 1)."""
    with FakeAPI() as api:
        upstream = api.url.replace("http://", "https://")
        proxy = start(upstream)
        client = anthropic.Anthropic(base_url=proxy.url, api_key=FAKE_KEY, max_retries=0)
        with pytest.raises(anthropic.InternalServerError) as raised:
            client.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=USER)
    message = raised.value.body["error"]["message"]
    assert message.startswith(f"replayer proxy: upstream {upstream} unreachable: TLS with 127.0.0.1 failed: "), message
    assert "not permitted" not in message


def test_the_upstream_is_reached_through_the_proxy_the_environment_names(start, writer, proxy_db, monkeypatch):
    """HTTP_PROXY/HTTPS_PROXY, as the SDKs honour them: an agent behind an egress proxy reaches
    the API alone, and must under `record` too."""
    with FakeAPI() as egress:
        monkeypatch.setenv("HTTP_PROXY", egress.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # the agent reaches replayer's proxy directly
        monkeypatch.delenv("no_proxy", raising=False)
        proxy = start("http://api.internal.test")  # a name only the egress proxy knows
        client = anthropic.Anthropic(base_url=proxy.url, api_key=FAKE_KEY, max_retries=0)
        reply = client.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=USER)
        assert reply.content
        assert [r["path"] for r in egress.received] == ["http://api.internal.test/v1/messages"]
    [line] = records(writer, proxy_db, 1)
    assert line["status"] == 200 and line["request"]["messages"] == USER


def test_no_credentials_from_netrc_go_upstream(start, writer, proxy_db, monkeypatch, tmp_path):
    """aiohttp's trust_env would also send ~/.netrc's login as Basic auth (and fail a request with
    an Authorization of its own): the proxy takes only the proxy variables from the environment."""
    netrc = tmp_path / "netrc"
    netrc.write_text("default login me password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    body = {"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": USER}
    with FakeAPI() as api:
        proxy = start(api.url)
        with httpx2.Client(trust_env=False) as http:  # (a client that reads no netrc itself)
            for auth in ({"x-api-key": FAKE_KEY}, {"authorization": "Bearer tok"}):
                assert http.post(f"{proxy.url}/v1/messages", headers=auth, json=body).status_code == 200
        sent = [{k.lower(): v for k, v in r["headers"].items()} for r in api.received]
    assert "authorization" not in sent[0], sent[0]
    assert sent[1].get("authorization") == "Bearer tok", sent[1]


def test_upstream_down_is_a_502_in_the_api_shape_recorded_as_the_client_got_it(start, writer, proxy_db):
    """The client gets a 502 (the SDK's InternalServerError, retried): the record is that answer,
    its status and error body, as of any API error; the message says the upstream was unreachable."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"  # bound, not listening: connection refused
        proxy = start(dead)
        client = anthropic.Anthropic(base_url=proxy.url, api_key=FAKE_KEY, max_retries=1)
        with pytest.raises(anthropic.InternalServerError) as raised:
            client.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=USER)
    assert raised.value.status_code == 502
    body = raised.value.body
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    assert body["error"]["message"].startswith(f"replayer proxy: upstream {dead} unreachable: ")
    lines = records(writer, proxy_db, 2)
    assert [line["attempt"] for line in lines] == [0, 1] and len({line["turn_id"] for line in lines}) == 1
    for line in lines:
        assert line["status"] == 502 and line["response"] == body
        assert line["error"] == {"type": "api_error", "message": body["error"]["message"], "status": 502}
        assert line["request"]["messages"] == USER


def test_an_upstreams_user_info_is_used_but_never_shown(start, writer, proxy_db, tmp_path):
    """user:password@ in the upstream URL goes with the request, never into a message, a log
    line, an error body or a record."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        proxy = start(f"http://someone:hunter2@127.0.0.1:{port}")
        client = anthropic.Anthropic(base_url=proxy.url, api_key=FAKE_KEY, max_retries=0)
        with pytest.raises(anthropic.InternalServerError) as raised:
            client.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=USER)
    message = raised.value.body["error"]["message"]
    assert message.startswith(f"replayer proxy: upstream http://127.0.0.1:{port} unreachable: ")
    [line] = records(writer, proxy_db, 1)
    assert line["error"]["message"] == message
    with FakeAPI() as api:
        upstream = api.url.replace("http://", "http://someone:hunter2@")
        proc = _cli("--port", "0", "--db", str(tmp_path / "cli.db"), "--upstream", upstream)
        try:
            started = proc.stderr.readline()
            anthropic.Anthropic(base_url=started.split(" ")[4], api_key=FAKE_KEY).messages.create(
                model="claude-sonnet-4-5", max_tokens=8, messages=USER)
            httpx2.post(started.split(" ")[4] + "/v1/messages", json={"model": "m", "max_tokens": 5, "messages": USER})
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
        assert started.endswith(f" -> {api.url} (db {tmp_path / 'cli.db'})\n") and "hunter2" not in proc.stderr.read()
        # the user info goes as the Authorization of a request that has none of its own
        assert api.received[1]["headers"]["Authorization"] == "Basic " + base64.b64encode(b"someone:hunter2").decode()
        assert "hunter2" not in str(api.received[0]["headers"])
    bad = _cli("--upstream", "ftp://someone:hunter2@example.com", "--db", str(tmp_path / "x.db"))
    assert bad.wait(30) == 2
    err = bad.stderr.read()
    assert "ftp://example.com" in err and "hunter2" not in err


def test_upstream_dropped_mid_stream_reaches_the_client_as_a_cut_stream(start, writer, proxy_db):
    with FakeAPI() as api:
        api.enqueue(Reply(sse=message_events(MESSAGE), drop_after_events=4))
        proxy = start(api.url)
        client = anthropic.Anthropic(base_url=proxy.url, api_key=FAKE_KEY, max_retries=0)
        with pytest.raises(Exception) as raised:  # noqa: B017 - the HTTP library's own error, as when direct
            for _event in client.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=USER,
                                                 stream=True):
                pass
    assert not isinstance(raised.value, anthropic.APIStatusError)
    [line] = records(writer, proxy_db, 1)
    assert line["error"]["type"] == "connection_error" and line["status"] == 200 and not line["abandoned"]
    assert line["response"]["id"] == MESSAGE["id"]


def test_a_stream_the_upstream_cut_says_so_in_words_and_show_json_and_export_say_the_same_error(
        start, writer, proxy_db):
    """A stream the upstream cut after its 200: its error's message was aiohttp's
    (`ClientPayloadError: Response payload is not completed: <TransferEncodingError: 400,
    message='Not enough data...'>`, a 400 nobody sent), and `show --json` gave the error the
    attempt's 200 where `export` gave null. The message now says it in words, aiohttp's kept as
    the error's detail; both say the error as recorded (no status of its own: the connection
    broke) beside the attempt's status, 200."""
    from click.testing import CliRunner

    from replayer.cli import cli

    with FakeAPI() as api:
        api.enqueue(Reply(sse=message_events(MESSAGE), drop_after_events=4))
        proxy = start(api.url)
        client = anthropic.Anthropic(base_url=proxy.url, api_key=FAKE_KEY, max_retries=0)
        with pytest.raises(Exception):  # noqa: B017 - the HTTP library's own error, as when direct
            for _event in client.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=USER,
                                                 stream=True):
                pass
    [line] = records(writer, proxy_db, 1)
    error = line["error"]
    assert error["message"] == "the connection closed before the stream ended", error
    assert "400" not in error["message"] and "ClientPayloadError" in error["detail"], error
    assert (line["status"], error["status"]) == (200, None)
    shown = CliRunner().invoke(cli, ["--db", str(proxy_db), "show", line["conversation_id"], "--json"])
    assert shown.exit_code == 0, shown.output
    [attempt] = json.loads(shown.output)["turns"][0]["attempts"]
    assert (attempt["status"], attempt["error"]) == (200, error)
    table = CliRunner().invoke(cli, ["--db", str(proxy_db), "show", line["conversation_id"]]).output
    assert "[0:connection_error mid-stream]" in table, table  # read with the attempt's 200, as before


def test_a_stream_cut_through_the_middleware_reads_as_one_cut_through_the_proxy(tmp_path, start, writer, proxy_db):
    """A stream whose connection broke after its 200, recorded by the middleware (the SDK direct,
    sync and async): its error read httpx's words (`RemoteProtocolError: peer closed connection
    without sending complete message body (incomplete chunked read)`) where the proxy's reads
    "the connection closed before the stream ended". Both now read the same, each HTTP library's
    words kept as the error's detail, with no status of their own beside the attempt's 200, in
    export, show --json and show."""
    from click.testing import CliRunner

    from replayer.cli import cli

    def cut(client):
        with pytest.raises(Exception):  # noqa: B017 - the HTTP library's own error, as without replayer
            for _event in client.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=USER,
                                                 stream=True):
                pass

    async def cut_async(client):  # (another question: not taken for a retry of the sync call's turn)
        with pytest.raises(Exception):  # noqa: B017
            async for _event in await client.messages.create(model="claude-sonnet-4-5", max_tokens=8, stream=True,
                                                             messages=[{"role": "user", "content": "And async?"}]):
                pass

    direct_db = tmp_path / "direct.db"
    with FakeAPI() as api:
        api.enqueue(*[Reply(sse=message_events(MESSAGE), drop_after_events=4)] * 3)
        with Recorder(direct_db) as rec:
            cut(rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0)))
            asyncio.run(cut_async(rec.wrap(anthropic.AsyncAnthropic(base_url=api.url, api_key=FAKE_KEY,
                                                                    max_retries=0))))
            assert rec.flush(10)
        cut(anthropic.Anthropic(base_url=start(api.url).url, api_key=FAKE_KEY, max_retries=0))
        [proxied] = records(writer, proxy_db, 1)
    direct = exported(direct_db)
    said = {"type": "connection_error", "message": "the connection closed before the stream ended", "status": None}
    for line in [*direct, proxied]:
        assert {k: v for k, v in line["error"].items() if k != "detail"} == said, line["error"]
        assert line["status"] == 200 and line["response"]["content"][0]["text"], line
    for line in direct:
        assert line["error"]["detail"].startswith("RemoteProtocolError: peer closed connection"), line["error"]
    assert "ClientPayloadError" in proxied["error"]["detail"], proxied["error"]
    for db, line in [(direct_db, direct[0]), (direct_db, direct[1]), (proxy_db, proxied)]:
        shown = CliRunner().invoke(cli, ["--db", str(db), "show", line["conversation_id"], "--json"])
        assert shown.exit_code == 0, shown.output
        [attempt] = json.loads(shown.output)["turns"][0]["attempts"]
        assert (attempt["status"], attempt["error"]) == (200, line["error"])
        table = CliRunner().invoke(cli, ["--db", str(db), "show", line["conversation_id"]]).output
        assert "[0:connection_error mid-stream]" in table, table


def test_calls_recorded_in_process_pass_unrecorded_and_the_marker_is_not_forwarded(start, writer, proxy_db):
    with FakeAPI() as api:
        proxy = start(api.url)
        client = anthropic.Anthropic(base_url=proxy.url, api_key=FAKE_KEY, default_headers={RECORDED_HEADER: "1"})
        client.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=USER)
        anthropic.Anthropic(base_url=proxy.url, api_key=FAKE_KEY).messages.create(
            model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "recorded"}])
        assert all(RECORDED_HEADER not in {k.lower() for k in r["headers"]} for r in api.received)
        assert len(api.received) == 2
    [line] = records(writer, proxy_db, 1)
    assert line["request"]["messages"][0]["content"] == "recorded"


def test_tags_and_trace_go_into_every_record_and_the_key_never_into_the_db(start, writer, proxy_db):
    with FakeAPI() as api:
        proxy = start(api.url, tags={"run": "run_01"})
        trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        client = anthropic.Anthropic(base_url=proxy.url, api_key=FAKE_KEY,
                                     default_headers={"traceparent": f"00-{trace}-00f067aa0ba902b7-01"})
        client.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=USER)
        client.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=USER, stream=True).close()
        # forwarded (this SDK sends the key as a bearer token)
        assert all(FAKE_KEY in json.dumps(r["headers"]) for r in api.received)
    assert [line["trace_id"] for line in records(writer, proxy_db, 2)] == [trace, trace]  # a W3C traceparent
    writer.close()
    import sqlite3

    with sqlite3.connect(proxy_db) as db:
        tags = {json.loads(t) ["run"] for (t,) in db.execute("SELECT tags_json FROM conversations")}
    assert tags == {"run_01"}
    for path in proxy_db.parent.glob(proxy_db.name + "*"):
        assert FAKE_KEY.encode() not in path.read_bytes()


def test_stop_lets_open_streams_finish(writer, proxy_db, upstream):
    proxy = start_background(upstream.url, writer.put)
    got: dict[str, bytes] = {}

    def client():
        with httpx2.Client() as http, http.stream("POST", proxy.url + "/v1/messages",
                                                   json={"stream": True, "messages": USER}) as r:
            got["body"] = b"".join(r.iter_bytes())

    def refused() -> bool:
        try:
            httpx2.get(proxy.url + "/", timeout=5)
        except httpx2.ConnectError:
            return True
        return False

    reader = threading.Thread(target=client)
    reader.start()
    assert wait_until(lambda: len(upstream.seen) == 1)
    stopping = threading.Thread(target=proxy.stop)
    stopping.start()
    assert wait_until(refused)  # the stop has begun: it no longer listens, the stream is still open
    again = threading.Thread(target=proxy.stop)  # a second stop waits for the same one
    again.start()
    again.join(0.5)
    assert again.is_alive() and stopping.is_alive() and "body" not in got
    upstream.gate.set()
    again.join(30)
    # (the upstream's thread sets `finished` just after its last write, which the stop may beat)
    assert not again.is_alive() and upstream.finished.wait(5)
    stopping.join(30)
    reader.join(30)
    assert b"message_stop" in got["body"] and not stopping.is_alive()
    assert writer.flush(10)
    [line] = exported(proxy_db)
    assert line["response"] == MESSAGE and not line["abandoned"]


def test_retries_are_bounded_and_join_only_a_retry_of_the_same_body():
    retries = Retries(limit=50)
    first, n = retries.call_key(b'{"a":1}', None)
    assert n == 0
    assert retries.call_key(b'{"a":1}', "2") == (first, 2)
    assert retries.call_key(b'{"a":1}', "0")[0] != first  # the same body sent again: a new call
    assert retries.call_key(b'{"a":2}', "1")[0] != first
    for i in range(500):
        retries.call_key(b'{"n":%d}' % i, "0")
    assert len(retries.calls) <= 51


def test_retries_of_calls_with_the_same_body_go_each_to_its_own_call():
    """Two agents send the same body (an eval at temperature 0): each retry joins the oldest
    call not yet retried that many times, so neither files its retry under the other's turn."""
    retries = Retries()
    body = b'{"model":"m","messages":[{"role":"user","content":"same"}]}'
    a, b = retries.call_key(body, "0")[0], retries.call_key(body, None)[0]
    assert a != b
    assert [retries.call_key(body, "1")[0], retries.call_key(body, "1")[0]] == [a, b]
    assert retries.call_key(body, "2")[0] == a and retries.call_key(body, "2")[0] == b
    assert retries.call_key(body, "2")[0] not in (a, b)  # a third call's retry, its first try unseen


def test_a_retry_joins_a_call_whose_try_failed_over_its_own_connection_never_an_answered_one():
    """Two agents send the same body at once: B's first try is answered while A's gets a 529,
    and B's call ends first. A's retry joins A's call, not B's (answered: nothing retries it);
    of two failed calls, a retry joins the one on its own connection."""
    retries = Retries()
    body = b'{"model":"m","messages":[{"role":"user","content":"same"}]}'
    b = retries.call_key(body, "0", caller=2, answered=True)[0]
    a = retries.call_key(body, "0", caller=1, answered=False)[0]
    assert retries.call_key(body, "1", caller=1, answered=True) == (a, 1)
    assert retries.call_key(body, "2", caller=1)[0] not in (a, b)  # both answered: a call not seen
    c = retries.call_key(body, "0", caller=3)[0]
    d = retries.call_key(body, "0", caller=4)[0]
    assert retries.call_key(body, "1", caller=4)[0] == d and retries.call_key(body, "1", caller=9)[0] == c


def test_identical_calls_at_once_keep_each_its_own_retries_through_the_proxy(start, writer, proxy_db):
    """A's first try gets a 529 slowly, B's (the same body, a moment later, another connection)
    a 200 at once; A retries. A's turn: 529 then 200; B's: its 200 alone."""
    seen = []

    def responder(body):
        seen.append(body)
        if len(seen) == 1:
            return Reply(status=529, delay=0.6, body=ERR_529)
        return None  # the echo

    body = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": USER}).encode()
    statuses: dict[str, list[int]] = {}
    with FakeAPI(responder) as api:
        proxy = start(api.url)

        def agent(name, delay):
            time.sleep(delay)
            with httpx2.Client() as http:  # each agent its own connection
                for n in range(3):
                    sent = {"content-type": "application/json", "x-stainless-retry-count": str(n)}
                    r = http.post(f"{proxy.url}/v1/messages", content=body, headers=sent)
                    statuses.setdefault(name, []).append(r.status_code)
                    if r.status_code == 200:
                        return

        a = threading.Thread(target=agent, args=("A", 0))
        a.start()
        assert wait_until(lambda: len(seen) == 1)  # A's first try is at the fake (its 529 comes in 0.6 s)
        b = threading.Thread(target=agent, args=("B", 0))
        b.start()
        for t in (a, b):
            t.join()
    assert statuses == {"A": [529, 200], "B": [200]}
    lines = records(writer, proxy_db, 3)
    turns: dict[str, list[int]] = {}
    for line in sorted(lines, key=lambda x: (x["turn_id"], x["attempt"])):
        turns.setdefault(line["turn_id"], []).append(line["status"])
    assert sorted(turns.values()) == [[200], [529, 200]], turns


def test_a_client_that_retries_with_no_retry_count_gets_attempts_of_one_turn(start, writer, proxy_db):
    """Claude Code retries a 529 itself, sending `x-stainless-retry-count: 0` every time: the body
    sent again after its failure is the failed turn's next attempt, not a turn of its own."""
    replies = iter([Reply(status=529, body=ERR_529), Reply(status=529, body=ERR_529)])
    body = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": USER}).encode()
    with FakeAPI(lambda _body: next(replies, None)) as api:
        proxy = start(api.url)
        with httpx2.Client() as http:
            got = [http.post(f"{proxy.url}/v1/messages", content=body,
                             headers={"content-type": "application/json", "x-stainless-retry-count": "0"}).status_code
                   for _ in range(3)]  # fmt: skip
    assert got == [529, 529, 200]
    lines = records(writer, proxy_db, 3)
    assert len({line["turn_id"] for line in lines}) == 1
    assert sorted((line["attempt"], line["status"]) for line in lines) == [(0, 529), (1, 529), (2, 200)]


def test_the_call_a_retry_repeats_is_found_on_the_writers_side_not_before_forwarding():
    """Tying a retry to its call takes a digest of the body (the whole history: hundreds of
    microseconds for a long one), so the event loop doesn't: making the call record leaves the
    map alone, and `captured()`, on the writer's side, in the order calls end, asks it."""
    retries = Retries()
    body = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
    first = ProxiedCall(retries, None, "/v1/messages", None, body, [])
    retry = ProxiedCall(retries, "1", "/v1/messages", None, body, [])
    other = ProxiedCall(retries, "0", "/v1/messages", None, body, [])
    assert len(retries.calls) == 0
    a, b, c = first.captured(), retry.captured(), other.captured()
    assert (a.attempt, b.attempt, c.attempt) == (0, 1, 0)
    assert a.call_key == b.call_key != c.call_key and len(retries.calls) == 1


def _cli(*args, env=None):
    return subprocess.Popen([sys.executable, "-m", "replayer.cli", "proxy", *args], stderr=subprocess.PIPE,
                            text=True, env=env)


def test_cli_serves_records_and_stops_on_sigterm(tmp_path):
    db = tmp_path / "cli.db"
    with FakeAPI() as api:
        env = dict(os.environ, REPLAYER_UPSTREAM=api.url)
        proc = _cli("--port", "0", "--db", str(db), env=env)
        try:
            line = proc.stderr.readline()
            prefix = "replayer proxy: listening on http://127.0.0.1:"
            assert line.startswith(prefix) and line.endswith(f" -> {api.url} (db {db})\n")
            url = line.split(" ")[4]
            client = anthropic.Anthropic(base_url=url, api_key=FAKE_KEY)
            out = client.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=USER)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
        # no bodies, no noise: one line at the stop says what was recorded where
        assert proc.stderr.read() == f"replayer proxy: stopped; recorded 1 call to {db}\n"
        assert sent_bodies(api)[0]["messages"] == USER
    [record] = exported(db)
    assert record["response"]["content"][0]["text"] == out.content[0].text


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    db = str(tmp_path / "x.db")
    bad = _cli("--upstream", "ftp://example.com", "--db", db)
    assert bad.wait(30) == 2
    err = bad.stderr.read()
    assert err.count("\n") == 1 and "ftp://example.com" in err and "http(s)" in err
    empty = _cli("--host", "", "--db", db)
    assert empty.wait(30) == 2
    assert empty.stderr.read() == "replayer: --host is empty: give an address to listen on, e.g. --host 127.0.0.1\n"
    from_env = _cli("--db", db, env={**os.environ, "REPLAYER_UPSTREAM": "nonsense"})
    assert from_env.wait(30) == 2
    err = from_env.stderr.read()  # the message names where the value came from
    assert err == "replayer: $REPLAYER_UPSTREAM 'nonsense' is not an http(s) URL: give one like https://api.anthropic.com\n"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = _cli("--port", str(s.getsockname()[1]), "--db", db)
        assert busy.wait(30) == 2
        err = busy.stderr.read()
    assert err.count("\n") == 1 and "in use" in err and "--port" in err


def test_cli_warns_when_listening_beyond_loopback(tmp_path):
    proc = _cli("--host", "0.0.0.0", "--port", "0", "--db", str(tmp_path / "x.db"))
    try:
        warning = proc.stderr.readline()
        assert "0.0.0.0" in warning and "anyone who can reach it" in warning
        assert proc.stderr.readline().startswith("replayer proxy: listening on http://0.0.0.0:")
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0


AGENT = """
import json, sys
import anthropic

# one call, as argv[2] says (create, stream), retried argv[1] times; prints what it got
client = anthropic.Anthropic(max_retries=int(sys.argv[1]), timeout=60)
kwargs = dict(model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "What is in README.md?"}])
try:
    if sys.argv[2] == "stream":
        with client.messages.stream(**kwargs) as stream:
            for event in stream:
                print(event.type)
    else:
        print(client.messages.create(**kwargs).content[0].text)
except anthropic.APIStatusError as e:
    print(type(e).__name__, e.status_code, json.dumps(e.body, sort_keys=True))
except Exception as e:
    print(type(e).__name__)
"""


def run_agent(tmp_path, base_url, *args):
    """AGENT through the proxy at `base_url`: what it printed."""
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    env = dict(os.environ, ANTHROPIC_BASE_URL=base_url, ANTHROPIC_API_KEY=FAKE_KEY)
    proc = subprocess.run([sys.executable, str(agent), *args], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    return proc.stdout


def replayed(tmp_path, db, conversation_id, *args):
    """AGENT under `replayer replay CONVERSATION --with-errors` (the upstream gone): what it printed."""
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    env = dict(os.environ, ANTHROPIC_BASE_URL="http://127.0.0.1:9", ANTHROPIC_API_KEY=FAKE_KEY)
    proc = subprocess.run([sys.executable, "-m", "replayer.cli", "--db", str(db), "replay", conversation_id,
                           "--with-errors", "--", sys.executable, str(agent), *args],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout


def test_upstream_that_times_out_is_a_504_recorded_and_replayed_as_the_client_got_it(start, writer, proxy_db,
                                                                                    tmp_path):
    """The proxy answers an upstream that says nothing within its timeout with a 504 in the API's
    shape (the API's own timeout_error): the SDK raises InternalServerError and retries it as a
    5xx. The record is that answer (status, error body), as any API error the client got, so the
    health figures count an error (not a rate limit or overload), the browser shows `504
    timeout_error`, and `replayer replay --with-errors` gives the agent the 504 again: it had no
    status, and replayed as APITimeoutError, an error the agent never saw."""
    from replayer import fmt
    from replayer.config import Settings
    from replayer.metrics import stats
    from replayer.store.queries import Store
    from replayer.store.schema import open_db

    with FakeAPI() as api:
        api.enqueue(Reply(hang=2))  # the first try: nothing within the proxy's 0.3 s; its retry is answered
        upstream = api.url
        proxy = start(upstream, read_timeout=0.3)
        retried = run_agent(tmp_path, proxy.url, "1", "create")
        api.enqueue(Reply(hang=2))
        failed = run_agent(tmp_path, proxy.url, "0", "create")  # the 504 as the SDK raises it, not retried
    kind, status, text = failed.split(" ", 2)
    assert (kind, status) == ("GatewayTimeoutError", "504"), failed  # (an InternalServerError)
    body = json.loads(text)
    assert body["error"]["type"] == "timeout_error"
    assert body["error"]["message"].startswith(f"replayer proxy: upstream {upstream} timed out: ")
    lines = records(writer, proxy_db, 3)
    first, answered, alone = sorted(lines, key=lambda line: line["started_at"])
    assert (first["turn_id"], first["attempt"], answered["attempt"]) == (answered["turn_id"], 0, 1)
    assert answered["status"] == 200 and answered["error"] is None
    for line in (first, alone):
        assert line["status"] == 504, line
        message = line["error"]["message"]
        assert line["error"] == {"type": "timeout_error", "message": message, "status": 504}
        assert line["response"] == {"type": "error", "error": {"type": "timeout_error", "message": message}}
    assert alone["response"] == body
    assert fmt.error_head(first["error"]) == "504 timeout_error"
    figures = stats(Store(open_db(proxy_db, create=False)), Settings())
    assert figures.metrics["rate_limit_error_rate"].value == 0  # an error, not the API under pressure

    # the agent that retried gets through again; one that doesn't gets the 504 it got
    assert replayed(tmp_path, proxy_db, first["conversation_id"], "1", "create") == retried
    assert replayed(tmp_path, proxy_db, first["conversation_id"], "0", "create") == failed


def test_cli_second_signal_cuts_open_streams_and_records_them(tmp_path, upstream):
    db = tmp_path / "cli.db"
    upstream.pings_after_gate = 10_000
    proc = _cli("--port", "0", "--db", str(db), "--upstream", upstream.url)
    try:
        url = proc.stderr.readline().split(" ")[4]
        with httpx2.Client() as http, http.stream("POST", url + "/v1/messages",
                                                   json={"stream": True, "messages": USER}) as got:
            chunks = got.iter_bytes()
            assert b"content_block_delta" in next(chunks)
            proc.send_signal(signal.SIGTERM)
            assert "1 open request(s) may finish" in proc.stderr.readline()
            upstream.gate.set()
            assert b"ping" in next(chunks)  # still streaming after the first signal
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(httpx2.HTTPError):
                for _chunk in chunks:
                    pass
    finally:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0
    [line] = exported(db)
    assert line["abandoned"] and line["response"]["content"][0]["text"] == "first part, then"


def test_stop_cuts_a_stream_that_outlasts_its_grace(writer, proxy_db, upstream):
    proxy = start_background(upstream.url, writer.put)
    with httpx2.Client() as http, http.stream("POST", proxy.url + "/v1/messages",
                                               json={"stream": True, "messages": USER}) as got:
        chunks = got.iter_bytes()
        assert b"content_block_delta" in next(chunks)
        proxy.stop(timeout=0.2)  # the upstream holds the rest at its gate
        with pytest.raises(httpx2.HTTPError):
            for _chunk in chunks:
                pass
    assert writer.flush(10)
    [line] = exported(proxy_db)
    assert line["abandoned"] and line["response"]["content"][0]["text"] == "first part, then"


def test_recorded_calls_ask_only_for_encodings_the_record_can_be_decoded_from():
    kept = [part.split(";")[0].strip() for part in decodable("gzip, deflate;q=0.5, br, zstd, snappy").split(",")]
    assert kept[:2] == ["gzip", "deflate"] and "snappy" not in kept
    assert all(decoder_for(name) is not None for name in kept)
    assert decodable("snappy") == "identity"
    text = b'{"type":"message"}'
    assert decode("gzip", gzip.compress(text)) == text
    import brotli  # google's Brotli (test extra): its Decompressor has process(), not decompress()

    assert "br" in kept and decode("br", brotli.compress(text)) == text
    assert decode("br, gzip", gzip.compress(brotli.compress(text))) == text
    zstd = zstd_module()  # Python 3.14's, or the backport httpx2 uses before it (test extra)
    assert "zstd" in kept and decode("zstd", zstd.compress(text)) == text
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert decode("deflate", zlib.compress(text)) == text == decode("deflate", raw.compress(text) + raw.flush())


def test_each_client_connection_is_a_caller_of_its_own(api):
    """A call's record names the client connection it came over (`Captured.caller`), which tells
    identical conversations run at once by different agents apart (see test_capture's
    out-of-order tests): one client's calls share it, another client's differ."""
    calls: list = []
    proxy = start_background(api.url, calls.append)
    try:
        first = anthropic.Anthropic(base_url=proxy.url, api_key=FAKE_KEY, max_retries=0)
        second = anthropic.Anthropic(base_url=proxy.url, api_key=FAKE_KEY, max_retries=0)
        for client in (first, first, second):
            client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER)
        assert wait_until(lambda: len(calls) == 3)
    finally:
        proxy.stop()
    callers = [call.captured().caller for call in calls]
    assert None not in callers and callers[0] == callers[1] != callers[2]


def test_a_client_that_times_out_is_recorded_as_the_middleware_records_it(tmp_path, start, writer, proxy_db):
    """The same agent, recorded by the middleware and through the proxy, against an API too slow
    for its read timeout (before any answer, and mid-stream): both record a timeout_error (the SDK
    raised APITimeoutError: the upstream didn't answer in time for it), not an abandoned attempt
    through the proxy; one whose task is cancelled before any answer (it gave up for its own
    reasons) is abandoned both ways. The health figures and the browser say the same either way."""
    slow = [Reply(body={"never": "read"}, delay=1.5), Reply(sse=message_events(MESSAGE), chunk_delay=1.5),
            Reply(body={"never": "read"}, delay=1.5)]

    def agent(base_url, wrap):
        sync = wrap(anthropic.Anthropic(base_url=base_url, api_key=FAKE_KEY, max_retries=0, timeout=0.3))
        with pytest.raises(anthropic.APITimeoutError):
            sync.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=USER)
        with pytest.raises(anthropic.APITimeoutError):
            for _ in sync.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=USER, stream=True):
                pass

        async def cancelled():
            client = wrap(anthropic.AsyncAnthropic(base_url=base_url, api_key=FAKE_KEY, max_retries=0))
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.messages.create(model="claude-sonnet-4-5", max_tokens=8,
                                                              messages=USER), 0.3)  # fmt: skip
            await client.close()

        asyncio.run(cancelled())

    def kinds(lines):  # (each its own conversation: in no set order)
        return sorted(((line["status"] or 0, (line["error"] or {}).get("type") or "", line["abandoned"])
                       for line in lines), key=repr)

    expected = sorted([(0, "timeout_error", False), (200, "timeout_error", False), (0, "", True)], key=repr)
    direct_db = tmp_path / "direct.db"
    with FakeAPI() as api, Recorder(direct_db) as rec:
        api.enqueue(*slow)
        agent(api.url, rec.wrap)
        assert rec.flush(10)
    assert kinds(exported(direct_db)) == expected
    with FakeAPI() as api:
        api.enqueue(*slow)
        proxy = start(api.url)
        agent(proxy.url, lambda client: client)
        assert kinds(records(writer, proxy_db, 3)) == expected


def test_the_proxy_keeps_what_the_api_said_of_its_limits_and_nothing_else(start, writer, proxy_db):
    """Through the proxy as through the middleware: each attempt keeps its own retry and
    rate-limit headers (names lowercased), never a cookie or Cloudflare's; a stream's too."""
    from test_response_headers import NEVER, THROTTLED, kept, limits

    with FakeAPI() as api:
        proxy = start(api.url)
        api.enqueue(Reply(status=429, body=ERR_529 | {"error": {"type": "rate_limit_error", "message": "Slow down"}},
                          headers={**THROTTLED, **limits(0, 80000), **NEVER}),
                    Reply(body=MESSAGE, headers={**limits(49, 79000), **NEVER}),
                    Reply(sse=message_events(MESSAGE), headers={**limits(48, 78000), **NEVER}))  # fmt: skip
        client = anthropic.Anthropic(base_url=proxy.url, api_key=FAKE_KEY)
        raw = client.messages.with_raw_response.create(model="claude-sonnet-4-5", max_tokens=16, messages=USER)
        assert raw.headers["set-cookie"] == NEVER["set-cookie"]  # the client gets every header, as sent
        for _event in client.messages.create(model="claude-sonnet-4-5", max_tokens=16, stream=True,
                                             messages=[{"role": "user", "content": "Stream me"}]):
            pass
    throttled, answered, streamed = records(writer, proxy_db, 3)
    assert (throttled["status"], throttled["attempt"], answered["attempt"]) == (429, 0, 1)
    assert throttled["response_headers"] == kept({**THROTTLED, **limits(0, 80000)})
    assert answered["response_headers"] == kept(limits(49, 79000))
    assert streamed["stream"] and streamed["response_headers"] == kept(limits(48, 78000))


def test_claude_codes_non_streaming_fallback_after_a_cut_stream_is_the_next_attempt_of_its_turn(
    start, writer, proxy_db
):
    """After a stream breaks mid-answer Claude Code sends the same body again with only `stream`
    taken out: the answer is attempt 1 of the failed turn, not a second turn."""
    streamed = json.loads(json.loads((Path(__file__).parent / "fixtures" / "claude_code_wire" / "a1_main.json")
                                     .read_text())["body"])  # fmt: skip
    assert streamed["stream"] is True
    fallback = {k: v for k, v in streamed.items() if k != "stream"}
    with FakeAPI() as api:
        api.enqueue(Reply(sse=message_events(MESSAGE), drop_after_events=4), Reply(body=MESSAGE))
        proxy = start(api.url)
        with httpx2.Client() as http:
            for body in (streamed, fallback):
                try:
                    http.post(f"{proxy.url}/v1/messages", json=body, headers={"x-stainless-retry-count": "0"}).read()
                except httpx2.HTTPError:
                    pass  # the cut stream
    lines = records(writer, proxy_db, 2)
    assert len({line["turn_id"] for line in lines}) == 1
    assert sorted((line["attempt"], line["status"], (line["error"] or {}).get("type")) for line in lines) == [
        (0, 200, "connection_error"), (1, 200, None)]  # fmt: skip
