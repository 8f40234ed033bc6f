"""The pytest plugin (entry point `pytest11`, nothing to import): a test marked
`@pytest.mark.replayer("tests/cassettes/refund.jsonl")` runs with every Anthropic SDK client of
its process answered from that cassette, in process (no server, no network); when the file is
missing, or with `--replayer-record`, the test runs live and its calls are recorded into it.

    @pytest.mark.replayer(path, *, ignore=[PATH, ...], loose=False, with_errors=False, redact=fn)

A relative path is taken from the rootdir (where pytest.ini/pyproject.toml is), so it reads the
same whichever folder pytest runs from. The cassette is in force from the test's setup to its
teardown (its function-scoped fixtures' calls are answered too). Loading this module costs
little: the SDK's clients are patched only once `anthropic` is imported (autorecord's hook), and
a client with no cassette in force passes every call on untouched.
"""

from __future__ import annotations

import importlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .autorecord import when_imported

MODES = ("missing", "all", "none")
"""--replayer-record-mode: record a cassette whose file is missing (the default), every
cassette again, or none (a missing cassette fails its test: for CI, where nothing may go live)."""
KEY_ENVS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")
MARKER_OPTIONS = ("ignore", "loose", "with_errors", "redact")


class ReplayerDrift(UserWarning):
    """A loose replay served answers to requests that differ from the recorded ones."""


def _patch(module: Any) -> None:
    from .playback.inprocess import patch

    patch(module)


# Before conftest files and test modules are imported, so a client they create at import time
# (an agent's module-level `client = Anthropic()`) is reached too.
when_imported(_patch)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("replayer", "replayer cassettes (@pytest.mark.replayer)")
    group.addoption(
        "--replayer-record", action="store_const", const="all", dest="replayer_record_mode", default=None,
        help="run every test marked replayer live and record its cassette again (needs ANTHROPIC_API_KEY); "
        "the same as --replayer-record-mode=all",
    )
    group.addoption(
        "--replayer-record-mode", choices=MODES, dest="replayer_record_mode", default=None,
        help="missing (default): record a cassette whose file doesn't exist; all: record every one again; "
        "none: never record (a missing cassette fails its test)",
    )
    parser.addini("replayer_record_mode", f"the default --replayer-record-mode ({'/'.join(MODES)})", default="missing")
    parser.addini(
        "replayer_redact",
        "MODULE:FUNCTION applied to every record before it is written to a cassette (as Recorder(redact=...): "
        "a record in, the record to keep, or None to keep nothing, out)",
        default="",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "replayer(path, *, ignore=[], loose=False, with_errors=False, redact=None): answer every Anthropic SDK "
        "client of the test's process from the cassette at path (recorded live when missing, or with "
        "--replayer-record)",
    )
    mode = config.getoption("replayer_record_mode") or config.getini("replayer_record_mode") or "missing"
    if mode not in MODES:
        raise pytest.UsageError(f"replayer_record_mode = {mode!r}: use one of {', '.join(MODES)}")
    config.stash[_MODE] = mode
    spec = config.getini("replayer_redact")
    config.stash[_REDACT] = _load_function(spec) if spec else None


def _load_function(spec: str) -> Callable[..., Any]:
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise pytest.UsageError(f"replayer_redact = {spec!r}: write it as MODULE:FUNCTION (e.g. tests.scrub:redact)")
    try:
        fn = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as e:
        raise pytest.UsageError(f"replayer_redact = {spec!r} can't be loaded ({e}): fix the name or sys.path") from None
    if not callable(fn):
        raise pytest.UsageError(f"replayer_redact = {spec!r} is not a function")
    return fn


_MODE = pytest.StashKey[str]()
_REDACT = pytest.StashKey[Any]()


