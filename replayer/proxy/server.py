"""The recording reverse proxy's server: every request forwarded to the upstream as it came, the
answer streamed back chunk by chunk, and Messages calls (`POST /v1/messages`) teed to the writer.

Built on aiohttp, server and client: one event loop, one client session to the upstream for
every request (keep-alive connections reused, no connection limit), answers streamed back, a
large request body streamed through.
The response is forwarded as the upstream sent it, compressed or not (content-length and
content-encoding kept), so the client gets exactly the upstream's bytes; the record decodes its
copy on the writer's side. For a recorded call the upstream is asked only for encodings this
Python can decode.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import sys
import time
import weakref
from contextvars import ContextVar
from typing import Any
from urllib.request import getproxies, proxy_bypass

import aiohttp
from aiohttp import web
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ClientRequest
from aiohttp.connector import Connection
from aiohttp.tracing import Trace
from multidict import CIMultiDict
from yarl import URL

from ..bodies import decodable
from ..captured import Put, connection_closed
from ..upstream import shown
from ..wire import RECORDED_HEADER, TIMEOUTS_HEADER
from .tee import ProxiedCall, Retries

log = logging.getLogger("replayer")


HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te", "trailer",
     "trailers", "transfer-encoding", "upgrade"}
)
"""Headers about one connection, not the message (RFC 9110 7.6.1): never forwarded."""
_REQUEST_DROP = HOP_BY_HOP | {"host", "content-length", "expect", RECORDED_HEADER, TIMEOUTS_HEADER}
_RESPONSE_DROP = HOP_BY_HOP
_SKIP_AUTO = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
"""Headers aiohttp's client would add: a request goes upstream with the client's headers only."""

RESEND_BYTES = 1 << 20
"""A body forwarded unrecorded is read whole, as a recorded call's is, up to this size: a request
sent again (see `Proxy._send`) needs its body whole; a larger one (an upload) streams through."""

GRACE_SECONDS = 30.0
"""How long a stop waits for open streams to finish."""


def error_body(message: str, kind: str = "api_error") -> bytes:
    """An error in the API's own shape, so every client reads it as it reads the API's."""
    import json

    return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()


def is_turn(method: str, path: str) -> bool:
    """A Messages call (a turn); count_tokens, batches and the rest are forwarded only."""
    return method == "POST" and path.rstrip("/").endswith("/v1/messages")


class Proxy:
    """The server's state: the upstream, where records go, and the one client session.

    `start()` and `stop()` run on the event loop that serves."""

    def __init__(self, upstream: str, put: Put | None, *, tags: dict[str, Any] | None = None,
                 connect_timeout: float = 30.0, read_timeout: float = 600.0, mark: bool = False) -> None:
        self.mark = mark
        """Forward every request marked recorded: the upstream is another `record`'s proxy (this one
        runs inside that run), which must not record what this one (or the middleware) did."""
        self.upstream = upstream.rstrip("/")
        self.shown = shown(self.upstream)
        """The upstream as messages and records name it, and requests go to it: without user info."""
        given = URL(self.upstream)
        self.server = (given.host, given.port) if given.host and given.port else None
        """The upstream's (host, port): the server of the OTLP spans of what the proxy records."""
        self.basic = aiohttp.BasicAuth(given.user, given.password or "").encode() if given.user else None
        """The upstream's user info as the Authorization a request without one of its own is sent with."""
        self.egress = egress_proxy(given)
        self.put = put
        self.tags = tags
        self.timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_read=read_timeout)
        self.retries = Retries()
        self.session: aiohttp.ClientSession | None = None
        self.fresh: aiohttp.ClientSession | None = None
        """A session whose every request goes on a new connection: for a request sent again."""
        self.runner: web.ServerRunner | None = None
        self.site: web.TCPSite | None = None
        self.url = ""
        self.put_failed = False
        self.passed_recorded = 0
        """Messages calls that came marked recorded (by the middleware, or a `record` inside this
        one's program) and went on unrecorded: for the closing line."""
        self.tasks: set[asyncio.Task[Any]] = set()
        """The handlers of requests being answered (a stop waits for them; `cut()` ends them)."""

    async def start(self, host: str, port: int) -> str:
        """Listen; the URL the proxy answers on (with the port picked, for port 0)."""
        self.session = self._client_session(force_close=False)
        # handler_cancellation: a client that leaves cancels its handler at once, which closes
        # the upstream request (a long generation stops costing) and records the attempt abandoned
        server = web.Server(self.handle, handler_cancellation=True, max_field_size=1 << 16, max_line_size=1 << 16)
        # the grace for open requests is `stop`'s; aiohttp's own wait is only a backstop after it
        self.runner = web.ServerRunner(server, shutdown_timeout=5.0)
        await self.runner.setup()
        # a backlog past the default 128: hundreds of agents' connections may arrive at once
        self.site = web.TCPSite(self.runner, host, port, reuse_address=True, backlog=1024)
        try:
            await self.site.start()
        except BaseException:
            await self.stop()
            raise
        sockets = self.runner.addresses
        bound = sockets[0][1] if sockets else port
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{bound}"
        return self.url

    async def stop(self, grace: float = GRACE_SECONDS) -> None:
        """Stop listening, let open requests finish (up to `grace` seconds, then cut them: they
        are recorded as far as they got), close the upstream connections."""
        runner = self.runner
        if runner is not None:
            for site in list(runner.sites):
                await site.stop()
            if runner.server is not None:
                runner.server.pre_shutdown()  # idle keep-alive connections close; busy ones after their answer
            if self.tasks:
                await asyncio.wait(list(self.tasks), timeout=grace)
            self.cut()
            await runner.cleanup()
            self.runner = None
        for session in (self.session, self.fresh):
            if session is not None:
                await session.close()
        self.session = self.fresh = None

    def _client_session(self, *, force_close: bool) -> aiohttp.ClientSession:
        connector = _Connector(limit=0, ttl_dns_cache=300, force_close=force_close,
                               enable_cleanup_closed=sys.version_info < (3, 12))
        return aiohttp.ClientSession(connector=connector, auto_decompress=False, timeout=self.timeout,
                                     cookie_jar=aiohttp.DummyCookieJar())

    # -- one request --------------------------------------------------------------------------
    def cut(self) -> None:
        """End every open request now (a second Ctrl+C): each is recorded as far as it got."""
        for task in list(self.tasks):
            task.cancel()

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        try:
            return await self._handle(request)
        finally:
            self.tasks.discard(task)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        headers, recorded_elsewhere = await self.forwarded_headers(request)
        call: ProxiedCall | None = None
        data: Any = None
        turn = is_turn(request.method, request.path)
        if recorded_elsewhere and turn:
            self.passed_recorded += 1
        if self.put is not None and not recorded_elsewhere and turn:
            data = await request.content.read()
            call = self.recorded_call(request, headers, data, self.tags)
        elif request.body_exists:
            if request.content_length is not None and request.content_length <= RESEND_BYTES:
                data = await request.content.read()  # kept whole, so it can be sent again
            else:
                data = request.content
                if request.content_length is not None:
                    headers["content-length"] = str(request.content_length)
        return await self.forward(request, headers, data, call)

    async def forwarded_headers(self, request: web.BaseRequest) -> tuple[CIMultiDict[str], bool]:
        """The request's headers as they go upstream (hop-by-hop and our mark dropped), and
        whether the mark said the call is recorded elsewhere (by the in-process middleware)."""
        if request.version >= (1, 1) and request.headers.get("expect", "").lower() == "100-continue":
            # answered here, not forwarded: curl waits a second for it before sending a large body
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        headers: CIMultiDict[str] = CIMultiDict()
        dropped = _REQUEST_DROP | _connection_named(request.headers)
        recorded_elsewhere = False
        for name, value in request.headers.items():
            low = name.lower()
            if low in dropped:
                recorded_elsewhere = recorded_elsewhere or low == RECORDED_HEADER
                continue
            headers.add(name, value)
        return headers, recorded_elsewhere

    def recorded_call(self, request: web.BaseRequest, headers: CIMultiDict[str], data: bytes,
                      tags: dict[str, Any] | None) -> ProxiedCall:
        """The record of a Messages call whose body is `data` (a retry joins the call it repeats,
        found on the writer's side); the upstream is asked only for encodings the record can be
        decoded from."""
        raw = [(k, v) for k, v in request.raw_headers if k.lower() != RECORDED_HEADER.encode()]
        if "accept-encoding" in headers:
            headers["accept-encoding"] = decodable(headers["accept-encoding"])
        retry_count = request.headers.get("x-stainless-retry-count")
        call = ProxiedCall(self.retries, retry_count, request.path, tags, data, raw)
        call.server = self.server
        # the client's connection stands for the caller: an agent's calls one after another
        # usually go over one kept-alive connection, agents running at once over their own
        call.caller = id(request.transport)
        return call

    async def forward(self, request: web.BaseRequest, headers: CIMultiDict[str], data: Any,
                      call: ProxiedCall | None) -> web.StreamResponse:
        """Send the request upstream with `headers` and `data` (bytes, or the client's body
        stream) and stream the answer back; `call`, when given, is recorded as it goes and put
        on the writer at the end."""
        target = URL(self.shown + request.raw_path, encoded=True)
        if self.basic is not None and "authorization" not in headers:
            headers["Authorization"] = self.basic
        if self.mark:
            headers[RECORDED_HEADER] = "1"
        try:
            return await self._exchange(request, target, headers, data, call)
        finally:
            if call is not None and self.put is not None:
                if not call.p1:
                    call.end()
                try:
                    self.put(call)
                except Exception as e:  # noqa: BLE001 - the client has its answer; say so, once
                    if not self.put_failed:
                        self.put_failed = True
                        log.warning("replayer proxy: a call could not be recorded (%s: %s)", type(e).__name__, e)

    async def _exchange(self, request: web.BaseRequest, target: URL, headers: CIMultiDict[str], data: Any,
                        call: ProxiedCall | None) -> web.StreamResponse:
        try:
            upstream = await self._send(request.method, target, headers, data)
        except TimeoutError as e:
            # the API's own type for its 504 (the SDK raises a 504 as InternalServerError either way)
            return self._unreachable(call, "timeout_error", 504, f"upstream {self.shown} timed out: {_cause(e)}")
        except (aiohttp.ClientError, OSError) as e:
            return self._unreachable(call, "api_error", 502, f"upstream {self.shown} unreachable: {_cause(e)}")
        except asyncio.CancelledError:
            if call is not None:
                call.client_left()  # (its read timeout: a timeout_error, as the middleware records it)
            raise
        watch: _BodyWatch | None = None
        async with upstream:
            if call is not None:
                call.answered(upstream.status, list(upstream.raw_headers), upstream.headers.get("content-encoding", ""))
                watch = _BodyWatch.start(upstream, call, self.timeout.sock_read)
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            dropped = _RESPONSE_DROP | _connection_named(upstream.headers)
            for name, value in upstream.headers.items():
                if name.lower() not in dropped:
                    response.headers.add(name, value)
            try:
                try:
                    await response.prepare(request)
                    async for chunk in upstream.content.iter_any():
                        if call is not None:
                            call.chunk(chunk)
                        await response.write(chunk)
                    if call is not None:
                        call.end()
                    await response.write_eof()
                except ConnectionResetError as e:  # a write to the client (a read fails otherwise)
                    raise _ClientLeft from e
            except (_ClientLeft, asyncio.CancelledError) as e:
                # the client went away: stop reading the upstream (closing it), record what came
                if call is not None:
                    call.end()
                    call.client_left()
                if isinstance(e, asyncio.CancelledError):
                    raise
            except (TimeoutError, aiohttp.ClientError) as e:
                # the upstream failed mid-body: the client must see a cut body, not a whole one.
                # Either way the client sees its connection break (its SDK: a connection error),
                # so the record says that, and a replay breaks it again; an upstream that went
                # silent (our read timeout, not the client's) is said in the message
                if call is not None:
                    call.end()
                    cause = f"{type(e).__name__}: {e}"
                    if isinstance(e, TimeoutError):
                        call.failed("connection_error", f"replayer proxy: upstream {self.shown} sent nothing for "
                                    f"{self.timeout.sock_read:g} s mid-answer, so the proxy cut the client's "
                                    f"connection ({cause})")
                    else:  # said in words, aiohttp's kept as the error's detail (as the middleware does)
                        body = "stream" if "event-stream" in upstream.headers.get("content-type", "") else "answer"
                        call.error = connection_closed(body, cause)
                if request.transport is not None:
                    request.transport.abort()
            finally:
                if watch is not None:
                    watch.handle.cancel()
        return response

    async def _send(self, method: str, target: URL, headers: CIMultiDict[str], data: Any) -> aiohttp.ClientResponse:
        """The upstream's answer. A request that failed on a kept-alive connection before any of
        its answer came is sent once more, on a new connection: the upstream closed the connection
        as the request went on it (its idle timeout; a client going direct opens a new one), so the
        request was never taken. Only a body the proxy holds can go again (not one streaming
        through from the client)."""
        assert self.session is not None
        options: dict[str, Any] = {"headers": headers, "data": data, "skip_auto_headers": _SKIP_AUTO,
                                   "allow_redirects": False, "chunked": None, "proxy": self.egress}
        _kept_alive.set(False)
        try:
            return await self.session.request(method, target, **options)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            if not _kept_alive.get() or not (data is None or isinstance(data, bytes)):
                raise
        log.debug("replayer proxy: a kept-alive upstream connection was closed under a request: sent again")
        if self.fresh is None:
            self.fresh = self._client_session(force_close=True)
        return await self.fresh.request(method, target, **options)

    def _unreachable(self, call: ProxiedCall | None, kind: str, status: int, message: str) -> web.StreamResponse:
        """The client's answer when the upstream gave none: `status` and an API-shaped error of
        type `kind`. The record is that answer, as of any API error the client got (a replay gives
        the agent the same status and body, and the SDK retries it by its own rules again)."""
        text = f"replayer proxy: {message}".replace(self.upstream, self.shown)  # a cause may name the URL too
        log.warning("%s", text)
        body = error_body(text, kind)
        if call is not None:
            call.answered(status, [(b"Content-Type", b"application/json")], "")
            call.chunk(body)
            call.end()
        return web.Response(status=status, body=body, content_type="application/json")


