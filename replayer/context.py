"""The conversation in force: the context variable `Recorder.conversation(...)` sets and the
middleware reads, and its propagation into threads.

`current` holds the `Context` (conversation, user, tags, trace ids) for calls made in this
context. asyncio tasks copy the context by themselves; threads only do from Python 3.14 on (with
`sys.flags.thread_inherit_context`). For older versions `inherit_in_threads()` patches, once per
process and only when a conversation is first entered:

- `threading.Thread.start`, to take a copy of the starting thread's context,
- `threading.Thread._bootstrap_inner`, to run the new thread inside that copy,
- `concurrent.futures.ThreadPoolExecutor.submit`, to run each task in a copy of the context that
  submitted it (a pool's threads are started once and reused, so the thread's own copy would
  be stale).

Without this, a call an agent makes from a worker thread or a thread pool inside
`with rec.conversation(...)` would be recorded outside that conversation.
"""

from __future__ import annotations

import contextvars
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .captured import Context

current: contextvars.ContextVar[Context | None] = contextvars.ContextVar("replayer_context", default=None)


def inherit_in_threads() -> None:
    """Make threads (and thread-pool tasks) started inside a `conversation()` see it: a thread
    runs in a copy of the context that started it, a pool task in a copy of the context that
    submitted it. Does nothing when Python already does it, or when done before."""
    if getattr(threading.Thread, "_replayer_inherits", False) or getattr(sys.flags, "thread_inherit_context", 0):
        return
    orig_start = threading.Thread.start
    orig_inner = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]  # private, stable since 3.x
    orig_submit = ThreadPoolExecutor.submit

    def start(self: threading.Thread) -> None:
        self._replayer_context = contextvars.copy_context()  # type: ignore[attr-defined]  # our own attribute
        orig_start(self)

    def _bootstrap_inner(self: threading.Thread) -> None:
        ctx = getattr(self, "_replayer_context", None)
        if ctx is None:
            orig_inner(self)
        else:
            ctx.run(orig_inner, self)

    def submit(self: ThreadPoolExecutor, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        return orig_submit(self, contextvars.copy_context().run, fn, *args, **kwargs)

    threading.Thread.start = start  # type: ignore[method-assign]  # the patch this module is for
    threading.Thread._bootstrap_inner = _bootstrap_inner  # type: ignore[attr-defined]  # likewise
    ThreadPoolExecutor.submit = submit  # type: ignore[method-assign, assignment]  # likewise (a looser signature)
    threading.Thread._replayer_inherits = True  # type: ignore[attr-defined]  # marks the patch as done