@dataclass
class _Cassette:
    """One marked test's cassette, from its setup to its teardown."""

    path: Path
    recording: bool
    ignore: tuple[str, ...] = ()
    loose: bool = False
    with_errors: bool = False
    redact: Any = None
    blocked: str | None = None
    """Why the test must fail before it runs (recording with no key, no cassette in mode none)."""
    handler: Any = None
    serving: Any = None
    recorder: Any = None
    folder: Any = None
    key_before: str | None = None
    """ANTHROPIC_API_KEY as it was when a replay set the placeholder in its place (None: unset)."""
    key_set: bool = False
    ran: bool = False
    """The test's body ran: a test whose setup failed records nothing."""
    failed: bool = False
    """The test did not pass (its body failed, xfailed, was skipped or interrupted, or a fixture's
    teardown failed): a recording writes no cassette."""


_CASSETTE = pytest.StashKey[_Cassette]()
_NAMED_BY = pytest.StashKey[dict[Path, list[str]]]()
"""Each cassette file -> the node ids of the collected tests whose marker names it."""


def _cassette_path(config: pytest.Config, marker: pytest.Mark) -> Path | None:
    """The file a marker names (a relative path from the rootdir); None for a marker without one."""
    if len(marker.args) != 1 or not isinstance(marker.args[0], str | os.PathLike):
        return None
    path = Path(marker.args[0]).expanduser()
    return Path(os.path.normpath(config.rootpath / path))


def _named(item: pytest.Item) -> None:
    marker = item.get_closest_marker("replayer")
    path = _cassette_path(item.config, marker) if marker is not None else None
    if path is not None:
        named = item.config.stash.setdefault(_NAMED_BY, {}).setdefault(path, [])
        if item.nodeid not in named:
            named.append(item.nodeid)


def pytest_itemcollected(item: pytest.Item) -> None:
    # every test collected, those -k or -m will deselect too: two tests naming one cassette is
    # wrong however many of them run
    _named(item)


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    # and every test of each module and class collected, those a node id left out too
    # (`pytest tests/x.py::test_one`: pytest makes the module's other tests, and reports only the
    # one asked for): a module's `pytestmark` names its cassette for every test in it. A test of a
    # module not collected at all is caught by the line naming the cassette's test (_cassette).
    report = yield
    if report.passed:
        for node in report.result or ():
            if isinstance(node, pytest.Item):
                _named(node)
    return report


def _cassette(item: pytest.Item) -> _Cassette | None:
    marker = item.get_closest_marker("replayer")
    if marker is None:
        return None
    where = f"@pytest.mark.replayer on {item.nodeid}"
    path = _cassette_path(item.config, marker)
    if path is None:
        pytest.fail(f"{where}: give the cassette's path, e.g. @pytest.mark.replayer(\"tests/cassettes/x.jsonl\")",
                    pytrace=False)
    unknown = sorted(set(marker.kwargs) - set(MARKER_OPTIONS))
    if unknown:
        pytest.fail(f"{where}: unknown option {', '.join(unknown)} (known: {', '.join(MARKER_OPTIONS)})",
                    pytrace=False)
    ignore = marker.kwargs.get("ignore", ())
    if isinstance(ignore, str):
        ignore = (ignore,)
    from .playback.matching import parse_path

    for text in ignore:
        try:
            parse_path(text)
        except (ValueError, AttributeError):
            pytest.fail(f"{where}: ignore={text!r} is not a field path: give keys separated by dots, e.g. "
                        "metadata.user_id or messages.*.content.*.text (* is every key or item)", pytrace=False)
    shown = _shown(item.config, path)
    one_each = ("a cassette belongs to one test: give each its own (a parametrized test's parameters: "
                "pytest.param(..., marks=pytest.mark.replayer(PATH)))")
    others = [nodeid for nodeid in item.config.stash.get(_NAMED_BY, {}).get(path, []) if nodeid != item.nodeid]
    if others:
        listed = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        pytest.fail(f"{where}: cassette {shown} is named by {len(others)} other test{'s' * (len(others) > 1)} too "
                    f"({listed}): {one_each}", pytrace=False)
    from .playback.source import cassette_test

    owner = cassette_test(path)  # the test that wrote the file: one not collected now is refused too
    if owner is not None and owner != item.nodeid:
        pytest.fail(f"{where}: cassette {shown} was recorded by another test ({owner}): {one_each}; a renamed "
                    "test: delete the file to record it again", pytrace=False)
    mode = item.config.stash[_MODE]
    recording = mode == "all" or (mode == "missing" and not path.exists())
    c = _Cassette(
        path, recording, tuple(ignore), bool(marker.kwargs.get("loose", False)),
        bool(marker.kwargs.get("with_errors", False)), marker.kwargs.get("redact") or item.config.stash[_REDACT],
    )
    if mode == "none" and not path.exists():
        c.blocked = (
            f"replayer: cassette {shown} not found (--replayer-record-mode=none): record it with --replayer-record"
        )
    elif recording and not any(os.environ.get(name) for name in KEY_ENVS):
        why = "--replayer-record records" if mode == "all" else f"cassette {shown} not found: the test records"
        c.blocked = f"replayer: {why} it live and needs ANTHROPIC_API_KEY: set it, or commit the cassette"
    return c


