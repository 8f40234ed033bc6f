"""A local fake of the Messages API, for the demo, the tests and the benchmarks.

It listens on 127.0.0.1 only and answers POST /v1/messages with scripted replies (JSON, SSE,
errors with retry headers, a connection dropped mid-stream), or, when nothing is scripted, with a
small echo message. The real SDK talks to it over HTTP, so what replayer records comes from the
same code path users run. It is not a mock of the SDK.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    """A JSON document (dict/list) or raw bytes."""
    sse: list[dict[str, Any]] | str | bytes | None = None
    """Events as {"event": name, "data": obj}, or a raw SSE transcript."""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering."""
    chunk_delay: float = 0.0
    """Seconds between SSE events."""
    drop_after_events: int | None = None
    """Close the connection after this many SSE events (a dropped stream)."""
    hang: float = 0.0
    """Seconds to sleep without answering (to provoke client timeouts)."""


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (an abandoned stream, a timeout the demo provokes) is not an
        error worth a traceback on the user's terminal; anything else still gets one."""
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


def sse_text(events: list[dict[str, Any]]) -> str:
    out = []
    for ev in events:
        data = ev["data"] if isinstance(ev["data"], str) else json.dumps(ev["data"], separators=(",", ":"))
        if ev.get("event") is not None:
            out.append(f"event: {ev['event']}\n")
        out.append(f"data: {data}\n\n")
    return "".join(out)


def split_sse(raw: str) -> list[str]:
    return [p + "\n\n" for p in raw.replace("\r\n", "\n").split("\n\n") if p.strip()]


