"""Answering SDK clients inside their own process (the pytest plugin): the middleware every client
gets, which, while a handler is in force, hands each HTTP attempt to it; the handler that answers
Messages calls from a player without the network, building the HTTP response the API would have
sent (JSON, or an SSE stream the SDK iterates event by event) or a Refusal's API-shaped error.

The response is built with the client's own request pipeline (the SDK's private
`_prepare_options`, `_build_request` and `_process_response`, as its own base handler does), so
the body matched is the body the client would have sent, Vertex and Bedrock rewrites included,
and the caller gets what a real response gives it: a parsed message, a `Stream`, the typed error.
Nothing is signed or authenticated: no credential is needed to replay.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import anthropic
import httpx2
from anthropic._base_client import _prepare_middleware_options

from ..autorecord import patch_clients
from ..capture import _turn_endpoint, replaying
from .answer import chunks, retry_wait
from .matching import Refusal, error_body


class Handler(Protocol):
    """What answers the attempts of every client while it is in force (`serving`)."""

    replays: bool
    """Its answers come from a recording: the process's own recorders record nothing meanwhile."""

    def handle(self, client: Any, request: Any, call_next: Any) -> Any: ...

    async def handle_async(self, client: Any, request: Any, call_next: Any) -> Any: ...


_current: Handler | None = None
"""The handler in force: one per process, not per context, so the threads and tasks a test
starts are answered too."""
_lock = threading.Lock()


class Playback(anthropic.Middleware):
    """On every client of the process (`patch`), innermost: the network's place. With no
    handler in force it passes each attempt on untouched."""

    __slots__ = ("client",)

    def __init__(self, client: Any):
        # a weak reference: the client holds its middleware, and a cycle would keep every
        # client (and its connection pool) alive until the garbage collector runs
        self.client = weakref.ref(client)

    def handle(self, request: Any, call_next: Any) -> Any:
        handler = _current
        if handler is None:
            return call_next(request)
        return handler.handle(self.client(), request, call_next)

    async def handle_async(self, request: Any, call_next: Any) -> Any:
        handler = _current
        if handler is None:
            return await call_next(request)
        return await handler.handle_async(self.client(), request, call_next)


def _with_playback(client: Any, mw: list[Any]) -> list[Any]:
    """The client's middleware with a Playback of its own last (a copy made with `with_options`
    brings its original's, bound to the original: replaced)."""
    return [*(m for m in mw if not isinstance(m, Playback)), Playback(client)]


def patch(module: Any) -> None:
    """Every client of `module` (anthropic) created from now on gets a Playback (one made before
    is not reached: the pytest plugin patches when the SDK is first imported)."""
    if hasattr(module, "Middleware"):
        patch_clients(module, _with_playback, "playback")


@contextmanager
def serving(handler: Handler) -> Iterator[Handler]:
    """`handler` answers every client's attempts inside the block. While it replays, a recorder
    the code under test installed itself passes the calls through (capture.replaying): the
    answers are the cassette's, not calls to record."""
    global _current
    with _lock:
        if _current is not None:
            raise RuntimeError("replayer: a cassette is already in force in this process")
        _current = handler
        before = replaying(True) if handler.replays else None
    try:
        yield handler
    finally:
        with _lock:
            _current = None
            if before is not None:
                replaying(before)


class Recording:
    """A handler that lets attempts go to the network, through a recorder's middleware."""

    replays = False

    def __init__(self, middleware: Any):
        self.middleware = middleware

    def handle(self, client: Any, request: Any, call_next: Any) -> Any:
        return self.middleware.handle(request, call_next)

    async def handle_async(self, client: Any, request: Any, call_next: Any) -> Any:
        return await self.middleware.handle_async(request, call_next)