def _shown(config: pytest.Config, path: Path) -> str:
    try:
        return str(path.relative_to(config.rootpath))
    except ValueError:
        return str(path)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Any:
    c = _cassette(item)
    if c is not None:
        item.stash[_CASSETTE] = c
        if c.blocked is None:
            _start(c)
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    c = item.stash.get(_CASSETTE, None)
    if c is None:
        return (yield)
    if c.blocked is not None:
        pytest.fail(c.blocked, pytrace=False)
    c.ran = True
    try:
        result = yield
    except BaseException as e:
        c.failed = True  # failed, xfailed, skipped or interrupted: its calls are no recording to keep
        if isinstance(e, Exception | pytest.fail.Exception):  # not Ctrl-C, not a skip
            _fail_if_refused(c)  # the difference, not the SDK error it caused, is the failure to show
        raise
    _fail_if_refused(c)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    c = item.stash.get(_CASSETTE, None)
    try:
        return (yield)
    except BaseException:
        if c is not None:
            c.failed = True  # a fixture's teardown failed: pytest reports the test as an error
        raise
    finally:
        if c is not None:
            del item.stash[_CASSETTE]
            _finish(item, c)


def _fail_if_refused(c: _Cassette) -> None:
    refused = c.handler.refused if c.handler is not None and not c.recording else []
    if refused:
        c.failed = True
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        said = refused[0].removeprefix("replayer replay: ").removeprefix("replayer: ")
        pytest.fail(
            f"replayer: a request did not match cassette {c.path.name}{more}: {said}\n"
            "(a deliberate change: record the cassette again with --replayer-record)",
            pytrace=False,
        )


def _start(c: _Cassette) -> None:
    # the SDK first: importing it runs `_patch`, which imports inprocess; were inprocess to import
    # the SDK first (a test that imports it only in its body), `_patch` would find it half made
    import anthropic  # noqa: F401

    from .playback import inprocess

    if c.recording:
        # Everything the recorder's writer thread and `_write` import, imported here, before that
        # thread starts, and the database made (its migrations import modules too): pytest
        # rewrites the asserts of every module of a plugin's distribution as it is imported, with
        # ast.parse, which CPython 3.11 can't run on two threads at once (a SystemError).
        from .recorder import Recorder
        from .store import export, ingest, queries  # noqa: F401
        from .store.schema import open_db

        c.folder = tempfile.TemporaryDirectory(prefix="replayer-cassette-")
        db_path = Path(c.folder.name) / "cassette.db"
        open_db(db_path).close()
        # the writer on a thread of this process: a writer process per test would cost its start
        previous = os.environ.get("REPLAYER_WRITER")
        os.environ["REPLAYER_WRITER"] = "thread"
        try:
            c.recorder = Recorder(db_path, redact=c.redact)
        finally:
            if previous is None:
                os.environ.pop("REPLAYER_WRITER", None)
            else:
                os.environ["REPLAYER_WRITER"] = previous
        c.handler = inprocess.Recording(c.recorder.middleware)
    else:
        from .playback.matching import Matcher

        c.handler = inprocess.Replaying(
            Matcher(_read(c.path), ignore=c.ignore, loose=c.loose, with_errors=c.with_errors)
        )
        if not os.environ.get("ANTHROPIC_API_KEY"):
            # as `replayer replay` does: code that reads the key itself (a framework) runs with no key
            from .playback import OFFLINE_KEY

            c.key_before, c.key_set = os.environ.get("ANTHROPIC_API_KEY"), True
            os.environ["ANTHROPIC_API_KEY"] = OFFLINE_KEY
    c.serving = inprocess.serving(c.handler)
    c.serving.__enter__()


