"""A conversation's Duration: from its first call's start to when its last reply came back
(conversations.ended_at), not to its last call's start. Shown by `list --json` (duration_s) and
the browser's list, sorted by there, the same as `compare`'s wall time; kept by the write path
for recorded calls and their retries, the proxy and the imports; filled by a migration in a
database recorded before. Through the real SDK against the fake API, which delays its replies."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime, timedelta

import anthropic
import pytest
from click.testing import CliRunner
from conftest import FAKE_KEY, exported, wait_until
from test_capture import ERR_429, USER, msg
from test_otlp_import import collector_line, convention_loop, own_spans, sdk_spans
from test_proxy import proxy_db, start, writer  # noqa: F401 (fixtures)
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey
from tui_data import settle

from replayer.cli import cli
from replayer.fakeapi import FakeAPI, Reply
from replayer.store.schema import open_db
from replayer.tui.app import make_app
from replayer.tui.render import duration

DELAY = 1.0
"""Seconds the fake API takes to answer a slow call: shown as `1s` at least (a whole second)."""
PAUSE = 0.4
"""Seconds an agent waits between its two quick calls: its last call starts that much later."""


def run(db, *args):
    r = CliRunner().invoke(cli, ["--db", str(db), *map(str, args)])
    assert r.exit_code == 0, r.output
    return r


def listed(db) -> dict[str, dict]:
    """`list --json`, by conversation."""
    return {c["conversation_id"]: c for c in json.loads(run(db, "list", "--json").stdout)}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def ask(client, text: str, history=()) -> list[dict]:
    """One call; the messages a next call that continues it sends."""
    messages = [*history, {"role": "user", "content": text}]
    out = client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=messages)
    return [*messages, {"role": "assistant", "content": [b.to_dict() for b in out.content]}]


def record_slow_and_quick(api, rec, client) -> None:
    """conv_slow: one call the API takes DELAY to answer. conv_quick: two calls answered at once,
    PAUSE apart. From first start to last start, conv_quick is the longer; to the last reply,
    conv_slow is."""
    api.enqueue(Reply(body=msg("slow"), delay=DELAY))
    with rec.conversation("conv_slow"):
        ask(client, "Take your time")
    with rec.conversation("conv_quick"):
        history = ask(client, "Quick one")
        time.sleep(PAUSE)
        ask(client, "And another", history)
    assert rec.flush(10)


async def browser_list(db, width: int, *, by_duration: bool = False) -> list[tuple[str, str]]:
    """The browser's list at `width` columns (sorted by Duration, longest first, when asked):
    (conversation, its Duration cell) row by row."""
    app = make_app(db)
    async with app.run_test(size=(width, 30)) as pilot:
        await settle(pilot)
        screen = app.screen
        for _ in screen.COLUMNS:  # `s` steps the sort to the next column, descending
            if not by_duration or screen.sort == ("Duration", True):
                break
            await pilot.press("s")
            await settle(pilot)
        assert not by_duration or screen.sort == ("Duration", True)
        table = screen.query_one("#conversations", DataTable)
        ids = [str(row.key.value) for row in table.ordered_rows]
        return [(cid, str(table.get_cell(RowKey(cid), ColumnKey("Duration")))) for cid in ids]


async def test_a_one_turn_conversation_lasts_as_long_as_its_call_in_list_and_browser(api, rec, client, db_path):
    """A one-turn conversation whose call took DELAY showed Duration 0s: the time from its
    first call's start to its last call's start."""
    api.enqueue(Reply(body=msg("slow"), delay=DELAY))
    client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=USER)
    rec.close()
    [line] = exported(db_path)
    [c] = listed(db_path).values()
    assert c["duration_s"] >= DELAY and c["last_at"] == c["started_at"] == line["started_at"]
    # to the millisecond the call's answer came back (its start plus its latency, cut to the ms)
    short = at(line["started_at"]) + timedelta(milliseconds=line["latency_ms"]) - at(c["ended_at"])
    assert timedelta(0) <= short < timedelta(milliseconds=1), (line, c)
    for width in (100, 160):
        [(cid, shown)] = await browser_list(db_path, width)
        assert cid == c["conversation_id"] and shown == duration(c["duration_s"]), shown
        assert int(shown.removesuffix("s")) >= DELAY, shown


def test_a_retry_that_answers_later_ends_its_conversation_later(api, rec, client, db_path):
    """The turn's first attempt got a 429 at once; its retry took DELAY: the conversation ends
    with the retry's answer, not the 429."""
    api.enqueue(Reply(status=429, body=ERR_429, headers={"retry-after-ms": "1"}), Reply(body=msg("late"), delay=DELAY))
    client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=USER)
    rec.close()
    first, retry = exported(db_path)
    assert (first["status"], retry["attempt"], first["turn_id"]) == (429, 1, retry["turn_id"])
    [c] = listed(db_path).values()
    assert c["duration_s"] >= DELAY
    short = at(retry["started_at"]) + timedelta(milliseconds=retry["latency_ms"]) - at(c["ended_at"])
    assert timedelta(0) <= short < timedelta(milliseconds=1), (retry, c)


