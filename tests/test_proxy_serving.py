"""What the proxy does for its speed, checked for what it must not change: the upstream read
timeout in the middle of a recorded answer's body (a stall cuts the client's stream and is
recorded as a timeout, as aiohttp's own timer did; an upstream that keeps sending, however long
the whole answer takes, is never cut), and the GIL switch interval, short only while it serves."""

from __future__ import annotations

import socketserver
import sys
import threading
import time
from types import SimpleNamespace

import httpx2
import pytest
from conftest import FAKE_KEY
from proxy_upstream import gated_parts
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


def test_an_upstream_that_stalls_mid_stream_is_cut_and_recorded_as_a_timeout(start, writer, proxy_db,  # noqa: F811
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
    timed_out = "SocketTimeoutError: Timeout on reading data from socket"  # aiohttp's, as its own timer said
    assert line["error"] == {"type": "timeout_error", "message": timed_out, "status": None}
    assert line["response"]["content"] == [{"type": "text", "text": "first part, then"}]  # as far as it got



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
