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
from typing import Any
from urllib.parse import urlsplit

import anthropic


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
        return call_next(request)

    async def handle_async(self, request: Any, call_next: Any) -> Any:
        if self.client is not None:
            prepared = self.client._prepare_options(request.options)
            request.options = await prepared if inspect.isawaitable(prepared) else prepared
        self._redirect(request)
        return await call_next(request)
