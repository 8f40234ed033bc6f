"""Zero-code recording (`replayer record -- python agent.py`).

In the child process, the SDK's base client classes are patched when `anthropic` is first
imported (not before, so a program that never uses the SDK pays nothing): every client created,
whatever its class, gets the recorder's middleware appended to its own. Settings come from the
environment the `record` command sets: REPLAYER_DB, REPLAYER_CONVERSATION, REPLAYER_USER,
REPLAYER_OTLP and REPLAYER_OTLP_CONTENT (`--otlp`, `--otlp-content`), and REPLAYER_REPORT_DIR,
where each process reports what it stored (`summarize` reads it back).
Under `replayer replay` ($REPLAYER_REPLAY_URL) the clients get, instead of the recorder's, the
middleware that sends their calls to the replay server (playback/redirect.py).
"""

from __future__ import annotations

import atexit
import importlib.abc
import importlib.machinery
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from .fmt import plural
from .paths import DB_ENV, REPORT_ENV

RUN_ENV = "REPLAYER_RUN"
"""Set by `replayer record` for its child: the run's id, tagged on every call the run records."""
RUN_TAG = "run"
"""The conversation tag that holds a `record` run's id (`replayer list --run ID`)."""
REPLAY_ENV = "REPLAYER_REPLAY_URL"
"""Set by `replayer replay` for its child: the replay server's URL. Clients then get the
redirecting middleware (playback/redirect.py) instead of the recorder's: nothing records here."""

_recorder: Any = None


def recorder() -> Any:
    global _recorder
    if _recorder is None:
        from .recorder import Recorder

        otlp, content = _otlp_switches()
        _recorder = Recorder(os.environ.get(DB_ENV) or None, otlp=otlp, otlp_content=content)
    return _recorder


def _otlp_switches() -> tuple[bool, bool]:
    """`record --otlp [--otlp-content]` in the environment (REPLAYER_OTLP, REPLAYER_OTLP_CONTENT).
    When this Python lacks the OpenTelemetry packages, the calls are still recorded, without
    export, and the user is told once."""
    from .otlp import names, problem

    if os.environ.get(names.ENV_OTLP) != "1":
        return False, False
    missing = problem()
    if missing:
        print(f"replayer: {sys.executable} records without OTLP export ({missing})", file=sys.stderr)
        return False, False
    return True, os.environ.get(names.ENV_OTLP_CONTENT) == "1"


def patch(module: Any) -> None:
    """Make every client record: the SDK's base client classes, which every client class derives
    from (Anthropic, AnthropicVertex, AnthropicBedrock, AnthropicFoundry, a program's own...),
    take the recorder's middleware in their `__init__`, unless the client already has a
    recorder's (the program's own `rec.wrap(...)` or `middleware=[rec.middleware]`): then that
    one records it, and once.

    Under `replayer replay` they take the redirect to the replay server instead, and nothing
    records (not even a recorder of the program's own).

    An SDK older than middleware (before 0.108: frameworks that pin anthropic<2) is left alone:
    its clients would refuse the argument; `replayer record`'s proxy records their calls."""
    if not hasattr(module, "Middleware"):
        return
    replay_url = os.environ.get(REPLAY_ENV)
    if replay_url:
        patch_clients(module, _replaying(replay_url), "autorecord")
        return
    _keep_run_tag()
    patch_clients(module, _recording, "autorecord")


def _recording(_client: Any, middleware: list[Any]) -> list[Any]:
    """The client's middleware with the recorder's appended, unless the program gave it a
    recorder of its own (a copy of a client it wrapped itself): then that one records it, once."""
    from .capture import RecorderMiddleware

    ours = recorder().middleware
    theirs = [m for m in middleware if isinstance(m, RecorderMiddleware) and m is not ours]
    if theirs:
        return [m for m in middleware if m is not ours]
    return middleware if ours in middleware else [*middleware, ours]


def _replaying(url: str) -> Any:
    """The client's middleware with the replay redirect last (innermost), bound to this client (a
    copy of a client, `with_options`, gets its own). A recorder the program installed itself
    records nothing here (capture.py: its middleware passes the calls through): the answers are
    the recording's, and a fork records its live calls itself."""
    from .playback.redirect import ReplayMiddleware

    def add(client: Any, middleware: list[Any]) -> list[Any]:
        return [*(m for m in middleware if not isinstance(m, ReplayMiddleware)), ReplayMiddleware(url, client)]

    return add