async def test_sorting_by_duration_orders_by_the_last_reply(api, rec, client, db_path):
    record_slow_and_quick(api, rec, client)
    got = listed(db_path)
    assert got["conv_slow"]["duration_s"] >= DELAY > got["conv_quick"]["duration_s"] >= PAUSE
    from replayer.store.queries import Store

    store = Store(open_db(db_path))
    assert [c.conversation_id for c in store.conversations(sort="duration")] == ["conv_slow", "conv_quick"]
    assert [c.conversation_id for c in store.conversations(sort="duration", descending=False)] == [
        "conv_quick", "conv_slow"]
    for width in (100, 160):
        rows = await browser_list(db_path, width, by_duration=True)
        assert [cid for cid, _ in rows] == ["conv_slow", "conv_quick"], rows
        assert [shown for _, shown in rows] == [duration(got[cid]["duration_s"]) for cid, _ in rows]


def test_compare_says_the_wall_time_list_says(api, rec, client, db_path):
    record_slow_and_quick(api, rec, client)
    got = listed(db_path)
    doc = json.loads(run(db_path, "compare", "conv_slow", "conv_quick", "--json").stdout)
    assert (doc["a"]["wall_s"], doc["b"]["wall_s"]) == (got["conv_slow"]["duration_s"],
                                                        got["conv_quick"]["duration_s"])


def test_a_database_recorded_before_gets_its_conversations_ends_when_migrated(api, rec, client, db_path):
    """A database as a replayer before ended_at left it (no column, m018 not applied): opening it
    fills every conversation's end from its attempts, as the writer would have kept it."""
    record_slow_and_quick(api, rec, client)
    api.enqueue(Reply(status=429, body=ERR_429, headers={"retry-after-ms": "1"}), Reply(body=msg("late"), delay=DELAY))
    with rec.conversation("conv_retried"):
        ask(client, "Try again")
    rec.close()
    written = listed(db_path)
    db = sqlite3.connect(db_path)
    db.execute("ALTER TABLE conversations DROP COLUMN ended_at")
    db.execute("DELETE FROM _sqlite_migrations WHERE name = 'm018_conversation_ended_at'")
    db.commit()
    db.close()
    migrated = listed(db_path)  # opening it migrates it
    assert migrated == written
    assert all(migrated[cid]["duration_s"] >= DELAY for cid in ("conv_slow", "conv_retried")), migrated
    assert migrated["conv_quick"]["ended_at"] > migrated["conv_quick"]["last_at"]


def test_imported_export_lines_and_own_spans_end_where_they_did(api, rec, client, db_path, tmp_path):
    """An export line has its attempt's start and latency, and a span of replayer's its times:
    imported, the conversation ends to the millisecond where it did."""
    record_slow_and_quick(api, rec, client)
    rec.close()
    source = listed(db_path)
    lines = run(db_path, "export").stdout.splitlines()
    export = tmp_path / "run.jsonl"
    export.write_text("\n".join(lines) + "\n")
    spans = tmp_path / "spans.jsonl"
    spans.write_text(collector_line(own_spans(lines, db_path)) + "\n")
    for command, path in (("export", export), ("otlp", spans)):
        db = tmp_path / f"{command}.db"
        run(db, "import", command, path)
        assert listed(db) == source, command


def test_other_instrumentations_spans_end_where_their_last_span_did(tmp_path):
    """A span's latency is its end minus its start: the two-turn loop of convention spans lasts
    from its first span's start (T0) to its last span's end (T0 + 2.5 s), not to that span's
    start (T0 + 2 s)."""
    specs, _ = convention_loop()
    path = tmp_path / "spans.jsonl"
    path.write_text(collector_line(sdk_spans(specs)) + "\n")
    db = tmp_path / "c.db"
    run(db, "import", "otlp", path)
    start_ns, end_ns = specs[0][1], specs[-1][2]
    [c] = listed(db).values()
    assert c["duration_s"] == (end_ns - start_ns) / 1e9


@pytest.mark.writer_process
def test_a_call_through_the_proxy_lasts_as_long_as_its_answer_took(start, writer, proxy_db):  # noqa: F811
    with FakeAPI() as api:
        api.enqueue(Reply(body=msg("slow"), delay=DELAY))
        proxy = start(api.url)
        anthropic.Anthropic(base_url=proxy.url, api_key=FAKE_KEY).messages.create(
            model="claude-sonnet-4-5", max_tokens=64, messages=USER)
        assert wait_until(lambda: writer.flush(10) and proxy_db.exists() and len(exported(proxy_db)) == 1)
    [c] = listed(proxy_db).values()
    assert c["duration_s"] >= DELAY and c["last_at"] == c["started_at"]