def _finish(item: pytest.Item, c: _Cassette) -> None:
    if c.key_set:  # the environment as it was
        if c.key_before is None:
            os.environ.pop("ANTHROPIC_API_KEY", None)
        else:
            os.environ["ANTHROPIC_API_KEY"] = c.key_before
    if c.serving is None:
        return
    c.serving.__exit__(None, None, None)
    if not c.recording:
        drift = c.handler.player.drift()
        if drift:
            said = "; ".join(f"conversation {d.conversation_id} turn {d.index}: {d.difference}"
                             + (f" ({d.kind})" if d.kind else "") for d in drift)
            # reported at the test, not at this line
            warnings.warn_explicit(
                ReplayerDrift(f"replayer: loose replay of {c.path.name} served {len(drift)} request(s) that differ "
                              f"from the recording: {said}"),
                ReplayerDrift, str(item.path), (item.location[1] or 0) + 1,
            )
        return
    try:
        closed = c.recorder.close()  # first: whatever happens next, its writer thread is done
        if not closed:
            pytest.fail(f"replayer: the calls recorded for {c.path.name} could not all be written; "
                        "the cassette was not written", pytrace=False)
        _write(item, c)
    finally:
        c.folder.cleanup()


def _write(item: pytest.Item, c: _Cassette) -> None:
    from .store.export import cassette_lines
    from .store.queries import Store
    from .store.schema import open_db

    if not c.ran or c.failed:
        return  # the next run records it again (--replayer-record: the cassette there is kept)
    db = open_db(Path(c.folder.name) / "cassette.db")
    try:
        store = Store(db)
        conversations = store.conversations(sort="started", descending=False, limit=1_000_000)
        lines = [json.dumps({"test": item.nodeid}, ensure_ascii=False)]  # the test the cassette belongs to
        lines += [
            json.dumps(line, ensure_ascii=False)
            for conversation in conversations
            for line in cassette_lines(store, conversation_id=conversation.conversation_id)
        ]
    finally:
        db.close()
    temp = c.path.with_name(c.path.name + ".tmp")
    try:
        c.path.parent.mkdir(parents=True, exist_ok=True)
        temp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        os.replace(temp, c.path)
        return
    except OSError as e:
        where = "" if e.filename in (None, str(c.path), str(temp)) else f"{_shown(item.config, Path(e.filename))}: "
        why = f"{where}{e.strerror}"
    pytest.fail(f"replayer: cannot write cassette {_shown(item.config, c.path)} ({why}): "
                "make its folder writable or give the marker another path", pytrace=False)


def _read(path: Path) -> list[dict[str, Any]]:
    """The cassette's calls; a file that can't be used fails the test in one line. An empty file
    (or one holding only the line naming its test) is a test that made no call when it was
    recorded."""
    from .cli.base import UserError
    from .playback.source import read_cassette

    try:
        return read_cassette(path).lines
    except OSError as e:
        pytest.fail(f"replayer: cassette {path}: cannot read it ({e.strerror})", pytrace=False)
    except UserError as e:
        pytest.fail(f"replayer: {e.message}; record it again with --replayer-record", pytrace=False)
