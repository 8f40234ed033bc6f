"""The middleware `replayer replay` installs in its Python children (through the boot, instead of
the recording middleware): every call a client makes goes to the replay server, whatever base
URL the client was given, so the server answers it (or refuses it, or sends it live) and matching
stays in one place for every process of the run. Imported only once `anthropic` is."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import anthropic


class ReplayMiddleware(anthropic.Middleware):
    """Sends each attempt to `url` (the replay server), keeping its path and query."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def _redirect(self, request: Any) -> None:
        # the attempt's own copy of the options (the SDK copies them per attempt)
        options = request.options
        url = str(options.url)
        if "://" in url:
            parts = urlsplit(url)
            url = parts.path + (f"?{parts.query}" if parts.query else "")
        options.url = self.url + "/" + url.lstrip("/")

    def handle(self, request: Any, call_next: Any) -> Any:
        self._redirect(request)
        return call_next(request)

    async def handle_async(self, request: Any, call_next: Any) -> Any:
        self._redirect(request)
        return await call_next(request)
