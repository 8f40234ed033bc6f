"""The recording reverse proxy: agents in any language reach the API through it (by
`ANTHROPIC_BASE_URL`) and their Messages calls are recorded as the SDK middleware records them.

    proxy = start_background("https://api.anthropic.com", writer.put, tags={"run": run_id})
    ... child processes get ANTHROPIC_BASE_URL=proxy.url ...
    proxy.stop()       # open streams finish first; then close the writer

Importing this package imports aiohttp (its modules load the server and client).
"""

from __future__ import annotations

from .run import BackgroundProxy, serve, start_background
from .server import RECORDED_HEADER, Proxy

__all__ = ["BackgroundProxy", "Proxy", "RECORDED_HEADER", "serve", "start_background"]