_kept_alive: ContextVar[bool] = ContextVar("replayer_proxy_kept_alive", default=False)
"""Whether the request `Proxy._send` is sending in this task went on a connection an earlier
request used (set by `_Connector.connect`, which the request awaits in the same task)."""


class _Connector(aiohttp.TCPConnector):
    """aiohttp's connector, telling `Proxy._send` whether a request went on a kept-alive
    connection: a connection it handed out before is one it took back from its pool.

    aiohttp's tracing says the same (`on_connection_reuseconn`), but a session with any trace
    config runs its whole trace machinery on every request, ~17 us of the proxy's CPU a request
    (measured against this); this is one set lookup."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.handed_out: weakref.WeakSet[ResponseHandler] = weakref.WeakSet()
        """The protocols (one a connection) of the connections handed out so far."""

    async def connect(self, req: ClientRequest, traces: list[Trace], timeout: aiohttp.ClientTimeout) -> Connection:
        connection = await super().connect(req, traces, timeout)
        protocol = connection.protocol
        if protocol in self.handed_out:
            _kept_alive.set(True)
        elif protocol is not None:
            self.handed_out.add(protocol)
        return connection


class _BodyWatch:
    """The upstream read timeout (sock_read) for a recorded answer's body, kept lazily.

    aiohttp's own cancels its timer and makes a new one at every chunk: ~6 us a chunk, 7-10% of
    the proxy loop's CPU for a stream (measured against the same proxy without it). This one is a
    single timer at a time: when it fires it looks at whether bytes came meanwhile (the answer's
    `total_bytes`), and only when none did, and none wait for the handler to take them (it may be
    writing to a slow client; aiohttp stops its timer while it doesn't read), the body fails
    with aiohttp's own error, so what is recorded and what the client sees are as before. The
    timer is set from the last chunk's arrival (`call.times`), so the timeout still comes
    `timeout` after the last byte."""

    __slots__ = ("loop", "timeout", "content", "call", "seen", "handle")

    def __init__(self, upstream: aiohttp.ClientResponse, call: ProxiedCall, timeout: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.timeout, self.content, self.call = timeout, upstream.content, call
        self.seen = self.content.total_bytes
        self.handle = self.loop.call_later(timeout, self.check)

    @classmethod
    def start(cls, upstream: aiohttp.ClientResponse, call: ProxiedCall, timeout: float | None) -> _BodyWatch | None:
        connection = upstream.connection
        protocol = connection.protocol if connection is not None else None
        if not timeout or protocol is None:  # no timeout, or the body is all in already
            return None
        # aiohttp's timer, armed by the headers, fires (as before) unless a chunk comes first;
        # from the next chunk on it is no longer re-armed: this watch keeps the time instead
        protocol.read_timeout = None
        return cls(upstream, call, timeout)

    def check(self) -> None:
        content = self.content
        if content.is_eof() or content.exception() is not None:
            return
        total = content.total_bytes
        taken = sum(len(c) for c in self.call.chunks)
        if total != self.seen or total > taken:
            self.seen = total
            times = self.call.times
            idle = time.perf_counter() - times[-1] if times and total == taken else 0.0
            self.handle = self.loop.call_later(max(self.timeout - idle, 0.001), self.check)
            return
        content.set_exception(aiohttp.SocketTimeoutError("Timeout on reading data from socket"))


def _connection_named(headers: Any) -> set[str]:
    """The headers a Connection header names: they are for this hop only, never forwarded."""
    return {t.strip().lower() for v in headers.getall("connection", ()) for t in v.split(",")}


class _ClientLeft(Exception):
    """A write to the client failed: it closed the connection."""


def egress_proxy(upstream: URL) -> str | None:
    """The proxy the environment names for the upstream (HTTPS_PROXY/HTTP_PROXY, unless NO_PROXY
    covers its host), as the SDKs use it: an agent behind an egress proxy reached the API alone,
    and failed once `record` put this proxy in its path. Read once, at the start; aiohttp's own
    trust_env is not used: it would also send ~/.netrc credentials upstream."""
    host = upstream.host
    if not host or proxy_bypass(host):
        return None
    return getproxies().get(upstream.scheme or "")


def _cause(e: BaseException) -> str:
    """Why the upstream could not be reached, in a few words (aiohttp's own text names the SSL
    setting and the call that failed)."""
    text = str(e) or type(e).__name__
    if isinstance(e, aiohttp.ClientConnectorError):
        os_error = e.os_error
        if isinstance(os_error, socket.gaierror):
            text = f"cannot resolve {e.host}: {os_error.strerror}"
        elif isinstance(os_error, ssl.SSLError):  # (its errno is no OS error: 1 read "operation not permitted")
            why = getattr(os_error, "verify_message", None) or os_error.reason or str(os_error)
            text = f"TLS with {e.host} failed: {why}"
        elif os_error.errno:
            text = os.strerror(os_error.errno).lower()
    return " ".join(text.split())
