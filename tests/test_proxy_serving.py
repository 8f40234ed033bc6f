"""What the proxy does for its speed, checked for what it must not change: the upstream read
timeout in the middle of a recorded answer's body (a stall cuts the client's stream, as aiohttp's
own timer did, and is recorded as that cut; an upstream that keeps sending, however long
the whole answer takes, is never cut), the GIL switch interval, short only while it serves, and a
kept-alive upstream connection the upstream closed as a request went on it (sent again)."""

from __future__ import annotations

import json
import socketserver
import sys
import threading
import time
from types import SimpleNamespace

import anthropic
import httpx2
import pytest
from conftest import FAKE_KEY
from proxy_upstream import MESSAGE, gated_parts
from test_proxy import USER, proxy_db, records, start, upstream, writer  # noqa: F401 - fixtures

from replayer.proxy import start_background, tee
from replayer.proxy.run import SWITCH_SECONDS
from replayer.proxy.tee import Retries

pytestmark = pytest.mark.writer_process  # Recorders here write through a writer process, the default

HEADERS = {"x-api-key": FAKE_KEY, "anthropic-version": "2023-06-01"}


class StallingUpstream(socketserver.ThreadingTCPServer):
    """Answers each POST with a stream's head, then, in separate writes 0.1 s apart, its events
    up to the first delta and a ping, then nothing until `release` is set (the proxy sees the
    body start before it stalls, so the stall is the body's, not the headers')."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.release = threading.Event()
        super().__init__(("127.0.0.1", 0), _Stalling)
        threading.Thread(target=self.serve_forever, name="stalling-upstream", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Stalling(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.request.recv(65536)
        fields, body = head.split(b"\r\n\r\n", 1)
        length = next(int(f.split(b":")[1]) for f in fields.split(b"\r\n") if f.lower().startswith(b"content-length:"))
        while len(body) < length:
            body += self.request.recv(65536)
        self.request.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                             b"transfer-encoding: chunked\r\n\r\n")
        for part in (gated_parts()[0], b'event: ping\ndata: {"type":"ping"}\n\n'):
            time.sleep(0.1)
            self.request.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        self.server.release.wait(30)  # type: ignore[attr-defined]


def test_an_upstream_that_stalls_mid_stream_is_cut_and_recorded_as_the_cut(start, writer, proxy_db,  # noqa: F811
                                                                            upstream):  # noqa: F811
    stalling = StallingUpstream()
    proxy = start(stalling.url, read_timeout=0.4)
    got = b""
    with httpx2.Client(timeout=20) as http, http.stream("POST", proxy.url + "/v1/messages", headers=HEADERS,
                                                        json={"stream": True, "messages": USER}) as response:
        assert response.status_code == 200
        with pytest.raises(httpx2.RemoteProtocolError):  # a cut body, never one that looks whole
            for part in response.iter_raw():
                got += part
    stalling.release.set()
    stalling.shutdown()
    stalling.server_close()
    assert got.startswith(gated_parts()[0]) and got.endswith(b'data: {"type":"ping"}\n\n')
    [line] = records(writer, proxy_db, 1)
    assert line["status"] == 200 and not line["abandoned"] and line["ttft_ms"] is not None
    # the client saw its connection break: a connection error; the message says why (aiohttp's
    # error as its own timer said it, in the end)
    cut = (f"replayer proxy: upstream {stalling.url} sent nothing for 0.4 s mid-answer, so the proxy cut the "
           "client's connection (SocketTimeoutError: Timeout on reading data from socket)")
    assert line["error"] == {"type": "connection_error", "message": cut, "status": None}
    assert line["response"]["content"] == [{"type": "text", "text": "first part, then"}]  # as far as it got



def test_a_stream_the_proxy_cut_for_the_upstreams_silence_replays_as_the_cut_the_agent_saw(
        start, writer, proxy_db, tmp_path):  # noqa: F811
    """The SDK's stream through the proxy breaks when the upstream goes silent past the proxy's read
    timeout (the proxy cuts it; the SDK's own read timeout is far off): the agent gets the events
    that came, then a broken connection, and `replayer replay --with-errors` gives it the same
    again. It was recorded as a timeout_error, which replays as APITimeoutError: not what it saw."""
    from test_proxy import replayed, run_agent

    from replayer.fmt import error_head

    stalling = StallingUpstream()
    try:
        proxy = start(stalling.url, read_timeout=0.4)
        got = run_agent(tmp_path, proxy.url, "0", "stream")
    finally:
        stalling.release.set()
        stalling.shutdown()
        stalling.server_close()
    *events, failed = got.splitlines()
    assert events == ["message_start", "content_block_start", "content_block_delta", "text"], got
    assert failed == "APIConnectionError", got  # a broken stream, not APITimeoutError
    [line] = records(writer, proxy_db, 1)
    assert line["status"] == 200 and line["error"]["type"] == "connection_error"
    assert f"upstream {stalling.url} sent nothing for 0.4 s" in line["error"]["message"]
    assert error_head(line["error"]) == "connection_error"
    assert replayed(tmp_path, proxy_db, line["conversation_id"], "0", "stream") == got


def test_an_upstream_that_keeps_sending_is_never_cut_however_long_the_answer(start, writer, proxy_db,  # noqa: F811
                                                                             upstream):  # noqa: F811
    upstream.pings_after_gate = 30  # a ping every 0.05 s: 1.5 s in all, several read timeouts long
    upstream.gate.set()
    proxy = start(upstream.url, read_timeout=0.3)
    with httpx2.Client(timeout=20) as http:
        got = http.post(proxy.url + "/v1/messages", headers=HEADERS, json={"stream": True, "messages": USER})
    assert got.status_code == 200 and got.content.endswith(gated_parts()[1])
    [line] = records(writer, proxy_db, 1)
    assert line["error"] is None and not line["abandoned"]
    assert line["response"]["content"] == [{"type": "text", "text": "first part, then the rest after the gate"}]


def test_the_switch_interval_is_short_while_proxies_serve_and_as_it_was_after(upstream):  # noqa: F811
    before = sys.getswitchinterval()
    first = start_background(upstream.url, lambda call: None)
    second = start_background(upstream.url, lambda call: None)
    try:
        assert sys.getswitchinterval() == min(before, SWITCH_SECONDS)
        first.stop(5)
        assert sys.getswitchinterval() == min(before, SWITCH_SECONDS)  # the second still serves
    finally:
        first.stop(5)
        second.stop(5)
    assert sys.getswitchinterval() == before


def test_retries_forget_calls_past_their_window_and_keep_at_most_per_body_calls(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(tee, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    retries = Retries()
    body = b'{"model":"m","messages":[{"role":"user","content":"the same eval"}]}'
    old = retries.call_key(body, "0")[0]
    clock[0] += tee.RETRY_WINDOW + 1
    assert retries.call_key(body, "1")[0] != old  # its first try is past the window: a call of its own
    keys = [retries.call_key(body, "0")[0] for _ in range(Retries.PER_BODY + 5)]
    # 69 first tries of one body: the oldest five are forgotten, each retry joins the oldest kept
    assert [retries.call_key(body, "1")[0] for _ in range(3)] == keys[5:8]
    clock[0] += tee.RETRY_WINDOW + 1
    assert retries.call_key(body, "2")[0] not in keys


class ClosingUpstream(socketserver.ThreadingTCPServer):
    """Answers the first request on each connection as a kept-alive connection (HTTP/1.1, a
    content-length, no `connection: close`), then closes the connection when the next request
    on it has come, unanswered: what an upstream's idle timeout does when it fires just as a
    request is sent on the connection, without waiting for it. `served` is, per connection, the
    requests it answered and `dropped` those it closed on: (method, path, body). With
    `answer_first` false it closes every connection on its first request."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, answer_first: bool = True) -> None:
        self.answer_first = answer_first
        self.served: list[tuple[str, str, bytes]] = []
        self.dropped: list[tuple[str, str, bytes]] = []
        super().__init__(("127.0.0.1", 0), _Closing)
        threading.Thread(target=self.serve_forever, name="closing-upstream", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Closing(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        first = self.server.answer_first  # type: ignore[attr-defined]
        while (line := self.rfile.readline()).strip():
            method, path = line.decode().split()[:2]
            length = 0
            while (field := self.rfile.readline()).strip():
                name, _, value = field.decode().partition(":")
                length = int(value) if name.strip().lower() == "content-length" else length
            request = (method, path, self.rfile.read(length))
            if not first:
                self.server.dropped.append(request)  # type: ignore[attr-defined]
                return  # closed, unanswered
            first = False
            self.server.served.append(request)  # type: ignore[attr-defined]
            if path.startswith("/v1/models"):
                answer = {"data": [{"id": "claude-sonnet-4-5", "type": "model"}], "has_more": False,
                          "first_id": "claude-sonnet-4-5", "last_id": "claude-sonnet-4-5"}
            elif path.startswith("/v1/messages/count_tokens"):
                answer = {"input_tokens": 7}
            else:
                answer = MESSAGE
            body = json.dumps(answer).encode()
            self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                             % (len(body), body))
            self.wfile.flush()


def test_a_kept_alive_connection_the_upstream_closed_as_a_request_went_is_sent_again_on_a_new_one(
        start, writer, proxy_db):  # noqa: F811
    closing = ClosingUpstream()
    proxy = start(closing.url)
    client = anthropic.Anthropic(base_url=proxy.url, api_key=FAKE_KEY, max_retries=0)

    def turn(n):
        message = client.messages.create(model="claude-sonnet-4-5", max_tokens=8,
                                         messages=[{"role": "user", "content": f"turn {n}"}])
        assert message.id == MESSAGE["id"]

    try:
        turn(0)  # on a new connection, kept alive
        # closed under it: sent again on a new connection; forwarded only, its body not read for a record
        assert client.messages.count_tokens(model="claude-sonnet-4-5", messages=USER).input_tokens == 7
        turn(1)  # a new connection, kept alive (the one before was closed after its answer)
        turn(2)  # closed under it: sent again on a new connection
    finally:
        closing.shutdown()
        closing.server_close()
    # sent again whole: the same body the upstream read the first time
    assert [r[:2] for r in closing.served] == [("POST", "/v1/messages"), ("POST", "/v1/messages/count_tokens"),
                                               ("POST", "/v1/messages"), ("POST", "/v1/messages")]
    assert closing.dropped == [closing.served[1], closing.served[3]]
    lines = records(writer, proxy_db, 3)
    assert [line["request"]["messages"][0]["content"] for line in lines] == ["turn 0", "turn 1", "turn 2"]
    for line in lines:  # only the attempt the client saw
        assert line["status"] == 200 and line["error"] is None and line["attempt"] == 0
        assert line["response"]["id"] == MESSAGE["id"]
    assert len({line["turn_id"] for line in lines}) == 3


def test_a_request_the_upstream_closed_on_a_new_connection_is_not_sent_again(start, writer, proxy_db):  # noqa: F811
    """Only a kept-alive connection's close is taken for the upstream's idle timeout: a request
    on a connection opened for it reached an upstream that dropped it, and a second send could
    cost twice. The client gets the proxy's 502 and sends again by its own rules."""
    closing = ClosingUpstream(answer_first=False)
    proxy = start(closing.url)
    client = anthropic.Anthropic(base_url=proxy.url, api_key=FAKE_KEY, max_retries=0)
    try:
        for n in range(2):  # the second on a new connection too: the first one's was closed
            with pytest.raises(anthropic.APIStatusError) as failed:
                client.messages.create(model="claude-sonnet-4-5", max_tokens=8,
                                       messages=[{"role": "user", "content": f"turn {n}"}])
            assert failed.value.status_code == 502
    finally:
        closing.shutdown()
        closing.server_close()
    assert closing.served == []
    assert [json.loads(r[2])["messages"][0]["content"] for r in closing.dropped] == ["turn 0", "turn 1"]
    lines = records(writer, proxy_db, 2)
    for line in lines:  # as of any unreachable upstream: the answer the client got
        assert line["status"] == 502 and line["error"]["type"] == "api_error"
        assert line["error"]["message"].startswith(f"replayer proxy: upstream {closing.url} unreachable: ")
