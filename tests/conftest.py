"""Shared fixtures: a local fake Messages API (the real SDK talks to it over HTTP), a recorder on
a temp DB, and a user data folder pointed at a temp dir so no test touches the real one."""

from __future__ import annotations

import json
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import anthropic
import pytest

from replayer import Recorder
from replayer.fakeapi import FakeAPI
from replayer.store import process as writer_process
from replayer.store.queries import Store
from replayer.store.schema import open_db

FAKE_KEY = "sk-ant-test-NOT-A-REAL-KEY-0123456789"
VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "anthropic-sdk-sse"

SLOW_FIRST = (
    "test_fork", "test_replay", "test_record_any", "test_otlp_export", "test_record", "test_many_writers",
    "test_db_file_alone", "test_pytest_plugin", "test_surrogates", "test_demo", "test_stream_events",
    "test_tui_behaviour", "test_tui_rerun", "test_tui", "test_tui_truth", "test_snapshots",
)
"""The modules whose tests take longest (subprocesses that import the SDK, then the Textual
pilots), slowest first: run first, so the last test a worker runs is a short one. Only the order
of running changes; a module not listed keeps its place after these."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "writer_process: this module's in-process Recorders use the writer process, as a user's do"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slowest modules first. Under `--dist loadfile` (pyproject) each module runs whole on
    one worker, so a module-scoped fixture (a recording made once, then only read) is made once
    rather than once per worker; the order decides which module a free worker takes next. Each
    test still runs whole, with the same fixtures."""
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(SLOW_FIRST)))  # stable: in-module order kept


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch, request):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))  # never the developer's own settings
    # times are shown, and filter dates read, in the machine's zone when no setting names one:
    # the tests' dates mean the same on every machine (a test wanting another zone sets TZ)
    monkeypatch.setenv("TZ", "UTC")
    for var in (
        "REPLAYER_DB", "REPLAYER_PRICING", "REPLAYER_WRITER", "REPLAYER_CONFIG",
        "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN",
    ):
        monkeypatch.delenv(var, raising=False)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    if request.node.get_closest_marker("writer_process") is None:
        # A Recorder made in this process writes from a thread here, as where no child can be
        # started: a writer process costs ~0.6 s of CPU to start (its imports), and a run of the
        # suite started 422 of them, most for this process's Recorders (254 s of its 1,437 s of
        # CPU, on a machine where the suite took 14 minutes). The writer process, a user's
        # default, is what the modules marked `writer_process` test (its own, the many-writers,
        # failures, the DB file left whole, record() arguments, the proxy's), and every
        # `replayer` command these tests run as a subprocess (record, replay, fork, proxy, demo)
        # starts one as a user's does.
        monkeypatch.setattr(writer_process, "_can_spawn", lambda: False)


@pytest.fixture
def thread_writer(monkeypatch):
    """Recorders write from a thread of the test's process, not a writer process: for white-box
    tests that patch the writer's modules (a patch doesn't reach another process)."""
    monkeypatch.setenv("REPLAYER_WRITER", "thread")


def stop_behind(server: FakeAPI | Any) -> None:
    """Stop a fake server the test is done with on a thread of its own: `stop` waits for the
    server loop's next poll (up to 0.5 s), which nothing after the test needs to wait for."""
    threading.Thread(target=server.stop, name="fakeapi-stop", daemon=True).start()


@pytest.fixture
def api():
    server = FakeAPI().start()
    try:
        yield server
    finally:
        stop_behind(server)


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "rec.db"


@pytest.fixture
def rec(db_path):
    r = Recorder(db_path)
    yield r
    r.close()


@pytest.fixture
def client(api, rec):
    return rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=2))


@pytest.fixture
def aclient(api, rec):
    return rec.wrap(anthropic.AsyncAnthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=2))


def wait_until(pred, timeout: float = 10.0) -> bool:
    """Poll `pred` (never an assertion on how long it took)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return bool(pred())


def exported(path) -> list[dict]:
    """Every recorded attempt, as `replayer export` writes it."""
    store = Store(open_db(path, create=False))
    return [json.loads(line) for line in store.export_lines()]


def stored_facts(db) -> tuple[list, list]:
    """Every usage row and rollup row of a database (open_db's), in key order: what a migration
    that puts them right must leave as the writer leaves them now."""
    return (db.execute("SELECT * FROM usage ORDER BY attempt_id, part").fetchall(),
            db.execute("SELECT * FROM rollup ORDER BY conv, bucket, model, batch, band").fetchall())


def sent_bodies(api: FakeAPI, path_prefix: str = "/v1/messages") -> list[dict]:
    return [json.loads(r["body"]) for r in api.received if r["path"].split("?")[0] == path_prefix]