def patch_clients(module: Any, chosen: Callable[[Any, list[Any]], list[Any]], name: str) -> None:
    """Every client created from now on, whatever its class (the SDK's base client classes'
    `__init__`), gets the middleware list `chosen(client, given)` returns instead of the one it
    was given (a copy made with `with_options` passes its original's: `chosen` sees what it added
    there). `name` names the patch: each is applied once, over any other (the pytest plugin's and
    `record`'s can both be in force)."""
    base = sys.modules.get(f"{module.__name__}._base_client")
    for cls_name in ("SyncAPIClient", "AsyncAPIClient"):
        cls = getattr(base, cls_name, None)
        if cls is None or name in getattr(cls.__init__, "_replayer", ()):
            continue
        orig = cls.__init__

        def __init__(self: Any, *args: Any, __orig: Any = orig, middleware: Any = None, **kwargs: Any) -> None:
            __orig(self, *args, middleware=chosen(self, list(middleware or ())), **kwargs)

        __init__._replayer = {*getattr(orig, "_replayer", ()), name}  # type: ignore[attr-defined]
        cls.__init__ = __init__


def when_imported(then: Any) -> None:
    """Call `then(anthropic)` now if the SDK is loaded, else when it first is: a program that
    never uses the SDK pays nothing."""
    if "anthropic" in sys.modules:
        then(sys.modules["anthropic"])
        return
    finder = next((f for f in sys.meta_path if isinstance(f, _Finder)), None)
    if finder is None:
        finder = _Finder()
        sys.meta_path.insert(0, finder)
    if then not in finder.then:
        finder.then.append(then)


class _Finder(importlib.abc.MetaPathFinder):
    """Runs its callbacks (`when_imported`) on the anthropic module once it is loaded."""

    def __init__(self) -> None:
        self.then: list[Any] = []

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
            for then in self.then:
                then(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _enter_conversation() -> None:
    conv, user, run = (os.environ.get(name) for name in ("REPLAYER_CONVERSATION", "REPLAYER_USER", RUN_ENV))
    if conv or user or run:
        from . import context
        from .captured import Context

        context.inherit_in_threads()
        context.current.set(Context(conv or None, user or None, {RUN_TAG: run} if run else None))


def _keep_run_tag() -> None:
    """A conversation the program enters itself (`rec.conversation(...)`) still carries the run's
    tag: the run's own tag wins over one of the same name the program gives. Done when anthropic
    is first imported (`patch`), so a program that never uses the SDK loads nothing more."""
    run = os.environ.get(RUN_ENV)
    if not run:
        return
    from .recorder import Recorder as cls
    orig = cls.conversation
    if getattr(orig, "_replayer_run", False):
        return

    def conversation(self: Any, conversation_id: str | None = None, *, tags: dict[str, Any] | None = None,
                     **kwargs: Any) -> Any:
        return orig(self, conversation_id, tags={**(tags or {}), RUN_TAG: run}, **kwargs)

    conversation._replayer_run = True  # type: ignore[attr-defined]
    conversation.__doc__ = orig.__doc__
    cls.conversation = conversation  # type: ignore[method-assign]  # the patch this function is for


# -- telling `replayer record` what this process recorded -------------------------------------
# The record command gives its processes a folder ($REPLAYER_REPORT_DIR). Each Python process that
# loads the hook leaves a file there at once (so a run whose child never loaded it can say so), and
# replaces it at exit with what its writers stored, per database: the command sums them up. A
# forked child (multiprocessing) reports apart, from its own file.

_report_to: str | None = None
_reported_pid = 0


def report_file(folder: str) -> str:
    return os.path.join(folder, f"{os.getpid()}-{os.urandom(4).hex()}.json")


def _write_report(doc: dict[str, Any]) -> None:
    if _report_to is None:
        return
    try:
        with open(_report_to + ".tmp", "w", encoding="utf-8") as f:
            json.dump({"pid": os.getpid(), "python": sys.executable, **doc}, f)
        os.replace(_report_to + ".tmp", _report_to)
    except OSError:
        pass  # the command is gone (a process that outlived it): nobody to tell


def _report_at_exit() -> None:
    """Flush every recorder of this process, then report what each stored where."""
    global _reported_pid
    if _reported_pid == os.getpid():
        return
    _reported_pid = os.getpid()
    dbs: dict[str, dict[str, Any]] = {}
    writer = sys.modules.get("replayer.store.writer")
    if writer is not None:
        writer._flush_at_exit()
        for w in list(writer._started):
            got = dbs.setdefault(
                os.path.realpath(w.path),
                {"calls": 0, "attempts": 0, "conversations": [], "unwritten": 0, "spilled": 0, "lost": 0},
            )
            got["calls"] += w.calls
            got["attempts"] += w.attempts
            got["conversations"] = sorted({*got["conversations"], *(w.conversations or ())})
            got["unwritten"] += w.unwritten  # a writer process holds them, and keeps trying
            got["spilled"] += w.spilled
            got["lost"] += w.dropped + w.failed
    _write_report({"exited": True, "dbs": dbs})


def _forked() -> None:
    """In a forked child: a report of its own. A multiprocessing child ends with os._exit, which
    skips atexit; its finalizers (run after the writers' own) report instead."""
    global _report_to
    if _report_to is None:
        return
    _report_to = report_file(os.path.dirname(_report_to))
    _write_report({})
    mp = sys.modules.get("multiprocessing.util")
    if mp is not None:
        mp.register_after_fork(_forked, lambda _f: mp.Finalize(None, _report_at_exit, exitpriority=0))


def install() -> None:
    global _report_to
    folder = os.environ.get(REPORT_ENV)
    if folder and _report_to is None:
        _report_to = report_file(folder)
        _write_report({})
        atexit.register(_report_at_exit)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_forked)
    _enter_conversation()
    when_imported(patch)


