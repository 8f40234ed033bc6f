"""Shared fixtures: a local fake Messages API (the real SDK talks to it over HTTP), a recorder on
a temp DB, and a user data folder pointed at a temp dir so no test touches the real one."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import anthropic
import pytest

from replayer import Recorder
from replayer.fakeapi import FakeAPI
from replayer.store.queries import Store
from replayer.store.schema import open_db

FAKE_KEY = "sk-ant-test-NOT-A-REAL-KEY-0123456789"
VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "anthropic-sdk-sse"


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("HOME", str(home))
    for var in (
        "REPLAYER_DB", "REPLAYER_PRICING", "REPLAYER_WRITER", "REPLAYER_CONFIG",
        "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN",
    ):
        monkeypatch.delenv(var, raising=False)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.fixture
def thread_writer(monkeypatch):
    """Recorders write from a thread of the test's process, not a writer process: for white-box
    tests that patch the writer's modules (a patch doesn't reach another process)."""
    monkeypatch.setenv("REPLAYER_WRITER", "thread")


@pytest.fixture
def api():
    with FakeAPI() as server:
        yield server


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


def sent_bodies(api: FakeAPI, path_prefix: str = "/v1/messages") -> list[dict]:
    return [json.loads(r["body"]) for r in api.received if r["path"].split("?")[0] == path_prefix]
