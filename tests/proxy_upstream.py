"""A small upstream for the proxy's tests, for what the fake Messages API doesn't serve: GET and
HEAD on any path, and a stream held open at a gate (to see chunks pass through before the
stream ends, a client that leaves mid-stream, a stop that waits for open streams), plain or
gzip'd (`?gzip`), zstd'd (`?zstd`), labelled br but plain (`?br`, for a stand-in brotli that decodes nothing), or
gzip'd with a corrupt chunk before the first delta (`?corrupt`). It records each request's
method, path and headers, and the bytes of each body it sent."""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from replayer.fakeapi import message_events, sse_text

MESSAGE = {
    "id": "msg_gated0001",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "first part, then the rest after the gate"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 10, "output_tokens": 9, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
}


def gated_parts() -> tuple[bytes, bytes]:
    """The stream's events before the gate (through the first text delta) and after it."""
    events = message_events(MESSAGE)
    first = next(i for i, e in enumerate(events) if e["event"] == "content_block_delta") + 1
    return sse_text(events[:first]).encode(), sse_text(events[first:]).encode()


class Upstream:
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.sent: list[bytes] = []
        """The body of each stream, as sent (compressed, corrupt)."""
        self.gate = threading.Event()
        self.left = threading.Event()
        """Set when the proxy closed a gated stream before its end (its client left)."""
        self.finished = threading.Event()
        self.pings_after_gate = 0
        """Pings sent after the gate, slowly, before the rest (to keep a stream open a while)."""
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Upstream:
        up = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _seen(self, body: bytes = b"") -> None:
                up.seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers.items()),
                                "body": body})

            def do_HEAD(self) -> None:  # noqa: N802
                self._seen()
                self.send_response(200)
                self.send_header("content-type", "text/plain")
                self.send_header("content-length", "12")
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802
                self._seen()
                body = json.dumps({"data": [{"id": "claude-sonnet-4-5", "type": "model"}], "path": self.path}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.send_header("request-id", "req_models")
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                self._seen(body)
                before, after = gated_parts()
                zipped = "gzip" in self.path or "corrupt" in self.path
                if zipped:
                    z = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
                    if "corrupt" in self.path:  # the events up to the first delta, then junk
                        head = before[: before.index(b"event: content_block_delta")]
                        before = z.compress(head) + z.flush(zlib.Z_SYNC_FLUSH) + b"\xff" * 64
                    else:
                        before = z.compress(before) + z.flush(zlib.Z_SYNC_FLUSH)
                    after = z.compress(after) + z.flush()
                if "zstd" in self.path:  # a block the client can decode before the gate, then the frame's end
                    z = zstd_module().ZstdCompressor()
                    before = z.compress(before, z.FLUSH_BLOCK)
                    after = z.compress(after, z.FLUSH_FRAME)
                up.sent.append(before + after)
                self.send_response(200)
                self.send_header("content-type", "text/event-stream; charset=utf-8")
                self.send_header("transfer-encoding", "chunked")
                self.send_header("request-id", "req_gated")
                if zipped or "br" in self.path or "zstd" in self.path:
                    self.send_header("content-encoding", "gzip" if zipped else "zstd" if "zstd" in self.path else "br")
                self.end_headers()
                try:
                    self._chunk(before)
                    up.gate.wait(30)
                    for _ in range(up.pings_after_gate):
                        self._chunk(b'event: ping\ndata: {"type":"ping"}\n\n')
                        up.left.wait(0.05)
                    self._chunk(after)
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                    up.finished.set()
                except OSError:
                    up.left.set()
                    self.close_connection = True

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="upstream", daemon=True).start()
        return self

    def stop(self) -> None:
        self.gate.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def zstd_module():
    """Python 3.14's zstd, or the backport httpx2 uses before it (a test extra)."""
    try:
        from compression import zstd  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        from backports import zstd  # type: ignore[import-not-found,no-redef,unused-ignore]
    return zstd


def gunzip(data: bytes) -> bytes:
    return gzip.decompress(data)
