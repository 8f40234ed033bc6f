"""A local OTLP/HTTP trace receiver for the tests: `POST /v1/traces` on 127.0.0.1, protobuf (gzip
or not) decoded with opentelemetry-proto, each span kept as a plain dict. It can be slow
(`delay`, seconds before answering) to stand for a collector that can't keep up.

Run as a script (bench/otlp.py does, in a process of its own): prints its URL, then serves;
`GET /count` answers how many spans arrived. As a script it only counts them (`keep=False`): it
decodes each request as a Collector's receiver does, and keeps nothing, so the benchmark's
receiver does no work a Collector wouldn't (turning every attribute into a Python value cost it
more than decoding the protobuf)."""

from __future__ import annotations

import gzip
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def any_value(v: Any) -> Any:
    """An OTLP AnyValue as Python."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind)


def decode(body: bytes) -> list[dict[str, Any]]:
    """The spans of an ExportTraceServiceRequest, as dicts."""
    req = ExportTraceServiceRequest()
    req.ParseFromString(body)
    out = []
    for rs in req.resource_spans:
        resource = {kv.key: any_value(kv.value) for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append({
                    "name": s.name,
                    "kind": s.kind,
                    "trace_id": s.trace_id.hex(),
                    "span_id": s.span_id.hex(),
                    "parent_span_id": s.parent_span_id.hex(),
                    "start": s.start_time_unix_nano,
                    "end": s.end_time_unix_nano,
                    "status": s.status.code,
                    "attributes": {kv.key: any_value(kv.value) for kv in s.attributes},
                    "resource": resource,
                    "scope": ss.scope.name,
                })
    return out


def count(body: bytes) -> int:
    """How many spans an ExportTraceServiceRequest holds (decoded, nothing kept)."""
    req = ExportTraceServiceRequest()
    req.ParseFromString(body)
    return sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)


class Receiver:
    """`with Receiver() as r:` serves on a free port; `r.url` is the OTLP endpoint's base URL
    (for OTEL_EXPORTER_OTLP_ENDPOINT), `r.spans` what arrived, `r.requests` how many posts."""

    def __init__(self, delay: float = 0.0, keep: bool = True) -> None:
        self.delay = delay
        self.keep = keep
        """Keep each span as a dict (the tests); else only count them."""
        self.spans: list[dict[str, Any]] = []
        self.counted = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server interface
                size = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(size)
                encoding = (self.headers.get("content-encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if receiver.delay:
                    receiver._release.wait(receiver.delay)
                if self.path.rstrip("/") != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                got = decode(body) if receiver.keep else count(body)
                with receiver._lock:
                    if isinstance(got, int):
                        receiver.counted += got
                    else:
                        receiver.spans.extend(got)
                    receiver.requests += 1
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def do_GET(self) -> None:  # noqa: N802
                with receiver._lock:
                    answer = str(len(receiver.spans) + receiver.counted).encode()
                self.send_response(200)
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    def chat_spans(self) -> list[dict[str, Any]]:
        """The GenAI chat spans that arrived, in the order of their start."""
        with self._lock:
            got = [s for s in self.spans if s["attributes"].get("gen_ai.operation.name") == "chat"]
        return sorted(got, key=lambda s: (s["start"], s["attributes"].get("replayer.attempt", 0)))


class GrpcReceiver:
    """The same over OTLP/gRPC (grpcio, which the optional gRPC exporter brings): `with
    GrpcReceiver() as r:` serves TraceService/Export on a free port; `r.url` for
    OTEL_EXPORTER_OTLP_ENDPOINT, `r.spans` what arrived."""

    def __init__(self) -> None:
        from concurrent import futures

        import grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

        self.spans: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Service(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> ExportTraceServiceResponse:  # noqa: N802 - gRPC's name
                got = decode(request.SerializeToString())
                with receiver._lock:
                    receiver.spans.extend(got)
                return ExportTraceServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> GrpcReceiver:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(None)


if __name__ == "__main__":
    with Receiver(keep=False) as served:
        print(served.url, flush=True)
        threading.Event().wait()
