"""The middleware `replayer replay` installs in its Python children (through the boot, instead of
the recording middleware): every call a client makes goes to the replay server, whatever base
URL the client was given, so the server answers it (or refuses it, or sends it live) and matching
stays in one place for every process of the run. Imported only once `anthropic` is.

A Vertex client's call is first made what that client sends (its path names the model, its body
doesn't), so it matches what its recording kept. Bedrock's streams are AWS event streams, not
SSE: a Bedrock client's streams are not replayed.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import anthropic
import httpx2

from ..wire import TIMED_OUT_HEADER, TIMEOUTS_HEADER


class _SyncTimeoutAtCut(httpx2.SyncByteStream):
    """A replayed stream whose recorded read timed out (wire.TIMED_OUT_HEADER): the break the
    server ends it with is that read timeout, so the SDK raises APITimeoutError as it did."""

    def __init__(self, inner: Any, request: Any) -> None:
        self.inner, self.request = inner, request

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self.inner
        except httpx2.TransportError as e:
            raise httpx2.ReadTimeout(_TIMED_OUT, request=self.request) from e

    def close(self) -> None:
        self.inner.close()


class _AsyncTimeoutAtCut(httpx2.AsyncByteStream):
    """`_SyncTimeoutAtCut` for an async client."""

    def __init__(self, inner: Any, request: Any) -> None:
        self.inner, self.request = inner, request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.inner:
                yield chunk
        except httpx2.TransportError as e:
            raise httpx2.ReadTimeout(_TIMED_OUT, request=self.request) from e

    async def aclose(self) -> None:
        await self.inner.aclose()


_TIMED_OUT = "replayer replay: the recorded read timed out here"


def _timed_out(response: Any, is_async: bool) -> Any:
    """The replay server's answer to an attempt whose recorded read timed out (wire.TIMED_OUT_HEADER),
    made a timeout as the agent saw it: the SDK's APITimeoutError to raise now, before any answer
    (None: not that); mid-stream, at the break the stream ends with."""
    http: Any = getattr(response, "http_response", None)
    said = http.headers.get(TIMED_OUT_HEADER) if http is not None else None
    if said == "before-answer":
        return anthropic.APITimeoutError(request=http.request)
    if said == "mid-stream":
        http.stream = (_AsyncTimeoutAtCut if is_async else _SyncTimeoutAtCut)(http.stream, http.request)
    return None


class ReplayMiddleware(anthropic.Middleware):
    """Sends each attempt of `client` to `url` (the replay server), keeping its path and query."""

    def __init__(self, url: str, client: Any = None) -> None:
        self.url = url.rstrip("/")
        self.client = client

    def _redirect(self, request: Any) -> None:
        # the attempt's own copy of the options (the SDK copies them per attempt)
        options = request.options
        url = str(options.url)
        if "://" in url:
            parts = urlsplit(url)
            url = parts.path + (f"?{parts.query}" if parts.query else "")
        options.url = self.url + "/" + url.lstrip("/")

    def handle(self, request: Any, call_next: Any) -> Any:
        if self.client is not None:
            # the client's own rewrite (Vertex: the model into the path), done here because an
            # absolute URL skips it; done again later, it changes nothing
            request.options = self.client._prepare_options(request.options)
        self._redirect(request)
        _takes_timeouts(request)
        response = call_next(request)
        timeout = _timed_out(response, False)
        if timeout is not None:
            response.http_response.close()
            raise timeout
        return response

    async def handle_async(self, request: Any, call_next: Any) -> Any:
        if self.client is not None:
            prepared = self.client._prepare_options(request.options)
            request.options = await prepared if inspect.isawaitable(prepared) else prepared
        self._redirect(request)
        _takes_timeouts(request)
        response = await call_next(request)
        timeout = _timed_out(response, True)
        if timeout is not None:
            await response.http_response.aclose()
            raise timeout
        return response


def _takes_timeouts(request: Any) -> None:
    """Tell the replay server this client raises a replayed timeout (wire.TIMEOUTS_HEADER), on
    the attempt's own copy of the options."""
    given = request.options.headers
    request.options.headers = {**given, TIMEOUTS_HEADER: "1"} if isinstance(given, Mapping) else {TIMEOUTS_HEADER: "1"}
