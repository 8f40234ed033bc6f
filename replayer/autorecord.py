"""Zero-code recording (`replayer record -- python agent.py`).

In the child process, the SDK's base client classes are patched when `anthropic` is first
imported (not before, so a program that never uses the SDK pays nothing): every client created,
whatever its class, gets the recorder's middleware appended to its own. Settings come from the environment the `record`
command sets: REPLAYER_DB, REPLAYER_CONVERSATION, REPLAYER_USER.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from typing import Any

_recorder: Any = None


def recorder() -> Any:
    global _recorder
    if _recorder is None:
        from .recorder import Recorder

        _recorder = Recorder(os.environ.get("REPLAYER_DB") or None)
    return _recorder


def patch(module: Any) -> None:
    """Make every client record: the SDK's base client classes, which every client class derives
    from (Anthropic, AnthropicVertex, AnthropicBedrock, AnthropicFoundry, a program's own...),
    take the recorder's middleware in their `__init__`, unless the client already has a
    recorder's (the program's own `rec.wrap(...)` or `middleware=[rec.middleware]`): then that
    one records it, and once."""
    base = sys.modules.get(f"{module.__name__}._base_client")
    for name in ("SyncAPIClient", "AsyncAPIClient"):
        cls = getattr(base, name, None)
        if cls is None or getattr(cls.__init__, "_replayer", False):
            continue
        orig = cls.__init__

        def __init__(self: Any, *args: Any, __orig: Any = orig, middleware: Any = None, **kwargs: Any) -> None:
            from .capture import RecorderMiddleware

            mw = list(middleware or ())
            ours = recorder().middleware
            theirs = [m for m in mw if isinstance(m, RecorderMiddleware) and m is not ours]
            if theirs:  # a copy of a client the program wrapped itself: its recorder records it
                mw = [m for m in mw if m is not ours]
            elif ours not in mw:
                mw.append(ours)
            __orig(self, *args, middleware=mw, **kwargs)

        __init__._replayer = True  # type: ignore[attr-defined]
        cls.__init__ = __init__


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "anthropic":
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        orig_exec = loader.exec_module

        def exec_module(module: Any) -> None:
            orig_exec(module)
            patch(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _enter_conversation() -> None:
    conv, user = os.environ.get("REPLAYER_CONVERSATION"), os.environ.get("REPLAYER_USER")
    if conv or user:
        from .captured import Context
        from .recorder import _current, _inherit_context_in_threads

        _inherit_context_in_threads()
        _current.set(Context(conv or None, user or None))


def install() -> None:
    _enter_conversation()
    if "anthropic" in sys.modules:
        patch(sys.modules["anthropic"])
    elif not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