# -- the record command's last line ------------------------------------------------------------


def _skipping_flags(command: list[str]) -> str:
    """The interpreter options in `command` that keep the hook from loading (-E, -I ignore
    PYTHONPATH; -S skips the site module that imports it), when it runs Python directly."""
    if not command or not os.path.basename(command[0]).lower().startswith(("python", "pypy")):
        return ""
    found = ""
    args = iter(command[1:])
    for arg in args:
        if arg == "--" or not arg.startswith("-") or arg.startswith("--"):
            break
        letters = arg[1:]
        for i, letter in enumerate(letters):
            if letter in "cm":  # the program starts here
                return found
            if letter in "WX":  # takes a value: the rest of this word, or the next one
                if i == len(letters) - 1:
                    next(args, None)
                break
            if letter in "EIS" and letter not in found:
                found += letter
    return found


def _read_reports(folder: str) -> list[dict[str, Any]]:
    reports = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".json"):
            try:
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    reports.append(json.load(f))
            except (OSError, ValueError):
                continue  # being written by a process that outlived the command
    return reports


def _running(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The processes that loaded the hook, haven't reported their end and are still running."""
    if os.name == "nt":  # os.kill would end the process there, not probe it
        return []
    alive = []
    for r in reports:
        if not r.get("error") and not r.get("exited"):
            try:
                os.kill(r["pid"], 0)
            except ProcessLookupError:
                continue
            except OSError:
                pass  # exists, owned by someone else
            alive.append(r)
    return alive


def unwritten_notes(path: str, unwritten: int, spilled: int, lost: int) -> list[str]:
    """What became of the records a run's writers did not write to `path` by the end, three counts
    kept apart, as the writers' own messages at exit (store/writer.py, store/process.py) say them:
    not yet written (a writer process holds them and keeps trying), saved beside the database,
    lost. The end lines of `record`, `replay` and `fork` all say it this way."""
    notes = []
    if unwritten:
        notes.append(
            f"{plural(unwritten, 'record')} not yet written to {path}: the writer keeps trying, "
            "then saves them in a file beside it (see the warnings above)"
        )
    if spilled:
        notes.append(
            f"{plural(spilled, 'record')} could not be written to {path}; saved in a file beside it: "
            "the next recorder that opens it writes them in (see the warnings above)"
        )
    if lost:
        notes.append(f"{plural(lost, 'record')} could not be written to {path}: they are lost "
                     "(see the warnings above)")
    return notes


def summarize(
    folder: str, db: str, command: list[str], settle: float = 3.0, *, run: str | None = None,
    proxied: dict[str, Any] | None = None,
) -> str:
    """One line on what a `replayer record` run recorded, from its processes' reports (only this
    run's records: the database may hold older ones) and what its proxy recorded (`proxied`:
    calls, attempts, conversations, unwritten, spilled, lost, for `db`), or why nothing was, and
    what to do.

    The program's own subprocesses may still be ending (a multiprocessing server, a pool's
    workers): they get up to `settle` seconds to report."""
    reports = _read_reports(folder)
    deadline = time.monotonic() + settle
    while _running(reports) and time.monotonic() < deadline:
        time.sleep(0.05)
        reports = _read_reports(folder)
    ended = {r["pid"] for r in reports if r.get("error") or r.get("exited")}
    reports = [r for r in reports if r.get("error") or r.get("exited") or r["pid"] not in ended]  # fork, then exec
    running = len(_running(reports))
    totals: dict[str, dict[str, Any]] = {}
    for got_by_db in [r.get("dbs") or {} for r in reports] + [{db: proxied} if proxied else {}]:
        for path, got in got_by_db.items():
            t = totals.setdefault(
                path, {"calls": 0, "attempts": 0, "conversations": set(), "unwritten": 0, "spilled": 0, "lost": 0}
            )
            t["calls"] += got["calls"]
            t["attempts"] += got["attempts"]
            t["conversations"].update(got["conversations"])
            for name in ("unwritten", "spilled", "lost"):
                t[name] += got.get(name, 0)
    broken = [r for r in reports if r.get("error")]
    unreported = sum(1 for r in reports if not r.get("error") and not r.get("exited")) - running
    remedy = (
        f"run the program with {sys.executable} (the Python that has replayer), or record in code: "
        "Recorder().wrap(client)"
    )

    notes = []
    for path, t in totals.items():
        notes += unwritten_notes(path, t["unwritten"], t["spilled"], t["lost"])
    if broken:
        why = f"{broken[0]['python']} could not load replayer ({broken[0]['error']})"
        if proxied and proxied.get("calls"):  # its calls went to ANTHROPIC_BASE_URL: the proxy has them
            notes.append(f"{why}: its calls through ANTHROPIC_BASE_URL were recorded through the proxy")
        else:
            notes.append(f"{why}: {remedy}")
    if running:
        they = "it" if running == 1 else "they"
        notes.append(f"{plural(running, 'process', 'processes')} still running: what {they} record is not counted here")
    if unreported:
        they = "it" if unreported == 1 else "they"
        notes.append(
            f"{plural(unreported, 'process', 'processes')} ended before reporting (killed, or os._exit): "
            f"what {they} recorded, if anything, is not counted"
        )
    done = [
        f"{plural(t['calls'], 'call')}"
        + (f" ({plural(t['attempts'], 'attempt')})" if t["attempts"] != t["calls"] else "")
        + f" in {plural(len(t['conversations']), 'conversation')} to {path}"
        for path, t in sorted(totals.items(), key=lambda kv: (kv[0] != db, kv[0]))  # the command's database first
        if t["attempts"]
    ]
    if done:
        return "replayer: recorded " + ", ".join(done) + (f" (run {run})" if run else "") + "".join(
            f"; {n}" for n in notes
        )
    if notes:
        waiting = any(t["unwritten"] or t["spilled"] for t in totals.values())
        counted = "no call was counted" if unreported or running else (
            "nothing was written yet" if waiting else "nothing was recorded"
        )
        return f"replayer: {counted}: {'; '.join(notes)}"
    passed = (proxied or {}).get("passed") or 0
    if passed:
        # marked by a recorder this run never heard from: a `replayer record` inside the program
        return (
            f"replayer: nothing was recorded to {db}: the program's {plural(passed, 'call')} came already "
            "recorded (by a replayer record or a Recorder inside it, to its own database), so not again here"
        )
    # nothing at all: neither the hook nor the proxy saw a Messages API call
    proxy = proxied is not None
    if reports:
        if proxy:
            return (
                f"replayer: nothing was recorded to {db}: the program made no Messages API call through the "
                "anthropic Python SDK or through ANTHROPIC_BASE_URL (replayer's recording proxy; a client in "
                "another language given a base URL of its own is not seen)"
            )
        return (
            f"replayer: nothing was recorded to {db}: the program made no Messages API call through the "
            "anthropic Python SDK (calls made another way, or by a program in another language, are not seen)"
        )
    flags = _skipping_flags(command)
    if flags:
        reasons = ("ignores PYTHONPATH" if set(flags) & set("EI") else "", "skips site" if "S" in flags else "")
        why = " and ".join(w for w in reasons if w)
        made = "made no Messages API call through ANTHROPIC_BASE_URL, and " if proxy else ""
        return (
            f"replayer: nothing was recorded to {db}: the program {made}python -{flags} {why}, so replayer's hook "
            f"never loaded (it records clients given a base_url of their own): "
            f"run it without -{flags}, or record in code: Recorder().wrap(client)"
        )
    if proxy:
        return (
            f"replayer: nothing was recorded to {db}: no Messages API call came through ANTHROPIC_BASE_URL "
            "(replayer's recording proxy; a program that ignores it or sets a base URL of its own is not seen: "
            "point it at $ANTHROPIC_BASE_URL), and the command never loaded replayer's hook for Python (not a "
            "Python program; python run with -E, -I or -S; or a Python without replayer, as pipx and uv tool install, "
            f"that skips PYTHONPATH); for a Python program that sets its own base_url, {remedy}"
        )
    return (
        f"replayer: nothing was recorded to {db}: the command never loaded replayer's hook (not a Python "
        "program: only the anthropic Python SDK is recorded; python run with -E, -I or -S; or a Python without "
        f"replayer, as pipx and uv tool install, that skips PYTHONPATH); {remedy}"
    )