@dataclass
class Replaying:
    """A handler that answers Messages calls from `player` (`answer(endpoint, body, stream=) -> Answer |
    Refusal`) and every other call with an API-shaped error: nothing reaches the network.
    `refused` keeps the difference messages, so a test fails with them even when the agent
    caught the error."""

    player: Any
    refused: list[str] = field(default_factory=list)
    replays = True

    def handle(self, client: Any, request: Any, call_next: Any) -> Any:
        options = client._prepare_options(_prepare_middleware_options(request))
        http_request = _build_request(client, options, request.retries_taken)
        status, headers, body, chunks = self._answer(request, http_request)
        response = httpx2.Response(
            status, headers=headers, request=http_request,
            content=body if chunks is None else iter(chunks),
        )
        return client._process_response(
            cast_to=request.cast_to, options=options, response=response, stream=request.stream,
            stream_cls=request.stream_cls, retries_taken=request.retries_taken,
        )

    async def handle_async(self, client: Any, request: Any, call_next: Any) -> Any:
        options = await client._prepare_options(_prepare_middleware_options(request))
        http_request = _build_request(client, options, request.retries_taken)
        status, headers, body, chunks = self._answer(request, http_request)
        response = httpx2.Response(
            status, headers=headers, request=http_request,
            content=body if chunks is None else _aiter(chunks),
        )
        return await client._process_response(
            cast_to=request.cast_to, options=options, response=response, stream=request.stream,
            stream_cls=request.stream_cls, retries_taken=request.retries_taken,
        )

    def _answer(self, request: Any, http_request: httpx2.Request) -> tuple[int, dict[str, str], bytes | None,
                                                                          Iterable[bytes] | None]:
        """Status, headers and the body (whole, or its chunks) of the response to one attempt."""
        endpoint = _turn_endpoint(request)
        if endpoint is None:
            message = (
                f"replayer: {http_request.method} {http_request.url.path} is not answered from a cassette "
                "(only Messages calls are recorded)"
            )
            self.refused.append(message)
            return 400, _JSON, error_body(message), None
        decision = self.player.answer(endpoint, http_request.content, stream=bool(request.stream))
        if isinstance(decision, Refusal):
            self.refused.append(decision.message)
            return decision.status, _JSON, decision.body, None
        if decision.status is None:  # the recorded attempt got no answer: neither does this one
            if decision.timed_out:
                raise anthropic.APITimeoutError(request=http_request)
            raise anthropic.APIConnectionError(request=http_request)
        headers = retry_wait(decision.headers, None)  # as fast as possible, the recorded waits too
        if decision.events is not None:
            parts = [b for _wait, b in chunks(decision.events)]
            if decision.cut:
                return decision.status, headers, None, _cut(parts, http_request, decision.timed_out)
            return decision.status, headers, None, parts
        return decision.status, headers, decision.body, None


_CUT = "peer closed connection without sending complete message body (incomplete chunked read)"
"""What the HTTP library says when a chunked body stops short (as it said when this was recorded)."""


def _cut(parts: list[bytes], request: httpx2.Request, timed_out: bool) -> Iterator[bytes]:
    """The body's parts, then the stream fails as it did when recorded, not a clean end: the
    connection breaks (the read error the SDK wraps as APIConnectionError), or, when the recorded
    read timed out, the read times out now, at once (the SDK raises APITimeoutError)."""
    yield from parts
    if timed_out:
        raise httpx2.ReadTimeout("replayer: the recorded read timed out here", request=request)
    raise httpx2.RemoteProtocolError(_CUT, request=request)


_JSON = {"content-type": "application/json"}


async def _aiter(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _build_request(client: Any, options: Any, retries_taken: int) -> httpx2.Request:
    """The HTTP request the client would send, unsigned. A client with no credentials (a test
    run with no key) builds it with a placeholder: the request never leaves the process."""
    try:
        return client._build_request(options, retries_taken=retries_taken)
    except TypeError:
        if not isinstance(options.headers, dict):
            raise
        options.headers = {**options.headers, "X-Api-Key": "replayer-replay-no-key"}
        return client._build_request(options, retries_taken=retries_taken)
