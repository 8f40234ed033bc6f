"""Running the proxy: in the foreground until Ctrl+C or SIGTERM (`replayer proxy`), or on a
thread of its own inside another program (`start_background`, used by `replayer record`)."""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from ..captured import Put
from .server import GRACE_SECONDS, Proxy

SWITCH_SECONDS = 0.0005
"""The GIL switch interval while a proxy serves (Python's default is 5 ms): the writer's feeder
thread turns a burst of ended calls into records and pickles them (a few ms of Python for 50
streams), and with 5 ms the loop, woken by a chunk, may wait that long for the GIL. A switch
costs only when both threads want to run."""

_settled = False
_serving = 0
_switch_before = 0.0
_serving_lock = threading.Lock()


def settle() -> None:
    """Once per process, before serving (`replayer proxy`, `record` and `replay`, and a test
    process once): collect, then freeze what is alive (the modules, the app, the writer) out of
    the cyclic collector's sight. A full collection walks every tracked object: in a started
    proxy process ~57,000 of them, tens of ms during which every open stream waits on the loop
    (a p99 first token). Frozen, a pass walks only what open requests made (~2,200 objects)."""
    global _settled
    if not _settled:
        _settled = True
        gc.collect()
        gc.freeze()


def _serving_starts() -> None:
    """The short GIL switch interval (SWITCH_SECONDS) while any proxy serves in this process."""
    global _serving, _switch_before
    with _serving_lock:
        if _serving == 0:
            _switch_before = sys.getswitchinterval()
            sys.setswitchinterval(min(_switch_before, SWITCH_SECONDS))
        _serving += 1


def _serving_ends() -> None:
    global _serving
    with _serving_lock:
        _serving -= 1
        if _serving == 0:
            sys.setswitchinterval(_switch_before)


class BackgroundProxy:
    """A proxy serving from a daemon thread's event loop. `url` is where clients send requests."""

    def __init__(self, proxy: Proxy, loop: asyncio.AbstractEventLoop, thread: threading.Thread, url: str) -> None:
        self.proxy, self.loop, self.thread, self.url = proxy, loop, thread, url
        self._stopped = False
        self._stopping: Future[None] | None = None
        self._lock = threading.Lock()

    def stop(self, timeout: float = GRACE_SECONDS) -> None:
        """Stop listening, let open streams finish (up to `timeout` seconds), end the thread.
        The records are all on the writer (`put`) when it returns; the writer is the caller's.
        A second call (another thread's, or one after a KeyboardInterrupt cut the first) waits
        for the same stop: it never returns while streams are still being recorded."""
        with self._lock:
            if self._stopped:
                return
            if self._stopping is None:
                self._stopping = asyncio.run_coroutine_threadsafe(self.proxy.stop(timeout), self.loop)
            future = self._stopping
        try:
            future.result(timeout + 15)
        except KeyboardInterrupt:
            raise  # the stop goes on: calling stop() again waits for it
        except BaseException:
            self._end(timeout)
            raise
        self._end(timeout)

    def _end(self, timeout: float) -> None:
        with self._lock:
            if self._stopped:
                return  # another caller waiting on the same stop ended the loop
            self._stopped = True
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout + 5)
        _serving_ends()


def start_background(upstream: str, put: Put, *, host: str = "127.0.0.1", port: int = 0,
                     tags: dict[str, Any] | None = None, **options: Any) -> BackgroundProxy:
    """Start a proxy to `upstream` whose records go to `put` (a writer's put); `tags` go into
    every record's context. Raises OSError when it can't listen (a port in use)."""
    return run_in_background(Proxy(upstream, put, tags=tags, **options), host=host, port=port)


def run_in_background(proxy: Proxy, *, host: str = "127.0.0.1", port: int = 0) -> BackgroundProxy:
    """Serve `proxy` (a Proxy, or a server built on it: the replay server) from a daemon thread's
    event loop. Raises OSError when it can't listen."""
    settle()
    loop = asyncio.new_event_loop()
    started: dict[str, Any] = {}
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            started["url"] = loop.run_until_complete(proxy.start(host, port))
        except BaseException as e:  # noqa: BLE001 - handed to the starting thread
            started["error"] = e
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="replayer-proxy", daemon=True)
    thread.start()
    ready.wait()
    if "error" in started:
        raise started["error"]
    _serving_starts()
    return BackgroundProxy(proxy, loop, thread, started["url"])


def serve(upstream: str, put: Put, host: str, port: int, on_listening: Callable[[str], None],
          on_stopping: Callable[[int], None], grace: float = GRACE_SECONDS) -> None:
    """Serve until SIGINT or SIGTERM, then stop accepting, let open streams finish (up to
    `grace`; a second signal cuts them) and return. Raises OSError when it can't listen."""

    async def main() -> None:
        proxy = Proxy(upstream, put)
        url = await proxy.start(host, port)
        settle()
        _serving_starts()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        on_listening(url)
        try:
            await stop.wait()
            if proxy.tasks:
                on_stopping(len(proxy.tasks))
            for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal cuts the open streams
                loop.add_signal_handler(sig, proxy.cut)
        finally:
            await proxy.stop(grace)
            _serving_ends()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    asyncio.run(main())