def echo_message(body: dict[str, Any], n: int) -> dict[str, Any]:
    msgs = body.get("messages") or []
    size = len(json.dumps(body)) // 4
    return {
        "id": f"msg_fake{n:020d}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "claude-sonnet-4-5"),
        "content": [{"type": "text", "text": f"reply {n} to {len(msgs)} messages"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": size,
            "output_tokens": 8,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "service_tier": "standard",
        },
    }


def message_events(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The SSE events that stream `message` (text and tool input split in pieces)."""
    start = dict(message, content=[], stop_reason=None, stop_sequence=None)
    start["usage"] = dict(message.get("usage", {}), output_tokens=1)
    events = [{"event": "message_start", "data": {"type": "message_start", "message": start}}]
    for i, block in enumerate(message.get("content", [])):
        kind = block.get("type")
        if kind == "text":
            first = dict(block, text="")
            first.pop("citations", None)
            deltas = [
                {"type": "text_delta", "text": block["text"][j : j + 16]} for j in range(0, len(block["text"]), 16)
            ]
        elif kind in ("tool_use", "server_tool_use"):
            first = dict(block, input={})
            raw = json.dumps(block.get("input", {}))
            deltas = [{"type": "input_json_delta", "partial_json": raw[j : j + 12]} for j in range(0, len(raw), 12)]
        elif kind == "thinking":
            first = dict(block, thinking="", signature="")
            deltas = [
                {"type": "thinking_delta", "thinking": block["thinking"]},
                {"type": "signature_delta", "signature": block.get("signature", "")},
            ]
        else:
            first, deltas = block, []
        events.append(
            {
                "event": "content_block_start",
                "data": {"type": "content_block_start", "index": i, "content_block": first},
            }
        )
        if i == 0:
            events.append({"event": "ping", "data": {"type": "ping"}})
        for d in deltas:
            events.append(
                {"event": "content_block_delta", "data": {"type": "content_block_delta", "index": i, "delta": d}}
            )
        events.append({"event": "content_block_stop", "data": {"type": "content_block_stop", "index": i}})
    events.append(
        {
            "event": "message_delta",
            "data": {
                "type": "message_delta",
                "delta": {"stop_reason": message.get("stop_reason"), "stop_sequence": message.get("stop_sequence")},
                "usage": {"output_tokens": message.get("usage", {}).get("output_tokens", 0)},
            },
        }
    )
    events.append({"event": "message_stop", "data": {"type": "message_stop"}})
    return events


class FakeAPI:
    """`with FakeAPI() as api: Anthropic(base_url=api.url, api_key="test")`."""

    def __init__(self, responder: Callable[[dict[str, Any]], Reply | None] | None = None, *, fast: bool = False):
        self.script: deque[Reply] = deque()
        self.responder = responder
        self.fast = fast
        """Answer unscripted requests without parsing them and keep nothing (for benchmarks)."""
        self.received: list[dict[str, Any]] = []
        """Each request: {"path", "headers", "body" (bytes)}."""
        self.count = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def enqueue(self, *replies: Reply) -> None:
        self.script.extend(replies)

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self, port: int = 0) -> FakeAPI:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length", 0))
                raw = self.rfile.read(length)
                with api._lock:
                    api.count += 1
                    n = api.count
                    if not api.fast:
                        api.received.append({"path": self.path, "headers": dict(self.headers), "body": raw})
                    reply = api.script.popleft() if api.script else None
                if reply is None and api.fast:
                    msg = echo_message({"model": "claude-sonnet-4-5"}, n)
                    msg["usage"]["input_tokens"] = len(raw) // 4
                    if b'"tools":[' in raw:  # an agent's model calls a tool, as in a real loop
                        msg["content"].append(
                            {"type": "tool_use", "id": f"toolu_fake{n:020d}", "name": "read_file",
                             "input": {"path": f"src/mod_{n}.py"}}
                        )
                        msg["stop_reason"] = "tool_use"
                    stream = b'"stream":true' in raw
                    api._answer(self, Reply(sse=message_events(msg)) if stream else Reply(body=msg), n)
                    return
                try:
                    body = json.loads(raw or b"null")
                except ValueError:
                    body = None
                if reply is None and api.responder is not None:
                    reply = api.responder(body)
                if self.path.split("?")[0].endswith("/count_tokens") and reply is None:
                    reply = Reply(body={"input_tokens": len(raw) // 4})
                if reply is None:
                    msg = echo_message(body if isinstance(body, dict) else {}, n)
                    stream = isinstance(body, dict) and bool(body.get("stream"))
                    reply = Reply(sse=message_events(msg)) if stream else Reply(body=msg)
                api._answer(self, reply, n)

        self._server = _Server(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fakeapi", daemon=True).start()
        return self

    def _answer(self, h: BaseHTTPRequestHandler, reply: Reply, n: int) -> None:
        if reply.hang:
            time.sleep(reply.hang)
            h.close_connection = True
            return
        if reply.delay:
            time.sleep(reply.delay)
        headers = {"request-id": f"req_fake{n:016d}", **reply.headers}
        if reply.sse is not None:
            if isinstance(reply.sse, list):
                parts = split_sse(sse_text(reply.sse))
            else:
                raw = reply.sse.decode() if isinstance(reply.sse, bytes) else reply.sse
                parts = split_sse(raw)
            h.send_response(reply.status)
            h.send_header("content-type", "text/event-stream; charset=utf-8")
            h.send_header("transfer-encoding", "chunked")
            for k, v in headers.items():
                h.send_header(k, v)
            h.end_headers()
            for i, part in enumerate(parts):
                if reply.drop_after_events is not None and i >= reply.drop_after_events:
                    # cut the connection in the middle of the body (no closing chunk)
                    h.wfile.flush()
                    h.close_connection = True
                    h.connection.shutdown(2)
                    return
                data = part.encode()
                h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                h.wfile.flush()
                if reply.chunk_delay:
                    time.sleep(reply.chunk_delay)
            h.wfile.write(b"0\r\n\r\n")
            h.wfile.flush()
            return
        payload = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        h.send_response(reply.status)
        h.send_header("content-type", "application/json")
        h.send_header("content-length", str(len(payload)))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(payload)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeAPI:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    """Serve echo replies on a port (for benchmarks that want the server in another process)."""
    p = argparse.ArgumentParser(description="local fake Messages API (127.0.0.1 only)")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--fast", action="store_true", help="don't parse or keep requests (benchmarks)")
    args = p.parse_args()
    api = FakeAPI(fast=args.fast).start(args.port)
    print(api.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        api.stop()


if __name__ == "__main__":
    main()
