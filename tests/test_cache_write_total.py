"""A usage whose `cache_creation` split is zeros beside `cache_creation_input_tokens` (a gateway
or a transcript that fills the split with zeros): the writes were priced at nothing and left out
of `list`'s prompt (10,900 where `show` said 16,200). Where the split doesn't add up to the
total, the total wins, the writes it doesn't place counted as 5-minute writes: the same prompt
and cost in `list`, `list --json`, `show`, `show --json`, `stats` and the browser's list; an
older database's figures are put right when it is opened (m020, and m021 sums the rollup again)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import anthropic
import pytest
from click.testing import CliRunner
from conftest import FAKE_KEY, stored_facts
from textual.widgets import DataTable
from tui_data import settle

from replayer import Recorder
from replayer.cli import cli
from replayer.config import Settings
from replayer.fakeapi import FakeAPI, Reply
from replayer.fmt import money
from replayer.metrics import stats
from replayer.pricing import PriceTable
from replayer.store.queries import Store
from replayer.store.schema import open_db

MODEL = "claude-sonnet-4-5-20250929"
UNCACHED, WRITES, READS, OUT = 600, 5_300, 10_300, 50
USAGES = {
    # the split in zeros: every write a 5-minute one, as the API's default
    "conv_zeros": {"cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}},
    # a split that names 1-hour writes but not all of them: those, the rest 5-minute ones
    "conv_short": {"cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 1_000}},
}


def usage(conv: str) -> dict:
    return {"input_tokens": UNCACHED, "output_tokens": OUT, "cache_creation_input_tokens": WRITES,
            "cache_read_input_tokens": READS, **USAGES[conv]}  # fmt: skip


def expected(conv: str) -> float:
    rates = PriceTable.load().row_for(MODEL).rates
    w1h = USAGES[conv]["cache_creation"]["ephemeral_1h_input_tokens"]
    return (UNCACHED * rates.input + OUT * rates.output + (WRITES - w1h) * rates.cache_write_5m
            + w1h * rates.cache_write_1h + READS * rates.cache_read) / 1_000_000  # fmt: skip


def record(path) -> None:
    with FakeAPI() as api, Recorder(path) as rec:
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
        for conv in USAGES:
            api.enqueue(Reply(body={"id": f"msg_{conv}", "type": "message", "role": "assistant", "model": MODEL,
                                    "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
                                    "stop_sequence": None, "usage": usage(conv)}))  # fmt: skip
            with rec.conversation(conv):
                client.messages.create(model="claude-sonnet-4-5", max_tokens=50,
                                       messages=[{"role": "user", "content": "hello"}])  # fmt: skip
        assert rec.flush(10)


def run(path, *args: str) -> str:
    r = CliRunner().invoke(cli, ["--db", str(path), *args])
    assert r.exit_code == 0, r.output
    return r.output


def assert_one_figure_everywhere(path) -> None:
    prompt = UNCACHED + WRITES + READS
    for conv in USAGES:
        cost = expected(conv)
        (turn,) = json.loads(run(path, "show", conv, "--json"))["turns"]
        assert turn["cost_usd"] == pytest.approx(cost), conv
        table = run(path, "show", conv).splitlines()
        assert f"{prompt:,}" in table[1].split() and money(cost) in table[1].split(), table
        (listed,) = [c for c in json.loads(run(path, "list", "--json")) if c["conversation_id"] == conv]
        assert (listed["input_tokens"], listed["cost_usd"]) == (prompt, pytest.approx(cost)), listed
        row = next(line for line in run(path, "list").splitlines() if conv in line)
        assert f"{prompt:,}" in row.split() and money(cost) in row.split(), row
    doc = stats(Store(open_db(path), PriceTable.load()), Settings(tz="UTC"), days=1, now=datetime.now(UTC)).document()
    assert doc["users"][0]["cost_usd"] == pytest.approx(sum(expected(c) for c in USAGES))
    assert doc["metrics"]["cache_hit_rate"]["value"] == pytest.approx(READS / prompt)


def test_writes_the_split_leaves_out_are_counted_and_priced_alike_everywhere(tmp_path):
    path = tmp_path / "w.db"
    record(path)
    assert_one_figure_everywhere(path)


async def test_the_browsers_list_shows_the_same_prompt_and_cost(tmp_path):
    from replayer.tui.app import make_app

    path = tmp_path / "w.db"
    record(path)
    app = make_app(path)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(DataTable)
        cells = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        for conv in USAGES:
            (row,) = [r for r in cells if any(conv in c for c in r)]
            assert money(expected(conv)) in row, row


def test_an_older_database_is_put_right_when_opened(tmp_path):
    """The usage rows and rollup as the writer stored them before (the split trusted: the writes
    at 0), then m020 and m021 run again: the figures agree with those recorded now."""
    from replayer.store import facts

    path = tmp_path / "old.db"
    record(path)
    db = open_db(path)

    before = stored_facts(db)
    for values in db.execute(f"SELECT {facts.USAGE_COLUMNS} FROM usage").fetchall():
        u = facts.UsageRow(*values)
        stale = u._replace(cache_write_5m=0, cache_write_1h=min(u.cache_write_1h or 0, 1_000), rewrite=0)
        db.execute("UPDATE usage SET w5m = ?, w1h = ?, rewrite = 0 WHERE attempt_id = ? AND part = ?",
                   (stale.cache_write_5m, stale.cache_write_1h, u.attempt_id, u.part))
        old, new = facts.rollup_row(u, ""), facts.rollup_row(stale, "")  # (the user: not in these updates)
        db.execute("""UPDATE rollup SET w5m = w5m - ? + ?, w1h = w1h - ? + ?, rewrites = rewrites - ? + ?
                      WHERE conv = ? AND bucket = ? AND model = ? AND batch = ? AND band = ?""",
                   (old.cache_write_5m, new.cache_write_5m, old.cache_write_1h, new.cache_write_1h,
                    old.rewrites, new.rewrites, old.conv, old.bucket, old.model, old.batch, old.band))  # fmt: skip
    assert stored_facts(db) != before
    db.execute("DELETE FROM _sqlite_migrations WHERE name IN (?, ?)",
               ["m020_cache_writes_by_their_total", "m021_rollup_per_user"])
    db.conn.commit()
    db.conn.close()
    db = open_db(path)
    assert stored_facts(db) == before
    assert_one_figure_everywhere(path)
